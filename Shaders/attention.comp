#version 450
// Causal attention of one (row, head) per workgroup over the row's sequence in its f16 KV pages:
// positions are taken WG at a time (one score per invocation), with an online softmax (running max
// and sum) and each invocation accumulating headDim/WG output dims. q is rounded to f16 first, as the
// CPU backend (and llama.cpp's f16 K) do.
// Split (chunk > 0, decode): workgroup z takes positions [z·chunk, (z+1)·chunk) and writes its
// unnormalized partial (max, sum, acc[headDim]) to Part; attention_merge.comp combines the splits.
#include "common.glsl"
layout(std430, binding = 0) readonly buffer KVBuf { uint KV[]; };
layout(std430, binding = 1) readonly buffer QBuf { float Q[]; };
layout(std430, binding = 2) writeonly buffer OBuf { float O[]; };
layout(std430, binding = 3) readonly buffer SBuf { int Step[]; };
layout(std430, binding = 4) writeonly buffer PBuf { float Part[]; };
layout(push_constant) uniform Params {
    uint kvDim, pageSize, vOffset, positions, tableIndex, tableStart;
    uint heads, group, headDim, qCols; float scale; uint chunk, partBase;
} p;

#define MAX_HEAD_DIM 256u
#define DIMS_PER_INVOCATION 8u   // headDim <= WG * 8 (the host checks)
shared vec2 qsh[MAX_HEAD_DIM / 2u];
shared float P[WG];
shared uint SL[WG];

void main() {
    const uint h = gl_WorkGroupID.x, r = gl_WorkGroupID.y, tid = gl_LocalInvocationID.x;
    const uint fullLen = uint(Step[p.positions + r]) + 1u;
    const uint start = p.chunk > 0u ? gl_WorkGroupID.z * p.chunk : 0u;
    const uint len = p.chunk > 0u ? min(fullLen, start + p.chunk) : fullLen;
    const uint table = uint(Step[p.tableStart + uint(Step[p.tableIndex + r])]);
    const uint kvHead = h / p.group;
    const uint hd2 = p.headDim / 2u;
    const uint qBase = r * p.qCols + h * p.headDim;
    for (uint d = tid; d < hd2; d += WG) qsh[d] = vec2(round_f16(Q[qBase + 2u * d]), round_f16(Q[qBase + 2u * d + 1u]));
    barrier();
    const uint headOff = kvHead * p.headDim;  // in f16 elements within a slot
    float M = -1.0 / 0.0, S = 0.0;
    float acc[DIMS_PER_INVOCATION];
    for (uint k = 0u; k < DIMS_PER_INVOCATION; k++) acc[k] = 0.0;
    for (uint t0 = start; t0 < len; t0 += WG) {
        const uint j = t0 + tid;
        float s = -1.0 / 0.0;
        if (j < len) {
            const uint slot = uint(Step[table + j / p.pageSize]) * p.pageSize + j % p.pageSize;
            SL[tid] = slot;
            const uint kb = (slot * p.kvDim + headOff) / 2u;
            float dotv = 0.0;
            for (uint d = 0u; d < hd2; d++) dotv += dot(unpackHalf2x16(KV[kb + d]), qsh[d]);
            s = dotv * p.scale;
        }
        const float newM = max(M, wg_max(s));
        const float alpha = exp(M - newM);
        const float e = j < len ? exp(s - newM) : 0.0;
        P[tid] = e;
        S = S * alpha + wg_sum(e);
        barrier();
        const uint n = min(WG, len - t0);
        for (uint k = 0u; k < DIMS_PER_INVOCATION; k++) {
            const uint d = tid + k * WG;
            if (d < p.headDim) {
                float a = acc[k] * alpha;
                const uint off = p.vOffset * 2u + headOff + d;  // f16 index
                for (uint jj = 0u; jj < n; jj++) {
                    const uint idx = off + SL[jj] * p.kvDim;
                    a += P[jj] * unpackHalf2x16(KV[idx >> 1])[idx & 1u];
                }
                acc[k] = a;
            }
        }
        barrier();
        M = newM;
    }
    if (p.chunk > 0u) {
        const uint pb = p.partBase + ((r * p.heads + h) * gl_NumWorkGroups.z + gl_WorkGroupID.z) * (p.headDim + 2u);
        if (tid == 0u) { Part[pb] = M; Part[pb + 1u] = S; }
        for (uint k = 0u; k < DIMS_PER_INVOCATION; k++) {
            const uint d = tid + k * WG;
            if (d < p.headDim) Part[pb + 2u + d] = acc[k];
        }
        return;
    }
    const float inv = 1.0 / S;
    for (uint k = 0u; k < DIMS_PER_INVOCATION; k++) {
        const uint d = tid + k * WG;
        if (d < p.headDim) O[qBase + d] = acc[k] * inv;
    }
}
