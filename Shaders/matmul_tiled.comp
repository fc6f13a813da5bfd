#version 450
// Y[c][row] = W[row] . X[c] (+ bias[row]) for prefill and batches: one workgroup (256 invocations) per
// tile of 64 weight rows × 64 columns, stepping over K by 32: the W tile is dequantized into shared
// memory once per step (dq4, the same arithmetic as Dequant.row, 4 consecutive k per vec4) and the X
// tile staged beside it; invocation (tx, ty) accumulates rows tx + 16i and columns ty + 16j (i, j < 4)
// in f32 registers (fully unrolled: no register array is indexed at run time). Rows are padded by one
// vec4 in shared memory so that 8 consecutive rows hit distinct banks. Odd sizes: rows and columns
// past the end are clamped on load and skipped on store; K must be a multiple of 4 (and of the block
// for quantized types).
#extension GL_EXT_control_flow_attributes : require
#include "common.glsl"
layout(std430, binding = 0) readonly buffer WBuf { uint W[]; };
#include "dequant.glsl"
layout(std430, binding = 1) readonly buffer XBuf { vec4 X[]; };
layout(std430, binding = 2) writeonly buffer YBuf { float Y[]; };
layout(std430, binding = 3) readonly buffer BBuf { float Bias[]; };
layout(std430, binding = 4) buffer ResBuf { float Res[]; };
// flags: bit 0 adds Bias[row]; bit 1 also adds the result into Res (a fused residual add).
layout(push_constant) uniform Params { uint M, K, N, rowBytes, flags; } p;

#define TM 64u
#define TN 64u
#define TG 8u          // groups of 4 k per step (32 k)
#define STRIDE 9u      // TG + 1 vec4 of padding per row
shared vec4 Wsh[TM * STRIDE];
shared vec4 Xsh[TN * STRIDE];

void main() {
    // WG must be 256 (16 × 16 invocations); the host checks.
    const uint tid = gl_LocalInvocationID.x, tx = tid & 15u, ty = tid >> 4;
    const uint row0 = gl_WorkGroupID.x * TM, col0 = gl_WorkGroupID.y * TN;
    float acc[4][4];
    [[unroll]] for (uint i = 0u; i < 4u; i++) [[unroll]] for (uint j = 0u; j < 4u; j++) acc[i][j] = 0.0;
    const uint groups = BS / 4u;
    // This invocation's two loads per tile: element e = tid + 256 s → (row or column e / 8, group e % 8).
    const uint lr0 = tid >> 3, lg = tid & 7u, lr1 = lr0 + 32u;
    const uint wrow0 = min(row0 + lr0, p.M - 1u), wrow1 = min(row0 + lr1, p.M - 1u);
    const uint xcol0 = min(col0 + lr0, p.N - 1u), xcol1 = min(col0 + lr1, p.N - 1u);
    for (uint k0 = 0u; k0 < p.K; k0 += 4u * TG) {
        const uint k = k0 + 4u * lg;
        vec4 w0 = vec4(0.0), w1 = vec4(0.0), x0 = vec4(0.0), x1 = vec4(0.0);
        if (k < p.K) {
            const uint kg = k / 4u, blk = kg / groups, i = (kg - blk * groups) * 4u;
            w0 = dq4(wrow0 * p.rowBytes + blk * BB, i);
            w1 = dq4(wrow1 * p.rowBytes + blk * BB, i);
            x0 = X[(xcol0 * p.K + k) / 4u];
            x1 = X[(xcol1 * p.K + k) / 4u];
        }
        Wsh[lr0 * STRIDE + lg] = w0;
        Wsh[lr1 * STRIDE + lg] = w1;
        Xsh[lr0 * STRIDE + lg] = x0;
        Xsh[lr1 * STRIDE + lg] = x1;
        barrier();
        // Each step's 32 products are summed apart and then added (blocked summation: the rounding
        // error grows with 32 + K/32 terms rather than K, closer to the CPU's exact per-block int8 sums).
        float part[4][4];
        [[unroll]] for (uint i = 0u; i < 4u; i++) [[unroll]] for (uint j = 0u; j < 4u; j++) part[i][j] = 0.0;
        [[unroll]] for (uint g = 0u; g < TG; g++) {
            vec4 a[4], b[4];
            [[unroll]] for (uint i = 0u; i < 4u; i++) a[i] = Wsh[(tx + 16u * i) * STRIDE + g];
            [[unroll]] for (uint j = 0u; j < 4u; j++) b[j] = Xsh[(ty + 16u * j) * STRIDE + g];
            [[unroll]] for (uint i = 0u; i < 4u; i++)
                [[unroll]] for (uint j = 0u; j < 4u; j++) part[i][j] += dot(a[i], b[j]);
        }
        [[unroll]] for (uint i = 0u; i < 4u; i++) [[unroll]] for (uint j = 0u; j < 4u; j++) acc[i][j] += part[i][j];
        barrier();
    }
    [[unroll]] for (uint i = 0u; i < 4u; i++) {
        const uint row = row0 + tx + 16u * i;
        const float bias = row < p.M && (p.flags & 1u) != 0u ? Bias[row] : 0.0;
        [[unroll]] for (uint j = 0u; j < 4u; j++) {
            const uint col = col0 + ty + 16u * j;
            if (row < p.M && col < p.N) {
                const float v = acc[i][j] + bias;
                Y[col * p.M + row] = v;
                if ((p.flags & 2u) != 0u) Res[col * p.M + row] += v;
            }
        }
    }
}
