#!/usr/bin/env bash
# Runs ON the lent GPU machine (carry .gl and .gpu): batch-1 decode of shards as processes against one
# process (issue 4), with this session's per-token fixes switched on and off, alternating the variants
# round by round, plus a step trace (scripts/step-trace.py) of the 2-process variants.
#   run: OUT=$OUT bash scripts/gpu-proc-ab.sh            (THREADS=8 CPU threads per shard, ROUNDS=3)
# From a helper's worktree the device gets the session's main checkout, not the worktree: copy the
# bundle and scripts/{gpu-proc-ab.sh,gpu-env.sh,step-trace.py} into an ignored folder of the main checkout (e.g.
# .gpu-proc), carry it, and run  OUT=$OUT BUNDLE=.gpu-proc bash .gpu-proc/gpu-proc-ab.sh
# CPU part: synthetic 1B Q4_K_M, 32 prompt + 64 generated tokens, greedy. GPU part (2+ GPUs only, if
# GPU=1): synthetic 7B Q4_K_M on 1 GPU vs 2 worker processes on 2 GPUs.
set -uo pipefail
. "$(dirname "$0")/gpu-env.sh"   # $out, $bundle, $S; the Vulkan loader and NVIDIA ICD
T=${THREADS:-8}; rounds=${ROUNDS:-3}
gpus=$(nvidia-smi -L 2>/dev/null | wc -l)
echo "host: $(nproc) cores, $gpus GPUs, load $(cut -d' ' -f1-3 /proc/loadavg), $T threads per CPU shard" | tee "$out/host.txt"
model=${CPU_MODEL:-/tmp/1b.gguf}   # CPU_MODEL=…: another model (e.g. SmolLM2 for a dry run elsewhere)
[ -n "${CPU_MODEL:-}" ] || $S synth --arch llama --preset 1b --quant q4_k_m --out /tmp/1b.gguf >/dev/null || exit 1
# name | flags | environment
variants=(
  "1 shard|--shards 1|"
  "2 shards in one process|--shards 2 --in-process|"
  "2 processes (default)|--shards 2|"
  "2 processes, idle spin 20 ms|--shards 2|SHARD_IDLE_SPIN_MS=20"
  "2 processes, no idle spin|--shards 2|SHARD_IDLE_SPIN_MS=0"
  "2 processes, no idle spin, logits to the coordinator|--shards 2|SHARD_IDLE_SPIN_MS=0 SHARD_WORKER_SAMPLING=0"
)
decode() { python3 -c "import json,sys; print('%.1f' % json.load(sys.stdin)['decode_tokens_per_s'])" 2>/dev/null || echo 0; }
for r in $(seq 1 "$rounds"); do
  for i in "${!variants[@]}"; do
    IFS='|' read -r name flags envs <<< "${variants[$i]}"
    d=$(env SHARD_THREADS=$T $envs timeout 30 $S bench --model $model --backend cpu $flags --prompt-tokens 32 --gen-tokens 64 --json 2>>"$out/err.txt" | decode)
    echo "$i $d" >> "$out/cpu-runs.txt"
  done
done
for i in 2 5; do
  IFS='|' read -r name flags envs <<< "${variants[$i]}"
  env SHARD_THREADS=$T SHARD_TRACE=/tmp/trace$i $envs $S bench --model $model --backend cpu $flags --prompt-tokens 32 --gen-tokens 64 --json >/dev/null 2>>"$out/err.txt"
  { echo "== trace: $name"; python3 "$(dirname "$0")/step-trace.py" /tmp/trace$i; } > "$out/trace$i.txt" 2>&1
done
python3 - "$out" "${variants[@]}" <<'PY' > "$out/cpu.md"
import sys, statistics, collections
out, names = sys.argv[1], [v.split('|')[0] for v in sys.argv[2:]]
runs = collections.defaultdict(list)
for line in open(out + '/cpu-runs.txt'):
    i, d = line.split(); runs[int(i)].append(float(d))
base = max(runs[0])
print('| CPU shards | decode tok/s (each round) | best | best vs 1 shard |')
print('| --- | --- | ---: | ---: |')
for i, n in enumerate(names):
    print(f'| {n} | {" / ".join("%.1f" % x for x in runs[i])} | {max(runs[i]):.1f} | {max(runs[i]) / base:.3f} |')
PY
# The GPU part only if the CPU part left time (SECONDS: bash's clock since the start; GPU_BUDGET_S).
if [ "${GPU:-0}" = 1 ] && [ "$gpus" -ge 2 ] && [ "$SECONDS" -lt "${GPU_BUDGET_S:-100}" ]; then
  $S synth --arch llama --preset 7b --quant q4_k_m --out /tmp/7b.gguf >/dev/null || exit 1
  echo "| GPU, 7B Q4_K_M | decode tok/s (each round) |" > "$out/gpu.md"; echo "| --- | --- |" >> "$out/gpu.md"
  for v in "1 GPU|--shards 1|" "2 GPUs, 2 processes (default)|--shards 2 --devices 0,1|" \
           "2 GPUs, no idle spin, logits to the coordinator|--shards 2 --devices 0,1|SHARD_IDLE_SPIN_MS=0 SHARD_WORKER_SAMPLING=0"; do
    IFS='|' read -r name flags envs <<< "$v"; ds=""
    for r in 1 2; do
      ds="$ds $(env $envs timeout 40 $S bench --model /tmp/7b.gguf --backend vulkan $flags --prompt-tokens 32 --gen-tokens 128 --ctx 1024 --json 2>>"$out/err.txt" | decode)"
    done
    echo "| $name |$ds |" >> "$out/gpu.md"
  done
fi
echo; cat "$out/host.txt" "$out/cpu.md"; [ -f "$out/gpu.md" ] && cat "$out/gpu.md"; cat "$out"/trace*.txt; tail -3 "$out/err.txt" 2>/dev/null
