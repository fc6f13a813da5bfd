#!/usr/bin/env bash
# Runs ON the lent GPU machine (carry .gl and .gpu): A/B of a VulkanBackend env knob on many-stream
# decode (issue 5), and CPU shards as processes vs in one process on a 1B synthetic model (issue 4).
#   run: OUT=$OUT KNOB=SHARD_VK_MULTICOL_MAX=0 bash scripts/gpu-ab.sh
set -uo pipefail
. "$(dirname "$0")/gpu-env.sh"   # $out, $bundle, $S; the Vulkan loader and NVIDIA ICD
gpus=$(nvidia-smi -L | wc -l)
$S synth --arch llama --preset 7b --quant q4_k_m --out /tmp/7b.gguf >/dev/null || exit 1
$S synth --arch llama --preset 1b --quant q4_k_m --out /tmp/1b.gguf >/dev/null || exit 1
f() { python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print('%.1f' % d[sys.argv[2]])" "$1" "$2" 2>/dev/null || echo "-"; }
echo "| knob | run | streams | aggregate decode tok/s | ITL p50 ms |" > "$out/ab.md"
echo "| --- | --- | ---: | ---: | ---: |" >> "$out/ab.md"
for knob in "default" "${KNOB:-SHARD_VK_MULTICOL_MAX=0}"; do
  for r in "1 shard|--shards 1" "2 GPUs|--shards 2 --devices 0,1"; do
    name=${r%%|*}; args=${r#*|}
    [[ $name == "2 GPUs" && $gpus -lt 2 ]] && continue
    for c in ${LIST:-4 16 64}; do
      j="$out/ab-${knob%%=*}-${name// /_}-$c.json"
      env $([ "$knob" != default ] && echo "$knob") timeout 200 $S bench --model /tmp/7b.gguf --backend vulkan $args --concurrency $c \
        --prompt-tokens 128 --gen-tokens 128 --ctx 2048 --json > "$j" 2>"$j.err"
      echo "| $knob | $name | $c | $(f $j aggregate_decode_tokens_per_s) | $(f $j itl_ms_p50) |" >> "$out/ab.md"
    done
  done
done
# Single stream with the default knobs (the multi-column path must not change batch-1 decode).
$S bench --model /tmp/7b.gguf --backend vulkan --prompt-tokens 512 --gen-tokens 128 --ctx 2048 --json > "$out/single.json" 2>&1
echo "| CPU shards (1B synthetic, 8 threads each) | decode tok/s |" > "$out/cpu.md"; echo "| --- | ---: |" >> "$out/cpu.md"
for r in "1 shard|--shards 1" "2 in one process|--shards 2 --in-process" "2 processes|--shards 2" "4 processes|--shards 4"; do
  name=${r%%|*}; args=${r#*|}; best=0
  for i in 1 2 3; do
    d=$(SHARD_THREADS=8 $S bench --model /tmp/1b.gguf --backend cpu $args --prompt-tokens 32 --gen-tokens 64 --json 2>/dev/null | python3 -c "import json,sys; print(json.load(sys.stdin)['decode_tokens_per_s'])" 2>/dev/null || echo 0)
    best=$(python3 -c "print(max($best, $d))")
  done
  echo "| $name | $best |" >> "$out/cpu.md"
done
echo; cat "$out/ab.md"; echo "single stream: prefill $(f $out/single.json prefill_tokens_per_s) decode $(f $out/single.json decode_tokens_per_s)"; cat "$out/cpu.md"
cat "$out"/ab-*.err | grep -v "^$" | tail -3
