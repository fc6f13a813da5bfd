#version 450
// Out = silu(G) * U elementwise over `count` values (Out may alias G).
#include "common.glsl"
layout(std430, binding = 0) readonly buffer GBuf { float G[]; };
layout(std430, binding = 1) readonly buffer UBuf { float U[]; };
layout(std430, binding = 2) writeonly buffer OBuf { float O[]; };
layout(push_constant) uniform Params { uint count; } p;

void main() {
    const uint i = flat_group() * WG + gl_LocalInvocationID.x;
    if (i >= p.count) return;
    const float x = G[i];
    O[i] = x / (1.0 + exp(-x)) * U[i];
}
