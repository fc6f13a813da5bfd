#version 450
// Out[r] = X[r] / sqrt(mean(X[r]^2) + eps) * Wt. One workgroup per row; X and Out may alias.
#include "common.glsl"
layout(std430, binding = 0) readonly buffer XBuf { float X[]; };
layout(std430, binding = 1) readonly buffer WBuf { float Wt[]; };
layout(std430, binding = 2) writeonly buffer OBuf { float O[]; };
layout(push_constant) uniform Params { uint n; float eps; } p;

void main() {
    const uint base = gl_WorkGroupID.x * p.n;
    float s = 0.0;
    for (uint i = gl_LocalInvocationID.x; i < p.n; i += WG) { const float v = X[base + i]; s += v * v; }
    s = wg_sum(s);
    const float scale = 1.0 / sqrt(s / float(p.n) + p.eps);
    for (uint i = gl_LocalInvocationID.x; i < p.n; i += WG) O[base + i] = X[base + i] * scale * Wt[i];
}
