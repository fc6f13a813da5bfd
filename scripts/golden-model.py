#!/usr/bin/env python3
"""Writes model-parity goldens from llama.cpp (llama-cpp-python, a test-time oracle only).

For a GGUF model: prompt token ids, greedy continuations (32 tokens), the top-10 next-token logits
after each prompt, and perplexity computed the way llama-perplexity does (chunks of --ctx tokens,
first token of each chunk replaced by BOS when the model adds one, scoring the second half).

    pip install llama-cpp-python numpy
    scripts/golden-model.py models/SmolLM2-135M-Instruct.Q4_1.gguf tests/golden/model/smollm2.json
"""
import argparse, json, math, sys
import numpy as np
from llama_cpp import Llama

PROMPTS = [
    "The capital of France is",
    "Once upon a time, in a small village,",
    "def fibonacci(n):\n    ",
    "<|im_start|>user\nWhat is 12 * 7?<|im_end|>\n<|im_start|>assistant\n",
    "Numbers: 1, 2, 3, 5, 8, 13,",
]

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("out")
    ap.add_argument("--ppl-file", default="tests/data/ppl-text.txt")
    ap.add_argument("--ppl-ctx", type=int, default=128)
    ap.add_argument("--gen", type=int, default=32)
    ap.add_argument("--prompts", default=None, help="JSON list of prompts (default: built-in)")
    ap.add_argument("--no-ppl", action="store_true")
    a = ap.parse_args()
    prompts = json.loads(a.prompts) if a.prompts else PROMPTS

    llm = Llama(model_path=a.model, n_ctx=512, n_batch=512, n_threads=2, logits_all=True, verbose=False, seed=0)
    out = {"model": a.model.split("/")[-1], "gen_tokens": a.gen, "cases": []}
    for p in prompts:
        ids = llm.tokenize(p.encode(), add_bos=True, special=True)
        llm.reset()
        llm.eval(ids)
        last = np.array(llm.scores[llm.n_tokens - 1], dtype=np.float64)
        top = np.argsort(-last, kind="stable")[:10]
        top10 = [{"id": int(i), "logit": float(last[i])} for i in top]
        srt = np.sort(last)[::-1]
        gen, margins = [], []
        for _ in range(a.gen):
            logits = np.array(llm.scores[llm.n_tokens - 1], dtype=np.float64)
            order = np.argsort(-logits, kind="stable")
            tok = int(order[0])
            margins.append(float(logits[order[0]] - logits[order[1]]))
            gen.append(tok)
            llm.eval([tok])
        out["cases"].append({"prompt": p, "ids": ids, "top10": top10, "greedy": gen, "margins": margins})
        print(f"{p!r}: {len(ids)} ids, greedy {llm.detokenize(gen).decode(errors='replace')!r}", file=sys.stderr)

    if not a.no_ppl:
        text = open(a.ppl_file, encoding="utf-8").read()
        toks = llm.tokenize(text.encode(), add_bos=True, special=True)
        n_ctx = a.ppl_ctx
        add_bos = llm._model.add_bos_token() if hasattr(llm._model, "add_bos_token") else False
        bos = llm.token_bos()
        nll, count = 0.0, 0
        first = n_ctx // 2
        pctx = Llama(model_path=a.model, n_ctx=n_ctx, n_batch=n_ctx, n_threads=2, logits_all=True, verbose=False)
        for c in range(len(toks) // n_ctx):
            chunk = list(toks[c * n_ctx:(c + 1) * n_ctx])
            if add_bos:
                chunk[0] = bos
            pctx.reset()
            pctx.eval(chunk)
            for j in range(first, n_ctx - 1):
                row = np.array(pctx.scores[j], dtype=np.float64)
                m = row.max()
                lse = m + math.log(np.exp(row - m).sum())
                nll += lse - row[toks[c * n_ctx + j + 1]]
                count += 1
        out["perplexity"] = {"file": a.ppl_file, "ctx": n_ctx, "tokens": len(toks), "add_bos": bool(add_bos),
                             "ppl": math.exp(nll / count), "scored": count, "ids": list(toks)}
        print(f"PPL = {out['perplexity']['ppl']:.4f}", file=sys.stderr)
    with open(a.out, "w") as f:
        json.dump(out, f, indent=1)

if __name__ == "__main__":
    main()
