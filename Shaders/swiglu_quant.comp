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
layout(push_constant) uniform Params { uint blocks, mode; } p;

float qval(uint i) { const float x = G[i]; return x / (1.0 + exp(-x)) * U[i]; }
void qstore(uint i, float v, float r) { O[i] = v; Rnd[i] = r; }
#include "quant.glsl"

void main() {
    const uint b = flat_group() * gl_NumSubgroups + gl_SubgroupID;
    if (b >= p.blocks) return;   // uniform per subgroup
    const uint B = p.mode == 0u ? 32u : 256u;
    quantize_block(b * B, p.mode);
}
