#!/usr/bin/env bash
# On the lent GPU machine (its CPU cores only): the chained-decode A/B (scripts/chain-ab.sh) on a
# synthetic model of SmolLM2-135M's shape (Q4_0; the real file exceeds the carry limit), 2 threads per
# process, pinned to 2 cores as the 2-core VM (PIN, default 0,1) and, with UNPINNED=1, unpinned; then
# SHARD_TRACE runs of the chain and of SHARD_CHAIN=0, pinned. Logs tarred into $OUT.
#   device run, carry [".gl", ".gpu-spec"]:  OUT=$OUT BUNDLE=.gpu-spec ROUNDS=6 bash .gpu-spec/gpu-chain-ab.sh
here="$(cd "$(dirname "$0")" && pwd)"
source "$here/gpu-env.sh"
cat > /tmp/shardctl <<SH
#!/bin/sh
exec "$(pwd)/$bundle/run.sh" shardctl "\$@"
SH
chmod +x /tmp/shardctl
pin=${PIN:-0,1}
{ lscpu | grep -E 'Model name|^CPU\(s\)|Thread'; lscpu -e=CPU,CORE,SOCKET | head -5; uptime; } > "$out/host.txt"
/tmp/shardctl synth --arch llama --preset 135m --quant q4_0 --out /tmp/smol.gguf >> "$out/host.txt" 2>&1
export BIN=/tmp/shardctl MODEL=/tmp/smol.gguf ROUNDS=${ROUNDS:-6}
PIN=$pin LOG=$out/pinned.log bash "$here/chain-ab.sh" > "$out/pinned.txt" 2>&1
[ -n "${UNPINNED:-}" ] && LOG=$out/unpinned.log bash "$here/chain-ab.sh" > "$out/unpinned.txt" 2>&1
for v in chain nochain; do
  rm -f /tmp/tr-$v.*
  c=1; [ $v = nochain ] && c=0
  SHARD_CHAIN=$c SHARD_TRACE=/tmp/tr-$v SHARD_THREADS=2 taskset -c $pin /tmp/shardctl bench --model /tmp/smol.gguf --backend cpu --shards 2 \
      --prompt-tokens 64 --gen-tokens 256 --json > "$out/trace-$v.json" 2>&1
  python3 "$here/step-trace.py" /tmp/tr-$v > "$out/trace-$v.txt" 2>&1
done
cd "$out" && tar czf logs.tgz *.log *.json && rm -f *.log *.json
cat "$out"/host.txt "$out"/pinned.txt "$out"/unpinned.txt "$out"/trace-*.txt 2>/dev/null
