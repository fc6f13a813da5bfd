#!/usr/bin/env bash
# On the lent GPU machine (carry .gl and the bundle): batched decode attention, attn_decode_vec (default)
# against attn_decode (SHARD_VK_ATTN_VEC=0), all in one call:
#   1. kernel-bench --vulkan --attention: µs per call at 1...64 rows under its variants (and their outputs'
#      relative difference from attn_decode);
#   2. parity: tiny llama / qwen2 greedy tokens vs the CPU, the 7B's top-5 logits vs the CPU;
#   3. bench --profile at 64 and 16 streams (16 + 96 tokens), attention rows, on and off;
#   4. bench --concurrency 16 and 64 (128 + 128 tokens; bench warms up in its own process), on and off, with the streams'
#      token hashes (equal: the same greedy tokens);
#   5. batch-1 decode (512 + 128 tokens), on and off (one-row steps keep attn_decode: the same speed).
#   SKIP_KB=1: no kernel-bench; ONE_REP=1: one round of step 4; ON=ENV=V,ENV=V: the variant against SHARD_VK_ATTN_VEC=0.
#   device run, carry [".gl", ".gpu-att"]:  OUT=$OUT BUNDLE=.gpu-att bash .gpu-att/gpu-att.sh
. "$(dirname "$0")/gpu-env.sh" >/dev/null 2>&1
OFF=SHARD_VK_ATTN_VEC=0
ON=${ON:-SHARD_VK_ATTN_VEC=1}   # the variant measured against OFF (comma-separated env settings)
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/gpu.txt"
t0=$(date +%s)
stamp() { echo "[$(( $(date +%s) - t0 )) s] $*"; }
[ -n "${SKIP_KB:-}" ] || { timeout 150 $S kernel-bench --vulkan --attention > "$out/kernel-att.txt" 2>&1; cat "$out/kernel-att.txt"; }
stamp kernel-bench done
synth_models
stamp synth done
tiny_parity 16 | tee "$out/parity.txt"
c=$($S logits --model /tmp/7b.gguf --prompt "the quick brown fox" --top 5 --backend cpu 2>/dev/null)
v=$($S logits --model /tmp/7b.gguf --prompt "the quick brown fox" --top 5 --backend vulkan 2>/dev/null)
echo "7b top-5 vs cpu: $(topk_parity "$c" "$v")" | tee -a "$out/parity.txt"
stamp parity done
for c in 64 16; do for e in $ON $OFF; do
  env ${e//,/ } timeout 120 $S bench --model /tmp/7b.gguf --backend vulkan --concurrency $c --prompt-tokens 16 --gen-tokens 96 --ctx 2048 --profile --json \
    > "$out/profile-$c-$e.json" 2> "$out/profile-$c-$e.txt"
  echo "== profile $c streams, $e: $(grep -m1 -A0 '^prefill' "$out/profile-$c-$e.txt")"
  grep -E 'attn|attention|matmul cm|matvec q8mc' "$out/profile-$c-$e.txt" | head -8
done; done
stamp profiles done
for rep in 1 2; do for c in 16 64; do for e in $ON $OFF; do
  env ${e//,/ } timeout 120 $S bench --model /tmp/7b.gguf --backend vulkan --concurrency $c --prompt-tokens 128 --gen-tokens 128 --ctx 2048 --json \
    > "$out/conc-$c-$e-$rep.json" 2>/dev/null
  python3 -c "
import json, hashlib; d=json.load(open('$out/conc-$c-$e-$rep.json')); n=d['steps']
print('conc $c rep $rep $e: agg %.1f tok/s' % d['aggregate_decode_tokens_per_s'], 'ms/step wall %.2f gpu %.2f' % tuple(1000*d[k]/n for k in ('wall_seconds','vulkan_gpu_wait_seconds')), 'token hashes (md5 of all)', hashlib.md5(str(d.get('stream_token_hashes')).encode()).hexdigest()[:10])" 2>/dev/null || echo "conc $c $e: failed"
done; done; [ -n "${ONE_REP:-}" ] && break; done | tee "$out/conc.txt"
stamp concurrency done
for e in $ON $OFF; do
  env ${e//,/ } timeout 60 $S bench --model /tmp/7b.gguf --backend vulkan --prompt-tokens 512 --gen-tokens 128 --ctx 2048 --json > "$out/b1-$e.json" 2>/dev/null
  echo "batch 1 $e: prefill $(field "$out/b1-$e.json" prefill_tokens_per_s) decode $(field "$out/b1-$e.json" decode_tokens_per_s) tok/s"
done | tee "$out/b1.txt"
stamp all done
cd "$out" && tar czf logs.tgz *.json *.txt 2>/dev/null && rm -f *.json profile-*.txt
