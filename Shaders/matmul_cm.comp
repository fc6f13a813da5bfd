#version 450
// Mat-mat on cooperative matrices (VK_NV_cooperative_matrix 16×16×16 f16·f16 + f32) with a tile shape
// chosen by the host per call (specialization constants), for batched decode (2…64 columns) and prefill:
// Y[c][row] = W[row] . X[c] (+ bias[row]) (+ into Res).
// A workgroup is 4 subgroups of 32 laid out as RS (rows) × CS (columns) × KS (K split) = 4; each
// subgroup multiplies RM × NT matrices of 16 × 16 (rows × columns), so a workgroup covers 16·RM·RS
// weight rows × 16·NT·CS columns, stepping over K by KC·KS (each K-split subgroup takes KC of them;
// their partial sums are added through shared memory at the end). Decode uses few columns per
// workgroup and few rows (many workgroups for the SMs, each weight read once); prefill large tiles.
// Per step every invocation loads its share of the next step's weights (raw Q4_K/Q6_K bytes, or dq4
// values for the other formats) and X values into registers before the current step's matrix products
// (register double buffering), then decodes them into the f16 tiles in shared memory.
// Units of the W tile: (row, 16 consecutive k). Q4_K and Q6_K decode their 16 values with one or two
// 16-byte loads and one scale (the arithmetic of dequant.glsl's dq4 / Dequant.row); other formats
// take 4 dq4 calls. K must be a multiple of 16 (the host checks); rows and columns past the end are
// clamped on load and skipped on store.
// Numerics: f16 operands (weights d·q rounded to f16, activations rounded to f16), f32 accumulation.
// -DPACK (matmul_cm_pk_*): the shared tiles as uvec4 arrays, each unit's 16 f16 values written as two
// 16-byte stores (instead of 16 2-byte stores), and X either as f32 (8 k per load unit, one 16-byte
// store) or, with XI8, from the n-row int8 copy the fused producers write (Q8_K blocks: per column K
// int8 bytes then K/256 f32 scales, column c at word c · qx_stride(K)): 16 k per 16-byte load and one
// scale, decoded as float(q) · d, which is exactly the f32 value the producer rounds X to, so the f16
// operands (and the results) are the same as from the f32 copy, for 4× fewer bytes of X.
#extension GL_NV_cooperative_matrix : require
#extension GL_KHR_memory_scope_semantics : require
#extension GL_EXT_shader_explicit_arithmetic_types_float16 : require
#extension GL_EXT_control_flow_attributes : require
#include "common.glsl"
layout(std430, binding = 0) readonly buffer WBuf { uint W[]; };
layout(std430, binding = 0) readonly buffer WBuf4 { uvec4 W4[]; };
#include "dequant.glsl"
layout(std430, binding = 1) readonly buffer XBuf { vec4 X[]; };
layout(std430, binding = 2) writeonly buffer YBuf { float Y[]; };
layout(std430, binding = 3) readonly buffer BBuf { float Bias[]; };
layout(std430, binding = 4) buffer ResBuf { float Res[]; };
// flags: bit 0 adds Bias[row]; bit 1 also adds the result into Res (a fused residual add); bit 2: split K
// over workgroups (grid z): workgroup z covers k in [z·kLen, min(K, (z+1)·kLen)) and writes its partial sums
// (no bias, no Res) to Y[pOff + z·N·M + col·M + row], which splitk_reduce.comp adds in z order.
// kLen is a multiple of the step TK (the host's); without bit 2 it is K.
layout(push_constant) uniform Params { uint M, K, N, rowBytes, flags, kLen, pOff; } p;

