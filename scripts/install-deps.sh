#!/usr/bin/env bash
# Installs what building and testing Shard needs on Debian 12 (run as root or with sudo available).
# The Swift 6 toolchain itself comes from swift.org; this script checks for it.
set -euo pipefail
command -v swift >/dev/null || { echo "error: swift not found: install the Swift 6 toolchain (swift.org) and put it on PATH" >&2; exit 1; }
sudo=""; [[ $(id -u) -eq 0 ]] || sudo=sudo
# Vulkan loader + headers, lavapipe (a CPU Vulkan driver: the real shaders run where there is no GPU),
# glslc (shader compiler, to check the committed SPIR-V), ZeroMQ and protobuf-c.
# curl checks the server's raw SSE framing in tests.
pkgs=(python3 python3-pip unzip ca-certificates curl libvulkan-dev mesa-vulkan-drivers glslc
      libzmq3-dev libprotobuf-c-dev protobuf-c-compiler)
missing=()
for p in "${pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if ((${#missing[@]})); then
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}"
fi
# The server tests drive `shardctl serve` with the real OpenAI client and parse /metrics with
# prometheus_client's text parser.
if ! python3 -c "import openai, prometheus_client" 2>/dev/null; then
  python3 -m pip install --quiet --disable-pip-version-check openai prometheus-client 2>/dev/null \
    || python3 -m pip install --quiet --disable-pip-version-check --break-system-packages openai prometheus-client
fi
