#!/usr/bin/env bash
# Runs ON the lent GPU machine (like scripts/gpu-bench.sh; carry .gl and the bundle): many concurrent
# streams through the HybridScheduler on the synthetic 7B Q4_K_M (issue 5), the way llama.cpp's
# llama-batched-bench was measured (128 prompt + 128 generated tokens per stream), and how long
# loading takes when the workers must get their weights streamed (issue 4).
#   run: OUT=$OUT bash scripts/gpu-concurrency.sh     env: BUNDLE (default .gpu), LIST (default "1 4 16 64")
set -uo pipefail
. "$(dirname "$0")/gpu-env.sh"   # $out, $bundle, $S; the Vulkan loader and NVIDIA ICD
gpus=$(nvidia-smi -L | wc -l)
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$out/gpu-concurrency.txt"
[ -f /tmp/7b.gguf ] || $S synth --arch llama --preset 7b --quant q4_k_m --out /tmp/7b.gguf >/dev/null || exit 1
runs=("1 shard|--shards 1")
[ "$gpus" -ge 2 ] && runs+=("2 shards, 2 GPUs|--shards 2 --devices 0,1")
[ "${SAME_GPU:-0}" != 0 ] && runs+=("2 shards, 1 GPU|--shards 2")
# IN_FLIGHT=N: also 2 GPUs with N steps in flight instead of shards + 1 (SHARD_MAX_IN_FLIGHT).
[ "$gpus" -ge 2 ] && [ -n "${IN_FLIGHT:-}" ] && runs+=("2 shards, 2 GPUs, $IN_FLIGHT in flight|--shards 2 --devices 0,1|SHARD_MAX_IN_FLIGHT=$IN_FLIGHT")
echo "| run | streams | aggregate decode tok/s | end-to-end tok/s | per-stream tok/s | TTFT p50 ms | ITL p50 / p99 ms |" > "$out/conc-table.md"
echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: |" >> "$out/conc-table.md"
# Where a step's wall time goes (in-process shards only): ms per step.
echo "| run | streams | steps | wall ms/step | forward | Vulkan record | GPU wait | read-back |" > "$out/host-table.md"
echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |" >> "$out/host-table.md"
perstep() { python3 -c "
import json,sys; d=json.load(open(sys.argv[1])); n=float(d.get('steps',0))
print('| %s | %s | %d | ' % (sys.argv[2], sys.argv[3], n) + ' | '.join('%.2f' % (1000*d[k]/n) if n else '-' for k in
  ('wall_seconds','shard_forward_seconds','vulkan_record_seconds','vulkan_gpu_wait_seconds','vulkan_download_seconds')) + ' |')" "$@" 2>/dev/null; }
for r in "${runs[@]}"; do
  IFS='|' read -r name args envs <<< "$r"
  for c in ${LIST:-1 4 16 64}; do
    f="$out/conc-${name// /_}-$c.json"; f=${f//,/}
    env $envs timeout 300 $S bench --model /tmp/7b.gguf --backend vulkan $args --concurrency $c --prompt-tokens 128 --gen-tokens 128 \
      --ctx 2048 --json > "$f" 2> "$f.err"
    perstep "$f" "$name" "$c" >> "$out/host-table.md"
    echo "| $name | $c | $(field $f aggregate_decode_tokens_per_s) | $(field $f aggregate_tokens_per_s) | $(field $f per_stream_decode_tokens_per_s_mean) | $(field $f ttft_ms_p50) | $(field $f itl_ms_p50) / $(field $f itl_ms_p99) |" >> "$out/conc-table.md"
  done
done
# Streamed weights: two local workers that may not open the file get it from the coordinator.
dir=$(mktemp -d); mkdir -p $dir/none
for i in 0 1; do $bundle/run.sh shard-worker --listen ipc://$dir/w$i --backend vulkan --device $(( i % gpus )) --model-dir $dir/none & done
sleep 1
t0=$(date +%s.%N)
SHARD_STATE_DIR=$dir $S launch --model /tmp/7b.gguf --workers ipc://$dir/w0,ipc://$dir/w1 --ctx 2048 > "$out/stream-launch.txt" 2>&1
t1=$(date +%s.%N)
SHARD_STATE_DIR=$dir $S generate --prompt "the quick brown fox" --temperature 0 --max-tokens 8 --json > "$out/stream-gen.txt" 2>&1
SHARD_STATE_DIR=$dir $S stop >/dev/null 2>&1; pkill -f "shard-worker --listen ipc://$dir" ; sleep 1
for i in 0 1; do $bundle/run.sh shard-worker --listen ipc://$dir/l$i --backend vulkan --device $(( i % gpus )) & done
sleep 1
t2=$(date +%s.%N)
SHARD_STATE_DIR=$dir $S launch --model /tmp/7b.gguf --workers ipc://$dir/l0,ipc://$dir/l1 --ctx 2048 > "$out/local-launch.txt" 2>&1
t3=$(date +%s.%N)
SHARD_STATE_DIR=$dir $S generate --prompt "the quick brown fox" --temperature 0 --max-tokens 8 --json > "$out/local-gen.txt" 2>&1
SHARD_STATE_DIR=$dir $S stop >/dev/null 2>&1; pkill -f "shard-worker --listen ipc://$dir"
same=$(diff <(grep -o '"token":[0-9]*' "$out/stream-gen.txt") <(grep -o '"token":[0-9]*' "$out/local-gen.txt") >/dev/null && echo same || echo DIFF)
# Per-op GPU profile of a 16-stream run (in-process shard; steps of several rows count as prefill).
[ "${PROFILE:-1}" != 0 ] && timeout 120 $S bench --model /tmp/7b.gguf --backend vulkan --concurrency 16 --prompt-tokens 128 \
  --gen-tokens 128 --ctx 2048 --profile > "$out/conc-profile.txt" 2>&1
echo
cat "$out/conc-table.md"
echo
cat "$out/host-table.md"
python3 -c "print('launch with streamed weights: %.1f s; reading the file locally: %.1f s; tokens %s' % ($t1 - $t0, $t3 - $t2, '$same'))"
cat "$out"/conc-*.err | grep -v "^$" | tail -5
