#!/usr/bin/env bash
# The main job for a newcomer: install, build, fetch the default model (SmolLM2-135M), generate through two shards.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
swift build -c release --product shardctl
model=$(scripts/fetch-models.sh smollm2)
.build/release/shardctl generate --model "$model" --chat --prompt "${1:-Write a haiku about the sea.}" --max-tokens 64 --temperature 0 --shards 2
