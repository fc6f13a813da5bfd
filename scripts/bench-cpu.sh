#!/usr/bin/env bash
# Shard vs llama.cpp on the CPU, same file and thread count; prints a markdown table.
# Needs: a release build of shardctl, llama-cpp-python (pip install llama-cpp-python).
# Usage: scripts/bench-cpu.sh [MODEL] [THREADS]
set -euo pipefail
cd "$(dirname "$0")/.."
model=${1:-models/SmolLM2-135M-Instruct.Q4_1.gguf}
threads=${2:-$(nproc)}
bin=.build/release/shardctl
[[ -x $bin ]] || swift build -c release --product shardctl >/dev/null
num() { python3 -c "import json,sys; d=json.loads(sys.argv[1]); print('%.1f' % d[sys.argv[2]])" "$1" "$2"; }
echo "| engine | prompt | gen | prefill tok/s | decode tok/s |"
echo "| --- | ---: | ---: | ---: | ---: |"
for shape in "64 32" "512 128"; do
  set -- $shape
  best_p=0; best_d=0
  for _ in 1 2 3; do
    j=$(SHARD_THREADS=$threads $bin bench --model "$model" --prompt-tokens $1 --gen-tokens $2 --json)
    p=$(num "$j" prefill_tokens_per_s); d=$(num "$j" decode_tokens_per_s)
    best_p=$(python3 -c "print(max($best_p, $p))"); best_d=$(python3 -c "print(max($best_d, $d))")
  done
  echo "| Shard (cpu, $threads threads) | $1 | $2 | $best_p | $best_d |"
  j=$(python3 scripts/bench-llamacpp.py "$model" --prompt-tokens $1 --gen-tokens $2 --threads $threads --repeat 3)
  echo "| llama.cpp (llama-cpp-python) | $1 | $2 | $(num "$j" prefill_tokens_per_s) | $(num "$j" decode_tokens_per_s) |"
done
