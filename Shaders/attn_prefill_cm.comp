#version 450
// attn_prefill.comp on cooperative matrices (VK_NV_cooperative_matrix 16×16×16 f16·f16 + f32): the same
// steps (one sequence at consecutive positions, causal, paged f16 KV, GQA), the default where the device has
// them (env SHARD_VK_FLASH_CM=0: attn_prefill.comp). Checked on the GPU only (lavapipe has no cooperative
// matrices): top-5 logits vs the CPU after a 28-word prompt (scripts/gpu-pre.sh). Workgroup (head h, 64 query rows): 4 subgroups of 32, each 16 rows with its q
// (headDim ≤ 128, a multiple of 16) held as 8 f16 matrices; per KV tile of BC = 32 positions the K and V
// tiles (f16) in shared memory, S = q·Kᵀ (2 × 8 products), the online softmax by lanes (2 per row) on S in
// shared memory, P rounded to f16, the accumulators rescaled through shared memory, O += P·V (2 × 8).
// Numerics: f16 q (rounded as the CPU does), K, V and P; f32 accumulation.
#extension GL_NV_cooperative_matrix : require
#extension GL_KHR_memory_scope_semantics : require
#extension GL_EXT_shader_explicit_arithmetic_types_float16 : require
#extension GL_EXT_control_flow_attributes : require
#include "common.glsl"
layout(std430, binding = 0) readonly buffer KVBuf { uint KV[]; };
layout(std430, binding = 1) readonly buffer QBuf { float Q[]; };
layout(std430, binding = 2) writeonly buffer OBuf { float O[]; };
layout(std430, binding = 3) readonly buffer SBuf { int Step[]; };
layout(push_constant) uniform Params {
    uint kvDim, pageSize, vOffset, positions, tableIndex, tableStart;
    uint heads, group, headDim, qCols; float scale; uint rows;
} p;

// WG (constant 0) must be 128: 4 subgroups of 32 (the host checks the subgroup size).
#define BR 64u
#define BC 32u
#define HS 136u                         // row stride in halfs (128 + 8: bank spread)
#define PS 40u                          // P row stride in halfs
shared float16_t Hsh[BR * HS];          // the q tile (64 rows); then K (rows 0…31) and V (32…63)
shared float Ssh[4u * 16u * BC];        // per subgroup: 16 × BC scores
shared float16_t Psh[4u * 16u * PS];    // per subgroup: 16 × BC probabilities
shared float Osh[4u * 256u];            // per subgroup: one 16 × 16 matrix on its way through
shared float Xsh[4u * 32u];             // per subgroup: lane pairs' partial max / sum
shared float Ash[4u * 16u];             // per subgroup: each row's rescale factor, then 1 / L

#define F16MAT fcoopmatNV<16, gl_ScopeSubgroup, 16, 16>
#define F32MAT fcoopmatNV<32, gl_ScopeSubgroup, 16, 16>

void syncSubgroup() { subgroupMemoryBarrierShared(); subgroupBarrier(); }

// o *= Ash[row] (a 16 × 16 accumulator, through Osh).
#define RESCALE(o) { \
        coopMatStoreNV(o, Osh, sg * 256u, 16u, false); \
        syncSubgroup(); \
        for (uint t = lane; t < 256u; t += 32u) Osh[sg * 256u + t] *= Ash[sg * 16u + (t >> 4)]; \
        syncSubgroup(); \
        coopMatLoadNV(o, Osh, sg * 256u, 16u, false); \
        syncSubgroup(); }

