#!/usr/bin/env bash
# Issue 4 A/B of chained greedy decode: decode tok/s of 1 shard / 2 shard processes with the chain (the
# default) / 2 shard processes with SHARD_CHAIN=0, alternating round by round; prints each round, the
# median tok/s and the median of the per-round ratios to 1 shard.
#   ROUNDS=6 GEN=128 PROMPT=64 [PIN=0,1] [BIN=shardctl] [MODEL=...] scripts/chain-ab.sh [extra bench flags]
# PIN runs every process under `taskset -c PIN` (e.g. 2 cores of a larger host, as the 2-core VM).
# VARIANTS (below) picks other variants, e.g. with SHARD_POOL_PARK=0.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.build/release/shardctl}
M=${MODEL:-models/SmolLM2-135M-Instruct.Q4_1.gguf}
ROUNDS=${ROUNDS:-6}
LOG=${LOG:-/tmp/chain-ab.$$.log}
pin=()
[ -n "${PIN:-}" ] && pin=(taskset -c "$PIN")
: > "$LOG"
run() {  # label, env..., -- bench args
    local label=$1; shift
    local envs=()
    while [ "$1" != "--" ]; do envs+=("$1"); shift; done; shift
    local out
    out=$(env SHARD_THREADS="${THREADS:-2}" ${envs[@]+"${envs[@]}"} ${pin[@]+"${pin[@]}"} $BIN bench --model "$M" --backend cpu --prompt-tokens "${PROMPT:-64}" --gen-tokens "${GEN:-128}" --json "$@")
    local tps
    tps=$(echo "$out" | python3 -c 'import json,sys; d=json.loads(sys.stdin.read()); print(d["decode_tokens_per_s"], d.get("activation_link","-"))')
    echo "$r $label $tps" | tee -a "$LOG"
}
# VARIANTS: "label:shards:ENV=V,ENV=V …" (default: 1 shard, the chain forced on, forced off).
VARIANTS=${VARIANTS:-"one:1:SHARD_CHAIN= chain:2:SHARD_CHAIN=1 nochain:2:SHARD_CHAIN=0"}
for r in $(seq 1 "$ROUNDS"); do
    echo "# round $r, $(uptime | sed 's/.*load/load/')" | tee -a "$LOG"
    for v in $VARIANTS; do
        IFS=: read -r label shards envs <<< "$v"
        run "$label" $(echo "$envs" | tr ',' ' ') -- --shards "$shards" "$@"
    done
done
python3 - "$LOG" <<'PY'
import collections, statistics, sys
rounds = collections.defaultdict(dict)
for line in open(sys.argv[1]):
    if line.startswith('#'): continue
    r, label, tps, link = line.split()
    rounds[int(r)][label] = float(tps)
print(f'{"variant":8} {"median tok/s":>12} {"best":>8} {"median ratio to 1 shard":>24} {"per-round ratios"}')
labels = list(dict.fromkeys(label for d in rounds.values() for label in d))
for label in labels:
    v = [d[label] for d in rounds.values() if label in d]
    ratios = [d[label] / d['one'] for d in rounds.values() if label in d and 'one' in d]
    print(f'{label:8} {statistics.median(v):12.1f} {max(v):8.1f} {statistics.median(ratios):24.3f} {" ".join(f"{x:.3f}" for x in ratios)}')
ratios = [d['chain'] / d['nochain'] for d in rounds.values() if 'chain' in d and 'nochain' in d]
if ratios: print(f'chain / nochain per round: median {statistics.median(ratios):.3f}')
ratios = [d['link'] / d['zmq'] for d in rounds.values() if 'link' in d and 'zmq' in d]
if ratios: print(f'link / zmq per round: median {statistics.median(ratios):.3f}')
PY
