#version 450
// Batched-decode mat-mat (up to 64 columns: NT 16-column matrices; the host gives it 8…64) of Q4_K or Q6_K weights
// (TYPE_*) on cooperative matrices, with the weight operands built in registers ("direct"): each lane loads exactly
// the weight bytes of the matrix elements it holds and decodes them into its fragment, so the weights never pass
// through shared memory and the K loop has one workgroup barrier per 128 k (for X, which the workgroup stages in
// shared memory as f16).
//   Y[c][row] = W[row] . X[c] (+ bias[row]) (+ into Res); with flags bit 2, K split over workgroups (grid z)
//   into partial sums that splitk_reduce.comp adds, exactly as matmul_cm.comp does (same bindings, push
//   constants and grid: 64 rows × 16·NT columns per workgroup). K steps of 128 k (half a Q4_K / Q6_K block): each lane
//   has the next step's 64 weight bytes in flight while it multiplies the current one. (Whole-block steps,
//   twice the bytes in flight, measured slower end to end on an H200.)
// Layout assumed (checked by the host with coopmat_layout.comp before this kernel is used): invocation l of
// the subgroup holds, of a 16 × 16 f16 matrix, rows g = l / 4 and g + 8 and columns 2t, 2t + 1, 2t + 8,
// 2t + 9 (t = l % 4) — the mma.m16n8k16 A fragment. Which of the 8 elements is which is ALAY (3 bits per
// element: bit 0 row g + 8, bits 1–2 the column slot 0…3 in that order).
// K order: the products sum over k, so a tile may take its 16 k in any order as long as W and X agree.
// Within a 64-k chunk of a Q4_K block (32 qs bytes: byte j's low nibble is k = j, its high nibble k = 32 + j)
// lane quad t loads bytes 8t…8t+7 of a row (one 8-byte load; a row's 4 lanes read 32 contiguous bytes),
// which feed 4 tiles: T = 2h + u takes the low (h = 0) or high (h = 1) nibbles of bytes 8t + 4u…8t + 4u + 3
// as the lane's column slots 0…3. So in tile T slot s of quad t is chunk k 32h + 8t + 4u + s, and X is
// staged with the same permutation.
// Numerics: f16 operands, f32 accumulation in another k order than matmul_cm's. X: the int8 copy's float(q)·d
// rounded to f16 (as matmul_cm_pk). Weights: with H2 = 0 d·sc·q − dmin·m (Q6_K: d·scale·(q − 32)) rounded to f16
// from f32 (as matmul_cm_pk), with H2 = 1 (the host's default) the same in f16 arithmetic (below).
#extension GL_NV_cooperative_matrix : require
#extension GL_KHR_memory_scope_semantics : require
#extension GL_EXT_shader_explicit_arithmetic_types_float16 : require
#extension GL_EXT_control_flow_attributes : require
#include "common.glsl"
layout(std430, binding = 0) readonly buffer WBuf { uint W[]; };
layout(std430, binding = 0) readonly buffer WBuf4 { uvec4 W4[]; };
layout(std430, binding = 0) readonly buffer WBuf2 { uvec2 W2[]; };
#include "dequant.glsl"
layout(std430, binding = 1) readonly buffer XQBuf4 { uvec4 XQ4[]; };
layout(std430, binding = 1) readonly buffer XQBuf { uint XQ[]; };
layout(std430, binding = 2) writeonly buffer YBuf { float Y[]; };
layout(std430, binding = 3) readonly buffer BBuf { float Bias[]; };
layout(std430, binding = 4) buffer ResBuf { float Res[]; };
layout(push_constant) uniform Params { uint M, K, N, rowBytes, flags, kLen, pOff; } p;

// WG (constant 0) must be 128: 4 subgroups of 32, each 16 weight rows (the host checks the subgroup size).
layout(constant_id = 1) const uint NT = 1u;     // 16-column matrices (1…4)
layout(constant_id = 2) const uint ALAY = 0u;   // the fragment's element layout (above)
// Ablations for timing only (wrong results; kernel-bench's SHARD_VK_CMD_ABL): bit 0 no weight scales (raw nibbles),
// bit 1 no X staging (B from whatever the shared tiles hold), bit 2 no workgroup barrier either.
layout(constant_id = 3) const uint ABL = 0u;
// H2 = 1: build the weight values in f16 pairs — quant pairs ORed into f16 1024 + q (exact), minus 1024 (Q6_K: 1056),
// times the scale (Q4_K: d·sc, minus dmin·m), each rounded to f16 (half2 arithmetic, ~2.4× fewer instructions per
// value); H2 = 0: each value in f32, rounded to f16 once (matmul_cm_pk's operands exactly).
layout(constant_id = 4) const uint H2 = 0u;