// WG (constant 0) must be 128: 4 subgroups of 32 (the host checks the subgroup size).
layout(constant_id = 1) const uint RM = 1u;   // 16-row matrices per subgroup (1…4)
layout(constant_id = 2) const uint NT = 1u;   // 16-column matrices per subgroup (1…4)
layout(constant_id = 3) const uint RS = 2u;   // subgroups along rows
layout(constant_id = 4) const uint KS = 2u;   // subgroups along K (RS · KS divides 4)
layout(constant_id = 5) const uint KC = 32u;  // k per subgroup per step (32 or 64)
layout(constant_id = 6) const uint Q6W = 0u;  // Q6_K: 16 bytes as two aligned 16-byte loads, shifted (1; prefill), or 4–5 words (0)
#ifdef PACK
layout(constant_id = 7) const uint XI8 = 0u;  // X from the int8 copy (binding 1) instead of f32
layout(constant_id = 8) const uint SU = 1u;   // coopMatLoadNV's stride in uvec4s (1) or in f16 values (0)
layout(std430, binding = 1) readonly buffer XQBuf4 { uvec4 XQ4[]; };
layout(std430, binding = 1) readonly buffer XQBuf { uint XQ[]; };
#endif
const uint CS = 4u / (RS * KS);               // subgroups along columns
const uint TMR = 16u * RM * RS;               // rows per workgroup
const uint TNC = 16u * NT * CS;               // columns per workgroup
const uint TK = KC * KS;                      // k per step
const uint ST = TK + 8u;                      // shared row stride in halfs (bank spread)
const uint AU = TMR * (TK / 16u);             // W units (row, 16 k) per step
const uint BU = TNC * (TK / 4u);              // X vec4s per step
#ifdef PACK
#define MAXA 4u                               // registers for AU / 128 (the host keeps AU <= 512: 128 k per
#else                                         // step for 64 rows, 64 for 128)
#define MAXA 2u                               // registers for AU / 128 and BU / 128 (the host keeps
#endif
#define MAXB 16u                              // AU <= 256 and BU <= 2048)

// Fixed sizes (spec-constant-sized shared arrays crash glslc's optimizer): the host keeps
// TMR · ST <= 5120 and TNC · ST <= 9216.
#ifdef PACK
shared uvec4 Ash4[1152];      // [row][k], f16 pairs: ST / 8 uvec4 per row (the host keeps TMR · ST <= 9216)
shared uvec4 Bsh4[1152];      // [column][k]
const uint ST4 = ST / 8u;
const uint LS = SU != 0u ? ST4 : ST;          // the stride coopMatLoadNV is given
const uint XU = XI8 != 0u ? 16u : 8u;         // k per X load unit
const uint BX = TNC * (TK / XU);              // X load units per step
#define MAXX 8u                               // registers for BX / 128 (BU <= 2048: BX <= 1024)
#else
shared float16_t Ash[5120];   // [row][k]
shared float16_t Bsh[9216];   // [column][k]: B (k × column) column-major
#endif
shared float Rsh[3u * 256u];      // K-split partial sums, one 16 × 16 matrix per slot
shared float Osh[4u * 256u];      // per subgroup: one 16 × 16 output matrix on its way out

#define F16MAT fcoopmatNV<16, gl_ScopeSubgroup, 16, 16>
#define F32MAT fcoopmatNV<32, gl_ScopeSubgroup, 16, 16>

// Raw loads of one W unit, kept in registers until the next step's decode.
#if defined(TYPE_Q4_K)
struct Unit { uvec4 hdr, qs; };
#elif defined(TYPE_Q6_K)
struct Unit { uvec4 ql, qh; uint sd; };   // sd: the scale byte (low 8 bits), d (high 16)
#else
struct Unit { vec4 v0, v1, v2, v3; };
#endif

#if defined(TYPE_Q6_K)
// 16 bytes at a 2-byte-aligned offset (Q6_K blocks are 210 bytes): 4 or 5 aligned words, shifted.
uvec4 ld16(uint o) {
    const uint i = o >> 2;
    const uvec4 a = uvec4(W[i], W[i + 1u], W[i + 2u], W[i + 3u]);
    if ((o & 2u) == 0u) return a;
    const uint e = W[i + 4u];
    return uvec4((a.x >> 16) | (a.y << 16), (a.y >> 16) | (a.z << 16), (a.z >> 16) | (a.w << 16), (a.w >> 16) | (e << 16));
}
// The same 16 bytes from the two aligned 16-byte units that hold them (the second may be the buffer's
// 16 bytes of padding), shifted by 8, 4 and 2 bytes as the offset says: 2 loads instead of 4–5.
uvec4 ld16w(uint o) {
    const uint i = o >> 4, sh = o & 15u;
    uvec4 lo = W4[i], hi = W4[i + 1u];
    if ((sh & 8u) != 0u) { lo = uvec4(lo.zw, hi.xy); hi = uvec4(hi.zw, 0u, 0u); }
    if ((sh & 4u) != 0u) { lo = uvec4(lo.yzw, hi.x); hi = uvec4(hi.yzw, 0u); }
    if ((sh & 2u) != 0u) lo = (lo >> 16) | (uvec4(lo.yzw, hi.x) << 16);
    return lo;
}
#endif

