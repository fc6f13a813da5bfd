#version 450
// Prefill mat-mat on cooperative matrices (VK_NV_cooperative_matrix, where the device offers the
// 16×16×16 f16·f16 + f32 subgroup shape; matmul_tiled.comp elsewhere): Y[c][row] = W[row] . X[c]
// (+ bias[row]). One workgroup of 4 subgroups per tile of 64 weight rows × 64 columns; per step of 32 k
// the W tile is dequantized (dq4, Dequant.row's arithmetic) and the X tile read, both rounded to f16
// into shared memory; each subgroup multiplies a 32 × 32 quarter (2 × 2 matrices of 16 × 16, f32
// accumulators). The accumulators go through shared memory to the stores (bias, residual, odd edges).
// Numerics: f16 operands (11-bit mantissas) with f32 accumulation, ~1e-3 relative per product, where the
// other paths are exact f32 products.
#extension GL_NV_cooperative_matrix : require
#extension GL_KHR_memory_scope_semantics : require
#extension GL_EXT_shader_explicit_arithmetic_types_float16 : require
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
#define TK 32u
#define AS 40u     // shared row stride in halfs (TK + 8: 80 bytes)
#define CS 68u     // output tile row stride in floats
shared float16_t Ash[TM * AS];   // [row][k]
shared float16_t Bsh[TN * AS];   // [column][k]: B (k × column) column-major
shared float Csh[TM * CS];       // [row][column]

#define F16MAT fcoopmatNV<16, gl_ScopeSubgroup, 16, 16>
#define F32MAT fcoopmatNV<32, gl_ScopeSubgroup, 16, 16>

void main() {
    // WG = 128: 4 subgroups of 32 (the host checks).
    const uint tid = gl_LocalInvocationID.x, sg = gl_SubgroupID;
    const uint sm = (sg & 1u) * 32u, sn = (sg >> 1) * 32u;
    const uint row0 = gl_WorkGroupID.x * TM, col0 = gl_WorkGroupID.y * TN;
    F32MAT c00 = F32MAT(0.0), c01 = F32MAT(0.0), c10 = F32MAT(0.0), c11 = F32MAT(0.0);
    const uint groups = BS / 4u;
    for (uint k0 = 0u; k0 < p.K; k0 += TK) {
        [[unroll]] for (uint s = 0u; s < 4u; s++) {
            const uint e = tid + 128u * s, r = e >> 3, g = e & 7u, k = k0 + 4u * g;
            const uint row = min(row0 + r, p.M - 1u), col = min(col0 + r, p.N - 1u);
            vec4 w = vec4(0.0), x = vec4(0.0);
            if (k < p.K) {
                const uint kg = k / 4u, blk = kg / groups;
                w = dq4(row * p.rowBytes + blk * BB, (kg - blk * groups) * 4u);
                x = X[(col * p.K + k) / 4u];
            }
            const uint o = r * AS + 4u * g;
            Ash[o] = float16_t(w.x); Ash[o + 1u] = float16_t(w.y); Ash[o + 2u] = float16_t(w.z); Ash[o + 3u] = float16_t(w.w);
            Bsh[o] = float16_t(x.x); Bsh[o + 1u] = float16_t(x.y); Bsh[o + 2u] = float16_t(x.z); Bsh[o + 3u] = float16_t(x.w);
        }
        barrier();
        [[unroll]] for (uint kk = 0u; kk < TK; kk += 16u) {
            F16MAT a0, a1, b0, b1;
            coopMatLoadNV(a0, Ash, sm * AS + kk, AS, false);
            coopMatLoadNV(a1, Ash, (sm + 16u) * AS + kk, AS, false);
            coopMatLoadNV(b0, Bsh, sn * AS + kk, AS, true);
            coopMatLoadNV(b1, Bsh, (sn + 16u) * AS + kk, AS, true);
            c00 = coopMatMulAddNV(a0, b0, c00);
            c01 = coopMatMulAddNV(a0, b1, c01);
            c10 = coopMatMulAddNV(a1, b0, c10);
            c11 = coopMatMulAddNV(a1, b1, c11);
        }
        barrier();
    }
    coopMatStoreNV(c00, Csh, sm * CS + sn, CS, false);
    coopMatStoreNV(c01, Csh, sm * CS + sn + 16u, CS, false);
    coopMatStoreNV(c10, Csh, (sm + 16u) * CS + sn, CS, false);
    coopMatStoreNV(c11, Csh, (sm + 16u) * CS + sn + 16u, CS, false);
    barrier();
    const uint r = tid & 63u, row = row0 + r;
    if (row >= p.M) return;
    const float bias = (p.flags & 1u) != 0u ? Bias[row] : 0.0;
    for (uint cc = tid >> 6; cc < TN; cc += 2u) {
        const uint col = col0 + cc;
        if (col >= p.N) break;
        const float v = Csh[r * CS + cc] + bias;
        Y[col * p.M + row] = v;
        if ((p.flags & 2u) != 0u) Res[col * p.M + row] += v;
    }
}