const uint TK = 128u;                           // k per step: two 64-k chunks, 8 tiles
const uint TNC = 16u * NT;                      // columns per workgroup
// X tiles, double-buffered: [buffer][tile 0…7][column][16 k as 2 uvec4 of f16 pairs].
shared uvec4 Bsh4[2u * 8u * TNC * 2u];
shared float Osh[8u * 256u];   // per subgroup one 16 × 16 output matrix (two with NT = 1)

#define F16MAT fcoopmatNV<16, gl_ScopeSubgroup, 16, 16>
#define F32MAT fcoopmatNV<32, gl_ScopeSubgroup, 16, 16>

#if defined(TYPE_Q6_K)
// Q6_K (210-byte blocks: ql[128], qh[64], scales[16] int8, d f16; fields only 2-byte aligned). A step is one half n
// of a block (128 k): value l + 32m (l < 32, m < 4) of the half is (ql[64n + l + 32(m & 1)] >> 4(m >> 1)) & 15 |
// ((qh[32n + l] >> 2m) & 3) << 4, minus 32, times d·scales[8n + l / 16 + 2m]. Lane quad t takes l = 8t…8t+7: ql bytes
// 8t… of both 32-byte runs, qh bytes 8t…, and the 4 scales (t / 2) + 2m. Tile T = 2m + u then takes bytes 4u…4u+3
// of those as slots 0…3, i.e. k 32m + 8t + 4u + s: the Q4_K permutation with m = 2·chunk + h, so X is staged alike.
struct WRegs { uvec2 la0, lb0, qh0, sc0, la1, lb1, qh1, sc1; float d0, d1; };   // <run><row>

// 8 bytes at an even byte offset (3 words, the last clamped to the buffer: the scales of a buffer's last half-block).
uvec2 ld64(uint o) {
    const uint i = o >> 2, a0 = W[i], a1 = W[i + 1u], a2 = W[min(i + 2u, uint(W.length()) - 1u)];
    return (o & 2u) != 0u ? uvec2((a0 >> 16) | (a1 << 16), (a1 >> 16) | (a2 << 16)) : uvec2(a0, a1);
}

WRegs loadW(uint r0, uint r1, uint k0, uint t) {
    WRegs w;
    const uint b = k0 >> 8, n = (k0 >> 7) & 1u;
    const uint o0 = r0 * p.rowBytes + b * 210u, o1 = r1 * p.rowBytes + b * 210u;
    w.la0 = ld64(o0 + 64u * n + 8u * t);        w.la1 = ld64(o1 + 64u * n + 8u * t);
    w.lb0 = ld64(o0 + 64u * n + 32u + 8u * t);  w.lb1 = ld64(o1 + 64u * n + 32u + 8u * t);
    w.qh0 = ld64(o0 + 128u + 32u * n + 8u * t); w.qh1 = ld64(o1 + 128u + 32u * n + 8u * t);
    w.sc0 = ld64(o0 + 192u + 8u * n);           w.sc1 = ld64(o1 + 192u + 8u * n);
    w.d0 = unpackHalf2x16(W[(o0 + 208u) >> 2] >> ((o0 & 2u) * 8u)).x;
    w.d1 = unpackHalf2x16(W[(o1 + 208u) >> 2] >> ((o1 & 2u) * 8u)).x;
    return w;
}

// d·scale of quadrant m for lane quad t (the scale bytes of the half in sc).
float q6Scale(uvec2 sc, float d, uint m, uint t) {
    return d * float(bitfieldExtract(int(sc[m >> 1]), int(8u * ((t >> 1) + 2u * (m & 1u))), 8));
}

