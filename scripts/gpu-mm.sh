#!/usr/bin/env bash
# Runs ON the lent GPU machine (carry .gl and the bundle; see scripts/gpu-bench.sh): matmul_cm.comp
# (cooperative-matrix mat-mat with per-call tile shapes) against the paths before it, in one call:
#  1. kernel-bench --vulkan: prefill shapes (4096×4096×512, Q4_K/Q6_K) and decode shapes (2…64 columns)
#     timed and checked against the f32 paths, odd sizes (M 1013, K 768) included;
#  2. greedy-token and top-5-logit parity, Vulkan vs CPU, on the tiny synthetic llama/qwen2 models
#     (short prompt: a decode-shape prefill; long prompt: 30 rows) and the 7B;
#  3. single stream (512 prompt + 128 generated) and many streams (bench --concurrency C, 128 + 128),
#     default vs SHARD_VK_CM=0 (the paths before matmul_cm), plus the VARIANTS env settings;
#  4. a per-op profile of a 16-stream run with the default.
#   run: OUT=$OUT bash scripts/gpu-mm.sh   env: BUNDLE (.gpu), LIST ("16 64"), VARIANTS ("name=ENV=V;ENV=V …"), KB=0 skips 1.
#   e.g. VARIANTS="dkc64=SHARD_VK_CM_DEC=1,0,1,4,64 pkc64=SHARD_VK_CM_PRE=2,4,2,1,64"
set -uo pipefail
. "$(dirname "$0")/gpu-env.sh"   # $out, $bundle, $S; the Vulkan loader and NVIDIA ICD
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/gpu.txt"
$S --help >/dev/null 2>&1   # unpacks the bundled binary once (before the parallel jobs below)
( $S synth --arch llama --preset 7b --quant q4_k_m --out /tmp/7b.gguf >/dev/null
  for a in llama qwen2; do $S synth --arch $a --preset tiny --quant q4_k_m --out /tmp/$a-tiny.gguf >/dev/null; done ) &
synth=$!
[ "${KB:-1}" != 0 ] && timeout 150 $S kernel-bench --vulkan > "$out/kernel-bench.txt" 2>&1
wait $synth
f() { python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print('%.1f' % d[sys.argv[2]])" "$1" "$2" 2>/dev/null || echo "-"; }
# Parity.
long="the quick brown fox jumps over the lazy dog while the cat sleeps in the warm sun and the birds sing in the tall trees by the river"
parity=""
for m in /tmp/llama-tiny.gguf /tmp/qwen2-tiny.gguf /tmp/7b.gguf; do
  n=16; [[ $m == /tmp/7b.gguf ]] && n=8
  for p in "the quick brown fox" "$long"; do
    c=$($S generate --model $m --prompt "$p" --temperature 0 --max-tokens $n --json --backend cpu 2>&1 | grep -o '"token":[0-9]*' | tr '\n' ' ')
    v=$($S generate --model $m --prompt "$p" --temperature 0 --max-tokens $n --json --backend vulkan 2>>"$out/vk-err.txt" | grep -o '"token":[0-9]*' | tr '\n' ' ')
    b=$(SHARD_VK_CM=0 $S generate --model $m --prompt "$p" --temperature 0 --max-tokens $n --json --backend vulkan 2>>"$out/vk-err.txt" | grep -o '"token":[0-9]*' | tr '\n' ' ')
    echo "$m [$p] cpu: $c" >> "$out/parity.txt"; echo "$m [$p] vk:  $v" >> "$out/parity.txt"
    [[ -n $c && $c == "$v" ]] && parity+="$(basename $m)/${#p}:same" || parity+="$(basename $m)/${#p}:DIFF"
    [[ -n $c && $c == "$b" ]] && parity+="(before:same) " || parity+="(before:DIFF) "
  done
  c=$($S logits --model $m --prompt "$long" --top 5 --backend cpu 2>&1); v=$($S logits --model $m --prompt "$long" --top 5 --backend vulkan 2>&1)
  parity+="[$(topk_parity "$c" "$v")] "
done
# Speed: default vs the paths before matmul_cm, and variants; one table.
echo "| path | prefill 512 tok/s | decode 1 stream tok/s | $(for c in ${LIST:-16 64}; do printf "%s streams agg tok/s (ITL p50 ms) | " $c; done)" > "$out/table.md"
echo "| --- | ---: | ---: | $(for c in ${LIST:-16 64}; do printf -- "---: | "; done)" >> "$out/table.md"
for v in "default=" "before=SHARD_VK_CM=0" ${VARIANTS:-}; do
  name=${v%%=*}; envs=${v#*=}
  e="env ${envs//;/ }"   # several variables: ENV=V;ENV2=V (values may hold commas)
  j="$out/single-$name.json"
  $e timeout 60 $S bench --model /tmp/7b.gguf --backend vulkan --prompt-tokens 512 --gen-tokens 128 --ctx 2048 --json > "$j" 2> "$j.err"
  row="| $name ${envs:+($envs)} | $(f $j prefill_tokens_per_s) | $(f $j decode_tokens_per_s) | "
  for c in ${LIST:-16 64}; do
    j="$out/conc-$name-$c.json"
    $e timeout 120 $S bench --model /tmp/7b.gguf --backend vulkan --concurrency $c --prompt-tokens 128 --gen-tokens 128 --ctx 2048 --json > "$j" 2> "$j.err"
    row+="$(f $j aggregate_decode_tokens_per_s) ($(f $j itl_ms_p50)) | "
  done
  echo "$row" >> "$out/table.md"
done
timeout 60 $S bench --model /tmp/7b.gguf --backend vulkan --concurrency 16 --prompt-tokens 128 --gen-tokens 128 --ctx 2048 --json --profile > /dev/null 2> "$out/profile-16.txt"
timeout 60 $S bench --model /tmp/7b.gguf --backend vulkan --prompt-tokens 512 --gen-tokens 16 --ctx 2048 --json --profile > /dev/null 2> "$out/profile-prefill.txt"
echo
grep -v "^$" "$out/kernel-bench.txt" | cut -c1-600
echo "parity (greedy vk vs cpu; /prompt length; before = SHARD_VK_CM=0): $parity"
grep -i "unavailable\|error" "$out/vk-err.txt" "$out"/*.err 2>/dev/null | sort | uniq -c | head -5
grep -A16 "^prefill" "$out/profile-16.txt" | head -18
grep -A10 "^prefill" "$out/profile-prefill.txt" | head -12
cat "$out/table.md"
