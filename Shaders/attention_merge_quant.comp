#version 450
// attention_merge.comp followed by quantize_act of its output (mode as in rms_quant.comp), in one
// dispatch: workgroup (x, r) merges the splits of output elements [x·B, (x+1)·B) of row r (one or more
// heads, or part of one: B and headDim divide one another; the host checks), with attention_merge's
// arithmetic (the split weights reduced by one subgroup per head: the sum of the splits' S may differ
// from attention_merge's in the last bit), into shared memory and O; then its first subgroup rounds
// the block into Rnd.
#extension GL_EXT_control_flow_attributes : require
#include "common.glsl"
layout(std430, binding = 0) readonly buffer PBuf { float Part[]; };
layout(std430, binding = 1) writeonly buffer OBuf { float O[]; };
layout(std430, binding = 2) writeonly buffer RBuf { float Rnd[]; };
layout(push_constant) uniform Params { uint heads, headDim, splits, qCols, partBase, mode, qx; } p;
// qx != 0 (mode 1): also the rounded rows as packed int8 + per-block scales (matvec_q8.comp -DQX; row r
// at word r · qx_stride(qCols) for matvec_q8_mc.comp), so that the o projection runs on integer dot
// products like the other decode mat-vecs.
layout(std430, binding = 3) writeonly buffer QBuf { uint XQ[]; };

layout(constant_id = 2) const uint MB = 8u;   // splits loaded together (env SHARD_VK_MERGE_BATCH; 1: one at a time)
shared float wsh[8][128];     // split weights per head of the block (≤ 8 heads, ≤ 128 splits: host checks)
shared float invsh[8];
shared float vals[256];

uint g_out, g_e0, g_row;   // g_row: where row r's int8 copy starts (words)
float qval(uint i) { return vals[i]; }
void qstore(uint i, float v, float r) { O[g_out + i] = v; Rnd[g_out + i] = r; }
#define QSTORE_INT8
bool qint8() { return p.qx != 0u; }
void qstore8(uint i, uint w) { XQ[g_row + ((g_e0 + i) >> 2)] = w; }
void qstored(uint base, float d) { XQ[g_row + p.qCols / 4u + (g_e0 + base) / 256u] = floatBitsToUint(d); }
#include "quant.glsl"

void main() {
    const uint blk = gl_WorkGroupID.x, r = gl_WorkGroupID.y, tid = gl_LocalInvocationID.x;
    const uint B = p.mode == 0u ? 32u : 256u;
    const uint e0 = blk * B;                          // first output element of the block
    const uint h0 = e0 / p.headDim, nh = max(1u, B / p.headDim);
    const uint stride = p.headDim + 2u;
    // Split weights of each head of the block, one subgroup per head (lanes over the splits).
    const uint lane = gl_SubgroupInvocationID, SG = gl_SubgroupSize;
    for (uint hs = gl_SubgroupID; hs < nh; hs += gl_NumSubgroups) {
        const uint base = p.partBase + (r * p.heads + h0 + hs) * p.splits * stride;
        float m = -1.0 / 0.0;
        for (uint s = lane; s < p.splits; s += SG) m = max(m, Part[base + s * stride]);
        const float M = subgroupMax(m);
        float S = 0.0;
        for (uint s = lane; s < p.splits; s += SG) {
            const float ms = Part[base + s * stride];
            const float w = ms != -1.0 / 0.0 ? exp(ms - M) : 0.0;
            wsh[hs][s] = w;
            S += w * Part[base + s * stride + 1u];
        }
        S = subgroupAdd(S);
        if (lane == 0u) invsh[hs] = 1.0 / S;
    }
    barrier();
    for (uint e = tid; e < B; e += WG) {
        const uint hs = e / p.headDim, d = (e0 + e) - (h0 + hs) * p.headDim;
        const uint base = p.partBase + (r * p.heads + h0 + hs) * p.splits * stride;
        float a = 0.0;
        uint s = 0u;
        // The splits' values loaded MB at a time before they are summed (in split order, as before):
        // one load latency per MB splits instead of one per split.
        for (; s + MB <= p.splits; s += MB) {
            float v[MB];
            [[unroll]] for (uint i = 0u; i < MB; i++) v[i] = Part[base + (s + i) * stride + 2u + d];
            [[unroll]] for (uint i = 0u; i < MB; i++) { const float w = wsh[hs][s + i]; if (w != 0.0) a += w * v[i]; }
        }
        for (; s < p.splits; s++) {
            const float w = wsh[hs][s];
            if (w != 0.0) a += w * Part[base + s * stride + 2u + d];
        }
        vals[e] = a * invsh[hs];
    }
    barrier();
    g_out = r * p.qCols + e0;
    g_e0 = e0; g_row = r * qx_stride(p.qCols);
    if (gl_SubgroupID == 0u) quantize_block(0u, p.mode);
}
