#version 450
// Y[row] = W[row] . X (+ bias[row]) for one column (decode). W: M rows of K values in a ggml block
// layout (TYPE_*), X: K f32. One workgroup per R rows: its invocations stride over the rows in units
// of contiguous weight bytes (a 4096-wide Q4_K row is one unit per invocation, so every load of the
// matrix is in flight at once), each x value loaded once for the R rows; partial sums reduced with
// subgroupAdd and one shared-memory exchange. Q4_K and Q6_K have unrolled decoders (16-byte / 3-word
// loads per unit, scales decoded once per unit); other formats use dq4.
// MC (matvec_mc_*): several columns (2 <= N, batched decode): workgroup z covers columns
// [NC z, NC z + NC) of X (row-major N x K, as matmul.comp reads it); each row's weights are loaded
// and decoded once and applied to every column of the group; Y[c * M + row] as matmul.comp writes it.
#extension GL_EXT_control_flow_attributes : require
#include "common.glsl"
layout(std430, binding = 0) readonly buffer WBuf { uint W[]; };
layout(std430, binding = 0) readonly buffer WBuf4 { uvec4 W4[]; };
#include "dequant.glsl"
layout(std430, binding = 1) readonly buffer XBuf { vec4 X[]; };
layout(std430, binding = 2) writeonly buffer YBuf { float Y[]; };
layout(std430, binding = 3) readonly buffer BBuf { float Bias[]; };
layout(std430, binding = 4) buffer ResBuf { float Res[]; };
// flags: bit 0 adds Bias[row]; bit 1 also adds the result into Res[row] (a fused residual add).
#ifdef MC
layout(push_constant) uniform Params { uint M, K, rowBytes, flags, rowsPerGroup, N; } p;
#define NC 8u
// partial sums of R rows x NC columns per subgroup (the host keeps R * NC * subgroups <= 1024)
shared float mc_sh[1024];
#else
layout(push_constant) uniform Params { uint M, K, rowBytes, flags, rowsPerGroup; } p;
#define NC 1u
#endif

layout(constant_id = 1) const uint R = 4u;   // rows per workgroup (= rowsPerGroup, from the host)
layout(constant_id = 2) const uint U = 1u;   // Q4_K: units per invocation with loads in flight together
const uint UR = U * R;

#ifdef MC
void put(uint col, uint row, float v) {
    v += (p.flags & 1u) != 0u ? Bias[row] : 0.0;
    Y[col * p.M + row] = v;
    if ((p.flags & 2u) != 0u) Res[col * p.M + row] += v;
}
#else
void put(uint row, float v) {
    v += (p.flags & 1u) != 0u ? Bias[row] : 0.0;
    Y[row] = v;
    if ((p.flags & 2u) != 0u) Res[row] += v;
}
#endif

float hsum(vec4 v) { return (v.x + v.y) + (v.z + v.w); }

#ifdef XSH
// Variant (matvec_xs_q4_K): X staged in shared memory once per workgroup (K <= 4096; the host checks).
shared vec4 Xs[1024];
#define XLOAD(i) Xs[i]
#else
#define XLOAD(i) X[i]
#endif

