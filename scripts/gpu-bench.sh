#!/usr/bin/env bash
# Runs ON the lent GPU machine, from the project root with .gl/ and the bundle carried (scripts/gpu-bundle.sh
# builds it here, into .gpu/ or $GPU_BUNDLE_DIR). Writes logs under ${OUT:-/tmp/out} and prints one table last.
#   run: bash scripts/gpu-bench.sh   (carry: [".gl", ".gpu"]); BUNDLE=.gpu-perf to use another bundle folder.
#   SHARDS=0 skips the 2-shard and CPU runs; VARIANTS=1 also benchmarks under VulkanBackend's env knobs:
#   VARIANT_LIST="name=ENV=V[,ENV=V] ..." (default: no replay, no fusion, no cooperative matrices).
set -uo pipefail
. "$(dirname "$0")/gpu-env.sh"   # $out, $bundle, $S; the Vulkan loader and NVIDIA ICD
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/gpu.txt"
nproc | sed 's/^/cpu cores: /' | tee -a "$out/gpu.txt"
$S kernel-bench --vulkan 2>&1 | tee "$out/copy.txt"
copy=$(grep -o '[0-9.]* GB/s' "$out/copy.txt" | head -1 | cut -d' ' -f1)

# Models: a tiny one per architecture for parity, the 7B Q4_K_M (4.08 GB) for speed.
t0=$(date +%s.%N)
$S synth --arch llama --preset 7b --quant q4_k_m --out /tmp/7b.gguf || exit 1
echo "synth 7b: $(python3 -c "import sys; print(round($(date +%s.%N) - $t0, 1))") s, $(stat -c %s /tmp/7b.gguf) bytes" | tee -a "$out/gpu.txt"
for a in llama qwen2; do $S synth --arch $a --preset tiny --quant q4_k_m --out /tmp/$a-tiny.gguf; done

# Parity: Vulkan greedy tokens vs CPU on the synthetic models.
parity=""
for m in /tmp/llama-tiny.gguf /tmp/qwen2-tiny.gguf /tmp/7b.gguf; do
  n=16; [[ $m == /tmp/7b.gguf ]] && n=8
  c=$(greedy_tokens $m cpu $n 2>/dev/null)
  v=$(greedy_tokens $m vulkan $n 2>"$out/vk-err.txt")
  echo "$m cpu: $c" >> "$out/parity.txt"; echo "$m vk:  $v" >> "$out/parity.txt"
  [[ -n $c && $c == "$v" ]] && parity+="$(basename $m):same " || parity+="$(basename $m):DIFF "
