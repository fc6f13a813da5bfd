#!/usr/bin/env bash
# Runs ON the lent GPU machine (carry .gl and the bundle): what the persistent VkPipelineCache saves a
# process that starts with its file. The NVIDIA driver's own shader disk cache is off and emptied per run
# (__GL_SHADER_DISK_CACHE=0, a fresh __GL_SHADER_DISK_CACHE_PATH), so every run starts like a fresh
# machine except for SHARD_CACHE_DIR, kept between a mode's two runs: "off" (SHARD_VK_NO_PIPELINE_CACHE=1)
# and "on". bench --concurrency 64, 128 prompt + 16 generated tokens per stream.
#   run: OUT=$OUT BUNDLE=.gpu-bat bash .gpu-bat/gpu-pcache.sh
set -uo pipefail
. "$(dirname "$0")/gpu-env.sh"   # $out, $bundle, $S; the Vulkan loader and NVIDIA ICD
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$out/gpu.txt"
$S synth --arch llama --preset 7b --quant q4_k_m --out /tmp/7b.gguf >/dev/null || exit 1
row() { python3 -c "
import json,sys; d=json.load(open(sys.argv[1])); n=float(d['steps'])
print('| %s | %s | %.1f | %.0f | %.2f | %.2f | %.1f |' % (sys.argv[2], sys.argv[3], d['load_seconds'], d['ttft_ms_p50'], 1000*d['vulkan_record_seconds']/n, 1000*d['wall_seconds']/n, d['aggregate_decode_tokens_per_s']))" "$@" 2>/dev/null || echo "| $2 | $3 | error |"; }
echo "| mode | run | load s | TTFT p50 ms | record ms/step | wall ms/step | aggregate decode tok/s |" > "$out/pcache.md"
echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: |" >> "$out/pcache.md"
for mode in off on; do
  dir=$(mktemp -d)
  for i in 1 2; do
    nv=$(mktemp -d)
    env SHARD_CACHE_DIR=$dir __GL_SHADER_DISK_CACHE=0 __GL_SHADER_DISK_CACHE_PATH=$nv $([ $mode = off ] && echo SHARD_VK_NO_PIPELINE_CACHE=1) \
      timeout 60 $S bench --model /tmp/7b.gguf --backend vulkan --concurrency 64 --prompt-tokens 128 --gen-tokens 16 --ctx 2048 --json > "$out/pc-$mode-$i.json" 2> "$out/pc-$mode-$i.err"
    row "$out/pc-$mode-$i.json" $mode $i >> "$out/pcache.md"
    echo "$mode $i: cache files $(ls -la $dir $nv 2>/dev/null | grep -c '^-'), $(du -sk $dir | cut -f1) kB" >> "$out/pcache-files.txt"
  done
done
cd "$out" && tar czf logs.tgz pc-* && rm -f pc-*.json pc-*.err
cat "$out/pcache.md" "$out/pcache-files.txt"
