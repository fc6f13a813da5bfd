#!/usr/bin/env bash
# Runs ON the lent GPU machine: prefill work (issue 3) A/B in one call. Parity (greedy tokens of the tiny
# llama/qwen2 vs the CPU; top-5 logits of the 7B after gpu-bench.sh's 28-word prompt, default and
# baseline), kernel-bench of the mat-mat shapes (4096×4096 and the down projection 4096×11008, ×512),
# then 512-token prefill of the synthetic 7B Q4_K_M: the default, each change off, all off (main's
# behaviour), and --profile of the default and of the baseline.
#   OUT=$OUT BUNDLE=.gpu-pre bash .gpu-pre/gpu-pre.sh   (carry: [".gl", ".gpu-pre"])
set -uo pipefail
. "$(dirname "$0")/gpu-env.sh"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/gpu.txt"
BASE="SHARD_VK_NO_FLASH=1 SHARD_VK_CM_Q6W=0 SHARD_VK_CM_PRE=2,4,2,1"
$S synth --arch llama --preset 7b --quant q4_k_m --out /tmp/7b.gguf > /dev/null || exit 1
for a in llama qwen2; do $S synth --arch $a --preset tiny --quant q4_k_m --out /tmp/$a-tiny.gguf > /dev/null; done
long="the quick brown fox jumps over the lazy dog while the cat sleeps in the warm sun and the birds sing in the tall trees by the river"
B="--model /tmp/7b.gguf --backend vulkan --prompt-tokens 512 --gen-tokens 16 --ctx 2048 --json"
$S bench $B > "$out/warm.json" 2> "$out/warm.err"   # compiles the pipelines once (the driver caches them)
for m in /tmp/llama-tiny.gguf /tmp/qwen2-tiny.gguf /tmp/7b.gguf; do
  c=$($S logits --model $m --prompt "$long" --top 5 --backend cpu 2>&1)
  for pe in "" "$BASE" "SHARD_VK_FLASH_CM=0"; do
    v=$(env $pe $S logits --model $m --prompt "$long" --top 5 --backend vulkan 2>&1)
    echo "$m [$pe] cpu: $c" >> "$out/parity.txt"; echo "$m [$pe] vk:  $v" >> "$out/parity.txt"
    echo "prefill parity $(basename $m) ${pe:+($pe)}: $(topk_parity "$c" "$v")" | tee -a "$out/summary.txt"
  done
  [[ $m == /tmp/7b.gguf ]] && continue
  c=$($S generate --model $m --prompt "$long" --temperature 0 --max-tokens 16 --json --backend cpu 2>&1 | grep -o '"token":[0-9]*' | tr '\n' ' ')
  v=$($S generate --model $m --prompt "$long" --temperature 0 --max-tokens 16 --json --backend vulkan 2>&1 | grep -o '"token":[0-9]*' | tr '\n' ' ')
  echo "$m greedy cpu: $c / vk: $v" >> "$out/parity.txt"
  [[ -n $c && $c == "$v" ]] && echo "greedy $(basename $m): same" | tee -a "$out/summary.txt" || echo "greedy $(basename $m): DIFF" | tee -a "$out/summary.txt"
done
# ROUNDS (2) rounds of the variants; PRE_VARIANTS="name=ENV=V+ENV=V ..." replaces the list; NO_KB=1 skips kernel-bench.
variants=${PRE_VARIANTS:-"new= noflash=SHARD_VK_NO_FLASH=1 noq6w=SHARD_VK_CM_Q6W=0 q4kc32=SHARD_VK_CM_PRE_Q4K=2,4,2,1 flashsimt=SHARD_VK_FLASH_CM=0 base=${BASE// /+}"}
for i in $(seq ${ROUNDS:-2}); do
  for v in $variants; do
    name=${v%%=*}; envs=${v#*=}; envs=${envs//+/ }
    env $envs $S bench $B > "$out/b-$name-$i.json" 2> "$out/b-$name-$i.err"
    echo "run $i $name: prefill $(python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print('%.1f tok/s, decode %.1f' % (d['prefill_tokens_per_s'], d['decode_tokens_per_s']))" "$out/b-$name-$i.json" 2>/dev/null || echo error)" | tee -a "$out/summary.txt"
  done
done
$S bench $B --profile > /dev/null 2> "$out/profile-new.txt"
env $BASE $S bench $B --profile > /dev/null 2> "$out/profile-base.txt"
SHARD_VK_FLASH_CM=0 $S bench $B --profile > /dev/null 2> "$out/profile-flashsimt.txt"
if [ "${NO_KB:-0}" = 0 ]; then
  $S kernel-bench --vulkan > "$out/kb-4096.txt" 2>&1
  $S kernel-bench --vulkan --matmul 4096,11008,512 > "$out/kb-11008.txt" 2>&1
fi
echo; grep -A14 "^prefill:" "$out/profile-new.txt"; grep "^host:" "$out/profile-new.txt"; echo "baseline:"; grep -A14 "^prefill:" "$out/profile-base.txt"; grep "^host:" "$out/profile-base.txt"
echo "flash simt:"; grep -A14 "^prefill:" "$out/profile-flashsimt.txt"
grep "^matmul Q6_K\|^matmul Q4_K" "$out"/kb-*.txt 2>/dev/null | sed 's/relative difference from f32/rel/'
grep "odd sizes" "$out"/kb-*.txt 2>/dev/null
cat "$out/summary.txt"
cd "$out" && tar czf logs.tgz *.txt *.json *.err && rm -f *.json *.err parity.txt profile-*.txt kb-*.txt
