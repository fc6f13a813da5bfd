#version 450
// Decode attention (few rows): workgroup (head h, row r, split z) takes an equal share of the row's
// positions ([z·per, (z+1)·per), per = ceil(len / splits)), so the grid does not depend on the KV
// length (a recorded command buffer replays at every length). Each subgroup walks its share of
// positions (interleaved, two at a time) with the lanes spread over the head's dims: one 4..8-byte
// K and V load per lane per position (coalesced), q·k by subgroupAdd, online softmax in registers;
// the workgroup's subgroups are then merged in shared memory and the unnormalized partial
// (max, sum, acc[headDim]) written to Part for attention_merge.comp. q is rounded to f16 as the CPU does.
#include "common.glsl"
layout(constant_id = 1) const uint MAXP = 4;   // dim pairs per lane: headDim / 2 <= MAXP * subgroup size
layout(std430, binding = 0) readonly buffer KVBuf { uint KV[]; };
layout(std430, binding = 1) readonly buffer QBuf { float Q[]; };
layout(std430, binding = 2) writeonly buffer PBuf { float Part[]; };
layout(std430, binding = 3) readonly buffer SBuf { int Step[]; };
layout(push_constant) uniform Params {
    uint kvDim, pageSize, vOffset, positions, tableIndex, tableStart;
    uint heads, group, headDim, qCols; float scale; uint splits, partBase;
} p;

shared float shM[64], shS[64];
shared vec2 shAcc[8 * 128];   // [subgroup][pair], at most 8 subgroups × 128 pairs

void main() {
    const uint h = gl_WorkGroupID.x, r = gl_WorkGroupID.y, z = gl_WorkGroupID.z;
    const uint lane = gl_SubgroupInvocationID, SG = gl_SubgroupSize, sg = gl_SubgroupID, nsg = gl_NumSubgroups;
    const uint len = uint(Step[p.positions + r]) + 1u;
    const uint per = (len + p.splits - 1u) / p.splits;
    const uint start = min(len, z * per), end = min(len, start + per);
    const uint table = uint(Step[p.tableStart + uint(Step[p.tableIndex + r])]);
    const uint hd2 = p.headDim / 2u;
    const uint headOff2 = (h / p.group) * hd2;       // in f16 pairs within a slot
    const uint qBase = r * p.qCols + h * p.headDim;
    const uint slotWords = p.kvDim / 2u;
    vec2 q[MAXP], acc[MAXP];
    for (uint k = 0u; k < MAXP; k++) {
        const uint d = lane + k * SG;
        q[k] = d < hd2 ? vec2(round_f16(Q[qBase + 2u * d]), round_f16(Q[qBase + 2u * d + 1u])) : vec2(0.0);
        acc[k] = vec2(0.0);
    }
    float M = -1.0 / 0.0, S = 0.0;
    for (uint j = start + sg; j < end; j += 2u * nsg) {
        const uint j2 = j + nsg;
        const bool two = j2 < end;
        const uint slot0 = uint(Step[table + j / p.pageSize]) * p.pageSize + j % p.pageSize;
        const uint slot1 = two ? uint(Step[table + j2 / p.pageSize]) * p.pageSize + j2 % p.pageSize : slot0;
        const uint k0 = slot0 * slotWords + headOff2, k1 = slot1 * slotWords + headOff2;
        float d0 = 0.0, d1 = 0.0;
        vec2 v0[MAXP], v1[MAXP];
        for (uint k = 0u; k < MAXP; k++) {
            const uint d = lane + k * SG;
            if (d < hd2) {
                d0 += dot(unpackHalf2x16(KV[k0 + d]), q[k]);
                d1 += dot(unpackHalf2x16(KV[k1 + d]), q[k]);
                v0[k] = unpackHalf2x16(KV[p.vOffset + k0 + d]);
                v1[k] = unpackHalf2x16(KV[p.vOffset + k1 + d]);
            } else { v0[k] = vec2(0.0); v1[k] = vec2(0.0); }
        }
        const float s0 = subgroupAdd(d0) * p.scale;
        const float s1r = subgroupAdd(d1) * p.scale;
        const float s1 = two ? s1r : -1.0 / 0.0;
        const float newM = max(M, max(s0, s1));
        const float alpha = exp(M - newM), e0 = exp(s0 - newM), e1 = two ? exp(s1 - newM) : 0.0;
        S = S * alpha + e0 + e1;
        for (uint k = 0u; k < MAXP; k++) acc[k] = acc[k] * alpha + e0 * v0[k] + e1 * v1[k];
        M = newM;
    }
    // Merge the subgroups: weights exp(M_s - M*) (0 for a subgroup that saw no position).
    if (lane == 0u) { shM[sg] = M; shS[sg] = S; }
    for (uint k = 0u; k < MAXP; k++) {
        const uint d = lane + k * SG;
        if (d < hd2) shAcc[sg * hd2 + d] = acc[k];
    }
    barrier();
    float Mx = -1.0 / 0.0;
    for (uint i = 0u; i < nsg; i++) Mx = max(Mx, shM[i]);
    const uint pb = p.partBase + ((r * p.heads + h) * p.splits + z) * (p.headDim + 2u);
    float St = 0.0;
    for (uint i = 0u; i < nsg; i++) if (shM[i] != -1.0 / 0.0) St += exp(shM[i] - Mx) * shS[i];
    if (gl_LocalInvocationID.x == 0u) { Part[pb] = Mx; Part[pb + 1u] = St; }
    for (uint d = gl_LocalInvocationID.x; d < hd2; d += gl_WorkGroupSize.x) {
        vec2 a = vec2(0.0);
        for (uint i = 0u; i < nsg; i++) if (shM[i] != -1.0 / 0.0) a += exp(shM[i] - Mx) * shAcc[i * hd2 + d];
        Part[pb + 2u + 2u * d] = a.x;
        Part[pb + 3u + 2u * d] = a.y;
    }
}
