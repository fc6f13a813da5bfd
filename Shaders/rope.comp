#version 450
// Rotates pairs of every head of every row in place. cos/sin per (row, pair) come from a table the
// host computes exactly as CPUKernels.rope does (f32 angle recurrence, libm cos/sin).
#include "common.glsl"
layout(std430, binding = 0) buffer XBuf { float X[]; };
layout(std430, binding = 1) readonly buffer TBuf { float Table[]; };  // per row: half cos, then half sin
layout(push_constant) uniform Params { uint rows, heads, headDim, half_, neox, cols, tableOffset; } p;

void main() {
    const uint id = flat_group() * WG + gl_LocalInvocationID.x;
    const uint perRow = p.heads * p.half_;
    if (id >= perRow * p.rows) return;
    const uint r = id / perRow, rem = id - r * perRow, h = rem / p.half_, i = rem - h * p.half_;
    const uint a = p.neox != 0u ? i : 2u * i, b = p.neox != 0u ? i + p.half_ : 2u * i + 1u;
    const uint t = p.tableOffset + r * 2u * p.half_;
    const float c = Table[t + i], s = Table[t + p.half_ + i];
    const uint base = r * p.cols + h * p.headDim;
    const float x0 = X[base + a], x1 = X[base + b];
    X[base + a] = x0 * c - x1 * s;
    X[base + b] = x0 * s + x1 * c;
}
