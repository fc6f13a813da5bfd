#!/usr/bin/env bash
# Installs what building and testing Shard needs on Debian 12 (run as root or with sudo available).
# The Swift 6 toolchain itself comes from swift.org; this script checks for it.
set -euo pipefail
command -v swift >/dev/null || { echo "error: swift not found: install the Swift 6 toolchain (swift.org) and put it on PATH" >&2; exit 1; }
sudo=""; [[ $(id -u) -eq 0 ]] || sudo=sudo
# Vulkan loader + headers, lavapipe (a CPU Vulkan driver: the real shaders run where there is no GPU),
# glslc (shader compiler, to check the committed SPIR-V), ZeroMQ and protobuf-c.
pkgs=(python3 python3-pip unzip ca-certificates libvulkan-dev mesa-vulkan-drivers glslc
      libzmq3-dev libprotobuf-c-dev protobuf-c-compiler)
missing=()
for p in "${pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if ((${#missing[@]})); then
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}"
fi
