#version 450
// Y[row] = W[row] . X (+ bias, + residual add) for one column (decode), Q4_K or Q6_K weights, with
// integer dot products (SPV_KHR_integer_dot_product, 4 × int8 packed: NVIDIA's dp4a): the float
// mat-vec (matvec.comp) spends more time converting nibbles to floats than loading them.
// Each workgroup first rounds X to the Q8_K grid itself (blocks of 256: exactly quantize_k.comp's
// arithmetic, so X may be raw or already rounded: rounding a rounded block again gives the same
// int8 values and the same scale to an ulp), into shared memory as packed int8 plus one scale per
// block; then its invocations stride over the rows' units as matvec.comp does, with the weights of
// their first unit loaded before the rounding (their latency hides behind it).
// NORM (flags bit 2): X is the raw input of an RMSNorm: the value of element i is
// X[i] * (1 / sqrt(mean(X²) + eps)) * NormW[i] (rms_quant.comp's expression), each workgroup summing
// the squares itself; workgroup 0 also writes the normalized row to O when flags bit 3 is set (the
// norm's output, as rms_norm would). This fuses the norm into the mat-vecs that read it.
// QX (matvec_q8x_*): X comes rounded already, as packed int8 (K bytes) followed by the K/256 block
// scales (f32), written by rms_quant / swiglu_quant (quant.glsl's QSTORE_INT8): no rounding here.
// PAIR (matvec_q8_pair_q4_K; Q4_K, no bias): the gate and up projections of a SwiGLU FFN in one
// dispatch, each workgroup computing the same R rows of W (gate) and W2 (up) from one rounding of X,
// then Y[row] = silu(gate) * up (swiglu.comp's expression) and Res[row] = up (the up output): the
// SwiGLU fused into the mat-vecs' epilogue (the down projection rounds its input itself).
// ROPE (matvec_q8x_rope_*, with QX; one row): the q, k or v projection of a decode step with the rope
// and the KV store in its epilogue (rope_store.comp's work; no rope_store dispatch): mode 0 (q) rotates
// each row pair (2i, 2i+1) of a head (non-neox rope: a pair is two adjacent rows, which one workgroup
// holds: R even) with the step's cos/sin table; mode 1 (k) rotates and also writes the pair as one f16
// word into the row's K slot of the KV cache; mode 2 (v) writes V unrotated. rope.comp's arithmetic.
// Every row length K is a multiple of 256 and at most MAXK (the host checks).
#extension GL_EXT_control_flow_attributes : require
#extension GL_EXT_spirv_intrinsics : require
#include "common.glsl"
layout(std430, binding = 0) readonly buffer WBuf { uint W[]; };
layout(std430, binding = 0) readonly buffer WBuf4 { uvec4 W4[]; };
#include "dequant.glsl"
#ifdef QX
layout(std430, binding = 1) readonly buffer XBuf { uint XW[]; };
layout(std430, binding = 1) readonly buffer XBuf4 { uvec4 XQ4[]; };
#else
layout(std430, binding = 1) readonly buffer XBuf { float X[]; };
layout(std430, binding = 1) readonly buffer XBuf4 { vec4 X4[]; };
#endif
layout(std430, binding = 2) writeonly buffer YBuf { float Y[]; };
layout(std430, binding = 3) readonly buffer BBuf { float Bias[]; };
layout(std430, binding = 4) buffer ResBuf { float Res[]; };
layout(std430, binding = 5) readonly buffer NBuf { float NormW[]; };
layout(std430, binding = 6) writeonly buffer OBuf { float O[]; };
#ifdef PAIR
layout(std430, binding = 7) readonly buffer W2Buf4 { uvec4 W24[]; };
#endif
#ifdef ROPE
layout(std430, binding = 7) buffer KVBuf { uint KV[]; };
layout(std430, binding = 8) readonly buffer SBuf { int Step[]; };
layout(std430, binding = 9) readonly buffer TBuf { float Table[]; };
#endif
// flags: bit 0 adds Bias[row]; bit 1 also adds the result into Res[row]; bit 2 NORM; bit 3 writes O.
layout(push_constant) uniform Params {
    uint M, K, rowBytes, flags; float eps;
#ifdef ROPE
    uint mode, headDim, half_, tableOffset, pageSize, vOffset, positions, tableIndex, tableStart;
#endif
} p;

