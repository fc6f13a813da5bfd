#version 450
// rms_norm.comp followed by quantize_act (mode 0: Q8_0 grid, blocks of 32; 1: Q8_K, blocks of 256)
// of the normalized row, in one dispatch: one workgroup per row writes Out (as rms_norm) and the
// rounded copy Rnd (as quantize_act / quantize_k), each block rounded by one subgroup.
#include "common.glsl"
layout(std430, binding = 0) readonly buffer XBuf { float X[]; };
layout(std430, binding = 1) readonly buffer WBuf { float Wt[]; };
layout(std430, binding = 2) writeonly buffer OBuf { float O[]; };
layout(std430, binding = 3) writeonly buffer RBuf { float Rnd[]; };
layout(push_constant) uniform Params { uint n; float eps; uint mode; } p;

float g_scale;
uint g_base;
float qval(uint i) { return X[g_base + i] * g_scale * Wt[i]; }
void qstore(uint i, float v) { Rnd[g_base + i] = v; }
#include "quant.glsl"

void main() {
    const uint base = gl_WorkGroupID.x * p.n;
    float s = 0.0;
    for (uint i = gl_LocalInvocationID.x; i < p.n; i += WG) { const float v = X[base + i]; s += v * v; }
    s = wg_sum(s);
    const float scale = 1.0 / sqrt(s / float(p.n) + p.eps);
    g_scale = scale; g_base = base;
    for (uint i = gl_LocalInvocationID.x; i < p.n; i += WG) O[base + i] = X[base + i] * scale * Wt[i];
    const uint B = p.mode == 0u ? 32u : 256u, blocks = p.n / B;
    for (uint b = gl_SubgroupID; b < blocks; b += gl_NumSubgroups) quantize_block(b * B, p.mode);
}
