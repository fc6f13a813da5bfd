#version 450
// The K-split partial sums of a matmul_cm product (flags bit 2 there) added in split order, one invocation
// per output value: Y[i] = P[pOff + i] + P[pOff + N·M + i] + … (splits terms) (+ Bias[row]) (+ into Res),
// i = col·M + row. The fixed order keeps a product's result the same whatever else runs in the step.
#include "common.glsl"
layout(std430, binding = 0) readonly buffer PBuf { float P[]; };
layout(std430, binding = 1) writeonly buffer YBuf { float Y[]; };
layout(std430, binding = 2) readonly buffer BBuf { float Bias[]; };
layout(std430, binding = 3) buffer ResBuf { float Res[]; };
// flags: bit 0 adds Bias[row]; bit 1 also adds the result into Res (matmul_cm's flags).
layout(push_constant) uniform Params { uint M, N, splits, flags, pOff; } p;

void main() {
    const uint i = flat_group() * WG + gl_LocalInvocationID.x, count = p.M * p.N;
    if (i >= count) return;
    float v = P[p.pOff + i];
    for (uint s = 1u; s < p.splits; s++) v += P[p.pOff + s * count + i];
    if ((p.flags & 1u) != 0u) v += Bias[i % p.M];
    Y[i] = v;
    if ((p.flags & 2u) != 0u) Res[i] += v;
}