Unit loadUnit(uint row, uint k) {
    Unit u;
#if defined(TYPE_Q4_K)
    const uint b = k >> 8, i = k & 255u, c = i >> 6, g = (i >> 4) & 1u;
    const uint bo = ((row * p.rowBytes) >> 4) + b * 9u;   // 16-byte units (rowBytes: a multiple of 144)
    u.hdr = W4[bo];
    u.qs = W4[bo + 1u + 2u * c + g];
#elif defined(TYPE_Q6_K)
    const uint b = k >> 8, i = k & 255u, n = i >> 7, r = i & 127u, quarter = r >> 5, l0 = r & 31u;
    const uint bo = row * p.rowBytes + b * 210u;
    const uint qo = bo + 64u * n + l0 + 32u * (quarter & 1u), ho = bo + 128u + 32u * n + l0;
    if (Q6W != 0u) {
        u.ql = ld16w(qo);
        u.qh = ld16w(ho);
    } else {
        u.ql = ld16(qo);
        u.qh = ld16(ho);
    }
    u.sd = ld8(bo + 192u + 8u * n + (l0 >> 4) + 2u * quarter) | (((W[(bo + 208u) >> 2] >> (((bo + 208u) & 2u) * 8u)) & 0xFFFFu) << 16);
#else
    vec4 v[4];
    [[unroll]] for (uint t = 0u; t < 4u; t++) {   // F32/F16 "blocks" are 4 values: one block per dq4
        const uint kk = k + 4u * t, blk = kk / BS;
        v[t] = dq4(row * p.rowBytes + blk * BB, kk - blk * BS);
    }
    u.v0 = v[0]; u.v1 = v[1]; u.v2 = v[2]; u.v3 = v[3];
#endif
    return u;
}

// The unit's 16 values, in k order.
void decodeUnit(Unit u, uint k, out vec4 v0, out vec4 v1, out vec4 v2, out vec4 v3) {
#if defined(TYPE_Q4_K)
    const uint i = k & 255u, c = i >> 6, hi = (i >> 5) & 1u, j = 2u * c + hi;
    // 6-bit scale and min of sub-block j (get_scale_min_k4) from the header words.
    uint sc, mn;
    if (j < 4u) {
        sc = (u.hdr.y >> (8u * j)) & 63u;
        mn = (u.hdr.z >> (8u * j)) & 63u;
    } else {
        const uint s = 8u * (j - 4u);
        const uint a = (u.hdr.w >> s) & 0xFFu, b0 = (u.hdr.y >> s) & 0xFFu, c0 = (u.hdr.z >> s) & 0xFFu;
        sc = (a & 0xFu) | ((b0 >> 6) << 4);
        mn = (a >> 4) | ((c0 >> 6) << 4);
    }
    const vec2 dm = unpackHalf2x16(u.hdr.x);
    const float d = dm.x * float(sc), m = dm.y * float(mn);
    const uvec4 q = (u.qs >> (4u * hi)) & 0x0F0F0F0Fu;
    v0 = d * u8x4(q.x) - m; v1 = d * u8x4(q.y) - m; v2 = d * u8x4(q.z) - m; v3 = d * u8x4(q.w) - m;
#elif defined(TYPE_Q6_K)
    const uint quarter = ((k & 127u) >> 5);
    const uvec4 q = ((u.ql >> (4u * (quarter >> 1))) & 0x0F0F0F0Fu) | (((u.qh >> (2u * quarter)) & 0x03030303u) << 4);
    const float d = unpackHalf2x16(u.sd >> 16).x * float(bitfieldExtract(int(u.sd), 0, 8));
    v0 = d * (u8x4(q.x) - 32.0); v1 = d * (u8x4(q.y) - 32.0); v2 = d * (u8x4(q.z) - 32.0); v3 = d * (u8x4(q.w) - 32.0);
#else
    v0 = u.v0; v1 = u.v1; v2 = u.v2; v3 = u.v3;
#endif
}

