#version 450
// Rounds activations to the 8-bit grid the CPU backend (and llama.cpp) use for quantized weights,
// writing the dequantized values d·q as f32, so that a matmul over them computes what the CPU's int8
// dot products compute (up to f32 summation order). One invocation per block:
//   mode 0 (Q8_0/Q8_1 activations, blocks of 32): d = f16(amax/127), q = roundEven(x·127/amax)
//   mode 1 (Q8_K activations, blocks of 256): iscale = −127/max (max: the first value of largest |x|),
//          q = min(127, roundEven(iscale·x)), d = 1/iscale
// Divisions are corrected to round like IEEE division (Vulkan allows 2.5 ulp).
#include "common.glsl"
layout(std430, binding = 0) readonly buffer XBuf { float X[]; };
layout(std430, binding = 1) writeonly buffer OBuf { float O[]; };
layout(push_constant) uniform Params { uint blocks, mode; } p;

float div_rn(float a, float b) {
    const float q = a * (1.0 / b);
    const float r = fma(-q, b, a);
    return fma(r, 1.0 / b, q);
}

void main() {
    const uint blk = flat_group() * WG + gl_LocalInvocationID.x;
    if (blk >= p.blocks) return;
    if (p.mode == 0u) {
        const uint base = blk * 32u;
        float amax = 0.0;
        for (uint j = 0u; j < 32u; j++) amax = max(amax, abs(X[base + j]));
        const float d = round_f16(div_rn(amax, 127.0));
        const float id = amax != 0.0 ? div_rn(127.0, amax) : 0.0;
        for (uint j = 0u; j < 32u; j++) O[base + j] = d * roundEven(X[base + j] * id);
    } else {
        const uint base = blk * 256u;
        float amax = 0.0, mx = 0.0;
        for (uint j = 0u; j < 256u; j++) {
            const float v = X[base + j];
            if (abs(v) > amax) { amax = abs(v); mx = v; }
        }
        if (amax == 0.0) {
            for (uint j = 0u; j < 256u; j++) O[base + j] = 0.0;
            return;
        }
        const float iscale = div_rn(-127.0, mx);
        const float d = div_rn(1.0, iscale);
        for (uint j = 0u; j < 256u; j++) O[base + j] = d * min(127.0, roundEven(iscale * X[base + j]));
    }
}
