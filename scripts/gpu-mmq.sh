#!/usr/bin/env bash
# Runs ON the lent GPU machine (carry .gl and the bundle): batched decode with matmul_cm's K split over
# workgroups (64-row decode tiles + splitk_reduce.comp) against main's tiles (SHARD_VK_CM_SPLIT=0), issue 5.
# Parity with the CPU first (tiny models' greedy tokens; the 7B's top-5 logits after a 4-word prompt,
# a step of a few rows on matvec_q8_mc, and after a 32-word one, a step of 17–64 rows on matmul_cm's split tiles),
# kernel-bench of the
# decode products, then aggregate decode (128 prompt + 128 generated tokens per stream) for each CONFIGS
# entry ("name|ENV=V,ENV=V|stream counts;..."), each after a short warm-up run, and a per-op profile.
#   run: OUT=$OUT BUNDLE=.gpu-mmq bash .gpu-mmq/gpu-mmq.sh
set -uo pipefail
. "$(dirname "$0")/gpu-env.sh"   # $out, $bundle, $S; the Vulkan loader and NVIDIA ICD
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$out/gpu.txt"
t0=$(date +%s)
synth_models || exit 1
echo "synth: $(( $(date +%s) - t0 )) s" | tee -a "$out/gpu.txt"
: > "$out/parity.txt"
tiny_parity 16 | tee -a "$out/parity.txt"
long="the quick brown fox jumps over the lazy dog while the cat sleeps on a warm mat near the old red barn and the farmer walks his two dogs along the river"
for pr in "the quick brown fox" "$long"; do
  c=$($S logits --model /tmp/7b.gguf --prompt "$pr" --top 5 --backend cpu 2>&1)
  for pe in "SHARD_VK_CM_SPLIT=0" "SHARD_VK_CM_SPLIT=256" "SHARD_VK_MC8_MAX=0"; do
    v=$(env $pe $S logits --model /tmp/7b.gguf --prompt "$pr" --top 5 --backend vulkan 2>&1)
    echo "7b top-5 logits, $(echo $pr | wc -w)-word prompt ($pe): $(topk_parity "$c" "$v")" | tee -a "$out/parity.txt"
  done
done
echo "parity done: $(( $(date +%s) - t0 )) s" | tee -a "$out/gpu.txt"
[ "${KB:-1}" != 0 ] && timeout 150 $S kernel-bench --vulkan --decode > "$out/kernel-bench.txt" 2>&1
echo "kernel-bench done: $(( $(date +%s) - t0 )) s" | tee -a "$out/gpu.txt"
# base: main's behaviour (no K split, matvec_q8_mc up to 16 rows); split: the defaults.
bench_configs "$out/mmq.md" "${CONFIGS:-base|SHARD_VK_CM_SPLIT=0|4 16 64;split|SHARD_VK_CM_SPLIT=256|4 16 32 64}"
[ "${PROFILE:-1}" != 0 ] && timeout 60 $S bench --model /tmp/7b.gguf --backend vulkan --concurrency 64 --prompt-tokens 128 \
  --gen-tokens 32 --ctx 2048 --profile > "$out/profile-64.txt" 2>&1
cd "$out" && tar czf logs.tgz *.json *.err 2>/dev/null; rm -f "$out"/*.json "$out"/*.err
echo; cat "$out/parity.txt"; echo; cat "$out/mmq.md"; echo "total: $(( $(date +%s) - t0 )) s"