// The 4 six-bit values (bytes) of word u of quadrant m.
uint q6Word(uvec2 la, uvec2 lb, uvec2 qh, uint m, uint u) {
    const uint l = (m & 1u) != 0u ? lb[u] : la[u];
    return ((l >> (4u * (m >> 1))) & 0x0F0F0F0Fu) | (((qh[u] >> (2u * m)) & 0x03030303u) << 4);
}
#else
// A lane's weights of one step: per row (g, g + 8) the block header and 8 qs bytes of each of the two chunks.
struct WRegs { uvec4 h0, h1; uvec2 q0[2], q1[2]; };   // q<row>[chunk of the step]

WRegs loadW(uint r0, uint r1, uint k0, uint t) {
    WRegs w;
    const uint b = k0 >> 8, c0 = (k0 >> 6) & 3u;                  // block, first chunk (0 or 2)
    const uint o0 = r0 * p.rowBytes + b * 144u, o1 = r1 * p.rowBytes + b * 144u;   // byte offsets (multiples of 16)
    w.h0 = W4[o0 >> 4];
    w.h1 = W4[o1 >> 4];
    [[unroll]] for (uint c = 0u; c < 2u; c++) {
        const uint qo = 16u + 32u * (c0 + c) + 8u * t;
        w.q0[c] = W2[(o0 + qo) >> 3];
        w.q1[c] = W2[(o1 + qo) >> 3];
    }
    return w;
}

// d·sc and dmin·m of sub-block j (0…7) from a Q4_K block header (get_scale_min_k4).
vec2 subScale(uvec4 hdr, uint j) {
    uint sc, mn;
    if (j < 4u) {
        sc = (hdr.y >> (8u * j)) & 63u;
        mn = (hdr.z >> (8u * j)) & 63u;
    } else {
        const uint s = 8u * (j - 4u);
        const uint a = (hdr.w >> s) & 0xFFu, b0 = (hdr.y >> s) & 0xFFu, c0 = (hdr.z >> s) & 0xFFu;
        sc = (a & 0xFu) | ((b0 >> 6) << 4);
        mn = (a >> 4) | ((c0 >> 6) << 4);
    }
    const vec2 dm = unpackHalf2x16(hdr.x);
    return vec2(dm.x * float(sc), dm.y * float(mn));
}


#endif

// A fragment from the 4 values (bytes, ≤ 63) of row g in w0 and of row g + 8 in w1: (q − off)·s − m per value.
F16MAT fragFromBytes(uint w0, uint w1, vec2 s0, vec2 s1, float off, bool hasMin) {
    if (H2 != 0u) {
        // hv[2r + p]: row g (r = 0) or g + 8 (r = 1), slots 2p, 2p + 1. Bytes ORed into f16 1024 + q: exact.
        const f16vec2 s0h = f16vec2(s0.x), m0h = f16vec2(s0.y), s1h = f16vec2(s1.x), m1h = f16vec2(s1.y), k = f16vec2(1024.0 + off);
        f16vec2 hv[4];
        hv[0] = (unpackFloat2x16((w0 & 0xFFu) | ((w0 & 0xFF00u) << 8) | 0x64006400u) - k) * s0h;
        hv[1] = (unpackFloat2x16(((w0 >> 16) & 0xFFu) | ((w0 >> 8) & 0xFF0000u) | 0x64006400u) - k) * s0h;
        hv[2] = (unpackFloat2x16((w1 & 0xFFu) | ((w1 & 0xFF00u) << 8) | 0x64006400u) - k) * s1h;
        hv[3] = (unpackFloat2x16(((w1 >> 16) & 0xFFu) | ((w1 >> 8) & 0xFF0000u) | 0x64006400u) - k) * s1h;
        if (hasMin) { hv[0] -= m0h; hv[1] -= m0h; hv[2] -= m1h; hv[3] -= m1h; }
        F16MAT a;
        [[unroll]] for (uint i = 0u; i < 8u; i++) {
            const uint sel = (ALAY >> (3u * i)) & 7u;
            a[i] = hv[2u * (sel & 1u) + (sel >> 2)][(sel >> 1) & 1u];
        }
        return a;
    }
    vec4 v0 = u8x4(w0) - off;
    vec4 v1 = u8x4(w1) - off;
    if ((ABL & 1u) == 0u) { v0 = s0.x * v0 - (hasMin ? s0.y : 0.0); v1 = s1.x * v1 - (hasMin ? s1.y : 0.0); }
    F16MAT a;
    [[unroll]] for (uint i = 0u; i < 8u; i++) {
        const uint sel = (ALAY >> (3u * i)) & 7u;
        const vec4 v = (sel & 1u) != 0u ? v1 : v0;
        a[i] = float16_t(v[sel >> 1]);
    }
    return a;
}

