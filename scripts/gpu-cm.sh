#!/usr/bin/env bash
# Runs ON the lent GPU machine (carry .gl and the bundle): matmul_cm's packed kernel (16-byte shared
# stores, X from the int8 copy; issues 5 and 3) against the unpacked one (SHARD_VK_CM_PACK=0, main's
# kernel) in one call. kernel-bench --decode first: its relative errors tell whether the driver reads the
# packed tiles' coopMatLoadNV stride in uvec4s (SU=1, the default) or f16s (SHARD_VK_CM_SU=0), and the
# rest of the call uses the one that matches the f32 tiles. Then parity (tiny llama/qwen2 greedy vs the
# CPU; the 7B's top-5 logits after a 4-word and a 32-word prompt, packed and not), aggregate decode at
# 16 and 64 streams (128 + 128 tokens per stream; bench warms up in its own process) and a 512-token batch-1 prefill
# for each CONFIGS entry, a --profile at 64 streams, and kernel-bench of the prefill shapes.
#   run: OUT=$OUT BUNDLE=.gpu-cm bash .gpu-cm/gpu-cm.sh
set -uo pipefail
. "$(dirname "$0")/gpu-env.sh"
start_models
[ "${KB:-1}" != 0 ] && timeout 200 $S kernel-bench --vulkan --decode > "$out/kb-decode.txt" 2>&1
# The default's relative errors against the SU=0 variant's: keep the one near the f32 tiles (~3e-4).
su=$(python3 - "$out/kb-decode.txt" <<'PY'
import re,sys
d=[];s=[]
for l in open(sys.argv[1]):
    m=re.search(r'rel ([0-9.e+-]+|nan)\)',l)
    if not m: continue
    v=float(m.group(1)) if m.group(1)!='nan' else 9.0
    if 'defaults (packed' in l: d.append(v)
    if 'SHARD_VK_CM_SU=0' in l: s.append(v)
md=max(d) if d else 9.0; ms=max(s) if s else 9.0
print(1 if md<1e-2 or md<=ms else 0)
PY
)
[ "$su" = 0 ] && export SHARD_VK_CM_SU=0
echo "kernel-bench --decode: $(( $(date +%s) - t0 )) s; stride units: SU=$su" | tee -a "$out/gpu.txt"
: > "$out/parity.txt"
tiny_parity 16 | tee -a "$out/parity.txt"
logits_parity "SHARD_VK_CM_PACK=0" "SHARD_VK_CM_PACK=1"
echo "parity done: $(( $(date +%s) - t0 )) s" | tee -a "$out/gpu.txt"
echo "| config | run | 16 streams tok/s (GPU ms/step) | 64 streams tok/s (GPU ms/step) | prefill 512 tok/s | token hashes 16 / 64 |" > "$out/cm.md"
echo "| --- | ---: | ---: | ---: | ---: | --- |" >> "$out/cm.md"
gpu() { python3 -c "
import json,sys; d=json.load(open(sys.argv[1])); n=float(d.get('steps',0)); print('%.1f (%.2f)' % (d['aggregate_decode_tokens_per_s'], 1000*d['vulkan_gpu_wait_seconds']/n))" "$1" 2>/dev/null || echo "-"; }
pre() { python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print('%.1f' % d['prefill_tokens_per_s'])" "$1" 2>/dev/null || echo "-"; }
# CONFIGS: "name|ENV=V+ENV=V;..." (values may hold commas: tile shapes).
IFS=';' read -ra cfgs <<< "${CONFIGS:-base|SHARD_VK_CM_PACK=0;new|SHARD_VK_CM_PACK=1;decpk|SHARD_VK_CM_PACK_PRE=0;k128|SHARD_VK_CM_DECS=1,0,4,1,128+SHARD_VK_CM_DECS_TALL=2,0,4,1,64}"
for r in $(seq ${ROUNDS:-1}); do
  for cfg in "${cfgs[@]}"; do
    IFS='|' read -r name envs <<< "$cfg"; envs=${envs//+/ }
    for c in 16 64; do
      env $envs timeout 100 $S bench --model /tmp/7b.gguf --backend vulkan --concurrency $c --prompt-tokens 128 --gen-tokens 128 --ctx 2048 --json > "$out/c-$name-$c-$r.json" 2> "$out/c-$name-$c-$r.err"
    done
    env $envs timeout 60 $S bench --model /tmp/7b.gguf --backend vulkan --prompt-tokens 512 --gen-tokens 16 --ctx 2048 --json > "$out/p-$name-$r.json" 2> "$out/p-$name-$r.err"
    echo "| $name | $r | $(gpu $out/c-$name-16-$r.json) | $(gpu $out/c-$name-64-$r.json) | $(pre $out/p-$name-$r.json) | $(hashes $out/c-$name-16-$r.json) / $(hashes $out/c-$name-64-$r.json) |" | tee -a "$out/cm.md"
    echo "$name round $r done: $(( $(date +%s) - t0 )) s" | tee -a "$out/gpu.txt"
  done
done
[ "${PROFILE:-1}" != 0 ] && timeout 60 $S bench --model /tmp/7b.gguf --backend vulkan --concurrency 64 --prompt-tokens 128 \
  --gen-tokens 32 --ctx 2048 --profile > "$out/profile-64.txt" 2>&1
for pv in "new|" "base|SHARD_VK_CM_PACK=0"; do
  IFS='|' read -r name envs <<< "$pv"
  [ "${PPROF:-1}" != 0 ] && env $envs timeout 60 $S bench --model /tmp/7b.gguf --backend vulkan --prompt-tokens 512 --gen-tokens 16 --ctx 2048 --profile > "$out/profile-pre-$name.txt" 2>&1
done
[ "${KBP:-1}" != 0 ] && timeout 150 $S kernel-bench --vulkan > "$out/kb-prefill.txt" 2>&1
echo "end: $(( $(date +%s) - t0 )) s" | tee -a "$out/gpu.txt"
cd "$out" && tar czf logs.tgz *.json *.err 2>/dev/null; rm -f "$out"/*.json "$out"/*.err
echo; cat "$out/parity.txt"; echo; cat "$out/cm.md"
grep -E "^decode|^    (matmul_cm|f32|matvec)" "$out/kb-decode.txt" | sed 's/relative difference/rel/' | cut -c1-170 | head -80
grep -E "odd sizes|x 512 columns" "$out/kb-prefill.txt" | cut -c1-200
