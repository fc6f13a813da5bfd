#!/usr/bin/env bash
# On the lent GPU machine: the 7B's top-8 logits after "the quick brown fox" on the CPU, on Vulkan (default) and on
# Vulkan with SHARD_VK_ATTN_VEC=0.   device run, carry [".gl", ".gpu-att"]:  BUNDLE=.gpu-att bash .gpu-att/gpu-att-parity.sh
. "$(dirname "$0")/gpu-env.sh" >/dev/null 2>&1
$S synth --arch llama --preset 7b --quant q4_k_m --out /tmp/7b.gguf >/dev/null
for b in cpu vulkan "vulkan SHARD_VK_ATTN_VEC=0"; do
  set -- $b
  echo "$b: $(env ${2:-X=1} $S logits --model /tmp/7b.gguf --prompt "the quick brown fox" --top 8 --backend $1 2>/dev/null)"
done
