#!/usr/bin/env bash
# On the lent GPU machine (its CPU cores only): issue 4's batch-1 A/B on a synthetic model of SmolLM2-135M's
# shape (the real file exceeds the carry limit), 2 threads per process, alternating rounds: 1 / 2 / 4 shard
# processes unpinned (ROUNDS, default 6), then 1 shard / 2 processes / 2 processes with SHARD_PIN_THREADS=1
# pinned to 2 cores like the 2-core VM (PIN_ROUNDS, default 4). Prints scripts/chain-ab.sh's summaries.
#   device run, carry [".gl", ".gpu"]:  OUT=$OUT bash scripts/gpu-issue4.sh
here="$(cd "$(dirname "$0")" && pwd)"
source "$here/gpu-env.sh"
printf '#!/bin/sh\nexec "%s/%s/run.sh" shardctl "$@"\n' "$(pwd)" "$bundle" > /tmp/shardctl && chmod +x /tmp/shardctl
{ lscpu | grep -E 'Model name|^CPU\(s\)'; uptime; } | tee "$out/host.txt"
/tmp/shardctl synth --arch llama --preset 135m --quant ${QUANT:-q4_0} --out /tmp/smol.gguf >/dev/null || exit 1
export BIN=/tmp/shardctl MODEL=/tmp/smol.gguf
ROUNDS=${ROUNDS:-6} VARIANTS="one:1:SHARD_CHAIN= two:2:SHARD_CHAIN= four:4:SHARD_CHAIN=" LOG=$out/unpinned.log \
  bash "$here/chain-ab.sh" 2>&1 | tail -5
ROUNDS=${PIN_ROUNDS:-4} PIN=${PIN:-0,1} VARIANTS="one:1:SHARD_CHAIN= two:2:SHARD_CHAIN= twopin:2:SHARD_PIN_THREADS=1" LOG=$out/pinned.log \
  bash "$here/chain-ab.sh" 2>&1 | tail -5