done
$S logits --model /tmp/7b.gguf --prompt "the quick brown fox" --top 5 --backend cpu > "$out/logits-cpu.json" 2>&1
$S logits --model /tmp/7b.gguf --prompt "the quick brown fox" --top 5 --backend vulkan > "$out/logits-vk.json" 2>&1
# Prefill parity (more than 8 prompt tokens: the mat-mat paths): top-5 logits after a long prompt;
# also under PARITY_ENV (a variant's env settings, comma-separated) when given.
long="the quick brown fox jumps over the lazy dog while the cat sleeps in the warm sun and the birds sing in the tall trees by the river"
prefill=""
for pe in "" ${PARITY_ENV:-}; do
for m in /tmp/llama-tiny.gguf /tmp/qwen2-tiny.gguf /tmp/7b.gguf; do
  c=$($S logits --model $m --prompt "$long" --top 5 --backend cpu 2>&1); v=$(env ${pe//,/ } $S logits --model $m --prompt "$long" --top 5 --backend vulkan 2>&1)
  [ -n "$pe" ] && prefill+="[variant] "
  if [ -n "$pe" ]; then
    vg=$(env ${pe//,/ } $S generate --model $m --prompt "the quick brown fox" --temperature 0 --max-tokens 16 --json --backend vulkan 2>/dev/null | grep -o '"token":[0-9]*' | tr '\n' ' ')
    vd=$($S generate --model $m --prompt "the quick brown fox" --temperature 0 --max-tokens 16 --json --backend vulkan 2>/dev/null | grep -o '"token":[0-9]*' | tr '\n' ' ')
    [[ -n $vg && $vg == "$vd" ]] && prefill+="greedy same as default; " || prefill+="greedy DIFF from default; "
  fi
  echo "$m cpu: $c" >> "$out/prefill-parity.txt"; echo "$m vk:  $v" >> "$out/prefill-parity.txt"
  prefill+="$(basename $m): $(topk_parity "$c" "$v"); "
done
done

B="--model /tmp/7b.gguf --backend vulkan --prompt-tokens 512 --gen-tokens 128 --ctx 2048 --json"
# Speed: VRAM sampled while the benchmark runs.
( while true; do nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits; sleep 0.2; done ) > "$out/vram.txt" 2>/dev/null &
smi=$!
$S bench $B > "$out/bench-vk-1.json" 2> "$out/bench-vk-1.err"
kill $smi 2>/dev/null
$S bench $B > "$out/bench-vk-1b.json" 2> "$out/bench-vk-1b.err"
$S bench $B --profile > /dev/null 2> "$out/profile.txt"
[ -n "${PROFILE_ENV:-}" ] && env ${PROFILE_ENV//,/ } $S bench $B --profile > /dev/null 2> "$out/profile-variant.txt"
if [ "${SHARDS:-1}" != 0 ]; then
  $S bench $B --shards 2 > "$out/bench-vk-2.json" 2> "$out/bench-vk-2.err"
  $S bench $B --shards 2 --in-process > "$out/bench-vk-2ip.json" 2> "$out/bench-vk-2ip.err"
  if [ "$(nvidia-smi -L | wc -l)" -ge 2 ]; then
    $S bench $B --shards 2 --devices 0,1 > "$out/bench-vk-2gpu.json" 2> "$out/bench-vk-2gpu.err"
  fi
  $S bench --model /tmp/7b.gguf --backend cpu --prompt-tokens 64 --gen-tokens 16 --json > "$out/bench-cpu.json" 2> "$out/bench-cpu.err"
fi
# Kernel variants (decode only matters: short prompt): name=ENV settings.
variants=""
if [ "${VARIANTS:-0}" != 0 ]; then
  for v in ${VARIANT_LIST:-noreplay=SHARD_VK_NO_REPLAY=1 nofuse=SHARD_VK_NO_FUSE=1 nocoop=SHARD_VK_NO_COOPMAT=1}; do
    name=${v%%=*}; envs=${v#*=}
    env ${envs//,/ } $S bench --model /tmp/7b.gguf --backend vulkan --prompt-tokens 512 --gen-tokens 128 --ctx 2048 --json > "$out/var-$name.json" 2>/dev/null
    variants+="$name "
  done
fi

wbytes=$(( $(stat -c %s /tmp/7b.gguf) - 73728000 ))   # weights read per token: the file less token_embd (Q4_K 32000×4096)
echo
grep -A12 "^prefill:" "$out/profile.txt"; grep -A16 "^decode:" "$out/profile.txt"
[ -f "$out/profile-variant.txt" ] && { echo "variant ($PROFILE_ENV):"; grep -A8 "^prefill:" "$out/profile-variant.txt"; grep -A14 "^decode:" "$out/profile-variant.txt"; }
echo "parity (greedy, vulkan vs cpu): $parity"
echo "prefill parity (top-5 logits after a 28-word prompt): $prefill"
grep -i "matmul\|cooperative" "$out/copy.txt"
echo "logits cpu: $(head -c 200 $out/logits-cpu.json)"
echo "logits vk:  $(head -c 200 $out/logits-vk.json)"
echo "peak VRAM used (MiB, whole card): $(sort -n $out/vram.txt | tail -1); copy bandwidth ${copy} GB/s"
echo "| run | prefill tok/s | decode tok/s | load s | decode GB/s of weights | of copy bw |"
echo "| --- | ---: | ---: | ---: | ---: | ---: |"
row() {
  f=$1; d=$(field $f decode_tokens_per_s)
  bw=$(python3 -c "print('%.0f' % ($wbytes * $d / 1e9))" 2>/dev/null || echo -)
  fr=$(python3 -c "print('%.2f' % ($wbytes * $d / 1e9 / $copy))" 2>/dev/null || echo -)
  echo "| $2 | $(field $f prefill_tokens_per_s) | $d | $(field $f load_seconds) | $bw | $fr |"
}
for r in vk-1 vk-1b vk-2 vk-2ip vk-2gpu cpu; do [ -f "$out/bench-$r.json" ] && row "$out/bench-$r.json" $r; done
for v in $variants; do row "$out/var-$v.json" "$v"; done
cat "$out"/bench-*.err | grep -v "^$" | tail -5
