#version 450
// Writes each row's K and V (f32) into its sequence's page:
// slot = page_table[pos / pageSize] * pageSize + pos % pageSize. One workgroup per row.
// f16 (default): round to nearest even, kvDim / 2 words per slot.
// KV_Q8 (store_kv_q8): ggml Q8_0 blocks (f16 scale d = amax / 127, then 32 int8 q = round(x / d), ties
// away from zero), exactly as the CPU's Quantize.row(.q8_0) rounds (IEEE-rounded divisions). A slot
// is kvDim / 32 blocks of 17 halfwords, padded to whole 32-bit words; each word is written by one
// invocation (blocks straddle words), after the block scales are computed into shared memory.
#include "common.glsl"
layout(std430, binding = 0) buffer KVBuf { uint KV[]; };  // K pages, then V pages
#ifdef KV_Q8
layout(std430, binding = 1) readonly buffer KBuf { float Kin[]; };
layout(std430, binding = 2) readonly buffer VBuf { float Vin[]; };
#else
layout(std430, binding = 1) readonly buffer KBuf { vec2 Kin[]; };
layout(std430, binding = 2) readonly buffer VBuf { vec2 Vin[]; };
#endif
layout(std430, binding = 3) readonly buffer SBuf { int Step[]; };
layout(push_constant) uniform Params { uint kvDim, pageSize, vOffset, positions, tableIndex, tableStart; } p;

#ifdef KV_Q8
#define MAX_BLOCKS 256u   // kvDim <= 8192 (the host checks)
shared float shD[2u * MAX_BLOCKS], shId[2u * MAX_BLOCKS];

float div_rn(float a, float b) {
    const float q = a * (1.0 / b);
    const float r = fma(-q, b, a);
    return fma(r, 1.0 / b, q);
}

// round() with ties away from zero (Swift's .rounded(), C's roundf) of the rounded product x·id: `precise`
// and abs() keep a compiler from contracting the product into an fma with the fraction test (which would
// compare the exact product, and round differently from the CPU right at .5); a − floor(a) is exact.
int round_away(float x, float id) {
    precise const float v = x * id;
    const float a = abs(v), f = floor(a);
    return int(sign(v) * (a - f >= 0.5 ? f + 1.0 : f));
}

float kv_in(bool isV, uint i) { return isV ? Vin[i] : Kin[i]; }
#endif

void main() {
    const uint r = gl_WorkGroupID.x;
    const uint pos = uint(Step[p.positions + r]);
    const uint table = uint(Step[p.tableStart + uint(Step[p.tableIndex + r])]);
    const uint page = uint(Step[table + pos / p.pageSize]);
#ifdef KV_Q8
    const uint nb = p.kvDim / 32u, slotWords = (17u * nb + 1u) / 2u;
    const uint slot = (page * p.pageSize + pos % p.pageSize) * slotWords;
    for (uint b = gl_LocalInvocationID.x; b < 2u * nb; b += WG) {
        const bool isV = b >= nb;
        const uint base = r * p.kvDim + (isV ? b - nb : b) * 32u;
        float amax = 0.0;
        for (uint j = 0u; j < 32u; j++) amax = max(amax, abs(kv_in(isV, base + j)));
        const float d = div_rn(amax, 127.0);
        shD[b] = d;
        shId[b] = d != 0.0 ? div_rn(1.0, d) : 0.0;
    }
    barrier();
    for (uint w = gl_LocalInvocationID.x; w < 2u * slotWords; w += WG) {
        const bool isV = w >= slotWords;
        const uint ww = isV ? w - slotWords : w;
        uint word = 0u;
        for (uint hf = 0u; hf < 2u; hf++) {
            const uint hw = 2u * ww + hf, b = hw / 17u, i = hw - 17u * b;
            if (b >= nb) continue;   // padding
            const uint sb = isV ? nb + b : b;
            uint bits;
            if (i == 0u) {
                bits = f32_to_f16(shD[sb]);
            } else {
                const uint e = r * p.kvDim + b * 32u + 2u * (i - 1u);
                const float id = shId[sb];
                bits = (uint(round_away(kv_in(isV, e), id)) & 0xFFu) | ((uint(round_away(kv_in(isV, e + 1u), id)) & 0xFFu) << 8u);
            }
            word |= bits << (16u * hf);
        }
        KV[(isV ? p.vOffset : 0u) + slot + ww] = word;
    }
#else
    const uint pairs = p.kvDim / 2u;
    const uint slot = (page * p.pageSize + pos % p.pageSize) * pairs;
    for (uint j = gl_LocalInvocationID.x; j < pairs; j += WG) {
        const vec2 k = Kin[r * pairs + j], v = Vin[r * pairs + j];
        KV[slot + j] = f32_to_f16(k.x) | (f32_to_f16(k.y) << 16);
        KV[p.vOffset + slot + j] = f32_to_f16(v.x) | (f32_to_f16(v.y) << 16);
    }
#endif
}
