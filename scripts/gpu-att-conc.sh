#!/usr/bin/env bash
# On the lent GPU machine: bench --concurrency 16 / 64 (128 + 128 tokens), SHARD_VK_ATTN_VEC=1 and =0 interleaved,
# ROUNDS rounds (default 2); each run warms up in its own process first (bench --warmup).   carry [".gl", ".gpu-att"]: BUNDLE=.gpu-att bash .gpu-att/gpu-att-conc.sh
. "$(dirname "$0")/gpu-env.sh" >/dev/null 2>&1
$S synth --arch llama --preset 7b --quant q4_k_m --out /tmp/7b.gguf >/dev/null
for rep in $(seq ${ROUNDS:-2}); do for c in 16 64; do for e in 1 0; do
  SHARD_VK_ATTN_VEC=$e timeout 60 $S bench --model /tmp/7b.gguf --backend vulkan --concurrency $c --prompt-tokens 128 --gen-tokens 128 --ctx 2048 --json 2>/dev/null > /tmp/c.json
  python3 -c "
import json; d=json.load(open('/tmp/c.json')); n=d['steps']
print('round $rep, $c streams, SHARD_VK_ATTN_VEC=$e: %.1f tok/s, wall %.2f / GPU %.2f ms per step' % (d['aggregate_decode_tokens_per_s'], 1000*d['wall_seconds']/n, 1000*d['vulkan_gpu_wait_seconds']/n))" || echo failed
done; done; done
