#version 450
// quantize_act.comp's mode 1 (Q8_K grid, blocks of 256) with one workgroup per block: the block's
// values are spread over the invocations and max |x| (the first value of largest |x|) found with
// workgroup reductions, then each invocation rounds its own values. Same arithmetic as mode 1.
// qx != 0: also the rounded rows as packed int8 + per-block scales, qx being the row length K (row r at word
// r · qx_stride(K), quant.glsl's layout: what matvec_q8_mc and matmul_cm / matmul_cmd's int8 X read), as the fused
// producers (rms_quant, swiglu_quant, the attention merges) write it; here for inputs no fused op produced (e.g. the
// o projection after prefill attention).
#include "common.glsl"
layout(std430, binding = 0) readonly buffer XBuf { float X[]; };
layout(std430, binding = 1) writeonly buffer OBuf { float O[]; };
layout(std430, binding = 2) writeonly buffer QBuf { uint XQ[]; };
layout(push_constant) uniform Params { uint blocks, mode, qx; } p;

#include "int8copy.glsl"
// Invocation j of the block's loop holds element j (WG and the subgroup size are multiples of 4), as qpack needs.
void qstore8(uint i, uint w) { XQ[(i / p.qx) * qx_stride(p.qx) + (i % p.qx) / 4u] = w; }
void qscale(uint base, float d) { XQ[(base / p.qx) * qx_stride(p.qx) + p.qx / 4u + (base % p.qx) / 256u] = floatBitsToUint(d); }

float div_rn(float a, float b) {
    const float q = a * (1.0 / b);
    const float r = fma(-q, b, a);
    return fma(r, 1.0 / b, q);
}

float wg_min(float v) {
    v = subgroupMin(v);
    if (gl_NumSubgroups == 1) return v;
    barrier();
    if (subgroupElect()) red_sh[gl_SubgroupID] = v;
    barrier();
    float t = red_sh[0];
    for (uint i = 1; i < gl_NumSubgroups; i++) t = min(t, red_sh[i]);
    return t;
}

void main() {
    const uint blk = flat_group();
    if (blk >= p.blocks) return;   // uniform per workgroup
    const uint base = blk * 256u, tid = gl_LocalInvocationID.x;
    float amax = 0.0;
    for (uint j = tid; j < 256u; j += WG) amax = max(amax, abs(X[base + j]));
    amax = wg_max(amax);
    if (amax == 0.0) {
        for (uint j = tid; j < 256u; j += WG) {
            O[base + j] = 0.0;
            if (p.qx != 0u) qpack(base + j, 0);
        }
        if (p.qx != 0u && tid == 0u) qscale(base, 0.0);
        return;
    }
    float first = 256.0;
    for (uint j = tid; j < 256u; j += WG) if (abs(X[base + j]) == amax) first = min(first, float(j));
    first = wg_min(first);
    const float mx = X[base + uint(first)];
    const float iscale = div_rn(-127.0, mx);
    const float d = div_rn(1.0, iscale);
    for (uint j = tid; j < 256u; j += WG) {
        const float q = min(127.0, roundEven(iscale * X[base + j]));
        O[base + j] = d * q;
        if (p.qx != 0u) qpack(base + j, int(q));
    }
    if (p.qx != 0u && tid == 0u) qscale(base, d);
}
