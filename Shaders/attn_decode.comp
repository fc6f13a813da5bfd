#version 450
// Decode attention (few rows): workgroup (head h, row r, split z) takes an equal share of the row's
// positions ([z·per, (z+1)·per), per = ceil(len / splits)), so the grid does not depend on the KV
// length (a recorded command buffer replays at every length). Each subgroup walks its share of
// positions (interleaved, NP at a time) with the lanes spread over the head's dims: one 4..8-byte
// K and V load per lane per position (coalesced), q·k by subgroupAdd, online softmax in registers;
// the workgroup's subgroups are then merged in shared memory and the unnormalized partial
// (max, sum, acc[headDim]) written to Part for attention_merge.comp. q is rounded to f16 as the CPU does.
// KV_Q8 (attn_decode_q8): K and V in store_kv.comp's Q8_0 slots (17 halfwords per block of 32: the
// f16 scale, then 16 pairs of int8); each lane reads its pair and its block's scale. q stays f32 (the
// CPU's q8_0 path does not round it). The host requires headDim % 32 == 0 (a head is whole blocks).
#extension GL_EXT_control_flow_attributes : require
#include "common.glsl"
layout(constant_id = 1) const uint MAXP = 4;   // dim pairs per lane: headDim / 2 <= MAXP * subgroup size
layout(constant_id = 2) const uint NP = 2;     // positions per subgroup per iteration (loads in flight together)
layout(constant_id = 4) const bool PREFETCH_PAGES = true;   // env SHARD_VK_ATTN_NO_PREFETCH=1: false
layout(std430, binding = 0) readonly buffer KVBuf { uint KV[]; };
layout(std430, binding = 1) readonly buffer QBuf { float Q[]; };
#ifdef FUSED_MERGE
layout(std430, binding = 2) coherent buffer PBuf { float Part[]; };
#else
layout(std430, binding = 2) writeonly buffer PBuf { float Part[]; };
#endif
layout(std430, binding = 3) readonly buffer SBuf { int Step[]; };
layout(push_constant) uniform Params {
    uint kvDim, pageSize, vOffset, positions, tableIndex, tableStart;
    uint heads, group, headDim, qCols; float scale; uint splits, partBase;
    uint mode;   // FUSED_MERGE: rounding of the merged output (0: Q8_0 grid, 1: Q8_K, 2: none)
    uint window; // > 0: sliding-window layer, a row at position p attends max(0, p − window + 1)...p
    uint qx;     // FUSED_MERGE, mode 1: also the rounded output as packed int8 + block scales into XQ
} p;

#ifdef FUSED_MERGE
// Variant attn_decode_merge (env SHARD_VK_ATTN_FUSED_MERGE=1): the last workgroup to finish a group of
// outputs (max(B, headDim) elements: the heads of one rounding block, or one head) merges the group's
// partials (as attention_merge_quant.comp) and writes O, rounded into Rnd: no merge dispatch. The
// partials go through coherent memory; a per-(row, group) counter, reset by its last workgroup, counts
// the workgroups done.
layout(std430, binding = 4) writeonly buffer OBuf { float O[]; };
layout(std430, binding = 5) writeonly buffer RBuf { float Rnd[]; };
layout(std430, binding = 6) coherent buffer CBuf { uint Counter[]; };
shared bool shLast;
shared float wsh[8][128];
shared float invsh[8];
shared float vals[256];
uint g_out;
float qval(uint i) { return vals[i]; }
void qstore(uint i, float v, float r) { O[g_out + i] = v; Rnd[g_out + i] = r; }
// As attention_merge_quant.comp: the o projection's input for matvec_q8 -DQX / matvec_q8_mc (row r's
// int8 copy at word r · qx_stride(qCols): g_xrow; g_e0 = the group's first element in its row).
layout(std430, binding = 7) writeonly buffer XQBuf { uint XQ[]; };
uint g_xrow, g_e0;
#define QSTORE_INT8
bool qint8() { return p.qx != 0u; }
void qstore8(uint i, uint w) { XQ[g_xrow + ((g_e0 + i) >> 2)] = w; }
void qstored(uint base, float d) { XQ[g_xrow + p.qCols / 4u + (g_e0 + base) / 256u] = floatBitsToUint(d); }
#define QV_ID 3
#include "quant.glsl"
#endif