// The fragment of tile T = 2h + u (0…3) of a chunk whose qs bytes are q0 (row g) / q1 (row g + 8) with
// sub-block scales s0 / s1 (of sub-block 2c + h).
F16MAT fragA(uvec2 q0, uvec2 q1, vec2 s0, vec2 s1, uint h, uint u) {
    const uint w0 = ((u == 0u ? q0.x : q0.y) >> (4u * h)) & 0x0F0F0F0Fu, w1 = ((u == 0u ? q1.x : q1.y) >> (4u * h)) & 0x0F0F0F0Fu;
    return fragFromBytes(w0, w1, s0, s1, 0.0, true);
}

void main() {
    const uint tid = gl_LocalInvocationID.x, sg = gl_SubgroupID, lane = gl_SubgroupInvocationID;
    const uint g = lane >> 2, t = lane & 3u;
    const uint row0 = gl_WorkGroupID.x * 64u + 16u * sg, col0 = gl_WorkGroupID.y * TNC;
    const uint r0 = min(row0 + g, p.M - 1u), r1 = min(row0 + g + 8u, p.M - 1u);
    const bool split = (p.flags & 4u) != 0u;
    const uint kBegin = split ? gl_WorkGroupID.z * p.kLen : 0u, kEnd = split ? min(p.K, kBegin + p.kLen) : p.K;
    const uint xs = (p.K / 4u + p.K / 256u + 3u) & ~3u;   // words per column of the int8 copy (qx_stride)

    F32MAT c0 = F32MAT(0.0), c1 = F32MAT(0.0), c2 = F32MAT(0.0), c3 = F32MAT(0.0);

    // X of a step: 16·NT columns × 128 k of int8 = 8·16·NT units of 16 k, NT per invocation.
    uvec4 xq[4];
    float xd[4];
#define LOAD_X(k0) \
    [[unroll]] for (uint s = 0u; s < 4u; s++) if (s < NT) { \
        const uint e = tid + 128u * s, c = min(col0 + e / 8u, p.N - 1u); \
        xq[s] = XQ4[(c * xs + (k0) / 4u) / 4u + e % 8u]; \
        xd[s] = uintBitsToFloat(XQ[c * xs + p.K / 4u + (k0) / 256u]); \
    }
    // Registers → buffer bf: unit e (column e / 8, k 16·(e % 8)…) into the tiles' permuted slots.
#define STORE_X(bf) \
    [[unroll]] for (uint s = 0u; s < 4u; s++) if (s < NT) { \
        const uint e = tid + 128u * s, cc = e / 8u, uu = e % 8u; \
        const uint chunk = uu >> 2, h = (uu >> 1) & 1u, t0 = 2u * (uu & 1u); \
        const uvec4 q = xq[s]; \
        const float d = xd[s]; \
        [[unroll]] for (uint w = 0u; w < 4u; w++) { \
            const uint tq = t0 + (w >> 1), u = w & 1u, T = 2u * h + u; \
            const uint base = (((bf) * 8u + 4u * chunk + T) * TNC + cc) * 2u; \
            /* slots 0, 1 -> k' 2tq, 2tq + 1 (uint tq of the 8 f16-pair words); slots 2, 3 -> 2tq + 8, 2tq + 9 */ \
            const vec4 v = i8x4(q[w]) * d; \
            Bsh4[base][tq] = packFloat2x16(f16vec2(v.xy)); \
            Bsh4[base + 1u][tq] = packFloat2x16(f16vec2(v.zw)); \
        } \
    }

    // Tile T (0…7) of the step: B from buffer bf, products into c0…c(NT−1), one per 16 columns (with NT = 1 the odd
    // tiles, u = 1, go to c1).
#define PRODUCT(T, u) { \
        const uint tb = ((bf * 8u + (T)) * TNC) * 2u; \
        F16MAT b; \
        coopMatLoadNV(b, Bsh4, tb, 2u, true); \
        /* One column matrix: two accumulators (odd tiles in c1), halving the chain of dependent products. */ \
        if (NT == 1u && (u) == 1u) c1 = coopMatMulAddNV(a, b, c1); else c0 = coopMatMulAddNV(a, b, c0); \
        if (NT > 1u) { coopMatLoadNV(b, Bsh4, tb + 32u, 2u, true); c1 = coopMatMulAddNV(a, b, c1); } \
        if (NT > 2u) { coopMatLoadNV(b, Bsh4, tb + 64u, 2u, true); c2 = coopMatMulAddNV(a, b, c2); } \
        if (NT > 3u) { coopMatLoadNV(b, Bsh4, tb + 96u, 2u, true); c3 = coopMatMulAddNV(a, b, c3); } \
    }
    WRegs cur = loadW(r0, r1, kBegin, t), nxt;
    LOAD_X(kBegin)
    uint bf = 0u;
    for (uint k0 = kBegin; k0 < kEnd; k0 += TK) {
        if ((ABL & 2u) == 0u) { STORE_X(bf) }
        const bool more = k0 + TK < kEnd;
        if (more) {
            nxt = loadW(r0, r1, k0 + TK, t);
            if ((ABL & 2u) == 0u) { LOAD_X(k0 + TK) }
        }
        if ((ABL & 4u) == 0u) barrier();
#if defined(TYPE_Q6_K)
        [[unroll]] for (uint m = 0u; m < 4u; m++) {
            const vec2 s0 = vec2(q6Scale(cur.sc0, cur.d0, m, t), 0.0), s1 = vec2(q6Scale(cur.sc1, cur.d1, m, t), 0.0);
            [[unroll]] for (uint u = 0u; u < 2u; u++) {
                const F16MAT a = fragFromBytes(q6Word(cur.la0, cur.lb0, cur.qh0, m, u), q6Word(cur.la1, cur.lb1, cur.qh1, m, u),
                                               s0, s1, 32.0, false);
                PRODUCT(2u * m + u, u)
            }
        }
#else
        const uint c = (k0 >> 6) & 3u;   // first chunk of the step in its block
        [[unroll]] for (uint j = 0u; j < 2u; j++) {
            const uvec2 q0 = cur.q0[j], q1 = cur.q1[j];
            [[unroll]] for (uint h = 0u; h < 2u; h++) {
                const uint sub = 2u * (c + j) + h;
                const vec2 s0 = (ABL & 1u) == 0u ? subScale(cur.h0, sub) : vec2(0.0), s1 = (ABL & 1u) == 0u ? subScale(cur.h1, sub) : vec2(0.0);
                [[unroll]] for (uint u = 0u; u < 2u; u++) {
                    const F16MAT a = fragA(q0, q1, s0, s1, h, u);
                    PRODUCT(4u * j + 2u * h + u, u)
                }
            }
        }
#endif
        if (more) cur = nxt;
        bf ^= 1u;
    }

    // Out through Osh (one 16 × 16 matrix per subgroup at a time), as matmul_cm.comp with one K subgroup.
