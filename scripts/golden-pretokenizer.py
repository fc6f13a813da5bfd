#!/usr/bin/env python3
"""Writes tests/golden/tokenizer/pretokenizer.json: word splits of the shared prompt set under llama.cpp's
pre-tokenizer regexes (strings copied from llama.cpp src/llama-vocab.cpp, llm_tokenizer_bpe), applied with the
Python `regex` module the way llama.cpp's unicode_regex_split applies a rule list: each rule splits every current
segment into its matches plus the unmatched text between them.

Usage: scripts/golden-pretokenizer.py      (needs: pip install regex)
"""
import json, sys
from pathlib import Path
import regex

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tokenizer_prompts import PROMPTS

GPT2 = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)"
RULES = {
    # LLAMA_VOCAB_PRE_TYPE_LLAMA3 ("llama3", "llama-bpe", …)
    "llama3": [r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"],
    # LLAMA_VOCAB_PRE_TYPE_QWEN2
    "qwen2": [r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"],
    # LLAMA_VOCAB_PRE_TYPE_GPT2
    "gpt2": [GPT2],
    # LLAMA_VOCAB_PRE_TYPE_SMOLLM
    "smollm": [r"\p{N}", GPT2],
}

EXTRA = [
    "a\u2009b", "x  \ny", "end with newline\n", "  \t  \n\t x", "123456789 0.5 ½ ⅔ ٣٤٥",
    "don'T WON'T I'M", "'hello' ''quoted''", "a\r\n\r\nb", "\u00a0\u00a0nbsp", "tabs\t\t\tend\t",
]


def split(text, rules):
    segs = [text] if text else []
    for rule in rules:
        pat = regex.compile(rule)
        out = []
        for s in segs:
            pos = 0
            for m in pat.finditer(s):
                if m.start() > pos:
                    out.append(s[pos:m.start()])
                if m.end() > m.start():
                    out.append(m.group())
                pos = m.end()
            if pos < len(s):
                out.append(s[pos:])
        segs = out
    return segs


def main():
    root = Path(__file__).resolve().parent.parent
    doc = {"regex_module": regex.__version__, "splits": {}}
    for name, rules in RULES.items():
        doc["splits"][name] = [{"text": t, "words": split(t, rules)} for t in PROMPTS + EXTRA]
    out = root / "tests" / "golden" / "tokenizer" / "pretokenizer.json"
    with open(out, "w", encoding="utf-8") as f:
        json.dump(doc, f, ensure_ascii=False, indent=1)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
