#version 450
// OUT[row] = the first index of the largest value of row `row` of X (cols values per row; one workgroup
// per row), as GreedyPick.argmax computes it on the host: NaNs never win, and a row whose first value is
// NaN gives 0 (the host's scalar loop starts from element 0 and nothing compares greater than NaN).
#include "common.glsl"
layout(std430, binding = 0) readonly buffer XBuf { float X[]; };
layout(std430, binding = 1) writeonly buffer OutBuf { int OUT[]; };
layout(push_constant) uniform Params { uint cols; } p;

shared float sv[WG];
shared uint si[WG];

void main() {
    const uint row = flat_group();
    const uint base = row * p.cols;
    const uint lid = gl_LocalInvocationID.x;
    float best = uintBitsToFloat(0xff800000u);   // -inf
    uint at = 0xffffffffu;
    for (uint i = lid; i < p.cols; i += WG) {
        const float v = X[base + i];
        // Strided: a later i of this lane only wins if strictly greater (i increases along the lane).
        if (!isnan(v) && (v > best || at == 0xffffffffu)) { best = v; at = i; }
    }
    sv[lid] = best;
    si[lid] = at;
    barrier();
    for (uint s = WG / 2; s > 0; s >>= 1) {
        if (lid < s) {
            const float v = sv[lid + s];
            const uint j = si[lid + s];
            // Larger value wins; equal values: the lower index (no index: 0xffffffff, never wins a tie).
            if (j != 0xffffffffu && (si[lid] == 0xffffffffu || v > sv[lid] || (v == sv[lid] && j < si[lid]))) {
                sv[lid] = v;
                si[lid] = j;
            }
        }
        barrier();
    }
    if (lid == 0) {
        const uint r = (isnan(X[base]) || si[0] == 0xffffffffu) ? 0u : si[0];
        OUT[row] = int(r);
    }
}
