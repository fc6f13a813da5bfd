#!/usr/bin/env bash
# Runs ON the lent GPU machine (carry .gl and .gpu): batch-1 decode of the synthetic 7B under each of CONFIGS (words
# "name|ENV=V,ENV=V"), ROUNDS rounds alternating: decode after a 512-token prompt and tg128 (128 tokens from an empty
# context, as llama-bench), one bench process each; then the first config's and the last config's 7B top-5 logits
# against the CPU (PARITY=0: not) and a --profile of the last config (PROFILE=0: not).
#   run: OUT=$OUT CONFIGS="def| cmd0|SHARD_VK_CMD=0" [ROUNDS=3] bash scripts/gpu-b1-ab.sh   (an empty ENV list: the defaults)
set -uo pipefail
. "$(dirname "$0")/gpu-env.sh"
start_models
# decode_host: ms per token after the first one — wall / record / GPU wait / read-back / the rest (bench --json).
host() { python3 -c "
import json,sys; h=json.load(open(sys.argv[1])).get('decode_host') or {}
print(' / '.join('%.3f' % h[k] if k in h else '-' for k in ('ms_per_token','record','gpu_wait','download','rest'))
      + ' (record: ops %.3f, dispatch %s, %d dispatches; %s steps skipped their ops)' % (h.get('record_ops', 0), '%.3f' % h['record_dispatch'] if h.get('record_dispatch') else '-', h.get('dispatches_per_token', 0), h.get('skipped_steps', '-')))" "$1" 2>/dev/null || echo "-"; }
echo "| config | round | decode after 512 tok/s | its ms/token: wall / record / GPU wait / read-back / rest | prefill 512 tok/s | tg128 tok/s | tg128 ms/token: wall / record / GPU wait / read-back / rest |" > "$out/b1.md"
echo "| --- | ---: | ---: | --- | ---: | ---: | --- |" >> "$out/b1.md"
for r in $(seq 1 "${ROUNDS:-3}"); do
  for cfg in $CONFIGS; do
    IFS='|' read -r name envs <<< "$cfg"; envs=${envs//,/ }
    a="$out/b1-$name-$r.json"; b="$out/tg-$name-$r.json"
    env $envs timeout 60 $S bench --model /tmp/7b.gguf --backend vulkan --prompt-tokens 512 --gen-tokens 128 --ctx 2048 --json > "$a" 2> "$a.err"
    env $envs timeout 60 $S bench --model /tmp/7b.gguf --backend vulkan --prompt-tokens 1 --gen-tokens 128 --ctx 2048 --json > "$b" 2> "$b.err"
    echo "| $name | $r | $(field $a decode_tokens_per_s) | $(host $a) | $(field $a prefill_tokens_per_s) | $(field $b decode_tokens_per_s) | $(host $b) |" >> "$out/b1.md"
  done
done
echo "bench done: $(( $(date +%s) - t0 )) s" | tee -a "$out/gpu.txt"
set -- $CONFIGS
first=${1#*|}; last=${!#}; last=${last#*|}
[ "${PARITY:-1}" != 0 ] && logits_parity "$first" "$last"
[ "${PROFILE:-1}" != 0 ] && env ${last//,/ } timeout 60 $S bench --model /tmp/7b.gguf --backend vulkan --prompt-tokens 512 \
  --gen-tokens 64 --ctx 2048 --profile > "$out/profile.txt" 2>&1
echo "end: $(( $(date +%s) - t0 )) s" | tee -a "$out/gpu.txt"
cd "$out" && tar czf logs.tgz *.json *.err 2>/dev/null; rm -f "$out"/*.json "$out"/*.err
echo; cat "$out/parity.txt" 2>/dev/null; echo; cat "$out/b1.md"
grep -iE "^decode|prefetch|matvec q8x sg q4_K 4096x4096|attn_decode" "$out/profile.txt" 2>/dev/null | head -12