#ifdef MC
void main() {
    const uint row0 = flat_group() * R;
    if (row0 >= p.M) return;  // uniform per workgroup
    const uint lane = gl_LocalInvocationID.x, S = WG;
    const uint col0 = gl_WorkGroupID.z * NC, ncols = min(NC, p.N - col0);
    const uint K4 = p.K / 4u;   // vec4s per column of X
    {
        float acc[R * NC];   // acc[c * R + r]
        uint rowOff[R];
        for (uint r = 0u; r < R; r++) rowOff[r] = min(row0 + r, p.M - 1u) * p.rowBytes;
        [[unroll]] for (uint i = 0u; i < R * NC; i++) acc[i] = 0.0;
#if defined(TYPE_Q4_K)
        // unit = (block b, part q): qs bytes [16q, 16q+16): low nibbles -> elements 64c+16h+j of
        // sub-block 2c, high nibbles -> 64c+32+16h+j of sub-block 2c+1 (c = q/2, h = q%2).
        // Every row's loads are issued before any arithmetic: the block header (d, dmin and the 12
        // scale bytes: 16 aligned bytes) and the unit's 16 qs bytes, one 16-byte load each;
        // U units per invocation are loaded before any is computed (more bytes in flight per thread).
        const uint units = (p.K / 256u) * 8u;
        for (uint u0 = lane; u0 < units; u0 += S * U) {
            uvec4 hdr[UR], qs[UR];
            [[unroll]] for (uint t = 0u; t < U; t++) {
                const uint u = min(u0 + t * S, units - 1u);   // clamped: past-the-end units are loaded, not used
                const uint b = u >> 3, q = u & 7u;
                [[unroll]] for (uint r = 0u; r < R; r++) {
                    const uint bo = (rowOff[r] >> 4) + b * 9u;   // in 16-byte units (a block is 144 bytes)
                    hdr[t * R + r] = W4[bo];
                    qs[t * R + r] = W4[bo + 1u + q];
                }
            }
            [[unroll]] for (uint t = 0u; t < U; t++) {
            const uint u = u0 + t * S;
            if (u >= units) break;
            const uint b = u >> 3, q = u & 7u, c = q >> 1, h = q & 1u;
            const uint xi = (b * 256u + 64u * c + 16u * h) >> 2;
            float fsc0[R], fsc1[R], fm0[R], fm1[R], fd[R], fdm[R];
            [[unroll]] for (uint r = 0u; r < R; r++) {
                // 6-bit scales/mins of sub-blocks j0 = 2c and j1 = 2c+1 (get_scale_min_k4)
                const uvec4 hd = hdr[t * R + r];
                const uint s0 = hd.y, s1 = hd.z, s2 = hd.w;
                uint sc0, m0, sc1, m1;
                if (c < 2u) {
                    const uint sh0 = 16u * c;  // bytes 2c, 2c+1 of s0 (scales) and s1 (mins)
                    sc0 = (s0 >> sh0) & 63u; sc1 = (s0 >> (sh0 + 8u)) & 63u;
                    m0 = (s1 >> sh0) & 63u; m1 = (s1 >> (sh0 + 8u)) & 63u;
                } else {
                    const uint sh0 = 16u * (c - 2u);  // j = 4..7: bytes j+4 of s2, j-4 of s0, j of s1
                    const uint a0 = (s2 >> sh0) & 0xFFu, a1 = (s2 >> (sh0 + 8u)) & 0xFFu;
                    const uint b0 = (s0 >> sh0) & 0xFFu, b1 = (s0 >> (sh0 + 8u)) & 0xFFu;
                    const uint c0 = (s1 >> sh0) & 0xFFu, c1 = (s1 >> (sh0 + 8u)) & 0xFFu;
                    sc0 = (a0 & 0xFu) | ((b0 >> 6) << 4); m0 = (a0 >> 4) | ((c0 >> 6) << 4);
                    sc1 = (a1 & 0xFu) | ((b1 >> 6) << 4); m1 = (a1 >> 4) | ((c1 >> 6) << 4);
                }
                const vec2 dm = unpackHalf2x16(hd.x);
                fsc0[r] = float(sc0); fsc1[r] = float(sc1); fm0[r] = float(m0); fm1[r] = float(m1);
                fd[r] = dm.x; fdm[r] = dm.y;
            }
            [[unroll]] for (uint cc = 0u; cc < NC; cc++) {
            if (cc >= ncols) break;
            const uint xc = xi + (col0 + cc) * K4;
            const vec4 xl0 = X[xc], xl1 = X[xc + 1u], xl2 = X[xc + 2u], xl3 = X[xc + 3u];
            const vec4 xh0 = X[xc + 8u], xh1 = X[xc + 9u], xh2 = X[xc + 10u], xh3 = X[xc + 11u];
            const float sl = hsum(xl0 + xl1 + xl2 + xl3), sh = hsum(xh0 + xh1 + xh2 + xh3);
            [[unroll]] for (uint r = 0u; r < R; r++) {
                const uvec4 w = qs[t * R + r];
                const float dl = hsum(u8x4(w.x & 0x0F0F0F0Fu) * xl0 + u8x4(w.y & 0x0F0F0F0Fu) * xl1
                                    + u8x4(w.z & 0x0F0F0F0Fu) * xl2 + u8x4(w.w & 0x0F0F0F0Fu) * xl3);
                const float dh = hsum(u8x4((w.x >> 4) & 0x0F0F0F0Fu) * xh0 + u8x4((w.y >> 4) & 0x0F0F0F0Fu) * xh1
                                    + u8x4((w.z >> 4) & 0x0F0F0F0Fu) * xh2 + u8x4((w.w >> 4) & 0x0F0F0F0Fu) * xh3);
                acc[cc * R + r] += fd[r] * (fsc0[r] * dl + fsc1[r] * dh) - fdm[r] * (fm0[r] * sl + fm1[r] * sh);
            }
            }
            }
        }
#elif defined(TYPE_Q6_K)
        // unit = (block b, part t): n = t/8 (half of 128), l0 = 4(t%8): elements 128n + l0 + 32k + i.
        // Loads for every row first (ql, qh words, the 4 scale bytes, d), then the arithmetic.
        const uint units = (p.K / 256u) * 16u;
        for (uint u = lane; u < units; u += S) {
            const uint b = u >> 4, t = u & 15u, n = t >> 3, l0 = (t & 7u) * 4u;
            uint A[R], B[R], H[R], SA[R], SB[R], D[R];
            [[unroll]] for (uint r = 0u; r < R; r++) {
                const uint bo = rowOff[r] + b * 210u;
                A[r] = ld32(bo + 64u * n + l0); B[r] = ld32(bo + 64u * n + 32u + l0);
                H[r] = ld32(bo + 128u + 32u * n + l0);
                const uint so = bo + 192u + 8u * n + (l0 >> 4);
                SA[r] = ld32(so); SB[r] = ld32(so + 4u);
                D[r] = W[(bo + 208u) >> 2] >> (((bo + 208u) & 2u) * 8u);
            }
            const uint xi = (b * 256u + 128u * n + l0) >> 2;
            uint Q0[R], Q1[R], Q2[R], Q3[R];
            float F0[R], F1[R], F2[R], F3[R], FD[R];
            [[unroll]] for (uint r = 0u; r < R; r++) {
                F0[r] = float(bitfieldExtract(int(SA[r]), 0, 8)); F1[r] = float(bitfieldExtract(int(SA[r]), 16, 8));
                F2[r] = float(bitfieldExtract(int(SB[r]), 0, 8)); F3[r] = float(bitfieldExtract(int(SB[r]), 16, 8));
                const uint a = A[r], bb = B[r], hh = H[r];
                Q0[r] = (a & 0x0F0F0F0Fu) | ((hh & 0x03030303u) << 4);
                Q1[r] = (bb & 0x0F0F0F0Fu) | (((hh >> 2) & 0x03030303u) << 4);
                Q2[r] = ((a >> 4) & 0x0F0F0F0Fu) | (((hh >> 4) & 0x03030303u) << 4);
                Q3[r] = ((bb >> 4) & 0x0F0F0F0Fu) | (((hh >> 6) & 0x03030303u) << 4);
                FD[r] = unpackHalf2x16(D[r] & 0xFFFFu).x;
            }
            [[unroll]] for (uint cc = 0u; cc < NC; cc++) {
            if (cc >= ncols) break;
            const uint xc = xi + (col0 + cc) * K4;
            const vec4 x0 = X[xc], x1 = X[xc + 8u], x2 = X[xc + 16u], x3 = X[xc + 24u];
            const float s0x = hsum(x0), s1x = hsum(x1), s2x = hsum(x2), s3x = hsum(x3);
            [[unroll]] for (uint r = 0u; r < R; r++) {
                acc[cc * R + r] += FD[r] * (F0[r] * (dot(u8x4(Q0[r]), x0) - 32.0 * s0x) + F1[r] * (dot(u8x4(Q1[r]), x1) - 32.0 * s1x)
                             + F2[r] * (dot(u8x4(Q2[r]), x2) - 32.0 * s2x) + F3[r] * (dot(u8x4(Q3[r]), x3) - 32.0 * s3x));
            }
            }
        }
#else
        const uint groups = BS / 4u, total = p.K / 4u;
        for (uint g = lane; g < total; g += S) {
            const uint blk = g / groups, i = (g - blk * groups) * 4u;
            vec4 wv[R];
            for (uint r = 0u; r < R; r++) wv[r] = dq4(rowOff[r] + blk * BB, i);
            [[unroll]] for (uint cc = 0u; cc < NC; cc++) {
                if (cc >= ncols) break;
                const vec4 x = X[(col0 + cc) * K4 + g];
                for (uint r = 0u; r < R; r++) acc[cc * R + r] += dot(wv[r], x);
            }
        }
#endif
        [[unroll]] for (uint i = 0u; i < R * NC; i++) acc[i] = subgroupAdd(acc[i]);
        if (gl_NumSubgroups > 1) {
            if (subgroupElect()) [[unroll]] for (uint i = 0u; i < R * NC; i++) mc_sh[i * gl_NumSubgroups + gl_SubgroupID] = acc[i];
            barrier();
            for (uint i = lane; i < R * NC; i += S) {
                float t = 0.0;
                for (uint j = 0u; j < gl_NumSubgroups; j++) t += mc_sh[i * gl_NumSubgroups + j];
                const uint cc = i / R, row = row0 + (i - cc * R);
                if (cc < ncols && row < p.M) put(col0 + cc, row, t);
            }
        } else if (subgroupElect()) {
            [[unroll]] for (uint i = 0u; i < R * NC; i++) {
                const uint cc = i / R, row = row0 + (i - cc * R);
                if (cc < ncols && row < p.M) put(col0 + cc, row, acc[i]);
            }
        }
    }
}
#else
void main() {
    const uint row0 = flat_group() * R;
    if (row0 >= p.M) return;  // uniform per workgroup
    const uint lane = gl_LocalInvocationID.x, S = WG;
#ifdef XSH
    for (uint i = lane; i < p.K / 4u; i += S) Xs[i] = X[i];
    barrier();
#endif
    {
        float acc[R];
        uint rowOff[R];
        for (uint r = 0u; r < R; r++) { acc[r] = 0.0; rowOff[r] = min(row0 + r, p.M - 1u) * p.rowBytes; }
#if defined(TYPE_Q4_K)
        // unit = (block b, part q): qs bytes [16q, 16q+16): low nibbles -> elements 64c+16h+j of
        // sub-block 2c, high nibbles -> 64c+32+16h+j of sub-block 2c+1 (c = q/2, h = q%2).
        // Every row's loads are issued before any arithmetic: the block header (d, dmin and the 12
        // scale bytes: 16 aligned bytes) and the unit's 16 qs bytes, one 16-byte load each;
        // U units per invocation are loaded before any is computed (more bytes in flight per thread).
        const uint units = (p.K / 256u) * 8u;
        for (uint u0 = lane; u0 < units; u0 += S * U) {
            uvec4 hdr[UR], qs[UR];
            [[unroll]] for (uint t = 0u; t < U; t++) {
                const uint u = min(u0 + t * S, units - 1u);   // clamped: past-the-end units are loaded, not used
                const uint b = u >> 3, q = u & 7u;
                [[unroll]] for (uint r = 0u; r < R; r++) {
                    const uint bo = (rowOff[r] >> 4) + b * 9u;   // in 16-byte units (a block is 144 bytes)
                    hdr[t * R + r] = W4[bo];
                    qs[t * R + r] = W4[bo + 1u + q];
                }
            }
            [[unroll]] for (uint t = 0u; t < U; t++) {
            const uint u = u0 + t * S;
            if (u >= units) break;
            const uint b = u >> 3, q = u & 7u, c = q >> 1, h = q & 1u;
            const uint xi = (b * 256u + 64u * c + 16u * h) >> 2;
            const vec4 xl0 = XLOAD(xi), xl1 = XLOAD(xi + 1u), xl2 = XLOAD(xi + 2u), xl3 = XLOAD(xi + 3u);
            const vec4 xh0 = XLOAD(xi + 8u), xh1 = XLOAD(xi + 9u), xh2 = XLOAD(xi + 10u), xh3 = XLOAD(xi + 11u);
            const float sl = hsum(xl0 + xl1 + xl2 + xl3), sh = hsum(xh0 + xh1 + xh2 + xh3);
            [[unroll]] for (uint r = 0u; r < R; r++) {
                // 6-bit scales/mins of sub-blocks j0 = 2c and j1 = 2c+1 (get_scale_min_k4)
                const uvec4 hd = hdr[t * R + r];
                const uint s0 = hd.y, s1 = hd.z, s2 = hd.w;
                uint sc0, m0, sc1, m1;
                if (c < 2u) {
                    const uint sh0 = 16u * c;  // bytes 2c, 2c+1 of s0 (scales) and s1 (mins)
                    sc0 = (s0 >> sh0) & 63u; sc1 = (s0 >> (sh0 + 8u)) & 63u;
                    m0 = (s1 >> sh0) & 63u; m1 = (s1 >> (sh0 + 8u)) & 63u;
                } else {
                    const uint sh0 = 16u * (c - 2u);  // j = 4..7: bytes j+4 of s2, j-4 of s0, j of s1
                    const uint a0 = (s2 >> sh0) & 0xFFu, a1 = (s2 >> (sh0 + 8u)) & 0xFFu;
                    const uint b0 = (s0 >> sh0) & 0xFFu, b1 = (s0 >> (sh0 + 8u)) & 0xFFu;
                    const uint c0 = (s1 >> sh0) & 0xFFu, c1 = (s1 >> (sh0 + 8u)) & 0xFFu;
                    sc0 = (a0 & 0xFu) | ((b0 >> 6) << 4); m0 = (a0 >> 4) | ((c0 >> 6) << 4);
                    sc1 = (a1 & 0xFu) | ((b1 >> 6) << 4); m1 = (a1 >> 4) | ((c1 >> 6) << 4);
                }
                const vec2 dm = unpackHalf2x16(hd.x);
                const uvec4 w = qs[t * R + r];
                const float dl = hsum(u8x4(w.x & 0x0F0F0F0Fu) * xl0 + u8x4(w.y & 0x0F0F0F0Fu) * xl1
                                    + u8x4(w.z & 0x0F0F0F0Fu) * xl2 + u8x4(w.w & 0x0F0F0F0Fu) * xl3);
                const float dh = hsum(u8x4((w.x >> 4) & 0x0F0F0F0Fu) * xh0 + u8x4((w.y >> 4) & 0x0F0F0F0Fu) * xh1
                                    + u8x4((w.z >> 4) & 0x0F0F0F0Fu) * xh2 + u8x4((w.w >> 4) & 0x0F0F0F0Fu) * xh3);
                acc[r] += dm.x * (float(sc0) * dl + float(sc1) * dh) - dm.y * (float(m0) * sl + float(m1) * sh);
            }
            }
        }
#elif defined(TYPE_Q6_K)
        // unit = (block b, part t): n = t/8 (half of 128), l0 = 4(t%8): elements 128n + l0 + 32k + i.
        // Loads for every row first (ql, qh words, the 4 scale bytes, d), then the arithmetic.
        const uint units = (p.K / 256u) * 16u;
        for (uint u = lane; u < units; u += S) {
            const uint b = u >> 4, t = u & 15u, n = t >> 3, l0 = (t & 7u) * 4u;
            uint A[R], B[R], H[R], SA[R], SB[R], D[R];
            [[unroll]] for (uint r = 0u; r < R; r++) {
                const uint bo = rowOff[r] + b * 210u;
                A[r] = ld32(bo + 64u * n + l0); B[r] = ld32(bo + 64u * n + 32u + l0);
                H[r] = ld32(bo + 128u + 32u * n + l0);
                const uint so = bo + 192u + 8u * n + (l0 >> 4);
                SA[r] = ld32(so); SB[r] = ld32(so + 4u);
                D[r] = W[(bo + 208u) >> 2] >> (((bo + 208u) & 2u) * 8u);
            }
            const uint xi = (b * 256u + 128u * n + l0) >> 2;
            const vec4 x0 = X[xi], x1 = X[xi + 8u], x2 = X[xi + 16u], x3 = X[xi + 24u];
            const float s0x = hsum(x0), s1x = hsum(x1), s2x = hsum(x2), s3x = hsum(x3);
            [[unroll]] for (uint r = 0u; r < R; r++) {
                const float sc0 = float(bitfieldExtract(int(SA[r]), 0, 8)), sc1 = float(bitfieldExtract(int(SA[r]), 16, 8));
                const float sc2 = float(bitfieldExtract(int(SB[r]), 0, 8)), sc3 = float(bitfieldExtract(int(SB[r]), 16, 8));
                const uint a = A[r], bb = B[r], hh = H[r];
                const uint q0 = (a & 0x0F0F0F0Fu) | ((hh & 0x03030303u) << 4);
                const uint q1 = (bb & 0x0F0F0F0Fu) | (((hh >> 2) & 0x03030303u) << 4);
                const uint q2 = ((a >> 4) & 0x0F0F0F0Fu) | (((hh >> 4) & 0x03030303u) << 4);
                const uint q3 = ((bb >> 4) & 0x0F0F0F0Fu) | (((hh >> 6) & 0x03030303u) << 4);
                const float d = unpackHalf2x16(D[r] & 0xFFFFu).x;
                acc[r] += d * (sc0 * (dot(u8x4(q0), x0) - 32.0 * s0x) + sc1 * (dot(u8x4(q1), x1) - 32.0 * s1x)
                             + sc2 * (dot(u8x4(q2), x2) - 32.0 * s2x) + sc3 * (dot(u8x4(q3), x3) - 32.0 * s3x));
            }
        }
#else
        const uint groups = BS / 4u, total = p.K / 4u;
        for (uint g = lane; g < total; g += S) {
            const vec4 x = X[g];
            const uint blk = g / groups, i = (g - blk * groups) * 4u;
            for (uint r = 0u; r < R; r++) acc[r] += dot(dq4(rowOff[r] + blk * BB, i), x);
        }
#endif
        for (uint r = 0u; r < R; r++) acc[r] = subgroupAdd(acc[r]);
        if (gl_NumSubgroups > 1) {
            if (subgroupElect()) for (uint r = 0u; r < R; r++) red_sh[r * gl_NumSubgroups + gl_SubgroupID] = acc[r];
            barrier();
            if (lane < R) {
                float t = 0.0;
                for (uint i = 0u; i < gl_NumSubgroups; i++) t += red_sh[lane * gl_NumSubgroups + i];
                const uint row = row0 + lane;
                if (row < p.M) put(row, t);
            }
        } else if (subgroupElect()) {
            for (uint r = 0u; r < R; r++) {
                const uint row = row0 + r;
                if (row < p.M) put(row, acc[r]);
            }
        }
    }
}
#endif
