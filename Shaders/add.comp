#version 450
// X += Y elementwise over `count` values.
#include "common.glsl"
layout(std430, binding = 0) buffer XBuf { float X[]; };
layout(std430, binding = 1) readonly buffer YBuf { float Y[]; };
layout(push_constant) uniform Params { uint count; } p;

void main() {
    const uint i = flat_group() * WG + gl_LocalInvocationID.x;
    if (i >= p.count) return;
    X[i] += Y[i];
}
