#!/usr/bin/env bash
# On the lent GPU machine (carry .gl and the bundle): the device argmax of greedy steps on (SHARD_VK_NO_ARGMAX=0) and
# off (=1) at 64 and 16 streams on the synthetic 7B, after a short run that compiles the pipelines; prints aggregate
# decode tok/s, wall / GPU / read-back ms per step and the first stream hashes (equal on and off: same tokens).
#   device run, carry [".gl", ".gpu"]:  bash scripts/gpu-argmax-ab.sh
. "$(dirname "$0")/gpu-env.sh" >/dev/null 2>&1
$S synth --arch llama --preset 7b --quant q4_k_m --out /tmp/7b.gguf >/dev/null
$S bench --model /tmp/7b.gguf --backend vulkan --concurrency 64 --prompt-tokens 128 --gen-tokens 4 --ctx 2048 --json >/dev/null 2>&1
for c in 64 16; do for e in SHARD_VK_NO_ARGMAX=0 SHARD_VK_NO_ARGMAX=1; do
  env $e $S bench --model /tmp/7b.gguf --backend vulkan --concurrency $c --prompt-tokens 128 --gen-tokens 128 --ctx 2048 --json 2>/dev/null > /tmp/b.json
  python3 -c "
import json; d=json.load(open('/tmp/b.json')); n=d['steps']
print('$e', $c, 'agg %.1f' % d['aggregate_decode_tokens_per_s'], 'ms/step wall %.2f gpu %.2f download %.2f' % tuple(1000*d[k]/n for k in ('wall_seconds','vulkan_gpu_wait_seconds','vulkan_download_seconds')), d['stream_token_hashes'][:3])"
done; done
