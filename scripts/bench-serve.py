#!/usr/bin/env python3
"""Benchmarks `shardctl serve` from a second process on loopback.

    scripts/bench-serve.py --binary .build/release/shardctl --model models/SmolLM2-135M-Instruct.Q4_1.gguf \
        [--threads 2] [--gen-tokens 256] [--rounds 5] [--concurrency 1,4,8] [--duration 30]

1. Server overhead per token: the same greedy completion (same prompt, same length) streamed through
   the server (decode tok/s from the arrival times of the SSE chunks, first token excluded) against
   `shardctl generate --json` (its decode_tokens_per_s), alternating, `--rounds` times each; medians.
2. Load: C clients each sending streaming chat completions back to back for `--duration` seconds:
   requests/s, output tokens/s, time to first token (p50/p95) and request latency (p50/p95).

Uses only the standard library (http.client), so the client costs little CPU next to the server.
"""
import argparse
import http.client
import json
import os
import re
import statistics
import subprocess
import sys
import threading
import time

PROMPT = "Once upon a time, in a small village,"


def start_server(args):
    env = dict(os.environ, SHARD_THREADS=str(args.threads))
    p = subprocess.Popen([args.binary, "serve", "--model", args.model, "--port", "0", "--backend", "cpu",
                          "--log-level", "warning", "--max-queue", "1000"] + (["--shards", str(args.shards)] if args.shards > 1 else []),
                         env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    port = None
    for line in p.stderr:
        m = re.search(r"listening on http://[\d.]+:(\d+)", line)
        if m:
            port = int(m.group(1))
            break
    threading.Thread(target=lambda: [None for _ in p.stderr], daemon=True).start()
    deadline = time.time() + 300
    while time.time() < deadline:
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            c.request("GET", "/health")
            if c.getresponse().status == 200:
                return p, port
        except OSError:
            pass
        time.sleep(0.2)
    sys.exit("server did not become healthy")


def stream(port, path, body):
    """Sends a streaming request; returns (t_sent, [arrival time of each content chunk], usage)."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    t0 = time.perf_counter()
    c.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
    r = c.getresponse()
    assert r.status == 200, r.read()
    times, usage, buf = [], None, b""
    while True:
        line = r.readline()
        if not line:
            break
        if not line.startswith(b"data: "):
            continue
        data = line[6:].strip()
        if data == b"[DONE]":
            break
        ch = json.loads(data)
        if ch.get("usage"):
            usage = ch["usage"]
        for choice in ch.get("choices", []):
            if choice.get("text") or (choice.get("delta") or {}).get("content"):
                times.append(time.perf_counter())
    c.close()
    return t0, times, usage


def http_thread_cpu(pid):
    """CPU seconds of the server's threads other than the engine's (named shardctl: the main thread,
    the engine thread and its compute pool): NIO event loops and the Swift concurrency pool, i.e.
    HTTP, JSON, SSE and detokenization."""
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/comm") as f:
                if f.read().strip() == "shardctl":
                    continue
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except OSError:
            pass
    return total / os.sysconf("SC_CLK_TCK")


def overhead(args, port, pid):
    body = {"prompt": PROMPT, "max_tokens": args.gen_tokens, "temperature": 0, "stream": True,
            "stream_options": {"include_usage": True}}
    served, direct = [], []
    env = dict(os.environ, SHARD_THREADS=str(args.threads))
    http_cpu, tokens = 0.0, 0
    for _ in range(args.rounds):
        c0 = http_thread_cpu(pid)
        t0, times, usage = stream(port, "/v1/completions", body)
        http_cpu += http_thread_cpu(pid) - c0
        n = usage["completion_tokens"]
        tokens += n
        assert n == args.gen_tokens, usage
        # chunks = tokens that produced text; time per token over the decode part
        served.append((len(times) - 1) / (times[-1] - times[0]))
        out = subprocess.run([args.binary, "generate", "--model", args.model, "--prompt", PROMPT, "--temperature", "0",
                              "--max-tokens", str(args.gen_tokens), "--json", "--backend", "cpu"]
                             + (["--shards", str(args.shards)] if args.shards > 1 else []),
                             env=env, capture_output=True, text=True, check=True)
        summary = json.loads(out.stdout.strip().splitlines()[-1])
        assert summary["generated_tokens"] == args.gen_tokens, summary
        direct.append(summary["decode_tokens_per_s"])
    for name, f in (("median", statistics.median), ("best", max)):
        s, d = f(served), f(direct)
        # time per token through the server over time per token in generate, minus 1
        print(f"decode tok/s, {args.gen_tokens} tokens, {args.rounds} rounds ({name}):  through the server {s:.1f}  "
              f"shardctl generate {d:.1f}  overhead {100 * (d / s - 1):+.1f}% of decode time per token", flush=True)
    # Each round pairs a server run with a generate run right after it: the median of the paired
    # ratios is the estimate least moved by other processes' load coming and going.
    ratios = sorted(d / s for s, d in zip(served, direct))
    print(f"paired rounds: median overhead {100 * (statistics.median(ratios) - 1):+.1f}% "
          f"(quartiles {100 * (ratios[len(ratios) // 4] - 1):+.1f}% … {100 * (ratios[(3 * len(ratios)) // 4] - 1):+.1f}%)", flush=True)
    per_token = http_cpu / tokens
    print(f"HTTP/SSE threads' CPU time: {1e6 * per_token:.0f} µs per token = {100 * per_token * statistics.median(served):.2f}% "
          f"of the median decode time per token", flush=True)
    print(f"  server rounds: {' '.join(f'{x:.1f}' for x in served)}", flush=True)
    print(f"  generate rounds: {' '.join(f'{x:.1f}' for x in direct)}", flush=True)


def load(args, port, concurrency):
    body = {"messages": [{"role": "user", "content": "Write one sentence about the sea."}], "max_tokens": args.load_tokens,
            "temperature": 0.7, "stream": True, "stream_options": {"include_usage": True}}
    stop_at = time.perf_counter() + args.duration
    results, lock = [], threading.Lock()

    def client(i):
        k = 0
        while time.perf_counter() < stop_at:
            b = dict(body, seed=i * 1000 + k)
            k += 1
            t0, times, usage = stream(port, "/v1/chat/completions", b)
            t1 = time.perf_counter()
            with lock:
                results.append((t0, times[0] - t0 if times else t1 - t0, t1 - t0, usage["completion_tokens"], t1))

    start = time.perf_counter()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    end = max(r[4] for r in results)
    wall = end - start
    ttft = sorted(r[1] for r in results)
    lat = sorted(r[2] for r in results)
    pct = lambda xs, q: xs[min(len(xs) - 1, int(q * len(xs)))]
    tokens = sum(r[3] for r in results)
    print(f"concurrency {concurrency}: {len(results)} requests in {wall:.1f} s = {len(results) / wall:.2f} req/s, "
          f"{tokens / wall:.1f} output tok/s; TTFT p50 {1000 * pct(ttft, 0.5):.0f} ms p95 {1000 * pct(ttft, 0.95):.0f} ms; "
          f"latency p50 {1000 * pct(lat, 0.5):.0f} ms p95 {1000 * pct(lat, 0.95):.0f} ms", flush=True)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--binary", default=".build/release/shardctl")
    p.add_argument("--model", default="models/SmolLM2-135M-Instruct.Q4_1.gguf")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--shards", type=int, default=1)
    p.add_argument("--gen-tokens", type=int, default=256)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--concurrency", default="1,4,8")
    p.add_argument("--duration", type=float, default=30)
    p.add_argument("--load-tokens", type=int, default=32)
    p.add_argument("--skip-overhead", action="store_true")
    args = p.parse_args()
    server, port = start_server(args)
    try:
        if not args.skip_overhead:
            overhead(args, port, server.pid)
        for c in [int(x) for x in args.concurrency.split(",") if x]:
            load(args, port, c)
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
