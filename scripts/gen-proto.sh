#!/usr/bin/env bash
# Regenerates the protobuf-c code for the wire protocol: Proto/shard.proto -> Sources/CShardProto.
#
#   scripts/gen-proto.sh           regenerate (after editing Proto/shard.proto; commit both)
#   scripts/gen-proto.sh --check   exit 1 if the committed code differs from what protoc-c generates now
#
# The generated C is committed so that building needs only libprotobuf-c (the runtime library), not
# protoc-c: the GPU machine and fresh CI images have no protobuf compiler. protoc-c (Debian package
# protobuf-c-compiler, 1.4.x) is self-contained: it does not need Google's `protoc` on PATH.
# WireTests.generatedCodeIsCurrent runs `--check` when protoc-c is installed and skips otherwise, so CI
# with protobuf-c-compiler catches a .proto edited without regenerating. Output depends on the
# protoc-c version (its number is in the generated header's version check); regenerate with 1.4.1.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v protoc-c >/dev/null || { echo "error: protoc-c not found (apt-get install protobuf-c-compiler)" >&2; exit 2; }

out=Sources/CShardProto
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
protoc-c --proto_path=Proto --c_out="$tmp" Proto/shard.proto

if [[ ${1:-} == --check ]]; then
  if cmp -s "$tmp/shard.pb-c.c" "$out/shard.pb-c.c" && cmp -s "$tmp/shard.pb-c.h" "$out/include/shard.pb-c.h"; then
    echo "Sources/CShardProto is current with Proto/shard.proto ($(protoc-c --version | head -1))"
  else
    echo "error: Sources/CShardProto is stale: run scripts/gen-proto.sh and commit the result" >&2
    diff -u "$out/include/shard.pb-c.h" "$tmp/shard.pb-c.h" | head -40 >&2 || true
    exit 1
  fi
else
  cp "$tmp/shard.pb-c.c" "$out/shard.pb-c.c"
  cp "$tmp/shard.pb-c.h" "$out/include/shard.pb-c.h"
  echo "regenerated $out from Proto/shard.proto"
fi
