#!/usr/bin/env bash
# On the lent GPU machine (carry .gl and the bundle): the device argmax of greedy steps on (SHARD_VK_NO_ARGMAX=0) and
# off (=1) at each of LIST streams (default 64 16), ROUNDS rounds alternating on/off (each run compiles its pipelines in
# its own untimed warm-up pass: bench --warmup); prints aggregate decode tok/s, wall / record / GPU / read-back ms per step,
# recorded / replayed steps and the first stream hashes (equal on and off: same tokens).
#   device run, carry [".gl", ".gpu"]:  bash scripts/gpu-argmax-ab.sh
. "$(dirname "$0")/gpu-env.sh" >/dev/null 2>&1
[ -f /tmp/7b.gguf ] || $S synth --arch llama --preset 7b --quant q4_k_m --out /tmp/7b.gguf >/dev/null
run() { $S bench --model /tmp/7b.gguf --backend vulkan --concurrency $1 --prompt-tokens 128 --gen-tokens 128 --ctx 2048 --json 2>/dev/null; }
for round in $(seq ${ROUNDS:-2}); do for c in ${LIST:-64 16}; do for e in SHARD_VK_NO_ARGMAX=0 SHARD_VK_NO_ARGMAX=1; do
  env $e bash -c "$(declare -f run); S='$S'; run $c" > /tmp/b.json
  python3 -c "
import json; d=json.load(open('/tmp/b.json')); n=d['steps']
print('$e', $c, 'agg %.1f' % d['aggregate_decode_tokens_per_s'], 'ms/step wall %.2f record %.2f gpu %.2f download %.2f' % tuple(1000*d[k]/n for k in ('wall_seconds','vulkan_record_seconds','vulkan_gpu_wait_seconds','vulkan_download_seconds')),
  'steps %d/%d' % (d['vulkan_recorded_steps'], d['vulkan_replayed_steps']), d['stream_token_hashes'][:2])" || cat /tmp/b.json
done; done; done
