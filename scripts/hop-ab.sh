#!/usr/bin/env bash
# Issue 4 A/B on this host: decode tok/s of 1 shard / 2 shard processes over the same-host link /
# 2 shard processes with SHARD_LINK=zmq, alternating round by round; prints each round, the median of
# the per-round decode ratios to 1 shard, and the prefill rates.
#   ROUNDS=8 GEN=128 PROMPT=64 scripts/hop-ab.sh [extra bench flags]
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.build/release/shardctl}
M=${MODEL:-models/SmolLM2-135M-Instruct.Q4_1.gguf}
ROUNDS=${ROUNDS:-8}
LOG=${LOG:-/tmp/hop-ab.$$.log}
: > "$LOG"
run() {  # label, env..., -- bench args
    local label=$1; shift
    local envs=()
    while [ "$1" != "--" ]; do envs+=("$1"); shift; done; shift
    local out
    out=$(env SHARD_THREADS="${THREADS:-2}" "${envs[@]}" "$BIN" bench --model "$M" --backend cpu --prompt-tokens "${PROMPT:-64}" --gen-tokens "${GEN:-128}" --json "$@")
    local tps
    tps=$(echo "$out" | python3 -c 'import json,sys; d=json.loads(sys.stdin.read()); print(d["decode_tokens_per_s"], d.get("activation_link","?"), d["prefill_tokens_per_s"])')
    echo "$r $label $tps" | tee -a "$LOG"
}
for r in $(seq 1 "$ROUNDS"); do
    echo "# round $r, $(uptime | sed 's/.*load/load/')" | tee -a "$LOG"
    run one   SHARD_LINK= -- --shards 1 "$@"
    run link  SHARD_LINK= -- --shards 2 "$@"
    run zmq   SHARD_LINK=zmq -- --shards 2 "$@"
done
python3 - "$LOG" <<'EOF'
import collections, statistics, sys
rounds = collections.defaultdict(dict)
prefills = collections.defaultdict(dict)
for line in open(sys.argv[1]):
    if line.startswith('#'): continue
    r, label, tps, link, prefill = line.split()
    rounds[int(r)][label] = float(tps)
    prefills[int(r)][label] = float(prefill)
print(f'{"variant":6} {"median tok/s":>12} {"best":>8} {"median ratio to 1 shard":>24}')
for label in ('one', 'link', 'zmq'):
    v = [d[label] for d in rounds.values() if label in d]
    ratios = [d[label] / d['one'] for d in rounds.values() if label in d and 'one' in d]
    print(f'{label:6} {statistics.median(v):12.1f} {max(v):8.1f} {statistics.median(ratios):24.3f}')
ratios = [d['link'] / d['zmq'] for d in rounds.values() if 'link' in d and 'zmq' in d]
print(f'decode link / zmq per round: median {statistics.median(ratios):.3f}')
for label in ('one', 'link', 'zmq'):
    print(f'prefill {label:5} median {statistics.median([d[label] for d in prefills.values() if label in d]):8.1f} tok/s')
ratios = [d['link'] / d['zmq'] for d in prefills.values() if 'link' in d and 'zmq' in d]
print(f'prefill link / zmq per round: median {statistics.median(ratios):.3f}')
EOF
