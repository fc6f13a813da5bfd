#!/usr/bin/env bash
# Builds .gpu/: static-stdlib shardctl and shard-worker, the non-glibc shared libraries they need, and
# run.sh, so that the project runs on the lent GPU machine (no Swift there; see ../shared/gpu/README.md).
# Also fetches .gl/ (the Vulkan loader and GLVND packages the NVIDIA driver needs) once.
# On the GPU machine:  for f in .gl/*.deb; do dpkg -x $f /; done; ldconfig;
#                      export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json; .gpu/run.sh shardctl …
set -euo pipefail
cd "$(dirname "$0")/.."
out=${GPU_BUNDLE_DIR:-.gpu}   # e.g. GPU_BUNDLE_DIR=/work/main/.gpu-perf to build into another checkout
if [ -z "${GPU_BUNDLE_DIR:-}" ] && ! ls .gl/*.deb >/dev/null 2>&1; then
  grep -qx '/.gl/' .git/info/exclude 2>/dev/null || echo /.gl/ >> .git/info/exclude
  mkdir -p .gl /tmp/amd64/partial
  o='-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/amd64'
  apt-get $o update -qq
  (cd .gl && apt-get $o download -qq libvulkan1 libglvnd0 libglx0 libegl1 libgl1 libopengl0 libgles2)
fi
swift build -c release --static-swift-stdlib >/dev/null
bin=$(swift build -c release --static-swift-stdlib --show-bin-path)
rm -rf "$out" && mkdir -p "$out/fallback"
# One binary, gzipped (the tree carried to the GPU machine is limited to 64 MiB): run.sh unpacks it
# there on first use and links shard-worker to it (shardctl acts as the worker when called by that name).
cp "$bin/shardctl" "$out/shardctl" && strip "$out/shardctl" && gzip -9f "$out/shardctl"
ldd "$bin/shardctl" | awk '$2 == "=>" && $3 ~ /^\// { print $3 }' | sort -u | while read -r lib; do
  case "$(basename "$lib")" in
    libc.so.*|libm.so.*|libpthread.so.*|libdl.so.*|librt.so.*|libresolv.so.*|ld-linux*|libvulkan.so.*) ;;
    libstdc++.so.*|libgcc_s.so.*) cp -L "$lib" "$out/fallback/" ;;
    *) cp -L "$lib" "$out/" ;;
  esac
done
cat > "$out/run.sh" <<'SH'
#!/bin/sh
# run.sh TOOL ARGS…: runs .gpu/TOOL with the bundled libraries (inherited by worker processes).
here="$(dirname "$(readlink -f "$0")")"
libs="$here"
# The bundled libstdc++/libgcc_s only where the system has none (the GPU driver may need a newer one).
if ! /sbin/ldconfig -p 2>/dev/null | grep -q 'libstdc++\.so\.6 '; then libs="$libs:$here/fallback"; fi
export LD_LIBRARY_PATH="$libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
if [ ! -x "$here/shardctl" ]; then
  gunzip -c "$here/shardctl.gz" > "$here/shardctl.tmp" && chmod +x "$here/shardctl.tmp" && mv "$here/shardctl.tmp" "$here/shardctl"
fi
[ -e "$here/shard-worker" ] || ln -s shardctl "$here/shard-worker"
tool=$1; shift
exec "$here/$tool" "$@"
SH
chmod +x "$out/run.sh"
du -sh "$out"
