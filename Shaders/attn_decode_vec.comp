#version 450
// Decode attention of batched steps (2+ rows, f16 KV; env SHARD_VK_ATTN_VEC=0: attn_decode.comp as before).
// Workgroup (head h, row r, split z) takes an equal share of the row's positions, as attn_decode.comp,
// but a position's K (and V) head row is read as 16-byte vectors by LP lanes only (headDim / 8 uvec4
// chunks, CPL per lane: LP · CPL = headDim / 8), so a subgroup holds G = subgroup size / LP positions
// per load and NPV loads per lane group in flight: 128-dim heads on 32-lane subgroups read 2 positions
// per instruction and 8 per iteration, 32 per workgroup iteration (attn_decode: 2 per subgroup, 4-byte
// loads). q·k is reduced over the LP lanes of a group by subgroupShuffleXor (every lane gets the same
// sum); each group keeps its own online softmax (max, sum, acc of its CPL · 8 dims) in registers. The
// workgroup's groups are then merged in shared memory as attn_decode.comp merges its subgroups, into the
// same partials (max, sum, acc[headDim]) for attention_merge(_quant).comp, or the last workgroup of a
// group of heads merges them (FUSED_MERGE: attn_decode_vec_merge, as attn_decode_merge). q is rounded
// to f16 as the CPU does. The host requires headDim % 8 == 0, f16 KV and G · subgroups · headDim / 2 ≤ 1024.
#extension GL_EXT_control_flow_attributes : require
#extension GL_KHR_shader_subgroup_shuffle : require
#include "common.glsl"
layout(constant_id = 1) const uint CPL = 1;    // uvec4 chunks (8 dims) per lane
layout(constant_id = 2) const uint NPV = 4;    // positions per lane group per iteration (loads in flight)
layout(constant_id = 4) const uint LP = 16;    // lanes per position: headDim / 8 / CPL (a power of two ≤ subgroup size)
layout(std430, binding = 0) readonly buffer KVBuf { uvec4 KV[]; };
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
// As attn_decode.comp's FUSED_MERGE: the last workgroup of a group of outputs merges its partials.
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
shared vec2 shAcc[8 * 128];   // [lane group of the workgroup][pair]: the host keeps groups · headDim / 2 ≤ 1024

// 8 f16 values of a chunk times 8 floats of q.
float dot8(uvec4 k, vec4 qa, vec4 qb) {
    return dot(vec4(unpackHalf2x16(k.x), unpackHalf2x16(k.y)), qa) + dot(vec4(unpackHalf2x16(k.z), unpackHalf2x16(k.w)), qb);
}

