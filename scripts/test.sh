#!/usr/bin/env bash
# The test command: installs dependencies, fetches the test models, runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/fetch-models.sh >/dev/null
# Vulkan backends in the tests and in the processes they start (shardctl, shard-worker) walk every second repeated
# step anyway and stop on a difference from its recording (VulkanBackend.repeatsOps' checks; the default is every 64th).
export SHARD_VK_SKIP_CHECK=${SHARD_VK_SKIP_CHECK:-2} SHARD_VK_SKIP_STRICT=${SHARD_VK_SKIP_STRICT:-1}
swift test "$@"
