# Sourced by the scripts/gpu-*.sh that run ON the lent GPU machine, from the project root with .gl/ and
# the bundle carried (a copy of those scripts elsewhere needs this file beside it):
#   $out     OUT, default /tmp/out (created): where the logs go
#   $bundle  BUNDLE, default .gpu: the folder scripts/gpu-bundle.sh built
#   $S       the bundled shardctl
#   topk_parity CPU VK   compares two `shardctl logits --top K` JSON answers: whether the top token is the
#                        same, and the largest |Δlogit| over the CPU's top K (a token the other lacks: 1e9)
# and the Vulkan loader and GLVND libraries unpacked from .gl/, with NVIDIA's ICD chosen.
out=${OUT:-/tmp/out}; mkdir -p "$out"
bundle=${BUNDLE:-.gpu}
for f in .gl/*.deb; do dpkg -x "$f" / >/dev/null 2>&1; done; ldconfig
export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
S="$bundle/run.sh shardctl"
topk_parity() {
  python3 -c "
import json,sys
c=json.loads(sys.argv[1]); v=json.loads(sys.argv[2])
print('top1 %s, max |dlogit| of cpu top5 %.4f' % ('same' if c[0]['id']==v[0]['id'] else 'DIFF', max(abs(a['logit']-next((b['logit'] for b in v if b['id']==a['id']), 1e9)) for a in c)))
" "$1" "$2" 2>/dev/null || echo error
}
