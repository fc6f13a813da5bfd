#version 450
// Y[c][row] = W[row] . X[c] (+ bias, + residual add) for the columns c of a batched decode step (2...64
// rows of activations), Q4_K or Q6_K weights, on integer dot products: matvec_q8.comp -DQX taken to NC
// columns per workgroup. X comes rounded already, as N columns of packed int8: column c at word c·XS
// (K int8 bytes, then the K/256 Q8_K block scales as f32; XS a multiple of 4 words), written by
// rms_quant / swiglu_quant / attention_merge_quant (quant.glsl's QSTORE_INT8, N-row layout).
// Each workgroup computes R rows × NC columns (columns NC·z ... NC·z + NC − 1 of workgroup z): its
// invocations stride over the rows' units as matvec_q8.comp does, and each unit of weights (loaded once,
// its scales decoded once) is dotted with every column of the group; the columns' x words are small and
// shared by all workgroups (L1/L2). Partial sums go through subgroupAdd and shared memory at the end.
// Every row length K is a multiple of 256 (the host checks).
#extension GL_EXT_control_flow_attributes : require
#extension GL_EXT_spirv_intrinsics : require
#include "common.glsl"
layout(std430, binding = 0) readonly buffer WBuf { uint W[]; };
layout(std430, binding = 0) readonly buffer WBuf4 { uvec4 W4[]; };
#include "dequant.glsl"
layout(std430, binding = 1) readonly buffer XBuf { uint XW[]; };
layout(std430, binding = 1) readonly buffer XBuf4 { uvec4 XQ4[]; };
layout(std430, binding = 2) writeonly buffer YBuf { float Y[]; };
layout(std430, binding = 3) readonly buffer BBuf { float Bias[]; };
layout(std430, binding = 4) buffer ResBuf { float Res[]; };
// flags: bit 0 adds Bias[row]; bit 1 also adds the result into Res[c·M + row]. N: columns of the step;
// XS: words per column of X.
layout(push_constant) uniform Params { uint M, K, rowBytes, flags, N, XS; } p;

layout(constant_id = 1) const uint R = 2u;    // rows per workgroup
layout(constant_id = 2) const uint NC = 8u;   // columns per workgroup (R · NC · subgroups <= 1024: the host checks)
// XPRE: each unit's x words of all NC columns are loaded first, into registers, then used (every load in
// flight at once; a lane often has a single unit, so nothing else hides their latency); 0: each column's
// loads just before its dot products.
layout(constant_id = 3) const bool XPRE = true;

// OpSDot on 4 × 8-bit signed integers packed in 32-bit words (PackedVectorFormat4x8Bit = 0).
spirv_instruction(extensions = ["SPV_KHR_integer_dot_product"], capabilities = [6019, 6018], id = 4450)
int sdot4(uint a, uint b, spirv_literal int fmt);
int dot4(uint a, uint b) { return sdot4(a, b, 0); }

shared float mc_sh[1024];

