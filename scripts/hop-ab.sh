#!/usr/bin/env bash
# Issue 4 A/B of the activation transport on this host: decode tok/s of 1 shard / 2 shard processes over
# the same-host link / 2 shard processes with SHARD_LINK=zmq, alternating round by round (scripts/chain-ab.sh
# with these variants; the chain's default for this host applies to both 2-process variants).
#   ROUNDS=8 GEN=128 PROMPT=64 scripts/hop-ab.sh [extra bench flags]
VARIANTS="one:1:SHARD_LINK= link:2:SHARD_LINK= zmq:2:SHARD_LINK=zmq" exec "$(dirname "$0")/chain-ab.sh" "$@"
