#!/usr/bin/env bash
# The test command: installs dependencies, fetches the test models, runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/fetch-models.sh >/dev/null
swift test "$@"
