#version 450
// Combines attention.comp's split partials of one (row, head) per workgroup: with M the largest of the
// splits' maxima, O = sum_s exp(M_s - M) acc_s / sum_s exp(M_s - M) S_s (empty splits: M_s = -inf).
#include "common.glsl"
layout(std430, binding = 0) readonly buffer PBuf { float Part[]; };
layout(std430, binding = 1) writeonly buffer OBuf { float O[]; };
layout(push_constant) uniform Params { uint heads, headDim, splits, qCols, partBase; } p;

void main() {
    const uint h = gl_WorkGroupID.x, r = gl_WorkGroupID.y;
    const uint stride = p.headDim + 2u, base = p.partBase + (r * p.heads + h) * p.splits * stride;
    float M = -1.0 / 0.0;
    for (uint s = 0u; s < p.splits; s++) M = max(M, Part[base + s * stride]);
    float S = 0.0;
    for (uint s = 0u; s < p.splits; s++) {
        const float m = Part[base + s * stride];
        if (m != -1.0 / 0.0) S += exp(m - M) * Part[base + s * stride + 1u];
    }
    const float inv = 1.0 / S;
    for (uint d = gl_LocalInvocationID.x; d < p.headDim; d += WG) {
        float a = 0.0;
        for (uint s = 0u; s < p.splits; s++) {
            const float m = Part[base + s * stride];
            if (m != -1.0 / 0.0) a += exp(m - M) * Part[base + s * stride + 2u + d];
        }
        O[r * p.qCols + h * p.headDim + d] = a * inv;
    }
}
