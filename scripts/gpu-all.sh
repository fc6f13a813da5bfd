#!/usr/bin/env bash
# Runs ON a lent machine with 2 GPUs (kind nvidia-h200-x2 or nvidia-h100-x2; carry .gl and the bundle): the
# numbers issues 3, 4 and 5 name, in one call, on the synthetic 7B Q4_K_M, and prints one summary.
#   run: OUT=$OUT bash scripts/gpu-all.sh        env: BUNDLE (default .gpu), LIST (streams, default "4 16 64"),
#   QUICK=1 (when device time is short: no cold runs, VRAM or profile; one warm batch-1 run and the 2-GPU one)
# - issue 3: parity (greedy tokens of the tiny models, top-5 logits of the 7B after a 28-word prompt, vs
#   the CPU), batch-1 prefill of 512 + decode of 128 tokens, cold (--warmup 0: a fresh process's first
#   prompt, as BENCHMARKS.md measured before) and warm (--warmup 1, as llama-bench does), two runs each;
#   decode of 128 tokens from an empty context (a 1-token prompt: llama-bench's tg128), twice;
#   peak VRAM during a cold run.
# - issue 4: batch 1 with 2 shard processes on 1 GPU and on 2 GPUs against 1 shard.
# - issue 5: aggregate decode at LIST streams on 1 GPU and as 2 shards on 2 GPUs.
set -uo pipefail
. "$(dirname "$0")/gpu-env.sh"   # $out, $bundle, $S; the Vulkan loader and NVIDIA ICD
gpus=$(nvidia-smi -L | wc -l)
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/gpu.txt"
synth_models || exit 1

# Parity.
parity="$(tiny_parity 16 | sed 's/^generate //' | tr '\n' ';') "
long="the quick brown fox jumps over the lazy dog while the cat sleeps in the warm sun and the birds sing in the tall trees by the river"
c=$($S logits --model /tmp/7b.gguf --prompt "$long" --top 5 --backend cpu 2>&1); v=$($S logits --model /tmp/7b.gguf --prompt "$long" --top 5 --backend vulkan 2>&1)
echo "$c" > "$out/logits-cpu.json"; echo "$v" > "$out/logits-vk.json"
parity+="7b: $(topk_parity "$c" "$v")"

# Issue 3 (and issue 4's batch-1 shard runs).
B="--model /tmp/7b.gguf --backend vulkan --prompt-tokens 512 --gen-tokens 128 --ctx 2048 --json"
if [ "${QUICK:-0}" = 0 ]; then
  # Peak VRAM during the cold run.
  ( while true; do nvidia-smi -i 0 --query-gpu=memory.used --format=csv,noheader,nounits; sleep 0.2; done ) > "$out/vram.txt" 2>/dev/null &
  smi=$!
  $S bench $B --warmup 0 > "$out/b1-cold-1.json" 2>>"$out/err.txt"
  kill $smi 2>/dev/null
  for r in cold-2:0 warm-1:1 warm-2:1; do $S bench $B --warmup ${r#*:} > "$out/b1-${r%:*}.json" 2>>"$out/err.txt"; done
  $S bench $B --profile > /dev/null 2> "$out/profile.txt"
  $S bench $B --shards 2 > "$out/b1-2proc-1gpu.json" 2>>"$out/err.txt"
else
  $S bench $B > "$out/b1-warm-1.json" 2>>"$out/err.txt"
fi
[ "$gpus" -ge 2 ] && $S bench $B --shards 2 --devices 0,1 > "$out/b1-2proc-2gpu.json" 2>>"$out/err.txt"
$S bench $B > "$out/b1-warm-3.json" 2>>"$out/err.txt"
# llama-bench's tg128 generates 128 tokens from an empty context; the runs above decode after a 512-token prompt.
for r in 1 2; do $S bench --model /tmp/7b.gguf --backend vulkan --prompt-tokens 1 --gen-tokens 128 --ctx 2048 --json > "$out/b1-tg128-$r.json" 2>>"$out/err.txt"; done

# Issue 5.
echo "| run | streams | aggregate decode tok/s | steady decode tok/s | TTFT p50 ms | ITL p50 / p99 ms | GPU wait ms/step |" > "$out/conc.md"
echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: |" >> "$out/conc.md"
runs=("1 GPU|--shards 1")
[ "$gpus" -ge 2 ] && runs+=("2 shards, 2 GPUs|--shards 2 --devices 0,1")
for r in "${runs[@]}"; do
  IFS='|' read -r name args <<< "$r"
  for c in ${LIST:-4 16 64}; do
    f="$out/conc-${name//[ ,]/_}-$c.json"
    timeout 200 $S bench --model /tmp/7b.gguf --backend vulkan $args --concurrency $c --prompt-tokens 128 --gen-tokens 128 --ctx 2048 --json > "$f" 2>>"$out/err.txt"
    gw=$(python3 -c "import json,sys; d=json.load(open(sys.argv[1])); n=d.get('steps',0); print('%.2f' % (1000*d['vulkan_gpu_wait_seconds']/n) if n else '-')" "$f" 2>/dev/null || echo -)
    echo "| $name | $c | $(field $f aggregate_decode_tokens_per_s) | $(field $f steady_decode_tokens_per_s) | $(field $f ttft_ms_p50) | $(field $f itl_ms_p50) / $(field $f itl_ms_p99) | $gw |" >> "$out/conc.md"
  done
done

echo
grep -A14 "^decode:" "$out/profile.txt" | head -16
echo "parity: $parity"
[ -f "$out/vram.txt" ] && echo "peak VRAM (MiB, GPU 0, cold 1-shard run): $(sort -n $out/vram.txt | tail -1)"
echo "| batch-1 run | prefill tok/s | decode tok/s | load s |"
echo "| --- | ---: | ---: | ---: |"
for r in cold-1 cold-2 warm-1 warm-2 warm-3 tg128-1 tg128-2 2proc-1gpu 2proc-2gpu; do
  f="$out/b1-$r.json"; [ -f "$f" ] && echo "| $r | $(field $f prefill_tokens_per_s) | $(field $f decode_tokens_per_s) | $(field $f load_seconds) |"
done
echo
cat "$out/conc.md"
tail -5 "$out/err.txt" 2>/dev/null
cd "$out" && tar czf logs.tgz --remove-files *.json *.txt 2>/dev/null; true
