#!/usr/bin/env bash
# On the lent GPU machine (carry .gl and the bundle): where a batched decode step's GPU time goes.
# The device argmax A/B (scripts/gpu-argmax-ab.sh), then `bench --profile` at each of PROFILE_LIST streams
# (short prompts, so the profile's several-row phase is mostly batched decode steps), then kernel-bench
# --decode; logs under $out.
#   device run, carry [".gl", ".gpu"]:  OUT=$OUT bash scripts/gpu-batch-profile.sh
. "$(dirname "$0")/gpu-env.sh" >/dev/null 2>&1
here=$(dirname "$0")
[ -n "${SKIP_AB:-}" ] || bash "$here/gpu-argmax-ab.sh" 2>&1 | tee "$out/argmax-ab.txt"
[ -f /tmp/7b.gguf ] || $S synth --arch llama --preset 7b --quant q4_k_m --out /tmp/7b.gguf >/dev/null
for c in ${PROFILE_LIST:-64 16}; do
  $S bench --model /tmp/7b.gguf --backend vulkan --concurrency $c --prompt-tokens 16 --gen-tokens 96 --ctx 2048 --profile --json \
    > "$out/profile-$c.json" 2> "$out/profile-$c.txt"
  echo "== profile at $c streams"; grep -A30 '^prefill' "$out/profile-$c.txt" | head -32
done
$S kernel-bench --vulkan --decode > "$out/kernel-decode.txt" 2>&1; tail -30 "$out/kernel-decode.txt"
