#!/usr/bin/env bash
# Runs ON the lent GPU machine (carry .gl and the bundle): batch-1 decode of the synthetic 7B Q4_K_M
# under VulkanBackend's decode knobs (issue 3), all in one call, one table last; logs under $OUT.
#   run: OUT=$OUT bash scripts/gpu-decode.sh     (BUNDLE=.gpu by default)
#   The device tool sends the checkout the session started in, not a helper's worktree: from a worktree,
#   copy the bundle, this script and gpu-env.sh into an ignored folder there (e.g. .build-NAME/) and carry that.
#   KNOBS="name=ENV=V[,ENV=V] ..." (default below: the integer-dot mat-vecs off, other rows per workgroup);
#   DP_ROWS_LIST="4 8": matvec_q8 rows per workgroup, each timed alone (kernel-bench --matvec; "": none); REPS=2 runs each.
#   PARITY_KNOBS="ENV=V[,ENV=V] ...": knob settings whose greedy tokens are also checked (default SHARD_VK_NO_DP=1);
#   PROFILE_KNOBS: the settings of the second profiled run (default SHARD_VK_NO_DP=1).
set -uo pipefail
. "$(dirname "$0")/gpu-env.sh"   # $out, $bundle, $S; the Vulkan loader and NVIDIA ICD
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/gpu.txt"
# Mat-vecs alone (random weights of the 7B's shapes).
for r in ${DP_ROWS_LIST-4 8}; do
  echo "== SHARD_VK_DP_ROWS=$r" >> "$out/matvec.txt"
  SHARD_VK_DP_ROWS=$r timeout 120 $S kernel-bench --vulkan --matvec >> "$out/matvec.txt" 2>&1
done
$S synth --arch llama --preset 7b --quant q4_k_m --out /tmp/7b.gguf > /dev/null || exit 1
for a in llama qwen2; do $S synth --arch $a --preset tiny --quant q4_k_m --out /tmp/$a-tiny.gguf > /dev/null; done
# Greedy parity with the CPU backend (tiny models: equal tokens expected; 7B: top logits).
parity=""
for m in /tmp/llama-tiny.gguf /tmp/qwen2-tiny.gguf; do
  c=$(greedy_tokens $m cpu 24 2>/dev/null)
  for knob in default ${PARITY_KNOBS:-SHARD_VK_NO_DP=1}; do
    v=$([ $knob != default ] && export ${knob//,/ }; greedy_tokens $m vulkan 24 2>>"$out/vk-err.txt")
    echo "$m cpu: $c / vk ($knob): $v" >> "$out/parity.txt"
    [[ -n $c && $c == "$v" ]] && parity+="$(basename $m .gguf)[$knob]:same " || parity+="$(basename $m .gguf)[$knob]:DIFF "
  done
done
$S logits --model /tmp/7b.gguf --prompt "the quick brown fox" --top 5 --backend cpu > "$out/logits-cpu.json" 2>&1
$S logits --model /tmp/7b.gguf --prompt "the quick brown fox" --top 5 --backend vulkan > "$out/logits-vk.json" 2>&1
$S generate --model /tmp/7b.gguf --prompt "the quick brown fox" --temperature 0 --max-tokens 12 --json --backend vulkan 2>/dev/null | grep -o '"token":[0-9]*' | tr '\n' ' ' > "$out/7b-greedy-default.txt"
pk=${PROFILE_KNOBS:-SHARD_VK_NO_DP=1}
env ${pk//,/ } $S generate --model /tmp/7b.gguf --prompt "the quick brown fox" --temperature 0 --max-tokens 12 --json --backend vulkan 2>/dev/null | grep -o '"token":[0-9]*' | tr '\n' ' ' > "$out/7b-greedy-nodp.txt"

B="--model /tmp/7b.gguf --backend vulkan --prompt-tokens 512 --gen-tokens ${GEN:-128} --ctx 2048 --json"
knobs=${KNOBS:-"default nodp=SHARD_VK_NO_DP=1 rows8=SHARD_VK_DP_ROWS=8 rows2=SHARD_VK_DP_ROWS=2"}
f() { python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print('%.1f' % d[sys.argv[2]])" "$1" "$2" 2>/dev/null || echo "-"; }
wbytes=$(( $(stat -c %s /tmp/7b.gguf) - 73728000 ))   # weights read per decode token: the file less token_embd
echo "| knobs | prefill tok/s | decode tok/s (runs) | decode weights GB/s |" > "$out/table.md"
echo "| --- | ---: | ---: | ---: |" >> "$out/table.md"
# Warm-up: the driver's shader cache (the first process compiles every pipeline inside its prefill).
$S bench --model /tmp/7b.gguf --backend vulkan --prompt-tokens 16 --gen-tokens 4 --ctx 256 > /dev/null 2>&1
for rep in $(seq 1 ${REPS:-2}); do
  for k in $knobs; do
    name=${k%%=*}; envs=""; [ "$k" != default ] && envs=${k#*=}
    env ${envs//,/ } $S bench $B > "$out/bench-$name-$rep.json" 2> "$out/bench-$name-$rep.err"
  done
done
for k in $knobs; do
  name=${k%%=*}; envs="(default)"; [ "$k" != default ] && envs=${k#*=}
  ds=""; best=0
  for rep in $(seq 1 ${REPS:-2}); do d=$(f "$out/bench-$name-$rep.json" decode_tokens_per_s); ds+="$d / "; best=$(python3 -c "print(max($best, float('$d') if '$d' != '-' else 0))"); done
  echo "| $envs | $(f "$out/bench-$name-1.json" prefill_tokens_per_s) | ${ds% / } | $(python3 -c "print('%.0f' % ($wbytes * $best / 1e9))") |" >> "$out/table.md"
done
$S bench $B --profile > /dev/null 2> "$out/profile-default.txt"
env ${pk//,/ } $S bench $B --profile > /dev/null 2> "$out/profile-nodp.txt"

echo; cat "$out/matvec.txt"
echo "--- decode profile, default:"; grep -A16 "^decode:" "$out/profile-default.txt"
echo "--- decode profile, $pk:"; grep -A16 "^decode:" "$out/profile-nodp.txt"
echo "parity (greedy, vulkan vs cpu, tiny models, 24 tokens): $parity"
echo "7B greedy default: $(cat $out/7b-greedy-default.txt)"; echo "7B greedy no-dp:  $(cat $out/7b-greedy-nodp.txt)"
echo "7B logits cpu: $(head -c 300 $out/logits-cpu.json)"; echo "7B logits vk:  $(head -c 300 $out/logits-vk.json)"
cat "$out/table.md"
cat "$out"/bench-*.err "$out/vk-err.txt" 2>/dev/null | grep -v "^$" | sort | uniq -c | tail -5
