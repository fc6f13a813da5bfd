#version 450
// rms_norm.comp followed by quantize_act (mode 0: Q8_0 grid, blocks of 32; 1: Q8_K, blocks of 256)
// of the normalized row, in one dispatch: writes Out (as rms_norm) and the rounded copy Rnd (as
// quantize_act / quantize_k), each block normalized and rounded by one subgroup.
#extension GL_EXT_control_flow_attributes : require
#include "common.glsl"
layout(std430, binding = 0) readonly buffer XBuf { float X[]; };
layout(std430, binding = 0) readonly buffer XBuf4 { vec4 X4[]; };
layout(std430, binding = 1) readonly buffer WBuf { float Wt[]; };
layout(std430, binding = 2) writeonly buffer OBuf { float O[]; };
layout(std430, binding = 3) writeonly buffer RBuf { float Rnd[]; };
layout(push_constant) uniform Params { uint n; float eps; uint mode, qx; } p;
// qx != 0 (mode 1): also the rounded rows as packed int8 + per-block scales (matvec_q8.comp -DQX; row r
// at word r · qx_stride(n) for matvec_q8_mc.comp).
layout(std430, binding = 4) writeonly buffer QBuf { uint XQ[]; };

float g_scale;
uint g_base, g_q;
float qval(uint i) { return X[g_base + i] * g_scale * Wt[i]; }
void qstore(uint i, float v, float r) { O[g_base + i] = v; Rnd[g_base + i] = r; }
#define QSTORE_INT8
bool qint8() { return p.qx != 0u; }
void qstore8(uint i, uint w) { XQ[g_q + (i >> 2)] = w; }
void qstored(uint base, float d) { XQ[g_q + p.n / 4u + base / 256u] = floatBitsToUint(d); }
#include "quant.glsl"

// Workgroup (x, r): row r's blocks x·S ... x·S + S − 1 (S subgroups, one block each); every workgroup
// of the row computes the row's sum of squares (the same reduction, so the same scale).
void main() {
    const uint base = gl_WorkGroupID.y * p.n;
    float s = 0.0;
    for (uint i = gl_LocalInvocationID.x; i < p.n / 4u; i += WG) { const vec4 v = X4[base / 4u + i]; s += dot(v, v); }
    s = wg_sum(s);
    const float scale = 1.0 / sqrt(s / float(p.n) + p.eps);
    g_scale = scale; g_base = base; g_q = gl_WorkGroupID.y * qx_stride(p.n);
    const uint B = p.mode == 0u ? 32u : 256u, blocks = p.n / B;
    const uint b = gl_WorkGroupID.x * gl_NumSubgroups + gl_SubgroupID;
    if (b >= blocks) return;   // uniform per subgroup
    quantize_block(b * B, p.mode);
}