shared float shM[64], shS[64];

#ifdef KV_Q8
// Halfword `hw` of the slot starting at word `base`.
uint halfword(uint base, uint hw) { return (KV[base + (hw >> 1)] >> ((hw & 1u) * 16u)) & 0xFFFFu; }
// The two values of an int8 pair (halfword hq) times their block's f16 scale (halfword hs).
vec2 q8_pair(uint base, uint hq, uint hs) {
    const uint b = halfword(base, hq);
    return unpackHalf2x16(halfword(base, hs)).x * vec2(float(int(b << 24) >> 24), float(int(b << 16) >> 24));
}
#endif
shared vec2 shAcc[8 * 128];   // [subgroup][pair], at most 8 subgroups × 128 pairs

void main() {
    const uint h = gl_WorkGroupID.x, r = gl_WorkGroupID.y, z = gl_WorkGroupID.z;
    const uint lane = gl_SubgroupInvocationID, SG = gl_SubgroupSize, sg = gl_SubgroupID, nsg = gl_NumSubgroups;
    const uint len = uint(Step[p.positions + r]) + 1u;
    const uint lo = p.window > 0u && len > p.window ? len - p.window : 0u;   // evicted ring pages lie below
    const uint per = (len - lo + p.splits - 1u) / p.splits;
    const uint start = min(len, lo + z * per), end = min(len, start + per);
    const uint table = uint(Step[p.tableStart + uint(Step[p.tableIndex + r])]);
    const uint hd2 = p.headDim / 2u;
    const uint headOff2 = (h / p.group) * hd2;       // in f16 pairs within a slot
    const uint qBase = r * p.qCols + h * p.headDim;
#ifdef KV_Q8
    const uint slotWords = (17u * (p.kvDim / 32u) + 1u) / 2u;
    // Halfword of lane pair k's int8 pair and of its block's scale, within a slot.
    uint hwq[MAXP], hws[MAXP];
    for (uint k = 0u; k < MAXP; k++) {
        const uint d = lane + k * SG, blk = (h / p.group) * (p.headDim / 32u) + d / 16u;
        hws[k] = 17u * blk;
        hwq[k] = 17u * blk + 1u + d % 16u;
    }
#else
    const uint slotWords = p.kvDim / 2u;
#endif
    vec2 q[MAXP], acc[MAXP];
    for (uint k = 0u; k < MAXP; k++) {
        const uint d = lane + k * SG;
#ifdef KV_Q8
        q[k] = d < hd2 ? vec2(Q[qBase + 2u * d], Q[qBase + 2u * d + 1u]) : vec2(0.0);
#else
        q[k] = d < hd2 ? vec2(round_f16(Q[qBase + 2u * d]), round_f16(Q[qBase + 2u * d + 1u])) : vec2(0.0);
#endif
        acc[k] = vec2(0.0);
    }
    // The page-table entries of the split's first 4 pages (32-position pages: up to ~96 positions per
    // split), loaded once before the loop: an iteration then waits for one memory access, not two.
    const uint pBase = start / p.pageSize, pLast = (max(end, start + 1u) - 1u) / p.pageSize;
    uint pg[4];
    [[unroll]] for (uint i = 0u; i < 4u; i++) pg[i] = PREFETCH_PAGES ? uint(Step[table + min(pBase + i, pLast)]) : 0u;
    float M = -1.0 / 0.0, S = 0.0;
    for (uint j = start + sg; j < end; j += NP * nsg) {
        uint kb[NP];
        bool ok[NP];
        [[unroll]] for (uint t = 0u; t < NP; t++) {
            const uint jt = j + t * nsg;
            ok[t] = jt < end;
            const uint jj = ok[t] ? jt : j;
            const uint pi = jj / p.pageSize - pBase;
            const uint page = PREFETCH_PAGES && pi < 4u ? (pi == 0u ? pg[0] : pi == 1u ? pg[1] : pi == 2u ? pg[2] : pg[3])
                                                        : uint(Step[table + jj / p.pageSize]);
#ifdef KV_Q8
            kb[t] = (page * p.pageSize + jj % p.pageSize) * slotWords;
#else
            kb[t] = (page * p.pageSize + jj % p.pageSize) * slotWords + headOff2;
#endif
        }
        float dd[NP];
        vec2 vv[NP][MAXP];
        [[unroll]] for (uint t = 0u; t < NP; t++) dd[t] = 0.0;
        [[unroll]] for (uint k = 0u; k < MAXP; k++) {
            const uint d = lane + k * SG;
            [[unroll]] for (uint t = 0u; t < NP; t++) {
                if (d < hd2) {
#ifdef KV_Q8
                    dd[t] += dot(q8_pair(kb[t], hwq[k], hws[k]), q[k]);
                    vv[t][k] = q8_pair(p.vOffset + kb[t], hwq[k], hws[k]);
#else
                    dd[t] += dot(unpackHalf2x16(KV[kb[t] + d]), q[k]);
                    vv[t][k] = unpackHalf2x16(KV[p.vOffset + kb[t] + d]);
#endif
                } else vv[t][k] = vec2(0.0);
            }
        }
        float s[NP];
        float newM = M;
        [[unroll]] for (uint t = 0u; t < NP; t++) {
            const float st = subgroupAdd(dd[t]) * p.scale;
            s[t] = ok[t] ? st : -1.0 / 0.0;
            newM = max(newM, s[t]);
        }
        const float alpha = exp(M - newM);
        float e[NP];
        S = S * alpha;
        [[unroll]] for (uint t = 0u; t < NP; t++) { e[t] = ok[t] ? exp(s[t] - newM) : 0.0; S += e[t]; }
        [[unroll]] for (uint k = 0u; k < MAXP; k++) {
            vec2 a = acc[k] * alpha;
            [[unroll]] for (uint t = 0u; t < NP; t++) a += e[t] * vv[t][k];
            acc[k] = a;
        }
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
#ifdef FUSED_MERGE
    const uint B = p.mode == 0u ? 32u : (p.mode == 1u ? 256u : p.headDim);
    const uint hpg = max(1u, B / p.headDim), G = max(B, p.headDim);
    const uint grp = h / hpg, ngroups = (p.heads + hpg - 1u) / hpg;
    memoryBarrierBuffer();
    barrier();
    if (gl_LocalInvocationID.x == 0u) {
        const uint c = r * ngroups + grp;
        const uint done = atomicAdd(Counter[c], 1u);
        shLast = done == p.splits * hpg - 1u;
        if (shLast) Counter[c] = 0u;
    }
    barrier();
    if (!shLast) return;   // uniform per workgroup
    memoryBarrierBuffer();
    const uint h0 = grp * hpg, stride = p.headDim + 2u;
    for (uint hs = sg; hs < hpg; hs += nsg) {
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
    for (uint e = gl_LocalInvocationID.x; e < G; e += gl_WorkGroupSize.x) {
        const uint hs = e / p.headDim, d = e - hs * p.headDim;
        const uint base = p.partBase + (r * p.heads + h0 + hs) * p.splits * stride;
        float a = 0.0;
        uint s = 0u;
        for (; s + 8u <= p.splits; s += 8u) {   // 8 loads in flight, summed in split order
            float v[8];
            [[unroll]] for (uint i = 0u; i < 8u; i++) v[i] = Part[base + (s + i) * stride + 2u + d];
            [[unroll]] for (uint i = 0u; i < 8u; i++) { const float w = wsh[hs][s + i]; if (w != 0.0) a += w * v[i]; }
        }
        for (; s < p.splits; s++) {
            const float w = wsh[hs][s];
            if (w != 0.0) a += w * Part[base + s * stride + 2u + d];
        }
        vals[e] = a * invsh[hs];
    }
    barrier();
    g_out = r * p.qCols + h0 * p.headDim;
    g_e0 = h0 * p.headDim; g_xrow = r * qx_stride(p.qCols);
    if (p.mode == 2u) {
        for (uint e = gl_LocalInvocationID.x; e < G; e += gl_WorkGroupSize.x) O[g_out + e] = vals[e];
        return;
    }
    for (uint b = sg; b < G / B; b += nsg) quantize_block(b * B, p.mode);
#endif
}
