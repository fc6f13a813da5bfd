#version 450
// Y[c][row] = W[row] . X[c] (+ bias[row]) for columns c < N. W: M rows of K values in a ggml block
// layout (TYPE_*), X: N rows of K f32. One workgroup per weight row and NC columns: each invocation
// dequantizes 4 weights at a time and applies them to every column of its group (the dequantized
// weights are reused across columns); partial sums are reduced with subgroup arithmetic.
#include "common.glsl"
layout(std430, binding = 0) readonly buffer WBuf { uint W[]; };
#include "dequant.glsl"
layout(std430, binding = 1) readonly buffer XBuf { vec4 X[]; };
layout(std430, binding = 2) writeonly buffer YBuf { float Y[]; };
layout(std430, binding = 3) readonly buffer BBuf { float Bias[]; };
layout(std430, binding = 4) buffer ResBuf { float Res[]; };
// flags: bit 0 adds Bias[row]; bit 1 also adds the result into Res (a fused residual add).
layout(push_constant) uniform Params { uint M, K, N, rowBytes, flags; } p;

#define NC 8u

void main() {
    const uint row = flat_group();
    if (row >= p.M) return;
    const uint col0 = gl_WorkGroupID.z * NC;
    const uint ncols = min(NC, p.N - col0);
    const uint groups = BS / 4u;
    const uint total = p.K / 4u;
    const uint rowOff = row * p.rowBytes;
    float acc[NC];
    for (uint c = 0u; c < NC; c++) acc[c] = 0.0;
    for (uint g = gl_LocalInvocationID.x; g < total; g += WG) {
        const uint blk = g / groups;
        const vec4 w = dq4(rowOff + blk * BB, (g - blk * groups) * 4u);
        for (uint c = 0u; c < NC; c++) {
            if (c < ncols) acc[c] += dot(w, X[(col0 + c) * total + g]);
        }
    }
    const float bias = (p.flags & 1u) != 0u ? Bias[row] : 0.0;
    for (uint c = 0u; c < ncols; c++) {
        const float s = wg_sum(acc[c]);
        if (gl_LocalInvocationID.x == 0u) {
            const float v = s + bias;
            Y[(col0 + c) * p.M + row] = v;
            if ((p.flags & 2u) != 0u) Res[(col0 + c) * p.M + row] += v;
        }
    }
}
