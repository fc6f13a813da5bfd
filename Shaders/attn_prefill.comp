#version 450
// Prefill attention (flash attention: tiles, online softmax, no n × n score matrix in memory) over the f16
// paged KV cache, for a step whose rows are one sequence at consecutive positions p0, p0 + 1, … (a whole
// prompt, or a chunk of one after earlier chunks: row r attends to positions 0…p0 + r). The host checks
// that and falls back to attn_decode.comp otherwise (several sequences, Q8_0 KV, sliding windows,
// head dims above 128 or not a multiple of 4).
// Workgroup (head h, query tile y) of 128 invocations: BR = 32 query rows × up to 128 dims of q (rounded
// to f16, as the CPU does) in shared memory as f32; KV positions BC = 8·NC at a time: the K tile (read
// through the page table, f16 → f32) into shared memory, scores S = q·k (32 × BC: each invocation 2 rows
// × NC positions, vec4 dot products over the head's dims), the causal mask, the tile's row maxima and the
// online-softmax rescale; then the V tile over the K tile's memory and O += P·V (each invocation 2 rows
// × 16 dims in registers). GQA: kv head h / group. Numerics: f32 products and sums (the CPU's order
// differs: ~1e-6 relative).
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

// WG (constant 0) must be 128: the thread layout below (16 row pairs × 8) assumes it.
// NC positions per invocation: BC = 8·NC per KV tile (4: 40 KiB of shared memory; -DNC=2, attn_prefill_small:
// 29 KiB, for devices with 32 KiB such as lavapipe).
#ifndef NC
#define NC 4u
#endif
#define BR 32u
#define BC (8u * NC)
#define DS4 33u                 // row stride in vec4 (128 dims + 4 floats: bank spread)
shared vec4 Qsh[BR * DS4];
shared vec4 KVsh[BC * DS4];     // the K tile, then the V tile
shared float Psh[BR * (BC + 1u)];
shared float Msh[BR * 8u], Lsh[BR * 8u];