layout(constant_id = 1) const uint R = 4u;   // rows per workgroup
#ifdef PAIR
const uint RR = 2u * R;   // accumulators: R rows of W, then the same R rows of W2
#else
const uint RR = R;
#endif

// OpSDot on 4 × 8-bit signed integers packed in 32-bit words (PackedVectorFormat4x8Bit = 0).
spirv_instruction(extensions = ["SPV_KHR_integer_dot_product"], capabilities = [6019, 6018], id = 4450)
int sdot4(uint a, uint b, spirv_literal int fmt);
int dot4(uint a, uint b) { return sdot4(a, b, 0); }

#ifndef QX
const uint MAXK = 16384u;
shared uvec4 xq[MAXK / 16u];     // X as int8, 16 per uvec4
shared float xd[MAXK / 256u];    // scale of each block of 256
shared float cmx[MAXK / 32u];    // per 32 values: the first value of largest |x| (signed)

float g_scale = 1.0;
// Values 32c ... 32c + 31 of X as the mat-vec sees them (normalized under NORM).
void xchunk(uint c, out vec4 v[8]) {
    [[unroll]] for (uint j = 0u; j < 8u; j++) {
        v[j] = X4[c * 8u + j];
        if ((p.flags & 4u) != 0u) {
            const uint i = c * 32u + j * 4u;
            v[j] = v[j] * g_scale * vec4(NormW[i], NormW[i + 1u], NormW[i + 2u], NormW[i + 3u]);
        }
    }
}

float div_rn(float a, float b) {
    const float q = a * (1.0 / b);
    const float r = fma(-q, b, a);
    return fma(r, 1.0 / b, q);
}

// X rounded to the Q8_K grid into xq / xd (quantize_k.comp's arithmetic: per block of 256 the first
// value of largest |x| gives iscale = -127 / max, q = min(127, roundEven(iscale x)), d = 1 / iscale).
void roundX() {
    const uint lane = gl_LocalInvocationID.x, chunks = p.K / 32u;
    if ((p.flags & 4u) != 0u) {
        float s = 0.0;
        for (uint i = lane; i < p.K / 4u; i += WG) { const vec4 v = X4[i]; s += dot(v, v); }
        s = wg_sum(s);
        g_scale = 1.0 / sqrt(s / float(p.K) + p.eps);
    }
    for (uint c = lane; c < chunks; c += WG) {
        vec4 v[8];
        xchunk(c, v);
        float best = 0.0;
        [[unroll]] for (uint j = 0u; j < 8u; j++) {
            [[unroll]] for (uint e = 0u; e < 4u; e++) if (abs(v[j][e]) > abs(best)) best = v[j][e];
        }
        cmx[c] = best;
    }
    barrier();
    const bool writeO = (p.flags & 8u) != 0u && flat_group() == 0u;
    for (uint c = lane; c < chunks; c += WG) {
        const uint b = c >> 3;
        float mx = 0.0;
        [[unroll]] for (uint j = 0u; j < 8u; j++) { const float m = cmx[b * 8u + j]; if (abs(m) > abs(mx)) mx = m; }
        vec4 v[8];
        xchunk(c, v);
        const float iscale = mx != 0.0 ? div_rn(-127.0, mx) : 0.0;
        const float d = mx != 0.0 ? div_rn(1.0, iscale) : 0.0;
        uint w[8];
        [[unroll]] for (uint j = 0u; j < 8u; j++) {
            const ivec4 q = ivec4(min(vec4(127.0), roundEven(iscale * v[j])));
            w[j] = (uint(q.x) & 0xFFu) | ((uint(q.y) & 0xFFu) << 8) | ((uint(q.z) & 0xFFu) << 16) | (uint(q.w) << 24);
            if (writeO) {
                const uint i = c * 32u + j * 4u;
                O[i] = v[j].x; O[i + 1u] = v[j].y; O[i + 2u] = v[j].z; O[i + 3u] = v[j].w;
            }
        }
        xq[c * 2u] = uvec4(w[0], w[1], w[2], w[3]);
        xq[c * 2u + 1u] = uvec4(w[4], w[5], w[6], w[7]);
        if ((c & 7u) == 0u) xd[b] = d;
    }
    barrier();
}
#endif

