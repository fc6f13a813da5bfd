#!/usr/bin/env bash
# Runs ON the lent GPU machine (carry .gl, the bundle, and optionally a baseline bundle): VRAM of the
# synthetic 7B Q4_K_M at 2048 context (f16 and q8_0 KV), the process's own device-memory account
# (bench --json device_memory) against the whole-card nvidia-smi peak, q8_0 KV parity CPU vs Vulkan,
# and --kv-memory as a fraction of the free memory VK_EXT_memory_budget reports. One table last.
#   BUNDLE=.gpu BASE=.gpu-base bash scripts/gpu-vkmem.sh   (or BASE_XZ=path/to/shardctl.xz)
set -uo pipefail
. "$(dirname "$0")/gpu-env.sh"   # $out, $bundle, $S; the Vulkan loader and NVIDIA ICD
# BASE_XZ: a baseline build's shardctl, xz-compressed (two gzipped bundles exceed the 64 MiB carry),
# run with the bundle's libraries.
if [ -n "${BASE_XZ:-}" ]; then
  mkdir -p /tmp/base && cp -r "$bundle"/*.so* "$bundle"/fallback "$bundle"/run.sh /tmp/base/
  python3 -c "import lzma,sys; open('/tmp/base/shardctl','wb').write(lzma.open(sys.argv[1]).read())" "$BASE_XZ" && chmod +x /tmp/base/shardctl
  BASE=/tmp/base
fi
card=$(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | head -1)
idle=$(nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits | head -1)
$S synth --arch llama --preset 7b --quant q4_k_m --out /tmp/7b.gguf >/dev/null || exit 1
$S synth --arch llama --preset tiny --quant q4_k_m --out /tmp/tiny.gguf >/dev/null || exit 1
B="--model /tmp/7b.gguf --backend vulkan --prompt-tokens 512 --gen-tokens 128 --ctx 2048 --json"

# bench under nvidia-smi sampling (whole card, MiB, every 0.1 s): name, bundle, extra args
peak() {
  local name=$1 tool=$2; shift 2
  ( while true; do nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits | head -1; sleep 0.1; done ) > "$out/vram-$name.txt" 2>/dev/null &
  local smi=$!
  $tool bench $B "$@" > "$out/bench-$name.json" 2> "$out/bench-$name.err"
  kill $smi 2>/dev/null; wait $smi 2>/dev/null
  local p=$(sort -n "$out/vram-$name.txt" | tail -1)
  local j=$(cat "$out/bench-$name.json")
  python3 - "$name" "$p" "$idle" "$j" <<'PY' >> "$out/table.txt"
import json, sys
name, peak, idle, j = sys.argv[1], int(sys.argv[2] or 0), int(sys.argv[3] or 0), sys.argv[4]
try:
    d = json.loads(j)
except Exception:
    print(f"| {name} | failed: {j[:200]} |"); sys.exit()
m = d.get("device_memory") or {}
mem = ", ".join(f"{k} {v:.1f}" for k, v in m.items()) if m else "(no account: old build)"
print(f"| {name} | {d['prefill_tokens_per_s']:.1f} | {d['decode_tokens_per_s']:.1f} | {peak} | {peak - idle} | {mem} |")
PY
}
echo "| run | prefill tok/s | decode tok/s | card peak MiB | peak − idle MiB | process account MiB |" > "$out/table.txt"
echo "| --- | ---: | ---: | ---: | ---: | --- |" >> "$out/table.txt"
[ -n "${BASE:-}" ] && peak base-f16 "$BASE/run.sh shardctl"
peak new-f16 "$S"
peak new-q8 "$S" --kv-type q8_0
peak new-kvfrac "$S" --kv-memory 0.05

# q8_0 KV parity: greedy tokens CPU vs Vulkan (tiny llama 24 tokens, the 7B 8 tokens).
parity=""
for m in /tmp/tiny.gguf /tmp/7b.gguf; do
  n=24; [[ $m == /tmp/7b.gguf ]] && n=8
  for kv in q8_0 f16; do
    c=$($S generate --model $m --prompt "the quick brown fox jumps over the lazy dog" --temperature 0 --max-tokens $n --json --backend cpu --kv-type $kv 2>&1 | grep -o '"token":[0-9]*' | tr '\n' ' ')
    v=$($S generate --model $m --prompt "the quick brown fox jumps over the lazy dog" --temperature 0 --max-tokens $n --json --backend vulkan --kv-type $kv 2>>"$out/parity-err.txt" | grep -o '"token":[0-9]*' | tr '\n' ' ')
    echo "$m $kv cpu: $c" >> "$out/parity.txt"; echo "$m $kv vk:  $v" >> "$out/parity.txt"
    [[ -n $c && $c == "$v" ]] && parity+="$(basename $m) $kv: same; " || parity+="$(basename $m) $kv: DIFF; "
  done
done
echo
echo "card: $card; idle card memory ${idle} MiB; file $(stat -c %s /tmp/7b.gguf) bytes"
cat "$out/table.txt"
echo "greedy parity CPU vs Vulkan: $parity"
for e in "$out"/bench-*.err; do [ -s "$e" ] && { echo "== $e"; tail -3 "$e"; }; done