void main() {
    const uint h = gl_WorkGroupID.x, r0 = gl_WorkGroupID.y * BR, tid = gl_LocalInvocationID.x;
    const uint rg = tid >> 3, cg = tid & 7u;          // rows 2·rg, 2·rg + 1; positions cg + 8·c; dims 4·(cg + 8·k)
    const uint lane = tid & 31u;                      // loads: 32 invocations per KV position
    uint slot[BC / 4u];
    const uint rLast = min(r0 + BR, p.rows) - 1u;
    const uint table = uint(Step[p.tableStart + uint(Step[p.tableIndex + r0])]);
    const uint jEnd = uint(Step[p.positions + rLast]) + 1u;   // positions increase along the rows
    const uint D4 = p.headDim / 4u, D2 = p.headDim / 2u;
    const uint slotWords = p.kvDim / 2u, headOff2 = (h / p.group) * D2;
    int pos[2];
    [[unroll]] for (uint i = 0u; i < 2u; i++) pos[i] = Step[p.positions + min(r0 + 2u * rg + i, rLast)];

    // q tile (rows past the end repeat the last row; not stored).
    for (uint e = tid; e < BR * D4; e += 128u) {
        const uint row = e / D4, d4 = e - row * D4;
        const uint qb = min(r0 + row, rLast) * p.qCols + h * p.headDim + 4u * d4;
        Qsh[row * DS4 + d4] = vec4(round_f16(Q[qb]), round_f16(Q[qb + 1u]), round_f16(Q[qb + 2u]), round_f16(Q[qb + 3u]));
    }

    float M[2], L[2];
    vec4 acc[2][4];
    [[unroll]] for (uint i = 0u; i < 2u; i++) {
        M[i] = -1.0 / 0.0; L[i] = 0.0;
        [[unroll]] for (uint k = 0u; k < 4u; k++) acc[i][k] = vec4(0.0);
    }

    for (uint j0 = 0u; j0 < jEnd; j0 += BC) {
        barrier();   // the previous tile's P·V reads of KVsh are done
        // K tile: each subgroup of 32 invocations (a warp: `lane`) reads positions jp = 4·t + tid / 32, the
        // head's words lane, lane + 32 (coalesced); zeros past jEnd. The slots' word offsets are kept for V.
        [[unroll]] for (uint t = 0u; t < BC / 4u; t++) {
            const uint jp = 4u * t + (tid >> 5), j = j0 + jp;
            slot[t] = j < jEnd ? (uint(Step[table + j / p.pageSize]) * p.pageSize + j % p.pageSize) * slotWords + headOff2 : ~0u;
            for (uint w = lane; w < D2; w += 32u) {
                const vec2 v = slot[t] != ~0u ? unpackHalf2x16(KV[slot[t] + w]) : vec2(0.0);
                if ((w & 1u) == 0u) KVsh[jp * DS4 + (w >> 1)].xy = v; else KVsh[jp * DS4 + (w >> 1)].zw = v;
            }
        }
        barrier();
        float s[2][NC];
        [[unroll]] for (uint i = 0u; i < 2u; i++) [[unroll]] for (uint c = 0u; c < NC; c++) s[i][c] = 0.0;
        for (uint d4 = 0u; d4 < D4; d4++) {
            const vec4 q0 = Qsh[(2u * rg) * DS4 + d4], q1 = Qsh[(2u * rg + 1u) * DS4 + d4];
            [[unroll]] for (uint c = 0u; c < NC; c++) {
                const vec4 k = KVsh[(cg + 8u * c) * DS4 + d4];
                s[0][c] += dot(q0, k);
                s[1][c] += dot(q1, k);
            }
        }
        // Causal mask (j <= the row's position) and the tile's row maxima.
        [[unroll]] for (uint i = 0u; i < 2u; i++) {
            float m = -1.0 / 0.0;
            [[unroll]] for (uint c = 0u; c < NC; c++) {
                const int j = int(j0 + cg + 8u * c);
                s[i][c] = j <= pos[i] ? s[i][c] * p.scale : -1.0 / 0.0;
                m = max(m, s[i][c]);
            }
            Msh[(2u * rg + i) * 8u + cg] = m;
        }
        barrier();   // K reads done, maxima written
        // V tile over the K tile (loads in flight during the softmax).
        [[unroll]] for (uint t = 0u; t < BC / 4u; t++) {
            const uint jp = 4u * t + (tid >> 5);
            for (uint w = lane; w < D2; w += 32u) {
                const vec2 v = slot[t] != ~0u ? unpackHalf2x16(KV[p.vOffset + slot[t] + w]) : vec2(0.0);
                if ((w & 1u) == 0u) KVsh[jp * DS4 + (w >> 1)].xy = v; else KVsh[jp * DS4 + (w >> 1)].zw = v;
            }
        }
        float alpha[2];
        [[unroll]] for (uint i = 0u; i < 2u; i++) {
            const uint row = 2u * rg + i;
            float m = M[i];
            [[unroll]] for (uint t = 0u; t < 8u; t++) m = max(m, Msh[row * 8u + t]);
            // m is finite: the first tile holds position 0, which every row attends.
            alpha[i] = exp(M[i] - m);
            M[i] = m;
            float sum = 0.0;
            [[unroll]] for (uint c = 0u; c < NC; c++) {
                const float e = exp(s[i][c] - m);
                Psh[row * (BC + 1u) + cg + 8u * c] = e;
                sum += e;
            }
            Lsh[row * 8u + cg] = sum;
            [[unroll]] for (uint k = 0u; k < 4u; k++) acc[i][k] *= alpha[i];
        }
        barrier();   // V tile, P and the partial sums are in
        [[unroll]] for (uint i = 0u; i < 2u; i++) {
            float sum = 0.0;
            [[unroll]] for (uint t = 0u; t < 8u; t++) sum += Lsh[(2u * rg + i) * 8u + t];
            L[i] = L[i] * alpha[i] + sum;
        }
        const uint n = min(BC, jEnd - j0);
        for (uint c = 0u; c < n; c++) {
            const float p0 = Psh[(2u * rg) * (BC + 1u) + c], p1 = Psh[(2u * rg + 1u) * (BC + 1u) + c];
            [[unroll]] for (uint k = 0u; k < 4u; k++) {
                const vec4 v = KVsh[c * DS4 + cg + 8u * k];
                acc[0][k] += p0 * v;
                acc[1][k] += p1 * v;
            }
        }
    }

    [[unroll]] for (uint i = 0u; i < 2u; i++) {
        const uint row = r0 + 2u * rg + i;
        if (row < p.rows) {
            const float inv = 1.0 / L[i];
            const uint ob = row * p.qCols + h * p.headDim;
            [[unroll]] for (uint k = 0u; k < 4u; k++) {
                const uint d4 = cg + 8u * k;
                if (d4 < D4) {
                    const vec4 o = acc[i][k] * inv;
                    O[ob + 4u * d4] = o.x; O[ob + 4u * d4 + 1u] = o.y; O[ob + 4u * d4 + 2u] = o.z; O[ob + 4u * d4 + 3u] = o.w;
                }
            }
        }
    }
}