void put(uint row, float v) {
    v += (p.flags & 1u) != 0u ? Bias[row] : 0.0;
    Y[row] = v;
    if ((p.flags & 2u) != 0u) Res[row] += v;
}
#ifdef PAIR
// Accumulator r < R: gate row row0 + r; r >= R: up row row0 + r - R.
uvec4 wload(uint r, uint i) { return r < R ? W4[i] : W24[i]; }
#else
uvec4 wload(uint r, uint i) { return W4[i]; }
#endif

#ifdef ROPE
// The epilogue's table entries and KV slot, loaded before the dot products (their latency hides behind them).
vec2 g_cs[(R + 1u) / 2u];
uint g_slot = 0u;
void rope_prologue(uint row0) {
    for (uint j = 0u; j < R / 2u; j++) {
        const uint e = (row0 + 2u * j) % p.headDim, i = e >> 1;
        g_cs[j] = p.mode != 2u && e < 2u * p.half_ ? vec2(Table[p.tableOffset + i], Table[p.tableOffset + p.half_ + i]) : vec2(1.0, 0.0);
    }
    if (p.mode != 0u) {
        const uint pos = uint(Step[p.positions]);
        const uint table = uint(Step[p.tableStart + uint(Step[p.tableIndex])]);
        g_slot = (uint(Step[table + pos / p.pageSize]) * p.pageSize + pos % p.pageSize) * (p.M / 2u) + (p.mode == 2u ? p.vOffset : 0u);
    }
}
// Rows row0 + 2j and row0 + 2j + 1 (a rope pair): bias, rotation (q, k), Y, and the KV word (k, v).
void rope_put(uint row0, uint j, float a0, float a1) {
    const uint row = row0 + 2u * j;
    if (row >= p.M) return;   // M is even (the host checks)
    const float x0 = a0 + ((p.flags & 1u) != 0u ? Bias[row] : 0.0);
    const float x1 = a1 + ((p.flags & 1u) != 0u ? Bias[row + 1u] : 0.0);
    const float c = g_cs[j].x, s = g_cs[j].y;
    const float y0 = p.mode != 2u && (row % p.headDim) < 2u * p.half_ ? x0 * c - x1 * s : x0;
    const float y1 = p.mode != 2u && (row % p.headDim) < 2u * p.half_ ? x0 * s + x1 * c : x1;
    Y[row] = y0; Y[row + 1u] = y1;
    if (p.mode != 0u) KV[g_slot + row / 2u] = f32_to_f16(y0) | (f32_to_f16(y1) << 16);
}
#endif

