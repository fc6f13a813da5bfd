#!/usr/bin/env bash
# The main job for a newcomer: install, build, fetch the default model (SmolLM2-135M), launch two shard
# worker processes in the background, generate through them, and stop them.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
swift build -c release --product shardctl
swift build -c release --product shard-worker
model=$(scripts/fetch-models.sh smollm2)
bin=.build/release
$bin/shardctl stop >/dev/null 2>&1 || true
$bin/shardctl launch --model "$model" --shards 2
trap '$bin/shardctl stop' EXIT
$bin/shardctl generate --chat --prompt "${1:-Write a haiku about the sea.}" --max-tokens 64 --temperature 0