void main() {
    const uint h = gl_WorkGroupID.x, r0 = gl_WorkGroupID.y * BR, tid = gl_LocalInvocationID.x;
    const uint sg = gl_SubgroupID, lane = gl_SubgroupInvocationID;
    const uint rLast = min(r0 + BR, p.rows) - 1u;
    const uint table = uint(Step[p.tableStart + uint(Step[p.tableIndex + r0])]);
    const uint jEnd = uint(Step[p.positions + rLast]) + 1u;   // positions increase along the rows
    const uint D2 = p.headDim / 2u, ND = p.headDim / 16u;
    const uint slotWords = p.kvDim / 2u, headOff2 = (h / p.group) * D2;
    // Softmax lanes: row lr of the subgroup's 16, positions 16·lh…16·lh + 15 of the tile.
    const uint lr = lane >> 1, lh = lane & 1u;
    const int pos = Step[p.positions + min(r0 + 16u * sg + lr, rLast)];

    // q tile, rounded to f16 (rows past the end repeat the last row; not stored).
    for (uint e = tid; e < BR * D2; e += 128u) {
        const uint row = e / D2, w = e - row * D2;
        const uint qb = min(r0 + row, rLast) * p.qCols + h * p.headDim + 2u * w;
        Hsh[row * HS + 2u * w] = float16_t(round_f16(Q[qb]));
        Hsh[row * HS + 2u * w + 1u] = float16_t(round_f16(Q[qb + 1u]));
    }
    barrier();
    F16MAT q0, q1, q2, q3, q4, q5, q6, q7;
    const uint qo = 16u * sg * HS;
    coopMatLoadNV(q0, Hsh, qo, HS, false);
    if (ND > 1u) coopMatLoadNV(q1, Hsh, qo + 16u, HS, false);
    if (ND > 2u) coopMatLoadNV(q2, Hsh, qo + 32u, HS, false);
    if (ND > 3u) coopMatLoadNV(q3, Hsh, qo + 48u, HS, false);
    if (ND > 4u) coopMatLoadNV(q4, Hsh, qo + 64u, HS, false);
    if (ND > 5u) coopMatLoadNV(q5, Hsh, qo + 80u, HS, false);
    if (ND > 6u) coopMatLoadNV(q6, Hsh, qo + 96u, HS, false);
    if (ND > 7u) coopMatLoadNV(q7, Hsh, qo + 112u, HS, false);
    F32MAT o0 = F32MAT(0.0), o1 = F32MAT(0.0), o2 = F32MAT(0.0), o3 = F32MAT(0.0);
    F32MAT o4 = F32MAT(0.0), o5 = F32MAT(0.0), o6 = F32MAT(0.0), o7 = F32MAT(0.0);
    float M = -1.0 / 0.0, L = 0.0;

    for (uint j0 = 0u; j0 < jEnd; j0 += BC) {
        barrier();   // q loaded / the previous tile's K and V reads done
        // K into rows 0…31, V into 32…63: each subgroup 8 positions, lanes over the head's words (coalesced).
        [[unroll]] for (uint t = 0u; t < BC / 4u; t++) {
            const uint jp = 4u * t + sg, j = j0 + jp;
            const uint slot = j < jEnd ? (uint(Step[table + j / p.pageSize]) * p.pageSize + j % p.pageSize) * slotWords + headOff2 : ~0u;
            for (uint w = lane; w < D2; w += 32u) {
                const f16vec2 k = slot != ~0u ? unpackFloat2x16(KV[slot + w]) : f16vec2(0.0);
                const f16vec2 v = slot != ~0u ? unpackFloat2x16(KV[p.vOffset + slot + w]) : f16vec2(0.0);
                Hsh[jp * HS + 2u * w] = k.x; Hsh[jp * HS + 2u * w + 1u] = k.y;
                Hsh[(BC + jp) * HS + 2u * w] = v.x; Hsh[(BC + jp) * HS + 2u * w + 1u] = v.y;
            }
        }
        barrier();
        // S = q·Kᵀ: K rows as the columns of B (column-major loads).
        [[unroll]] for (uint cb = 0u; cb < BC / 16u; cb++) {
            F32MAT s = F32MAT(0.0);
            F16MAT kb;
            const uint ko = 16u * cb * HS;
            coopMatLoadNV(kb, Hsh, ko, HS, true); s = coopMatMulAddNV(q0, kb, s);
            if (ND > 1u) { coopMatLoadNV(kb, Hsh, ko + 16u, HS, true); s = coopMatMulAddNV(q1, kb, s); }
            if (ND > 2u) { coopMatLoadNV(kb, Hsh, ko + 32u, HS, true); s = coopMatMulAddNV(q2, kb, s); }
            if (ND > 3u) { coopMatLoadNV(kb, Hsh, ko + 48u, HS, true); s = coopMatMulAddNV(q3, kb, s); }
            if (ND > 4u) { coopMatLoadNV(kb, Hsh, ko + 64u, HS, true); s = coopMatMulAddNV(q4, kb, s); }
            if (ND > 5u) { coopMatLoadNV(kb, Hsh, ko + 80u, HS, true); s = coopMatMulAddNV(q5, kb, s); }
            if (ND > 6u) { coopMatLoadNV(kb, Hsh, ko + 96u, HS, true); s = coopMatMulAddNV(q6, kb, s); }
            if (ND > 7u) { coopMatLoadNV(kb, Hsh, ko + 112u, HS, true); s = coopMatMulAddNV(q7, kb, s); }
            coopMatStoreNV(s, Ssh, sg * 16u * BC + 16u * cb, BC, false);
        }
        syncSubgroup();
        // Online softmax: lane pair (lr, lh) takes row lr's 32 scores, 16 each.
        float sv[16];
        float m = -1.0 / 0.0;
        [[unroll]] for (uint c = 0u; c < 16u; c++) {
            const uint jc = 16u * lh + c;
            sv[c] = int(j0 + jc) <= pos ? Ssh[sg * 16u * BC + lr * BC + jc] * p.scale : -1.0 / 0.0;
            m = max(m, sv[c]);
        }
        Xsh[sg * 32u + lane] = m;
        syncSubgroup();
        m = max(max(m, Xsh[sg * 32u + (lane ^ 1u)]), M);   // finite: the first tile holds position 0
        const float alpha = exp(M - m);
        M = m;
        float sum = 0.0;
        [[unroll]] for (uint c = 0u; c < 16u; c++) {
            const float e = exp(sv[c] - m);
            Psh[sg * 16u * PS + lr * PS + 16u * lh + c] = float16_t(e);
            sum += e;
        }
        syncSubgroup();
        Xsh[sg * 32u + lane] = sum;
        if (lh == 0u) Ash[sg * 16u + lr] = alpha;
        syncSubgroup();
        L = L * alpha + sum + Xsh[sg * 32u + (lane ^ 1u)];
        RESCALE(o0) if (ND > 1u) RESCALE(o1) if (ND > 2u) RESCALE(o2) if (ND > 3u) RESCALE(o3)
        if (ND > 4u) RESCALE(o4) if (ND > 5u) RESCALE(o5) if (ND > 6u) RESCALE(o6) if (ND > 7u) RESCALE(o7)
        // O += P·V: V rows (positions) as the rows of B.
        [[unroll]] for (uint c = 0u; c < BC / 16u; c++) {
            F16MAT pa, vb;
            coopMatLoadNV(pa, Psh, sg * 16u * PS + 16u * c, PS, false);
            const uint vo = (BC + 16u * c) * HS;
            coopMatLoadNV(vb, Hsh, vo, HS, false); o0 = coopMatMulAddNV(pa, vb, o0);
            if (ND > 1u) { coopMatLoadNV(vb, Hsh, vo + 16u, HS, false); o1 = coopMatMulAddNV(pa, vb, o1); }
            if (ND > 2u) { coopMatLoadNV(vb, Hsh, vo + 32u, HS, false); o2 = coopMatMulAddNV(pa, vb, o2); }
            if (ND > 3u) { coopMatLoadNV(vb, Hsh, vo + 48u, HS, false); o3 = coopMatMulAddNV(pa, vb, o3); }
            if (ND > 4u) { coopMatLoadNV(vb, Hsh, vo + 64u, HS, false); o4 = coopMatMulAddNV(pa, vb, o4); }
            if (ND > 5u) { coopMatLoadNV(vb, Hsh, vo + 80u, HS, false); o5 = coopMatMulAddNV(pa, vb, o5); }
            if (ND > 6u) { coopMatLoadNV(vb, Hsh, vo + 96u, HS, false); o6 = coopMatMulAddNV(pa, vb, o6); }
            if (ND > 7u) { coopMatLoadNV(vb, Hsh, vo + 112u, HS, false); o7 = coopMatMulAddNV(pa, vb, o7); }
        }
    }

    // O / L, row by row of each 16 × 16 matrix.
    if (lh == 0u) Ash[sg * 16u + lr] = 1.0 / L;
    syncSubgroup();
#define OUT(k, o) if (ND > uint(k)) { \
        coopMatStoreNV(o, Osh, sg * 256u, 16u, false); \
        syncSubgroup(); \
        for (uint t = lane; t < 256u; t += 32u) { \
            const uint rr = t >> 4, row = r0 + 16u * sg + rr; \
            if (row < p.rows) O[row * p.qCols + h * p.headDim + 16u * uint(k) + (t & 15u)] = Osh[sg * 256u + t] * Ash[sg * 16u + rr]; \
        } \
        syncSubgroup(); }
    OUT(0, o0) OUT(1, o1) OUT(2, o2) OUT(3, o3) OUT(4, o4) OUT(5, o5) OUT(6, o6) OUT(7, o7)
}