void main() {
    const uint row0 = flat_group() * R;
    if (row0 >= p.M) return;  // uniform per workgroup
    const uint col0 = gl_WorkGroupID.z * NC;
    const uint lane = gl_LocalInvocationID.x, S = WG;
    float acc[R * NC];
    uint rowOff[R], xcol[NC];
    [[unroll]] for (uint i = 0u; i < R * NC; i++) acc[i] = 0.0;
    [[unroll]] for (uint r = 0u; r < R; r++) rowOff[r] = min(row0 + r, p.M - 1u) * p.rowBytes;
    // Columns past N read the last one (their sums are not written).
    [[unroll]] for (uint c = 0u; c < NC; c++) xcol[c] = min(col0 + c, p.N - 1u) * p.XS;
    const uint kw = p.K / 4u;   // where a column's scales start, in words
#if defined(TYPE_Q4_K)
    // unit = (block b, part q) as in matvec_q8.comp: qs bytes [16q, 16q+16) of each row.
    const uint units = (p.K / 256u) * 8u;
    uvec4 hdr[R], qs[R];
    uint u = lane;
    {
        const uint uc = min(u, units - 1u), b = uc >> 3, q = uc & 7u;
        [[unroll]] for (uint r = 0u; r < R; r++) {
            const uint bo = (rowOff[r] >> 4) + b * 9u;
            hdr[r] = W4[bo]; qs[r] = W4[bo + 1u + q];
        }
    }
    for (; u < units; u += S) {
        const uint b = u >> 3, q = u & 7u, c = q >> 1, h = q & 1u;
        const uint xo = (b * 256u + 64u * c + 16u * h) >> 2;   // in words
        uvec4 XL[NC], XH[NC];
        float DX[NC];
        if (XPRE) {
            [[unroll]] for (uint j = 0u; j < NC; j++) {
                const uint xb = xcol[j];
                XL[j] = XQ4[(xb + xo) >> 2]; XH[j] = XQ4[(xb + xo + 8u) >> 2]; DX[j] = uintBitsToFloat(XW[xb + kw + b]);
            }
        }
        // Per row: the two sub-blocks' scales and mins, d and dmin, the low and high nibbles.
        int sc0[R], m0[R], sc1[R], m1[R];
        vec2 dm[R];
        uvec4 lo[R], hi[R];
        [[unroll]] for (uint r = 0u; r < R; r++) {
            const uvec4 hd = hdr[r], w = qs[r];
            const uint s0 = hd.y, s1 = hd.z, s2 = hd.w;
            if (c < 2u) {
                const uint sh0 = 16u * c;
                sc0[r] = int((s0 >> sh0) & 63u); sc1[r] = int((s0 >> (sh0 + 8u)) & 63u);
                m0[r] = int((s1 >> sh0) & 63u); m1[r] = int((s1 >> (sh0 + 8u)) & 63u);
            } else {
                const uint sh0 = 16u * (c - 2u);
                const uint a0 = (s2 >> sh0) & 0xFFu, a1 = (s2 >> (sh0 + 8u)) & 0xFFu;
                const uint b0 = (s0 >> sh0) & 0xFFu, b1 = (s0 >> (sh0 + 8u)) & 0xFFu;
                const uint c0 = (s1 >> sh0) & 0xFFu, c1 = (s1 >> (sh0 + 8u)) & 0xFFu;
                sc0[r] = int((a0 & 0xFu) | ((b0 >> 6) << 4)); m0[r] = int((a0 >> 4) | ((c0 >> 6) << 4));
                sc1[r] = int((a1 & 0xFu) | ((b1 >> 6) << 4)); m1[r] = int((a1 >> 4) | ((c1 >> 6) << 4));
            }
            dm[r] = unpackHalf2x16(hd.x);
            lo[r] = w & 0x0F0F0F0Fu;
            hi[r] = (w >> 4) & 0x0F0F0F0Fu;
        }
        const uint un = u + S;
        if (un < units) {
            const uint b2 = un >> 3, q2 = un & 7u;
            [[unroll]] for (uint r = 0u; r < R; r++) {
                const uint bo = (rowOff[r] >> 4) + b2 * 9u;
                hdr[r] = W4[bo]; qs[r] = W4[bo + 1u + q2];
            }
        }
        [[unroll]] for (uint j = 0u; j < NC; j++) {
            const uint xb = xcol[j];
            const uvec4 xl = XPRE ? XL[j] : XQ4[(xb + xo) >> 2], xh = XPRE ? XH[j] : XQ4[(xb + xo + 8u) >> 2];
            const float dx = XPRE ? DX[j] : uintBitsToFloat(XW[xb + kw + b]);
            const int sl = dot4(xl.x, 0x01010101u) + dot4(xl.y, 0x01010101u) + dot4(xl.z, 0x01010101u) + dot4(xl.w, 0x01010101u);
            const int sh = dot4(xh.x, 0x01010101u) + dot4(xh.y, 0x01010101u) + dot4(xh.z, 0x01010101u) + dot4(xh.w, 0x01010101u);
            [[unroll]] for (uint r = 0u; r < R; r++) {
                const int dl = dot4(lo[r].x, xl.x) + dot4(lo[r].y, xl.y) + dot4(lo[r].z, xl.z) + dot4(lo[r].w, xl.w);
                const int dh = dot4(hi[r].x, xh.x) + dot4(hi[r].y, xh.y) + dot4(hi[r].z, xh.z) + dot4(hi[r].w, xh.w);
                acc[r * NC + j] += dx * (dm[r].x * float(sc0[r] * dl + sc1[r] * dh) - dm[r].y * float(m0[r] * sl + m1[r] * sh));
            }
        }
    }
#elif defined(TYPE_Q6_K)
    // unit = (block b, part t) as in matvec_q8.comp: n = t/8 (half of 128), l0 = 4(t%8): elements
    // 128n + l0 + 32k + i (k, i < 4).
    const uint units = (p.K / 256u) * 16u;
    uint A[R], B[R], H[R], SA[R], SB[R], D[R];
    uint u = lane;
    {
        const uint uc = min(u, units - 1u), b = uc >> 4, t = uc & 15u, n = t >> 3, l0 = (t & 7u) * 4u;
        [[unroll]] for (uint r = 0u; r < R; r++) {
            const uint bo = rowOff[r] + b * 210u;
            A[r] = ld32(bo + 64u * n + l0); B[r] = ld32(bo + 64u * n + 32u + l0);
            H[r] = ld32(bo + 128u + 32u * n + l0);
            const uint so = bo + 192u + 8u * n + (l0 >> 4);
            SA[r] = ld32(so); SB[r] = ld32(so + 4u);
            D[r] = W[(bo + 208u) >> 2] >> (((bo + 208u) & 2u) * 8u);
        }
    }
    for (; u < units; u += S) {
        const uint b = u >> 4, t = u & 15u, n = t >> 3, l0 = (t & 7u) * 4u;
        const uint xw = (b * 256u + 128u * n + l0) >> 2;   // in words; k-th group at xw + 8k
        uvec4 XK[NC];
        float DX[NC];
        if (XPRE) {
            [[unroll]] for (uint j = 0u; j < NC; j++) {
                const uint xb = xcol[j] + xw;
                XK[j] = uvec4(XW[xb], XW[xb + 8u], XW[xb + 16u], XW[xb + 24u]); DX[j] = uintBitsToFloat(XW[xcol[j] + kw + b]);
            }
        }
        uint q0[R], q1[R], q2[R], q3[R];
        int k0[R], k1[R], k2[R], k3[R];
        float dr[R];
        [[unroll]] for (uint r = 0u; r < R; r++) {
            const uint a = A[r], bb = B[r], hh = H[r];
            q0[r] = (a & 0x0F0F0F0Fu) | ((hh & 0x03030303u) << 4);
            q1[r] = (bb & 0x0F0F0F0Fu) | (((hh >> 2) & 0x03030303u) << 4);
            q2[r] = ((a >> 4) & 0x0F0F0F0Fu) | (((hh >> 4) & 0x03030303u) << 4);
            q3[r] = ((bb >> 4) & 0x0F0F0F0Fu) | (((hh >> 6) & 0x03030303u) << 4);
            k0[r] = bitfieldExtract(int(SA[r]), 0, 8); k1[r] = bitfieldExtract(int(SA[r]), 16, 8);
            k2[r] = bitfieldExtract(int(SB[r]), 0, 8); k3[r] = bitfieldExtract(int(SB[r]), 16, 8);
            dr[r] = unpackHalf2x16(D[r] & 0xFFFFu).x;
        }
        const uint un = u + S;
        if (un < units) {
            const uint b2 = un >> 4, t2 = un & 15u, n2 = t2 >> 3, l2 = (t2 & 7u) * 4u;
            [[unroll]] for (uint r = 0u; r < R; r++) {
                const uint bo = rowOff[r] + b2 * 210u;
                A[r] = ld32(bo + 64u * n2 + l2); B[r] = ld32(bo + 64u * n2 + 32u + l2);
                H[r] = ld32(bo + 128u + 32u * n2 + l2);
                const uint so = bo + 192u + 8u * n2 + (l2 >> 4);
                SA[r] = ld32(so); SB[r] = ld32(so + 4u);
                D[r] = W[(bo + 208u) >> 2] >> (((bo + 208u) & 2u) * 8u);
            }
        }
        [[unroll]] for (uint j = 0u; j < NC; j++) {
            const uint xb = xcol[j] + xw;
            const uvec4 xk = XPRE ? XK[j] : uvec4(XW[xb], XW[xb + 8u], XW[xb + 16u], XW[xb + 24u]);
            const uint x0 = xk.x, x1 = xk.y, x2 = xk.z, x3 = xk.w;
            const float dx = XPRE ? DX[j] : uintBitsToFloat(XW[xcol[j] + kw + b]);
            const int s0 = 32 * dot4(x0, 0x01010101u), s1 = 32 * dot4(x1, 0x01010101u);
            const int s2 = 32 * dot4(x2, 0x01010101u), s3 = 32 * dot4(x3, 0x01010101u);
            [[unroll]] for (uint r = 0u; r < R; r++) {
                const int t0 = k0[r] * (dot4(q0[r], x0) - s0) + k1[r] * (dot4(q1[r], x1) - s1)
                             + k2[r] * (dot4(q2[r], x2) - s2) + k3[r] * (dot4(q3[r], x3) - s3);
                acc[r * NC + j] += dx * dr[r] * float(t0);
            }
        }
    }
#else
#error "matvec_q8_mc.comp: TYPE_Q4_K or TYPE_Q6_K"
#endif
    // Partial sums: subgroupAdd, then across subgroups through mc_sh (R · NC · subgroups <= 1024);
    // output i = r · NC + j written by invocation i.
    [[unroll]] for (uint i = 0u; i < R * NC; i++) acc[i] = subgroupAdd(acc[i]);
    if (subgroupElect()) [[unroll]] for (uint i = 0u; i < R * NC; i++) mc_sh[i * gl_NumSubgroups + gl_SubgroupID] = acc[i];
    barrier();
    for (uint i = lane; i < R * NC; i += S) {
        const uint r = i / NC, j = i % NC, row = row0 + r, col = col0 + j;
        if (row >= p.M || col >= p.N) continue;
        float v = 0.0;
        for (uint s = 0u; s < gl_NumSubgroups; s++) v += mc_sh[i * gl_NumSubgroups + s];
        v += (p.flags & 1u) != 0u ? Bias[row] : 0.0;
        Y[col * p.M + row] = v;
        if ((p.flags & 2u) != 0u) Res[col * p.M + row] += v;
    }
}
