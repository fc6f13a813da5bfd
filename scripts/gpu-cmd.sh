#!/usr/bin/env bash
# Runs ON the lent GPU machine (carry .gl and the bundle): matmul_cmd (batched-decode Q4_K / Q6_K products with the
# weight fragments built in registers; issue 5) against matmul_cm (SHARD_VK_CMD=0) in one call.
# kernel-bench --decode first (it prints the device's cooperative-matrix element layout and whether matmul_cmd
# applies, and every path's relative difference from the f32 tiles), then parity (tiny models' greedy tokens vs
# the CPU; the 7B's top-5 logits after a 4-word and a 32-word prompt, and a 50-word one with LONGER=1, under each setting), then CONFIGS through
# bench_configs (aggregate decode, 128 + 128 tokens per stream), then a --profile of 16 streams.
#   run: OUT=$OUT BUNDLE=.gpu bash scripts/gpu-cmd.sh   [KB=0] [PARITY=0] [PROFILE=0] [CONFIGS=...] [LOGITS_KNOBS="K=V,K=V …"]
#   (LOGITS_KNOBS: one word per setting, commas between its variables; LONGER=1 adds a 50-word prompt)
set -uo pipefail
. "$(dirname "$0")/gpu-env.sh"
start_models
[ "${KB:-1}" != 0 ] && timeout 240 $S kernel-bench --vulkan --decode > "$out/kb-decode.txt" 2>&1
echo "kernel-bench --decode: $(( $(date +%s) - t0 )) s" | tee -a "$out/gpu.txt"
: > "$out/parity.txt"
[ "${PARITY:-1}" != 0 ] && tiny_parity 16 | tee -a "$out/parity.txt"
[ "${PARITY:-1}" != 0 ] && logits_parity ${LOGITS_KNOBS:-"SHARD_VK_CMD=0" "SHARD_VK_CMD=1"}
echo "parity done: $(( $(date +%s) - t0 )) s" | tee -a "$out/gpu.txt"
bench_configs "$out/cmd.md" "${CONFIGS:-base|SHARD_VK_CMD=0|16 64;cmd||16 64;base2|SHARD_VK_CMD=0|16 64;cmd2||16 64}"
[ "${PROFILE:-1}" != 0 ] && timeout 60 $S bench --model /tmp/7b.gguf --backend vulkan --concurrency 16 --prompt-tokens 128 \
  --gen-tokens 32 --ctx 2048 --profile > "$out/profile-16.txt" 2>&1
echo "end: $(( $(date +%s) - t0 )) s" | tee -a "$out/gpu.txt"
cd "$out" && tar czf logs.tgz *.json *.err 2>/dev/null; rm -f "$out"/*.json "$out"/*.err
echo; cat "$out/parity.txt"; echo; cat "$out/cmd.md"
grep -E "^cooperative|^decode|^    (matmul_cm split, defaults|matmul_cmd|f32|matvec)" "$out/kb-decode.txt" | cut -c1-190 | head -80
grep -iE "matmul cm|splitk" "$out/profile-16.txt" | head -20