#ifdef PACK
uint pk(vec2 v) { return packFloat2x16(f16vec2(v)); }
// 8 values as one 16-byte store of f16 pairs (the same f32 → f16 conversion as the scalar stores).
uvec4 pk8(vec4 a, vec4 b) { return uvec4(pk(a.xy), pk(a.zw), pk(b.xy), pk(b.zw)); }
// The unit's 16 values into Ash4[o4], Ash4[o4 + 1].
void storeUnit(Unit u, uint k, uint o4) {
    vec4 v0, v1, v2, v3;
    decodeUnit(u, k, v0, v1, v2, v3);
    Ash4[o4] = pk8(v0, v1);
    Ash4[o4 + 1u] = pk8(v2, v3);
}
#else
// The unit's 16 values, in k order, into Ash[o…o+15].
void storeUnit(Unit u, uint k, uint o) {
    vec4 v0, v1, v2, v3;
    decodeUnit(u, k, v0, v1, v2, v3);
    Ash[o] = float16_t(v0.x); Ash[o + 1u] = float16_t(v0.y); Ash[o + 2u] = float16_t(v0.z); Ash[o + 3u] = float16_t(v0.w);
    Ash[o + 4u] = float16_t(v1.x); Ash[o + 5u] = float16_t(v1.y); Ash[o + 6u] = float16_t(v1.z); Ash[o + 7u] = float16_t(v1.w);
    Ash[o + 8u] = float16_t(v2.x); Ash[o + 9u] = float16_t(v2.y); Ash[o + 10u] = float16_t(v2.z); Ash[o + 11u] = float16_t(v2.w);
    Ash[o + 12u] = float16_t(v3.x); Ash[o + 13u] = float16_t(v3.y); Ash[o + 14u] = float16_t(v3.z); Ash[o + 15u] = float16_t(v3.w);
}
#endif

// Accumulators and operands as separate variables (no arrays of matrices indexed at run time); the
// ones past RM / NT are dead code once the constants are specialized.
#define DECL_ROW(i) F32MAT c##i##0 = F32MAT(0.0), c##i##1 = F32MAT(0.0), c##i##2 = F32MAT(0.0), c##i##3 = F32MAT(0.0);
#ifdef PACK
#define LOAD_A(i) coopMatLoadNV(a, Ash4, ((rs * 16u * RM + 16u * uint(i)) * ST + kofs) / 8u, LS, false);
#define LOAD_B(m, c) coopMatLoadNV(m, Bsh4, ((c) * ST + kofs) / 8u, LS, true);
#else
#define LOAD_A(i) coopMatLoadNV(a, Ash, (rs * 16u * RM + 16u * uint(i)) * ST + kofs, ST, false);
#define LOAD_B(m, c) coopMatLoadNV(m, Bsh, (c) * ST + kofs, ST, true);
#endif
#define MMA_ROW(i) if (RM > uint(i)) { \
        LOAD_A(i) \
        c##i##0 = coopMatMulAddNV(a, b0, c##i##0); \
        if (NT > 1u) c##i##1 = coopMatMulAddNV(a, b1, c##i##1); \
        if (NT > 2u) c##i##2 = coopMatMulAddNV(a, b2, c##i##2); \
        if (NT > 3u) c##i##3 = coopMatMulAddNV(a, b3, c##i##3); }

