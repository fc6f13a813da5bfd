// Dequantization of ggml blocks read from a uint array W[] (the tensor's raw GGUF bytes: no 8/16-bit
// storage needed, any alignment of the 2-byte-aligned block fields). The includer declares W.
// For the compiled TYPE_* define:
//   BS: elements per block (4 for F32/F16: a "block" is 4 values), BB: bytes per block,
//   vec4 dq4(uint b, uint i): elements i..i+3 (i % 4 == 0) of the block starting at byte b,
//   with the same arithmetic as Dequant.row (Sources/Quant/Dequant.swift).

uint ld32(uint o) {
    uint i = o >> 2, s = (o & 3u) * 8u;
    uint lo = W[i];
    return s == 0u ? lo : (lo >> s) | (W[i + 1u] << (32u - s));
}
uint ld8(uint o) { return (W[o >> 2] >> ((o & 3u) * 8u)) & 0xFFu; }
float f16at(uint o) { return unpackHalf2x16((W[o >> 2] >> ((o & 2u) * 8u)) & 0xFFFFu).x; }
// Bytes to floats without int-to-float conversions (a quarter-rate instruction on NVIDIA): a byte b
// ORed into the mantissa of 2^23 is the float 2^23 + b exactly, and subtracting 2^23 is exact.
vec4 u8x4(uint w) {
    return uintBitsToFloat(uvec4(w & 0xFFu, (w >> 8) & 0xFFu, (w >> 16) & 0xFFu, w >> 24) | 0x4B000000u) - 8388608.0;
}
// Signed bytes: b ^ 0x80 = b + 128 as an unsigned byte.
vec4 i8x4(uint w) {
    const uint u = w ^ 0x80808080u;
    return uintBitsToFloat(uvec4(u & 0xFFu, (u >> 8) & 0xFFu, (u >> 16) & 0xFFu, u >> 24) | 0x4B000000u) - 8388736.0;
}
// Low (i < 16) or high (i >= 16) nibbles of 4 bytes of a 32-element block's qs[16] at byte q.
uint nib4(uint q, uint i) { return (ld32(q + (i & 15u)) >> ((i >> 4) * 4u)) & 0x0F0F0F0Fu; }

#if defined(TYPE_F32)
#define BS 4u
#define BB 16u
vec4 dq4(uint b, uint i) { uint j = b >> 2; return vec4(uintBitsToFloat(W[j]), uintBitsToFloat(W[j + 1u]), uintBitsToFloat(W[j + 2u]), uintBitsToFloat(W[j + 3u])); }
#elif defined(TYPE_F16)
#define BS 4u
#define BB 8u
vec4 dq4(uint b, uint i) { return vec4(unpackHalf2x16(ld32(b)), unpackHalf2x16(ld32(b + 4u))); }
#elif defined(TYPE_Q8_0)
#define BS 32u
#define BB 34u
vec4 dq4(uint b, uint i) { return i8x4(ld32(b + 2u + i)) * f16at(b); }
#elif defined(TYPE_Q4_0)
#define BS 32u
#define BB 18u
vec4 dq4(uint b, uint i) { return (u8x4(nib4(b + 2u, i)) - 8.0) * f16at(b); }
#elif defined(TYPE_Q4_1)
#define BS 32u
#define BB 20u
vec4 dq4(uint b, uint i) { return u8x4(nib4(b + 4u, i)) * f16at(b) + f16at(b + 2u); }
#elif defined(TYPE_Q5_0)
#define BS 32u
#define BB 22u
vec4 dq4(uint b, uint i) {
    uint h = (ld32(b + 2u) >> i) & 0xFu;   // bit e of qh is the 5th bit of element e
    uint hb = (h & 1u) | ((h & 2u) << 7) | ((h & 4u) << 14) | ((h & 8u) << 21);
    return (u8x4(nib4(b + 6u, i) | (hb << 4)) - 16.0) * f16at(b);
}
#elif defined(TYPE_Q5_1)
#define BS 32u
#define BB 24u
vec4 dq4(uint b, uint i) {
    uint h = (ld32(b + 4u) >> i) & 0xFu;
    uint hb = (h & 1u) | ((h & 2u) << 7) | ((h & 4u) << 14) | ((h & 8u) << 21);
    return u8x4(nib4(b + 8u, i) | (hb << 4)) * f16at(b) + f16at(b + 2u);
}
#elif defined(TYPE_Q4_K) || defined(TYPE_Q5_K)
#define BS 256u
// 6-bit scale and min of sub-block j from scales[12] at byte q (ggml's get_scale_min_k4).
uvec2 scale_min_k4(uint j, uint q) {
    if (j < 4u) return uvec2(ld8(q + j) & 63u, ld8(q + j + 4u) & 63u);
    return uvec2((ld8(q + j + 4u) & 0xFu) | ((ld8(q + j - 4u) >> 6) << 4),
                 (ld8(q + j + 4u) >> 4) | ((ld8(q + j) >> 6) << 4));
}
#if defined(TYPE_Q4_K)
#define BB 144u
#define QS_OFF 16u
#else
#define BB 176u
#define QS_OFF 48u
#endif
vec4 dq4(uint b, uint i) {
    uint c = i >> 6, hi = (i >> 5) & 1u, l = i & 31u;
    uvec2 sm = scale_min_k4(2u * c + hi, b + 4u);
    uint q = (ld32(b + QS_OFF + 32u * c + l) >> (4u * hi)) & 0x0F0F0F0Fu;
#if defined(TYPE_Q5_K)
    q |= ((ld32(b + 16u + l) >> (2u * c + hi)) & 0x01010101u) << 4;
#endif
    float d = f16at(b) * float(sm.x), m = f16at(b + 2u) * float(sm.y);
    return d * u8x4(q) - m;
}
#elif defined(TYPE_Q6_K)
#define BS 256u
#define BB 210u
vec4 dq4(uint b, uint i) {
    uint n = i >> 7, r = i & 127u, quarter = r >> 5, l = r & 31u;
    uint ql = (ld32(b + 64u * n + l + 32u * (quarter & 1u)) >> (4u * (quarter >> 1))) & 0x0F0F0F0Fu;
    uint qh = (ld32(b + 128u + 32u * n + l) >> (2u * quarter)) & 0x03030303u;
    float sc = float(bitfieldExtract(int(ld8(b + 192u + 8u * n + (l >> 4) + 2u * quarter)), 0, 8));
    return (f16at(b + 208u) * sc) * (u8x4(ql | (qh << 4)) - 32.0);
}
#else
#error "define one TYPE_*"
#endif
