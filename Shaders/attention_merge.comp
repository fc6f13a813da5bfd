#version 450
// Combines attention's split partials of one (row, head) per workgroup: with M the largest of the
// splits' maxima, O = sum_s exp(M_s - M) acc_s / sum_s exp(M_s - M) S_s (empty splits: M_s = -inf).
// The split weights are computed once (one invocation per split) and kept in shared memory.
#include "common.glsl"
layout(std430, binding = 0) readonly buffer PBuf { float Part[]; };
layout(std430, binding = 1) writeonly buffer OBuf { float O[]; };
layout(push_constant) uniform Params { uint heads, headDim, splits, qCols, partBase; } p;

shared float wsh[1024];

void main() {
    const uint h = gl_WorkGroupID.x, r = gl_WorkGroupID.y, tid = gl_LocalInvocationID.x;
    const uint stride = p.headDim + 2u, base = p.partBase + (r * p.heads + h) * p.splits * stride;
    float m = -1.0 / 0.0;
    for (uint s = tid; s < p.splits; s += WG) m = max(m, Part[base + s * stride]);
    const float M = wg_max(m);
    float S = 0.0;
    for (uint s = tid; s < p.splits; s += WG) {
        const float ms = Part[base + s * stride];
        const float w = ms != -1.0 / 0.0 ? exp(ms - M) : 0.0;
        wsh[s] = w;
        S += w * Part[base + s * stride + 1u];
    }
    S = wg_sum(S);   // its barriers also publish wsh
    barrier();
    const float inv = 1.0 / S;
    for (uint d = tid; d < p.headDim; d += WG) {
        float a = 0.0;
        for (uint s = 0u; s < p.splits; s++) {
            const float w = wsh[s];
            if (w != 0.0) a += w * Part[base + s * stride + 2u + d];
        }
        O[r * p.qCols + h * p.headDim + d] = a * inv;
    }
}