void main() {
    const uint tid = gl_LocalInvocationID.x, sg = gl_SubgroupID, lane = gl_SubgroupInvocationID;
    const uint ks = sg % KS, rs = (sg / KS) % RS, cs = sg / (KS * RS);
    const uint row0 = gl_WorkGroupID.x * TMR, col0 = gl_WorkGroupID.y * TNC;
    DECL_ROW(0) DECL_ROW(1) DECL_ROW(2) DECL_ROW(3)
    const bool split = (p.flags & 4u) != 0u;
    const uint kBegin = split ? gl_WorkGroupID.z * p.kLen : 0u, kEnd = split ? min(p.K, kBegin + p.kLen) : p.K;

    Unit ua[MAXA];
#ifdef PACK
    vec4 xl[MAXX], xh[MAXX];   // f32 X: 8 k per unit
    uvec4 xq[MAXX];            // int8 X: 16 k per unit, and its scale
    float xd[MAXX];
    const uint xs = (p.K / 4u + p.K / 256u + 3u) & ~3u;   // words per column of the int8 copy (qx_stride)
#else
    vec4 xb[MAXB];
#endif
    // Loads of the step at k0 into registers (zeros past K).
#define LOAD_STEP(k0) \
    [[unroll]] for (uint s = 0u; s < MAXA; s++) { \
        const uint e = tid + 128u * s; \
        if (128u * s < AU && e < AU) { \
            const uint r = e / (TK / 16u), k = (k0) + 16u * (e % (TK / 16u)); \
            if (k < kEnd) ua[s] = loadUnit(min(row0 + r, p.M - 1u), k); \
        } \
    } \
    LOAD_X(k0)
#ifdef PACK
#define LOAD_X(k0) \
    [[unroll]] for (uint s = 0u; s < MAXX; s++) { \
        const uint e = tid + 128u * s; \
        if (128u * s < BX && e < BX) { \
            const uint cc = e / (TK / XU), k = (k0) + XU * (e % (TK / XU)), c = min(col0 + cc, p.N - 1u); \
            if (XI8 != 0u) { \
                xq[s] = k < kEnd ? XQ4[(c * xs + k / 4u) / 4u] : uvec4(0u); \
                xd[s] = k < kEnd ? uintBitsToFloat(XQ[c * xs + p.K / 4u + k / 256u]) : 0.0; \
            } else { \
                const uint i = (c * p.K + k) / 4u; \
                xl[s] = k < kEnd ? X[i] : vec4(0.0); \
                xh[s] = k < kEnd ? X[i + 1u] : vec4(0.0); \
            } \
        } \
    }
#else
#define LOAD_X(k0) \
    [[unroll]] for (uint s = 0u; s < MAXB; s++) { \
        const uint e = tid + 128u * s; \
        if (128u * s < BU && e < BU) { \
            const uint cc = e / (TK / 4u), k = (k0) + 4u * (e % (TK / 4u)); \
            xb[s] = k < kEnd ? X[(min(col0 + cc, p.N - 1u) * p.K + k) / 4u] : vec4(0.0); \
        } \
    }
#endif

    LOAD_STEP(kBegin)
    for (uint k0 = kBegin; k0 < kEnd; k0 += TK) {
        // Registers → shared tiles (weights decoded here).
        [[unroll]] for (uint s = 0u; s < MAXA; s++) {
            const uint e = tid + 128u * s;
            if (128u * s < AU && e < AU) {
                const uint r = e / (TK / 16u), kk = 16u * (e % (TK / 16u)), o = r * ST + kk;
#ifdef PACK
                if (k0 + kk < kEnd) {
                    storeUnit(ua[s], k0 + kk, o / 8u);
                } else {
                    Ash4[o / 8u] = uvec4(0u); Ash4[o / 8u + 1u] = uvec4(0u);
                }
#else
                if (k0 + kk < kEnd) {
                    storeUnit(ua[s], k0 + kk, o);
                } else {
                    [[unroll]] for (uint t = 0u; t < 16u; t++) Ash[o + t] = float16_t(0.0);
                }
#endif
            }
        }
#ifdef PACK
        [[unroll]] for (uint s = 0u; s < MAXX; s++) {
            const uint e = tid + 128u * s;
            if (128u * s < BX && e < BX) {
                const uint cc = e / (TK / XU), o4 = (cc * ST + XU * (e % (TK / XU))) / 8u;
                if (XI8 != 0u) {
                    const uvec4 q = xq[s];
                    const float d = xd[s];
                    Bsh4[o4] = pk8(i8x4(q.x) * d, i8x4(q.y) * d);
                    Bsh4[o4 + 1u] = pk8(i8x4(q.z) * d, i8x4(q.w) * d);
                } else {
                    Bsh4[o4] = pk8(xl[s], xh[s]);
                }
            }
        }
#else
        [[unroll]] for (uint s = 0u; s < MAXB; s++) {
            const uint e = tid + 128u * s;
            if (128u * s < BU && e < BU) {
                const uint cc = e / (TK / 4u), o = cc * ST + 4u * (e % (TK / 4u));
                const vec4 x = xb[s];
                Bsh[o] = float16_t(x.x); Bsh[o + 1u] = float16_t(x.y); Bsh[o + 2u] = float16_t(x.z); Bsh[o + 3u] = float16_t(x.w);
            }
        }
#endif
        barrier();
        // The next step's global loads are in flight while this step's products run.
        if (k0 + TK < kEnd) { LOAD_STEP(k0 + TK) }
        [[unroll]] for (uint kk = 0u; kk < KC; kk += 16u) {
            const uint kofs = ks * KC + kk;
            F16MAT a, b0, b1, b2, b3;
            const uint cb = cs * 16u * NT;
            LOAD_B(b0, cb)
            if (NT > 1u) { LOAD_B(b1, cb + 16u) }
            if (NT > 2u) { LOAD_B(b2, cb + 32u) }
            if (NT > 3u) { LOAD_B(b3, cb + 48u) }
            MMA_ROW(0) MMA_ROW(1) MMA_ROW(2) MMA_ROW(3)
        }
        barrier();
    }

    // Each (i, j) matrix: the K-split subgroups' partial sums go through Rsh (slot (ks - 1, rs, cs)),
    // subgroup ks = 0's through Osh, and its lanes add them on the way to Y (scalar adds: arithmetic
    // on cooperative matrices in a loop crashed glslc's optimizer).
#define OUT_MAT(i, j) if (RM > uint(i) && NT > uint(j)) { \
        if (KS > 1u) { \
            barrier(); \
            if (ks != 0u) coopMatStoreNV(c##i##j, Rsh, ((ks - 1u) * RS * CS + rs + RS * cs) * 256u, 16u, false); \
            barrier(); \
        } \
        if (ks == 0u) { \
            coopMatStoreNV(c##i##j, Osh, sg * 256u, 16u, false); \
            subgroupMemoryBarrierShared(); \
            subgroupBarrier(); \
            for (uint t = lane; t < 256u; t += 32u) { \
                const uint rr = t & 15u, cc = t >> 4; \
                const uint row = row0 + rs * 16u * RM + 16u * uint(i) + rr, col = col0 + cs * 16u * NT + 16u * uint(j) + cc; \
                float v = Osh[sg * 256u + rr * 16u + cc]; \
                for (uint s = 1u; s < KS; s++) v += Rsh[((s - 1u) * RS * CS + rs + RS * cs) * 256u + rr * 16u + cc]; \
                if (row < p.M && col < p.N && split) { \
                    Y[p.pOff + gl_WorkGroupID.z * p.N * p.M + col * p.M + row] = v; \
                } else if (row < p.M && col < p.N) { \
                    v += (p.flags & 1u) != 0u ? Bias[row] : 0.0; \
                    Y[col * p.M + row] = v; \
                    if ((p.flags & 2u) != 0u) Res[col * p.M + row] += v; \
                } \
            } \
            subgroupBarrier(); \
        } }
    OUT_MAT(0, 0) OUT_MAT(0, 1) OUT_MAT(0, 2) OUT_MAT(0, 3)
    OUT_MAT(1, 0) OUT_MAT(1, 1) OUT_MAT(1, 2) OUT_MAT(1, 3)
    OUT_MAT(2, 0) OUT_MAT(2, 1) OUT_MAT(2, 2) OUT_MAT(2, 3)
    OUT_MAT(3, 0) OUT_MAT(3, 1) OUT_MAT(3, 2) OUT_MAT(3, 3)
}
