#!/usr/bin/env bash
# Aggregate throughput and latency of the HybridScheduler at several concurrencies and shard counts:
# one `shardctl bench --concurrency C --json` per cell, printed as a markdown table (BENCHMARKS.md).
#
#   scripts/bench-concurrency.sh MODEL [extra shardctl bench flags, e.g. --backend cpu --threads 2]
#
# Environment: SHARDS (default "1 2"), CONCURRENCY ("1 4 16 64"), PROMPT (128), GEN (128),
# BIN (.build/release/shardctl). Concurrency 1 is the plain generator path (what `generate` does);
# above 1 the streams go through the scheduler. The load average before each cell is printed, since
# CPU timings on a shared machine move with it.
set -euo pipefail
cd "$(dirname "$0")/.."
model=${1:?usage: scripts/bench-concurrency.sh MODEL [bench flags]}
shift
bin=${BIN:-.build/release/shardctl}
echo "| shards | streams | aggregate decode tok/s | end-to-end tok/s | aggregate prefill tok/s | per-stream decode tok/s (mean) | TTFT p50 / p99 ms | ITL p50 / p99 ms | load avg |"
echo "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
for s in ${SHARDS:-1 2}; do
  for c in ${CONCURRENCY:-1 4 16 64}; do
    load=$(cut -d' ' -f1 /proc/loadavg)
    json=$("$bin" bench --model "$model" --shards "$s" --concurrency "$c" --prompt-tokens "${PROMPT:-128}" \
           --gen-tokens "${GEN:-128}" --json "$@")
    python3 - "$s" "$c" "$load" "$json" <<'PY'
import json, sys
s, c, load, d = sys.argv[1], int(sys.argv[2]), sys.argv[3], json.loads(sys.argv[4])
f = lambda k, n=1: f"{d[k]:.{n}f}" if k in d and d[k] is not None else "–"
if c == 1:
    print(f"| {s} | 1 | {f('decode_tokens_per_s')} | – | {f('prefill_tokens_per_s')} | {f('decode_tokens_per_s')} | – | – | {load} |")
else:
    print(f"| {s} | {c} | {f('aggregate_decode_tokens_per_s')} | {f('aggregate_tokens_per_s')} | {f('prefill_tokens_per_s')} "
          f"| {f('per_stream_decode_tokens_per_s_mean')} | {f('ttft_ms_p50', 0)} / {f('ttft_ms_p99', 0)} "
          f"| {f('itl_ms_p50')} / {f('itl_ms_p99')} | {load} |")
PY
  done
done
