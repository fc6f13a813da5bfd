#version 450
// Y[c][row] = W[row] . X[c] (+ bias[row]) for prefill and batches: one workgroup per tile of TM weight
// rows × TN columns, stepping over K by 32: the W tile is dequantized into shared memory once per
// step (dq4, the same arithmetic as Dequant.row) and the X tile staged beside it; each invocation
// accumulates a 4 × 4 block of outputs (f32). Odd sizes: rows and columns past the end are clamped
// on load and skipped on store; K must be a multiple of 4 (and of the block for quantized types).
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
#define TK 32u
// [k][row / 4] and [k][column / 4], as vec4 (4 rows or 4 columns).
shared vec4 Wsh[TK][TM / 4u];
shared vec4 Xsh[TK][TN / 4u];

void main() {
    // WG must be 256 (16 × 16 invocations, 4 × 4 outputs each); the host checks.
    const uint tid = gl_LocalInvocationID.x, tx = tid & 15u, ty = tid >> 4;
    const uint row0 = gl_WorkGroupID.x * TM, col0 = gl_WorkGroupID.y * TN;
    vec4 acc[4];
    for (uint i = 0u; i < 4u; i++) acc[i] = vec4(0.0);
    // Loads: W: 64 rows × 8 groups of 4 k = 512 dq4 → 2 per invocation; X: 64 columns × 8 vec4 → 2.
    const uint groups = BS / 4u;
    for (uint k0 = 0u; k0 < p.K; k0 += TK) {
        for (uint e = tid; e < TM * (TK / 4u); e += 256u) {
            const uint r = e >> 3, g = e & 7u;          // tile row, group of 4 k
            const uint k = k0 + 4u * g;
            const uint row = min(row0 + r, p.M - 1u);
            vec4 w = vec4(0.0);
            if (k < p.K) {
                const uint kg = k / 4u, blk = kg / groups;
                w = dq4(row * p.rowBytes + blk * BB, (kg - blk * groups) * 4u);
            }
            // scatter the 4 k values of row r into Wsh[4g + j][r / 4].component(r % 4)
            Wsh[4u * g + 0u][r >> 2][r & 3u] = w.x;
            Wsh[4u * g + 1u][r >> 2][r & 3u] = w.y;
            Wsh[4u * g + 2u][r >> 2][r & 3u] = w.z;
            Wsh[4u * g + 3u][r >> 2][r & 3u] = w.w;
        }
        for (uint e = tid; e < TN * (TK / 4u); e += 256u) {
            const uint c = e >> 3, g = e & 7u;
            const uint k = k0 + 4u * g;
            const uint col = min(col0 + c, p.N - 1u);
            const vec4 x = k < p.K ? X[(col * p.K + k) / 4u] : vec4(0.0);
            Xsh[4u * g + 0u][c >> 2][c & 3u] = x.x;
            Xsh[4u * g + 1u][c >> 2][c & 3u] = x.y;
            Xsh[4u * g + 2u][c >> 2][c & 3u] = x.z;
            Xsh[4u * g + 3u][c >> 2][c & 3u] = x.w;
        }
        barrier();
        for (uint kk = 0u; kk < TK; kk++) {
            const vec4 a = Wsh[kk][ty], b = Xsh[kk][tx];
            acc[0] += a.x * b; acc[1] += a.y * b; acc[2] += a.z * b; acc[3] += a.w * b;
        }
        barrier();
    }
    for (uint i = 0u; i < 4u; i++) {
        const uint row = row0 + 4u * ty + i;
        if (row >= p.M) continue;
        const float bias = (p.flags & 1u) != 0u ? Bias[row] : 0.0;
        for (uint j = 0u; j < 4u; j++) {
            const uint col = col0 + 4u * tx + j;
            if (col >= p.N) continue;
            const float v = acc[i][j] + bias;
            Y[col * p.M + row] = v;
            if ((p.flags & 2u) != 0u) Res[col * p.M + row] += v;
        }
    }
}
