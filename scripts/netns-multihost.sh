#!/usr/bin/env bash
# Multi-host check on one machine: two shard-workers, each in its own network namespace (its own "host"),
# and the coordinator in a third, linked by veth pairs on a bridge; the coordinator reaches the workers
# over tcp:// only. Prints the generated token ids (one JSON line per token). Needs root and iproute2.
# Usage: scripts/netns-multihost.sh BIN_DIR MODEL [PROMPT] [MAX_TOKENS]
set -euo pipefail
bin=$1 model=$2 prompt=${3:-"The capital of France is"} max=${4:-8}
id=$$ net=10.77.$(( $$ % 200 + 20 ))
C=shc$id W0=shw0$id W1=shw1$id
pids=()
cleanup() {
  # `ip netns exec` runs the worker as its child: stop both (the worker also exits with its parent).
  pkill -f "shard-worker --listen tcp://$net\." 2>/dev/null || true
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for _ in 1 2 3 4 5 6 7 8 9 10; do pgrep -f "shard-worker --listen tcp://$net\." >/dev/null || break; sleep 0.2; done
  pkill -9 -f "shard-worker --listen tcp://$net\." 2>/dev/null || true
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  for n in $C $W0 $W1; do ip netns del "$n" 2>/dev/null || true; done
}
trap cleanup EXIT
ip netns add $C; ip netns add $W0; ip netns add $W1
ip -n $C link add br0 type bridge
ip -n $C addr add $net.1/24 dev br0
ip -n $C link set br0 up; ip -n $C link set lo up
for i in 0 1; do
  W=shw$i$id
  ip link add va$i$id netns $C type veth peer name vb$i netns $W
  ip -n $C link set va$i$id master br0; ip -n $C link set va$i$id up
  ip -n $W addr add $net.$((2 + i))/24 dev vb$i
  ip -n $W link set vb$i up; ip -n $W link set lo up
  ip netns exec $W "$bin/shard-worker" --listen tcp://$net.$((2 + i)):5600 --backend cpu --threads 1 --exit-with-parent &
  pids+=($!)
done
ip netns exec $C "$bin/shardctl" generate --model "$model" --workers tcp://$net.2:5600,tcp://$net.3:5600 \
  --prompt "$prompt" --temperature 0 --max-tokens "$max" --json --threads 1
