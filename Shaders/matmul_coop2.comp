#version 450
// matmul_coop.comp with larger tiles (variant, env SHARD_VK_COOP_TILE=2): 64 weight rows × 128 columns per
// workgroup (4 subgroups of 32 rows × 64 columns: 2 × 4 matrices of 16 × 16), 64 k per step, so each
// dequantized weight serves twice the columns and there are half the barriers. The outputs leave
// through a 16 × 16 scratch per subgroup, one matrix at a time.
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
layout(push_constant) uniform Params { uint M, K, N, rowBytes, flags; } p;

#define TM 64u
#define TN 128u
#define TK 64u
#define AS 72u     // shared row stride in halfs (TK + 8: 144 bytes)
shared float16_t Ash[TM * AS];   // [row][k]
shared float16_t Bsh[TN * AS];   // [column][k]
shared float Csh[4u * 256u];     // per subgroup: one 16 × 16 output matrix, row-major

#define F16MAT fcoopmatNV<16, gl_ScopeSubgroup, 16, 16>
#define F32MAT fcoopmatNV<32, gl_ScopeSubgroup, 16, 16>

void main() {
    const uint tid = gl_LocalInvocationID.x, sg = gl_SubgroupID, lane = gl_SubgroupInvocationID;
    const uint sm = (sg & 1u) * 32u, sn = (sg >> 1) * 64u;
    const uint row0 = gl_WorkGroupID.x * TM, col0 = gl_WorkGroupID.y * TN;
    F32MAT c[2][4];
    [[unroll]] for (uint i = 0u; i < 2u; i++) [[unroll]] for (uint j = 0u; j < 4u; j++) c[i][j] = F32MAT(0.0);
    const uint groups = BS / 4u;
    for (uint k0 = 0u; k0 < p.K; k0 += TK) {
        // W: 64 rows × 16 groups of 4 k = 1024 → 8 per invocation; X: 128 columns × 16 → 16.
        [[unroll]] for (uint s = 0u; s < 8u; s++) {
            const uint e = tid + 128u * s, r = e >> 4, g = e & 15u, k = k0 + 4u * g;
            const uint row = min(row0 + r, p.M - 1u);
            vec4 w = vec4(0.0);
            if (k < p.K) {
                const uint kg = k / 4u, blk = kg / groups;
                w = dq4(row * p.rowBytes + blk * BB, (kg - blk * groups) * 4u);
            }
            const uint o = r * AS + 4u * g;
            Ash[o] = float16_t(w.x); Ash[o + 1u] = float16_t(w.y); Ash[o + 2u] = float16_t(w.z); Ash[o + 3u] = float16_t(w.w);
        }
        [[unroll]] for (uint s = 0u; s < 16u; s++) {
            const uint e = tid + 128u * s, cc = e >> 4, g = e & 15u, k = k0 + 4u * g;
            const uint col = min(col0 + cc, p.N - 1u);
            const vec4 x = k < p.K ? X[(col * p.K + k) / 4u] : vec4(0.0);
            const uint o = cc * AS + 4u * g;
            Bsh[o] = float16_t(x.x); Bsh[o + 1u] = float16_t(x.y); Bsh[o + 2u] = float16_t(x.z); Bsh[o + 3u] = float16_t(x.w);
        }
        barrier();
        [[unroll]] for (uint kk = 0u; kk < TK; kk += 16u) {
            F16MAT a[2], b[4];
            [[unroll]] for (uint i = 0u; i < 2u; i++) coopMatLoadNV(a[i], Ash, (sm + 16u * i) * AS + kk, AS, false);
            [[unroll]] for (uint j = 0u; j < 4u; j++) coopMatLoadNV(b[j], Bsh, (sn + 16u * j) * AS + kk, AS, true);
            [[unroll]] for (uint i = 0u; i < 2u; i++) [[unroll]] for (uint j = 0u; j < 4u; j++) c[i][j] = coopMatMulAddNV(a[i], b[j], c[i][j]);
        }
        barrier();
    }
    [[unroll]] for (uint i = 0u; i < 2u; i++) {
        [[unroll]] for (uint j = 0u; j < 4u; j++) {
            coopMatStoreNV(c[i][j], Csh, sg * 256u, 16u, false);
            subgroupMemoryBarrierShared();
            subgroupBarrier();
            for (uint t = lane; t < 256u; t += 32u) {
                const uint rr = t & 15u, cc = t >> 4;   // consecutive lanes: consecutive rows (coalesced stores)
                const uint row = row0 + sm + 16u * i + rr, col = col0 + sn + 16u * j + cc;
                if (row < p.M && col < p.N) {
                    const float v = Csh[sg * 256u + rr * 16u + cc] + ((p.flags & 1u) != 0u ? Bias[row] : 0.0);
                    Y[col * p.M + row] = v;
                    if ((p.flags & 2u) != 0u) Res[col * p.M + row] += v;
                }
            }
            subgroupBarrier();
        }
    }
}
