// Rounding to the 8-bit activation grids (quantize_act.comp's arithmetic) by one subgroup per block,
// for shaders that produce a value and round it in the same pass. The includer defines
// float qval(uint i) (the value of element i) and void qstore(uint i, float value, float rounded).
// Each lane reads its values once (QV = 256 / subgroup size of them, in registers), so every pass
// over the block (max, first index of the max, rounding) is register arithmetic.
// QSTORE_INT8 (mode 1 only): the includer also defines bool qint8(), void qstore8(uint i, uint word)
// (4 int8 values of elements i ... i + 3, i % 4 == 0, low byte first) and void qstored(uint base,
// float d) (the block's scale): the rounded block as packed int8 + scale, as matvec_q8.comp -DQX reads
// it (a whole subgroup per block: 256 a multiple of the subgroup size, which is a multiple of 4).
#ifdef QSTORE_INT8
#include "int8copy.glsl"
#endif
#ifndef QV_ID
#define QV_ID 1
#endif
layout(constant_id = QV_ID) const uint QV = 8u;   // values per lane: ceil(256 / subgroup size) (the host)

float div_rn(float a, float b) {
    const float q = a * (1.0 / b);
    const float r = fma(-q, b, a);
    return fma(r, 1.0 / b, q);
}

// Elements [base, base + B) (B = 32 for mode 0, 256 for mode 1); the whole subgroup calls it. All of
// the block's reads happen before any store (the output may alias an input).
void quantize_block(uint base, uint mode) {
    const uint lane = gl_SubgroupInvocationID, SG = gl_SubgroupSize;
    const uint B = mode == 0u ? 32u : 256u;
    float v[QV];
    float amax = 0.0;
    [[unroll]] for (uint t = 0u; t < QV; t++) {
        const uint j = lane + t * SG;
        v[t] = j < B ? qval(base + j) : 0.0;
        amax = max(amax, abs(v[t]));
    }
    amax = subgroupMax(amax);
    if (mode == 0u) {
        const float d = round_f16(div_rn(amax, 127.0));
        const float id = amax != 0.0 ? div_rn(127.0, amax) : 0.0;
        [[unroll]] for (uint t = 0u; t < QV; t++) {
            const uint j = lane + t * SG;
            if (j < B) qstore(base + j, v[t], d * roundEven(v[t] * id));
        }
        return;
    }
    if (amax == 0.0) {
        [[unroll]] for (uint t = 0u; t < QV; t++) {
            const uint j = lane + t * SG;
            if (j < B) qstore(base + j, v[t], 0.0);
        }
#ifdef QSTORE_INT8
        if (qint8()) {
            [[unroll]] for (uint t = 0u; t < QV; t++) if (lane + t * SG < B) qpack(base + lane + t * SG, 0);
            if (lane == 0u) qstored(base, 0.0);
        }
#endif
        return;
    }
    // max: the first value of largest |x| (its lane holds it).
    float first = 1e9, mine = 0.0;
    [[unroll]] for (uint t = 0u; t < QV; t++) {
        const uint j = lane + t * SG;
        if (j < B && abs(v[t]) == amax && float(j) < first) { first = float(j); mine = v[t]; }
    }
    const float firstAll = subgroupMin(first);
    const float mx = subgroupAdd(first == firstAll ? mine : 0.0);
    const float iscale = div_rn(-127.0, mx);
    const float d = div_rn(1.0, iscale);
    [[unroll]] for (uint t = 0u; t < QV; t++) {
        const uint j = lane + t * SG;
        if (j < B) qstore(base + j, v[t], d * min(127.0, roundEven(iscale * v[t])));
    }
#ifdef QSTORE_INT8
    if (qint8()) {
        [[unroll]] for (uint t = 0u; t < QV; t++) {
            const uint j = lane + t * SG;
            if (j < B) qpack(base + j, int(min(127.0, roundEven(iscale * v[t]))));
        }
        if (lane == 0u) qstored(base, d);
    }
#endif
}
