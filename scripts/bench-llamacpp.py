#!/usr/bin/env python3
"""Times llama.cpp (through llama-cpp-python) the way `shardctl bench` times Shard: prefill of a
prompt of P tokens, then G greedy decode steps, on T threads. Prints one JSON object.

    pip install llama-cpp-python
    scripts/bench-llamacpp.py MODEL [--prompt-tokens 64] [--gen-tokens 64] [--threads 2] [--repeat 3]
"""
import argparse, json, time
from llama_cpp import Llama

ap = argparse.ArgumentParser()
ap.add_argument("model")
ap.add_argument("--prompt-tokens", type=int, default=64)
ap.add_argument("--gen-tokens", type=int, default=64)
ap.add_argument("--threads", type=int, default=2)
ap.add_argument("--repeat", type=int, default=3)
a = ap.parse_args()
llm = Llama(model_path=a.model, n_ctx=a.prompt_tokens + a.gen_tokens + 8, n_batch=512,
            n_threads=a.threads, n_threads_batch=a.threads, verbose=False)
vocab = llm.n_vocab()
prompt = [((i * 7919 + 1000) % (vocab - 1000)) + 500 for i in range(a.prompt_tokens)]
best_pp, best_tg = 0.0, 0.0
for _ in range(a.repeat):
    llm.reset()
    t0 = time.perf_counter(); llm.eval(prompt); t1 = time.perf_counter()
    tok = 500
    t2 = time.perf_counter()
    for _ in range(a.gen_tokens):
        llm.eval([tok])
    t3 = time.perf_counter()
    best_pp = max(best_pp, a.prompt_tokens / (t1 - t0))
    best_tg = max(best_tg, a.gen_tokens / (t3 - t2))
print(json.dumps({"engine": "llama.cpp (llama-cpp-python)", "prefill_tokens_per_s": best_pp,
                  "decode_tokens_per_s": best_tg, "prompt_tokens": a.prompt_tokens,
                  "gen_tokens": a.gen_tokens, "threads": a.threads}))
