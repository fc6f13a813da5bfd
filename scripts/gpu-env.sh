# Sourced by the scripts/gpu-*.sh that run ON the lent GPU machine, from the project root with .gl/ and
# the bundle carried (a copy of those scripts elsewhere needs this file beside it):
#   $out     OUT, default /tmp/out (created): where the logs go
#   $bundle  BUNDLE, default .gpu: the folder scripts/gpu-bundle.sh built
#   $S       the bundled shardctl
# and the Vulkan loader and GLVND libraries unpacked from .gl/, with NVIDIA's ICD chosen.
out=${OUT:-/tmp/out}; mkdir -p "$out"
bundle=${BUNDLE:-.gpu}
for f in .gl/*.deb; do dpkg -x "$f" / >/dev/null 2>&1; done; ldconfig
export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
S="$bundle/run.sh shardctl"
