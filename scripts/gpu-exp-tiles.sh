#!/usr/bin/env bash
# Runs ON the lent GPU machine (carry .gl and the bundle): does a decode tile that reads longer runs of each
# weight row per step (16 rows × 512 k with K over 4 subgroups, 32 rows × 256 k over 2) stream Q4_K faster
# than the default 64 rows × 128 k? matmul_cm's existing shapes via SHARD_VK_CM_DECS_Q4K / _TALL_Q4K (no code
# change), kernel-bench --decode and aggregate decode at 16 / 64 streams, against the defaults and matmul_cmd.
#   run: OUT=$OUT BUNDLE=.gpu bash scripts/gpu-exp-tiles.sh
set -uo pipefail
. "$(dirname "$0")/gpu-env.sh"
synth_models || exit 1
variants=("64x|" "16ks4|SHARD_VK_CM_DECS_Q4K=1,0,1,4,128 SHARD_VK_CM_DECS_TALL_Q4K=1,0,1,4,128"
          "32ks2|SHARD_VK_CM_DECS_Q4K=1,0,2,2,128 SHARD_VK_CM_DECS_TALL_Q4K=1,0,2,2,128")
for v in "${variants[@]}"; do
  IFS='|' read -r name envs <<< "$v"
  env SHARD_VK_CMD=0 $envs timeout 100 $S kernel-bench --vulkan --decode > "$out/kb-$name.txt" 2>&1
  echo "== $name"
  for s in "Q4_K 4096x4096 x 16" "Q4_K 11008x4096 x 16" "Q4_K 4096x11008 x 16" "Q4_K 4096x4096 x 64" "Q4_K 11008x4096 x 64"; do
    grep -A12 "decode $s:" "$out/kb-$name.txt" | grep -E "defaults|matmul_cmd " | sed 's/(direct weight fragments; Q4_K, else matmul_cm)//' | cut -c1-125 | sed "s/^/$s: /"
  done
done
echo "| config | streams | aggregate decode tok/s | ITL p50 ms | wall ms/step | record | GPU wait | token hashes |" > "$out/e2e.md"
for v in "base|SHARD_VK_CMD=0|16 64" "cmd||16" "16ks4|SHARD_VK_CMD=0 ${variants[1]#*|}|16 64" "32ks2|SHARD_VK_CMD=0 ${variants[2]#*|}|16 64" \
         "base2|SHARD_VK_CMD=0|16 64" "cmd2||16"; do
  IFS='|' read -r name envs list <<< "$v"
  for c in $list; do
    j="$out/c-$name-$c.json"
    env $envs timeout 100 $S bench --model /tmp/7b.gguf --backend vulkan --concurrency $c --prompt-tokens 128 --gen-tokens 128 --ctx 2048 --json > "$j" 2> "$j.err"
    echo "| $name | $c | $(field $j aggregate_decode_tokens_per_s) | $(field $j itl_ms_p50) | $(step_ms $j) | $(hashes $j) |" >> "$out/e2e.md"
  done
done
cat "$out/e2e.md"
cd "$out" && tar czf logs.tgz *.json *.err 2>/dev/null; rm -f "$out"/*.json "$out"/*.err
