# Sourced by the scripts/gpu-*.sh that run ON the lent GPU machine, from the project root with .gl/ and
# the bundle carried (a copy of those scripts elsewhere needs this file beside it):
#   $out     OUT, default /tmp/out (created): where the logs go
#   $bundle  BUNDLE, default .gpu: the folder scripts/gpu-bundle.sh built
#   $S       the bundled shardctl
#   topk_parity CPU VK   compares two `shardctl logits --top K` JSON answers: whether the top token is the
#                        same, and the largest |Δlogit| over the CPU's top K (a token the other lacks: 1e9)
#   greedy_tokens M BACKEND N   the token ids of `generate` on model M, greedy, N tokens, after "the quick
#                        brown fox" (stderr is the caller's to redirect)
#   synth_models         the synthetic 7B Q4_K_M (/tmp/7b.gguf) and tiny llama / qwen2 Q4_K_M (/tmp/llama-tiny.gguf,
#                        /tmp/qwen2-tiny.gguf); a non-zero status when the 7B could not be written
#   tiny_parity N        one line per tiny model: "generate <model>: vulkan vs cpu same|DIFF" for N greedy tokens
#                        (the caller's environment, e.g. SHARD_VK_* knobs, applies to both backends)
#   hashes JSON          a short digest of a `bench --concurrency --json` answer's stream_token_hashes ("-" when missing)
#   bench_configs TABLE CONFIGS   CONFIGS "name|ENV=V,ENV=V|streams …;…": for each config and stream count,
#                        bench --concurrency (128 + 128 tokens; bench warms up in its own process first) into
#                        $out/c-NAME-C.json(.err), one row each of the markdown table TABLE (aggregate and steady decode)
#   start_models         the GPU's name into $out/gpu.txt, t0 set, synth_models, its time logged (exits when the 7B failed)
#   logits_parity KNOBS…  the 7B's top-5 logits after a 4-word and a 32-word prompt (and a 50-word one with LONGER=1), CPU against Vulkan under each
#                        KNOBS setting (one word each: "ENV=V,ENV=V"), one line each into $out/parity.txt
#   field JSON KEY       a number of a `--json` answer, one decimal ("-" when missing)
#   step_ms JSON         wall / record / GPU wait ms per step of a `bench --json` answer ("- | - | -")
# and the Vulkan loader and GLVND libraries unpacked from .gl/, with NVIDIA's ICD chosen.
out=${OUT:-/tmp/out}; mkdir -p "$out"
bundle=${BUNDLE:-.gpu}
for f in .gl/*.deb; do dpkg -x "$f" / >/dev/null 2>&1; done; ldconfig
export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
S="$bundle/run.sh shardctl"
topk_parity() {
  python3 -c "
import json,sys
c=json.loads(sys.argv[1]); v=json.loads(sys.argv[2])
print('top1 %s, max |dlogit| of cpu top5 %.4f' % ('same' if c[0]['id']==v[0]['id'] else 'DIFF', max(abs(a['logit']-next((b['logit'] for b in v if b['id']==a['id']), 1e9)) for a in c)))
" "$1" "$2" 2>/dev/null || echo error
}
greedy_tokens() {
  $S generate --model "$1" --prompt "the quick brown fox" --temperature 0 --max-tokens "$3" --json --backend "$2" | grep -o '"token":[0-9]*' | tr '\n' ' '
}
synth_models() {
  $S synth --arch llama --preset 7b --quant q4_k_m --out /tmp/7b.gguf >/dev/null || return 1
  for a in llama qwen2; do $S synth --arch $a --preset tiny --quant q4_k_m --out /tmp/$a-tiny.gguf >/dev/null; done
}
tiny_parity() {
  for m in /tmp/llama-tiny.gguf /tmp/qwen2-tiny.gguf; do
    c=$(greedy_tokens $m cpu "$1" 2>/dev/null); v=$(greedy_tokens $m vulkan "$1" 2>/dev/null)
    echo "generate $(basename $m): vulkan vs cpu $([[ -n $c && $c == "$v" ]] && echo same || echo DIFF)"
  done
}
hashes() { python3 -c "import json,sys,hashlib; d=json.load(open(sys.argv[1])); print(hashlib.sha1(json.dumps(d.get('stream_token_hashes')).encode()).hexdigest()[:10])" "$1" 2>/dev/null || echo "-"; }
bench_configs() {
  echo "| config | streams | aggregate decode tok/s | steady decode tok/s | ITL p50 ms | wall ms/step | record | GPU wait | token hashes |" > "$1"
  echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |" >> "$1"
  local cfgs cfg name envs list c j
  IFS=';' read -ra cfgs <<< "$2"
  for cfg in "${cfgs[@]}"; do
    IFS='|' read -r name envs list <<< "$cfg"; envs=${envs//,/ }
    for c in $list; do
      j="$out/c-$name-$c.json"
      env $envs timeout 100 $S bench --model /tmp/7b.gguf --backend vulkan --concurrency $c --prompt-tokens 128 --gen-tokens 128 --ctx 2048 --json > "$j" 2> "$j.err"
      echo "| $name | $c | $(field $j aggregate_decode_tokens_per_s) | $(field $j steady_decode_tokens_per_s) | $(field $j itl_ms_p50) | $(step_ms $j) | $(hashes $j) |" >> "$1"
    done
    echo "$name done: $(( $(date +%s) - ${t0:-0} )) s" | tee -a "$out/gpu.txt"
  done
}
field() { python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print('%.1f' % d[sys.argv[2]])" "$1" "$2" 2>/dev/null || echo "-"; }
step_ms() { python3 -c "
import json,sys; d=json.load(open(sys.argv[1])); n=float(d.get('steps',0))
print(' | '.join('%.2f' % (1000*d[k]/n) if n else '-' for k in ('wall_seconds','vulkan_record_seconds','vulkan_gpu_wait_seconds')))" "$1" 2>/dev/null || echo "- | - | -"; }
start_models() {
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/gpu.txt"
  t0=$(date +%s)
  synth_models || exit 1
  echo "synth: $(( $(date +%s) - t0 )) s" | tee -a "$out/gpu.txt"
}
logits_parity() {
  local long="the quick brown fox jumps over the lazy dog while the cat sleeps on a warm mat near the old red barn and the farmer walks his two dogs along the river"
  local longer="$long and then they all go home for dinner where the mother has made a big pot of soup"
  local pr c v pe
  for pr in "the quick brown fox" "$long" ${LONGER:+"$longer"}; do
    c=$($S logits --model /tmp/7b.gguf --prompt "$pr" --top 5 --backend cpu 2>&1)
    for pe in "$@"; do
      v=$(env ${pe//,/ } $S logits --model /tmp/7b.gguf --prompt "$pr" --top 5 --backend vulkan 2>&1)
      echo "7b top-5 logits, $(echo $pr | wc -w)-word prompt ($pe): $(topk_parity "$c" "$v")" | tee -a "$out/parity.txt"
    done
  done
}
