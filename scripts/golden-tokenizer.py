#!/usr/bin/env python3
"""Writes tests/golden/tokenizer/{smollm2,gemma3}.json with llama.cpp (llama-cpp-python) as the oracle.

Usage: scripts/golden-tokenizer.py [models_dir]   (default: $SHARD_MODELS_DIR or <root>/models)
Needs: pip install llama-cpp-python   (test-time oracle only; the Swift tests read the committed JSON)
"""
import ctypes, json, os, sys
from pathlib import Path

import llama_cpp
from llama_cpp import Llama

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tokenizer_prompts import PROMPTS, fuzz_prompts

ROOT = Path(__file__).resolve().parent.parent
MODELS = Path(sys.argv[1] if len(sys.argv) > 1 else os.environ.get("SHARD_MODELS_DIR", ROOT / "models"))
OUT = ROOT / "tests" / "golden" / "tokenizer"

MODELS_TO_DO = {
    "smollm2": "SmolLM2-135M-Instruct.Q4_1.gguf",
    "gemma3": "gemma-3-270m-q4_k_m.gguf",
}


def detokenize(vocab, ids, remove_special=False, unparse_special=True) -> bytes:
    arr = (llama_cpp.llama_token * max(len(ids), 1))(*ids)
    size = 64 + 16 * len(ids)
    while True:
        buf = ctypes.create_string_buffer(size)
        n = llama_cpp.llama_detokenize(vocab, arr, len(ids), buf, size, remove_special, unparse_special)
        if n < 0:
            size = -n + 1
            continue
        return buf.raw[:n]


def piece(vocab, tok, special=True) -> bytes:
    size = 256
    buf = ctypes.create_string_buffer(size)
    n = llama_cpp.llama_token_to_piece(vocab, tok, buf, size, 0, special)
    assert 0 <= n <= size, n
    return buf.raw[:n]


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    for name, fname in MODELS_TO_DO.items():
        path = MODELS / fname
        if not path.exists():
            sys.exit(f"missing model {path} (run scripts/fetch-models.sh)")
        llm = Llama(model_path=str(path), vocab_only=True, verbose=False)
        vocab = llama_cpp.llama_model_get_vocab(llm.model)
        n_vocab = llama_cpp.llama_vocab_n_tokens(vocab)
        cases = []
        fuzz = fuzz_prompts()
        for text in PROMPTS + fuzz:
            for add_special in (True, False):
                for parse_special in (True, False):
                    if text in fuzz and add_special is False:
                        continue  # fuzz strings: (add_special true) x (parse_special true/false) is enough
                    ids = llm.tokenize(text.encode("utf-8"), add_bos=add_special, special=parse_special)
                    dec = detokenize(vocab, ids)
                    cases.append({
                        "text": text,
                        "add_special": add_special,
                        "parse_special": parse_special,
                        "ids": ids,
                        # llama_detokenize(remove_special=false, unparse_special=true), as hex bytes
                        "decoded_hex": dec.hex(),
                    })
        # pieces of every token in a sample: all special-ish ids below 300 plus every id used above
        used = sorted({i for c in cases for i in c["ids"]} | set(range(min(300, n_vocab))) | {n_vocab - 1})
        pieces = {str(i): piece(vocab, i).hex() for i in used}
        eog = [i for i in range(n_vocab) if llama_cpp.llama_vocab_is_eog(vocab, i)]
        doc = {
            "model": fname,
            "oracle": f"llama-cpp-python {llama_cpp.__version__}",
            "n_vocab": n_vocab,
            "bos": llama_cpp.llama_vocab_bos(vocab),
            "eos": llama_cpp.llama_vocab_eos(vocab),
            "eot": llama_cpp.llama_vocab_eot(vocab),
            "add_bos": bool(llama_cpp.llama_vocab_get_add_bos(vocab)),
            "add_eos": bool(llama_cpp.llama_vocab_get_add_eos(vocab)),
            "eog": eog,
            "pieces_hex": pieces,
            "cases": cases,
        }
        with open(OUT / f"{name}.json", "w", encoding="utf-8") as f:
            json.dump(doc, f, ensure_ascii=False, indent=1)
        print(f"{name}: {len(cases)} cases, {len(pieces)} pieces, eog={eog}")


if __name__ == "__main__":
    main()
