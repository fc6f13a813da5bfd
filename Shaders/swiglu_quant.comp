#version 450
// swiglu.comp followed by quantize_act of its output (mode as in rms_quant.comp), in one dispatch:
// one subgroup per block of the flattened rows × columns (columns a multiple of the block). Out may
// alias G: the block is read whole before any of it is written.
#extension GL_EXT_control_flow_attributes : require
#include "common.glsl"
layout(std430, binding = 0) readonly buffer GBuf { float G[]; };
layout(std430, binding = 1) readonly buffer UBuf { float U[]; };
layout(std430, binding = 2) writeonly buffer OBuf { float O[]; };
layout(std430, binding = 3) writeonly buffer RBuf { float Rnd[]; };
layout(push_constant) uniform Params { uint blocks, mode, qx; } p;
// qx != 0 (mode 1): also the rounded rows as packed int8 + per-block scales (matvec_q8.comp -DQX), qx
// being the row length K: row r at word r · qx_stride(K) (matvec_q8_mc.comp).
layout(std430, binding = 4) writeonly buffer QBuf { uint XQ[]; };

float qval(uint i) { const float x = G[i]; return x / (1.0 + exp(-x)) * U[i]; }
void qstore(uint i, float v, float r) { O[i] = v; Rnd[i] = r; }
#define QSTORE_INT8
bool qint8() { return p.qx != 0u; }
uint g_xs;   // qx_stride(K)
void qstore8(uint i, uint w) { XQ[(i / p.qx) * g_xs + (i % p.qx) / 4u] = w; }
void qstored(uint base, float d) { XQ[(base / p.qx) * g_xs + p.qx / 4u + (base % p.qx) / 256u] = floatBitsToUint(d); }
#include "quant.glsl"

void main() {
    const uint b = flat_group() * gl_NumSubgroups + gl_SubgroupID;
    if (b >= p.blocks) return;   // uniform per subgroup
    const uint B = p.mode == 0u ? 32u : 256u;
    g_xs = p.qx != 0u ? qx_stride(p.qx) : 0u;
    quantize_block(b * B, p.mode);
}
