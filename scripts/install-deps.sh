#!/usr/bin/env bash
# Installs what building and testing Shard needs on Debian 12 (run as root or with sudo available).
# The Swift 6 toolchain itself comes from swift.org; this script checks for it.
set -euo pipefail
command -v swift >/dev/null || { echo "error: swift not found: install the Swift 6 toolchain (swift.org) and put it on PATH" >&2; exit 1; }
sudo=""; [[ $(id -u) -eq 0 ]] || sudo=sudo
# libzmq3-dev, libprotobuf-c-dev: the Wire module links them. protobuf-c-compiler (protoc-c) is only for
# scripts/gen-proto.sh --check (WireTests.generatedCodeIsCurrent skips without it).
pkgs=(python3 python3-pip unzip ca-certificates libzmq3-dev libprotobuf-c-dev protobuf-c-compiler)
missing=()
for p in "${pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if ((${#missing[@]})); then
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}"
fi
