#!/usr/bin/env bash
# Runs ON the lent GPU machine (carry .gl and the bundle): batched decode on the integer-dot multi-column
# mat-vec (matvec_q8_mc.comp) against matmul_cm (SHARD_VK_MC8_MAX=0), issue 5. Parity with the CPU first;
# then aggregate decode (128 prompt + 128 generated tokens per stream) for each CONFIGS entry
# ("name|ENV=V,ENV=V|stream counts;..."), each after a short warm-up run (the driver compiles pipelines
# on first use), and a per-op profile of 16 streams with the defaults.
#   run: OUT=$OUT BUNDLE=.gpu-bat bash .gpu-bat/gpu-mc8.sh
set -uo pipefail
. "$(dirname "$0")/gpu-env.sh"   # $out, $bundle, $S; the Vulkan loader and NVIDIA ICD
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$out/gpu.txt"
t0=$(date +%s)
synth_models || exit 1
echo "synth: $(( $(date +%s) - t0 )) s" | tee -a "$out/gpu.txt"
# Parity vs the CPU: greedy tokens of the tiny models (decode steps of one row, producers' one-row
# int8 copies), and the 7B's top-5 logits after a 4-token prompt (a 4-row step: matvec_q8_mc at the 7B's
# shapes). (bench --concurrency cannot run the tiny models: its prompts assume a vocabulary of 1000+.)
: > "$out/parity.txt"
tiny_parity 16 | tee -a "$out/parity.txt"
c=$($S logits --model /tmp/7b.gguf --prompt "the quick brown fox" --top 5 --backend cpu 2>&1)
for pe in "SHARD_VK_MC8_MAX=0" "SHARD_VK_MC8_MAX=16" "SHARD_VK_MC8_MAX=16 SHARD_VK_MC8_PRE=0"; do
  v=$(env $pe $S logits --model /tmp/7b.gguf --prompt "the quick brown fox" --top 5 --backend vulkan 2>&1)
  echo "7b top-5 logits ($pe): $(topk_parity "$c" "$v")" | tee -a "$out/parity.txt"
done
echo "parity done: $(( $(date +%s) - t0 )) s" | tee -a "$out/gpu.txt"
# Throughput.
# CONFIGS: name|env settings (comma-separated)|stream counts.
bench_configs "$out/mc8.md" "${CONFIGS:-base|SHARD_VK_MC8_MAX=0|4 16 32 64;pre8|SHARD_VK_MC8_MAX=64|4 16 32 64;nopre8|SHARD_VK_MC8_MAX=64,SHARD_VK_MC8_PRE=0|16 64;pre4|SHARD_VK_MC8_MAX=64,SHARD_VK_MC8_COLS=4|16 64}"
[ "${PROFILE:-1}" != 0 ] && timeout 60 $S bench --model /tmp/7b.gguf --backend vulkan --concurrency 16 --prompt-tokens 128 \
  --gen-tokens 32 --ctx 2048 --profile > "$out/profile-mc.txt" 2>&1
cd "$out" && tar czf logs.tgz *.json *.err 2>/dev/null; rm -f "$out"/*.json "$out"/*.err
echo; cat "$out/parity.txt"; echo; cat "$out/mc8.md"; echo "total: $(( $(date +%s) - t0 )) s"