#define OUT_MAT(cm, j) if (NT > uint(j)) { \
        coopMatStoreNV(cm, Osh, sg * 256u, 16u, false); \
        if (NT == 1u) coopMatStoreNV(c1, Osh, (4u + sg) * 256u, 16u, false); \
        subgroupMemoryBarrierShared(); \
        subgroupBarrier(); \
        for (uint e = lane; e < 256u; e += 32u) { \
            const uint rr = e & 15u, cc = e >> 4; \
            const uint row = row0 + rr, col = col0 + 16u * uint(j) + cc; \
            float v = Osh[sg * 256u + rr * 16u + cc] + (NT == 1u ? Osh[(4u + sg) * 256u + rr * 16u + cc] : 0.0); \
            if (row < p.M && col < p.N && split) { \
                Y[p.pOff + gl_WorkGroupID.z * p.N * p.M + col * p.M + row] = v; \
            } else if (row < p.M && col < p.N) { \
                v += (p.flags & 1u) != 0u ? Bias[row] : 0.0; \
                Y[col * p.M + row] = v; \
                if ((p.flags & 2u) != 0u) Res[col * p.M + row] += v; \
            } \
        } \
        subgroupBarrier(); \
    }
    OUT_MAT(c0, 0) OUT_MAT(c1, 1) OUT_MAT(c2, 2) OUT_MAT(c3, 3)
}