#ifdef SGROWS
// SGROWS (matvec_q8x_sg_q4_K; QX, Q4_K; with ROPE matvec_q8x_sg_rope_q4_K): each subgroup computes its own R rows, lanes over the
// units, UPL units per lane loaded (for all R rows) before any is used; one subgroupAdd per row, no
// shared memory or barrier. A workgroup covers gl_NumSubgroups * R rows.
layout(constant_id = 2) const uint UPL = 4u;
void main() {
    const uint lane = gl_SubgroupInvocationID, SG = gl_SubgroupSize;
    const uint row0 = (flat_group() * gl_NumSubgroups + gl_SubgroupID) * R;
    if (row0 >= p.M) return;   // uniform per subgroup; no barrier follows
#ifdef ROPE
    rope_prologue(row0);
#endif
    float acc[R];
    uint rowOff[R];
    for (uint r = 0u; r < R; r++) { acc[r] = 0.0; rowOff[r] = (min(row0 + r, p.M - 1u) * p.rowBytes) >> 4; }
    const uint units = (p.K / 256u) * 8u;
    for (uint u0 = 0u; u0 < units; u0 += UPL * SG) {
        uvec4 hdr[UPL][R], qs[UPL][R];
        [[unroll]] for (uint t = 0u; t < UPL; t++) {
            const uint uc = min(u0 + t * SG + lane, units - 1u), b = uc >> 3, q = uc & 7u;
            [[unroll]] for (uint r = 0u; r < R; r++) { hdr[t][r] = W4[rowOff[r] + b * 9u]; qs[t][r] = W4[rowOff[r] + b * 9u + 1u + q]; }
        }
        [[unroll]] for (uint t = 0u; t < UPL; t++) {
            const uint u = u0 + t * SG + lane;
            if (u >= units) break;
            const uint b = u >> 3, q = u & 7u, c = q >> 1, h = q & 1u;
            const uint xo = (b * 256u + 64u * c + 16u * h) >> 4;
            const uvec4 xl = XQ4[xo], xh = XQ4[xo + 2u];
            const float dx = uintBitsToFloat(XW[p.K / 4u + b]);
            const int sl = dot4(xl.x, 0x01010101u) + dot4(xl.y, 0x01010101u) + dot4(xl.z, 0x01010101u) + dot4(xl.w, 0x01010101u);
            const int sh = dot4(xh.x, 0x01010101u) + dot4(xh.y, 0x01010101u) + dot4(xh.z, 0x01010101u) + dot4(xh.w, 0x01010101u);
            [[unroll]] for (uint r = 0u; r < R; r++) {
                const uvec4 hd = hdr[t][r], w = qs[t][r];
                const uint s0 = hd.y, s1 = hd.z, s2 = hd.w;
                uint sc0, m0, sc1, m1;
                if (c < 2u) {
                    const uint sh0 = 16u * c;
                    sc0 = (s0 >> sh0) & 63u; sc1 = (s0 >> (sh0 + 8u)) & 63u;
                    m0 = (s1 >> sh0) & 63u; m1 = (s1 >> (sh0 + 8u)) & 63u;
                } else {
                    const uint sh0 = 16u * (c - 2u);
                    const uint a0 = (s2 >> sh0) & 0xFFu, a1 = (s2 >> (sh0 + 8u)) & 0xFFu;
                    const uint b0 = (s0 >> sh0) & 0xFFu, b1 = (s0 >> (sh0 + 8u)) & 0xFFu;
                    const uint c0 = (s1 >> sh0) & 0xFFu, c1 = (s1 >> (sh0 + 8u)) & 0xFFu;
                    sc0 = (a0 & 0xFu) | ((b0 >> 6) << 4); m0 = (a0 >> 4) | ((c0 >> 6) << 4);
                    sc1 = (a1 & 0xFu) | ((b1 >> 6) << 4); m1 = (a1 >> 4) | ((c1 >> 6) << 4);
                }
                const int dl = dot4(w.x & 0x0F0F0F0Fu, xl.x) + dot4(w.y & 0x0F0F0F0Fu, xl.y)
                             + dot4(w.z & 0x0F0F0F0Fu, xl.z) + dot4(w.w & 0x0F0F0F0Fu, xl.w);
                const int dh = dot4((w.x >> 4) & 0x0F0F0F0Fu, xh.x) + dot4((w.y >> 4) & 0x0F0F0F0Fu, xh.y)
                             + dot4((w.z >> 4) & 0x0F0F0F0Fu, xh.z) + dot4((w.w >> 4) & 0x0F0F0F0Fu, xh.w);
                const vec2 dm = unpackHalf2x16(hd.x);
                acc[r] += dx * (dm.x * float(int(sc0) * dl + int(sc1) * dh) - dm.y * float(int(m0) * sl + int(m1) * sh));
            }
        }
    }
#ifdef ROPE
    for (uint r = 0u; r < R; r++) acc[r] = subgroupAdd(acc[r]);
    if (subgroupElect()) for (uint j = 0u; j < R / 2u; j++) rope_put(row0, j, acc[2u * j], acc[2u * j + 1u]);
#else
    for (uint r = 0u; r < R; r++) {
        const float v = subgroupAdd(acc[r]);
        if (subgroupElect() && row0 + r < p.M) put(row0 + r, v);
    }
#endif
}
#else
void main() {
    const uint row0 = flat_group() * R;
    if (row0 >= p.M) return;  // uniform per workgroup
    const uint lane = gl_LocalInvocationID.x, S = WG;
#ifdef ROPE
    rope_prologue(row0);
#endif
    float acc[RR];
    uint rowOff[RR];
    for (uint r = 0u; r < RR; r++) { acc[r] = 0.0; rowOff[r] = min(row0 + r % R, p.M - 1u) * p.rowBytes; }
#if defined(TYPE_Q4_K)
    // unit = (block b, part q): qs bytes [16q, 16q+16): low nibbles -> elements 64c+16h+j of
    // sub-block 2c, high nibbles -> 64c+32+16h+j of sub-block 2c+1 (c = q/2, h = q%2); per row the
    // block header (d, dmin, 12 scale bytes) and the 16 qs bytes, one 16-byte load each.
    const uint units = (p.K / 256u) * 8u;
    uvec4 hdr[RR], qs[RR];
    uint u = lane;
    {
        const uint uc = min(u, units - 1u), b = uc >> 3, q = uc & 7u;
        [[unroll]] for (uint r = 0u; r < RR; r++) {
            const uint bo = (rowOff[r] >> 4) + b * 9u;
            hdr[r] = wload(r, bo); qs[r] = wload(r, bo + 1u + q);
        }
    }
#ifndef QX
    roundX();
#endif
    for (; u < units; u += S) {
        const uint b = u >> 3, q = u & 7u, c = q >> 1, h = q & 1u;
        const uint xo = (b * 256u + 64u * c + 16u * h) >> 4;   // in uvec4s
#ifdef QX
        const uvec4 xl = XQ4[xo], xh = XQ4[xo + 2u];
        const float dx = uintBitsToFloat(XW[p.K / 4u + b]);
#else
        const uvec4 xl = xq[xo], xh = xq[xo + 2u];
        const float dx = xd[b];
#endif
        const int sl = dot4(xl.x, 0x01010101u) + dot4(xl.y, 0x01010101u) + dot4(xl.z, 0x01010101u) + dot4(xl.w, 0x01010101u);
        const int sh = dot4(xh.x, 0x01010101u) + dot4(xh.y, 0x01010101u) + dot4(xh.z, 0x01010101u) + dot4(xh.w, 0x01010101u);
        [[unroll]] for (uint r = 0u; r < RR; r++) {
            const uvec4 hd = hdr[r], w = qs[r];
            const uint s0 = hd.y, s1 = hd.z, s2 = hd.w;
            uint sc0, m0, sc1, m1;
            if (c < 2u) {
                const uint sh0 = 16u * c;
                sc0 = (s0 >> sh0) & 63u; sc1 = (s0 >> (sh0 + 8u)) & 63u;
                m0 = (s1 >> sh0) & 63u; m1 = (s1 >> (sh0 + 8u)) & 63u;
            } else {
                const uint sh0 = 16u * (c - 2u);
                const uint a0 = (s2 >> sh0) & 0xFFu, a1 = (s2 >> (sh0 + 8u)) & 0xFFu;
                const uint b0 = (s0 >> sh0) & 0xFFu, b1 = (s0 >> (sh0 + 8u)) & 0xFFu;
                const uint c0 = (s1 >> sh0) & 0xFFu, c1 = (s1 >> (sh0 + 8u)) & 0xFFu;
                sc0 = (a0 & 0xFu) | ((b0 >> 6) << 4); m0 = (a0 >> 4) | ((c0 >> 6) << 4);
                sc1 = (a1 & 0xFu) | ((b1 >> 6) << 4); m1 = (a1 >> 4) | ((c1 >> 6) << 4);
            }
            const int dl = dot4(w.x & 0x0F0F0F0Fu, xl.x) + dot4(w.y & 0x0F0F0F0Fu, xl.y)
                         + dot4(w.z & 0x0F0F0F0Fu, xl.z) + dot4(w.w & 0x0F0F0F0Fu, xl.w);
            const int dh = dot4((w.x >> 4) & 0x0F0F0F0Fu, xh.x) + dot4((w.y >> 4) & 0x0F0F0F0Fu, xh.y)
                         + dot4((w.z >> 4) & 0x0F0F0F0Fu, xh.z) + dot4((w.w >> 4) & 0x0F0F0F0Fu, xh.w);
            const vec2 dm = unpackHalf2x16(hd.x);
            acc[r] += dx * (dm.x * float(int(sc0) * dl + int(sc1) * dh) - dm.y * float(int(m0) * sl + int(m1) * sh));
        }
        const uint un = u + S;
        if (un < units) {
            const uint b2 = un >> 3, q2 = un & 7u;
            [[unroll]] for (uint r = 0u; r < RR; r++) {
                const uint bo = (rowOff[r] >> 4) + b2 * 9u;
                hdr[r] = wload(r, bo); qs[r] = wload(r, bo + 1u + q2);
            }
        }
    }
#elif defined(TYPE_Q6_K) && !defined(PAIR)
    // unit = (block b, part t): n = t/8 (half of 128), l0 = 4(t%8): elements 128n + l0 + 32k + i
    // (k, i < 4); per row the ql and qh words, the 4 scale bytes and d.
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
#ifndef QX
    roundX();
#endif
    for (; u < units; u += S) {
        const uint b = u >> 4, t = u & 15u, n = t >> 3, l0 = (t & 7u) * 4u;
        const uint xw = (b * 256u + 128u * n + l0) >> 2;   // in words; k-th group at xw + 8k
        uint xk[4];
#ifdef QX
        [[unroll]] for (uint k = 0u; k < 4u; k++) xk[k] = XW[xw + 8u * k];
        const float dx = uintBitsToFloat(XW[p.K / 4u + b]);
#else
        [[unroll]] for (uint k = 0u; k < 4u; k++) { const uint wi = xw + 8u * k; xk[k] = xq[wi >> 2][wi & 3u]; }
        const float dx = xd[b];
#endif
        const int s0 = dot4(xk[0], 0x01010101u), s1 = dot4(xk[1], 0x01010101u);
        const int s2 = dot4(xk[2], 0x01010101u), s3 = dot4(xk[3], 0x01010101u);
        [[unroll]] for (uint r = 0u; r < R; r++) {
            const uint a = A[r], bb = B[r], hh = H[r];
            const uint q0 = (a & 0x0F0F0F0Fu) | ((hh & 0x03030303u) << 4);
            const uint q1 = (bb & 0x0F0F0F0Fu) | (((hh >> 2) & 0x03030303u) << 4);
            const uint q2 = ((a >> 4) & 0x0F0F0F0Fu) | (((hh >> 4) & 0x03030303u) << 4);
            const uint q3 = ((bb >> 4) & 0x0F0F0F0Fu) | (((hh >> 6) & 0x03030303u) << 4);
            const int t0 = bitfieldExtract(int(SA[r]), 0, 8) * (dot4(q0, xk[0]) - 32 * s0)
                         + bitfieldExtract(int(SA[r]), 16, 8) * (dot4(q1, xk[1]) - 32 * s1)
                         + bitfieldExtract(int(SB[r]), 0, 8) * (dot4(q2, xk[2]) - 32 * s2)
                         + bitfieldExtract(int(SB[r]), 16, 8) * (dot4(q3, xk[3]) - 32 * s3);
            acc[r] += dx * unpackHalf2x16(D[r] & 0xFFFFu).x * float(t0);
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
    }
#else
#error "matvec_q8.comp: TYPE_Q4_K or TYPE_Q6_K (PAIR: Q4_K only)"
#endif
    // Partial sums reduced with subgroupAdd, then across subgroups through red_sh (RR * subgroups <= 64).
    for (uint r = 0u; r < RR; r++) acc[r] = subgroupAdd(acc[r]);
    if (gl_NumSubgroups > 1) {
        if (subgroupElect()) for (uint r = 0u; r < RR; r++) red_sh[r * gl_NumSubgroups + gl_SubgroupID] = acc[r];
        barrier();
        if (subgroupElect()) for (uint r = 0u; r < RR; r++) {
            float t = 0.0;
            for (uint i = 0u; i < gl_NumSubgroups; i++) t += red_sh[r * gl_NumSubgroups + i];
            acc[r] = t;
        }
    }
#ifdef ROPE
    if (gl_SubgroupID == 0u && subgroupElect()) for (uint j = 0u; j < R / 2u; j++) rope_put(row0, j, acc[2u * j], acc[2u * j + 1u]);
    return;
#endif
    if (gl_SubgroupID == 0u && subgroupElect()) {
        for (uint r = 0u; r < R; r++) {
            const uint row = row0 + r;
            if (row >= p.M) break;
#ifdef PAIR
            const float g = acc[r], up = acc[R + r];
            Y[row] = g / (1.0 + exp(-g)) * up;
            Res[row] = up;
#else
            put(row, acc[r]);
#endif
        }
    }
}
#endif