void main() {
    const uint h = gl_WorkGroupID.x, r = gl_WorkGroupID.y, z = gl_WorkGroupID.z;
    const uint lane = gl_SubgroupInvocationID, SG = gl_SubgroupSize, sg = gl_SubgroupID, nsg = gl_NumSubgroups;
    const uint G = SG / LP, grp = lane / LP, l = lane % LP;
    const uint vs = sg * G + grp, nvs = nsg * G;   // this lane group's index in the workgroup, and their count
    const uint len = uint(Step[p.positions + r]) + 1u;
    const uint lo = p.window > 0u && len > p.window ? len - p.window : 0u;   // evicted ring pages lie below
    const uint per = (len - lo + p.splits - 1u) / p.splits;
    const uint start = min(len, lo + z * per), end = min(len, start + per);
    const uint table = uint(Step[p.tableStart + uint(Step[p.tableIndex + r])]);
    const uint hd2 = p.headDim / 2u;
    const uint slot4 = p.kvDim / 8u, head4 = (h / p.group) * (p.headDim / 8u), v4 = p.vOffset / 4u;
    const uint qBase = r * p.qCols + h * p.headDim;
    vec4 qa[CPL], qb[CPL], acca[CPL], accb[CPL];
    [[unroll]] for (uint c = 0u; c < CPL; c++) {
        const uint d = 8u * (l + c * LP);
        qa[c] = vec4(round_f16(Q[qBase + d]), round_f16(Q[qBase + d + 1u]), round_f16(Q[qBase + d + 2u]), round_f16(Q[qBase + d + 3u]));
        qb[c] = vec4(round_f16(Q[qBase + d + 4u]), round_f16(Q[qBase + d + 5u]), round_f16(Q[qBase + d + 6u]), round_f16(Q[qBase + d + 7u]));
        acca[c] = vec4(0.0); accb[c] = vec4(0.0);
    }
    float M = -1.0 / 0.0, S = 0.0;
    // Iteration: position b + (t · nvs + vs) for t < NPV (the workgroup's groups on consecutive positions).
    for (uint b = start; b < end; b += NPV * nvs) {
        uint kb[NPV];
        bool ok[NPV];
        [[unroll]] for (uint t = 0u; t < NPV; t++) {
            const uint j = b + t * nvs + vs;
            ok[t] = j < end;
            const uint jj = ok[t] ? j : start;
            const uint page = uint(Step[table + jj / p.pageSize]);
            kb[t] = (page * p.pageSize + jj % p.pageSize) * slot4 + head4;
        }
        uvec4 kk[NPV][CPL], vv[NPV][CPL];
        [[unroll]] for (uint t = 0u; t < NPV; t++) {
            [[unroll]] for (uint c = 0u; c < CPL; c++) {
                kk[t][c] = ok[t] ? KV[kb[t] + l + c * LP] : uvec4(0u);
                vv[t][c] = ok[t] ? KV[v4 + kb[t] + l + c * LP] : uvec4(0u);
            }
        }
        float s[NPV];
        float newM = M;
        [[unroll]] for (uint t = 0u; t < NPV; t++) {
            float d = 0.0;
            [[unroll]] for (uint c = 0u; c < CPL; c++) d += dot8(kk[t][c], qa[c], qb[c]);
            [[unroll]] for (uint o = 1u; o < LP; o <<= 1u) d += subgroupShuffleXor(d, o);
            s[t] = ok[t] ? d * p.scale : -1.0 / 0.0;
            newM = max(newM, s[t]);
        }
        // A group whose positions are all past the end (and none before) keeps M = -inf: no update.
        const float alpha = newM == -1.0 / 0.0 ? 1.0 : exp(M - newM);
        float e[NPV];
        S = S * alpha;
        [[unroll]] for (uint t = 0u; t < NPV; t++) { e[t] = ok[t] ? exp(s[t] - newM) : 0.0; S += e[t]; }
        [[unroll]] for (uint c = 0u; c < CPL; c++) {
            vec4 a = acca[c] * alpha, bb = accb[c] * alpha;
            [[unroll]] for (uint t = 0u; t < NPV; t++) {
                a += e[t] * vec4(unpackHalf2x16(vv[t][c].x), unpackHalf2x16(vv[t][c].y));
                bb += e[t] * vec4(unpackHalf2x16(vv[t][c].z), unpackHalf2x16(vv[t][c].w));
            }
            acca[c] = a; accb[c] = bb;
        }
        M = newM;
    }
    // Merge the lane groups: weights exp(M_g - M*) (0 for a group that saw no position).
    if (l == 0u) { shM[vs] = M; shS[vs] = S; }
    [[unroll]] for (uint c = 0u; c < CPL; c++) {
        const uint pr = vs * hd2 + 4u * (l + c * LP);
        shAcc[pr] = acca[c].xy; shAcc[pr + 1u] = acca[c].zw; shAcc[pr + 2u] = accb[c].xy; shAcc[pr + 3u] = accb[c].zw;
    }
    barrier();
    float Mx = -1.0 / 0.0;
    for (uint i = 0u; i < nvs; i++) Mx = max(Mx, shM[i]);
    const uint pb = p.partBase + ((r * p.heads + h) * p.splits + z) * (p.headDim + 2u);
    float St = 0.0;
    for (uint i = 0u; i < nvs; i++) if (shM[i] != -1.0 / 0.0) St += exp(shM[i] - Mx) * shS[i];
    if (gl_LocalInvocationID.x == 0u) { Part[pb] = Mx; Part[pb + 1u] = St; }
    for (uint d = gl_LocalInvocationID.x; d < hd2; d += gl_WorkGroupSize.x) {
        vec2 a = vec2(0.0);
        for (uint i = 0u; i < nvs; i++) if (shM[i] != -1.0 / 0.0) a += exp(shM[i] - Mx) * shAcc[i * hd2 + d];
        Part[pb + 2u + 2u * d] = a.x;
        Part[pb + 3u + 2u * d] = a.y;
    }
#ifdef FUSED_MERGE
    const uint B = p.mode == 0u ? 32u : (p.mode == 1u ? 256u : p.headDim);
    const uint hpg = max(1u, B / p.headDim), Gs = max(B, p.headDim);
    const uint mg = h / hpg, ngroups = (p.heads + hpg - 1u) / hpg;
    memoryBarrierBuffer();
    barrier();
    if (gl_LocalInvocationID.x == 0u) {
        const uint c = r * ngroups + mg;
        const uint done = atomicAdd(Counter[c], 1u);
        shLast = done == p.splits * hpg - 1u;
        if (shLast) Counter[c] = 0u;
    }
    barrier();
    if (!shLast) return;   // uniform per workgroup
    memoryBarrierBuffer();
    const uint h0 = mg * hpg, stride = p.headDim + 2u;
    for (uint hs = sg; hs < hpg; hs += nsg) {
        const uint base = p.partBase + (r * p.heads + h0 + hs) * p.splits * stride;
        float m = -1.0 / 0.0;
        for (uint s = lane; s < p.splits; s += SG) m = max(m, Part[base + s * stride]);
        const float Mh = subgroupMax(m);
        float Sh = 0.0;
        for (uint s = lane; s < p.splits; s += SG) {
            const float ms = Part[base + s * stride];
            const float w = ms != -1.0 / 0.0 ? exp(ms - Mh) : 0.0;
            wsh[hs][s] = w;
            Sh += w * Part[base + s * stride + 1u];
        }
        Sh = subgroupAdd(Sh);
        if (lane == 0u) invsh[hs] = 1.0 / Sh;
    }
    barrier();
    for (uint e = gl_LocalInvocationID.x; e < Gs; e += gl_WorkGroupSize.x) {
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
        for (uint e = gl_LocalInvocationID.x; e < Gs; e += gl_WorkGroupSize.x) O[g_out + e] = vals[e];
        return;
    }
    for (uint b = sg; b < Gs / B; b += nsg) quantize_block(b * B, p.mode);
#endif
}
