#version 450
// rope.comp on q and on k, then store_kv.comp, in one dispatch: one workgroup per (head, row). The
// rotated k is computed per stored f16 pair from the unrotated k (each element with rope.comp's
// arithmetic), written with v into the row's KV slot; after a barrier the head of k itself is rotated
// in place (each rope pair read and written by one invocation), and q's head likewise.
#include "common.glsl"
layout(std430, binding = 0) buffer QBuf { float Qx[]; };
layout(std430, binding = 1) buffer KBuf { float Kx[]; };
layout(std430, binding = 2) readonly buffer VBuf { vec2 Vin[]; };
layout(std430, binding = 3) buffer KVBuf { uint KV[]; };
layout(std430, binding = 4) readonly buffer SBuf { int Step[]; };
layout(std430, binding = 5) readonly buffer TBuf { float Table[]; };
layout(push_constant) uniform Params {
    uint kvDim, pageSize, vOffset, positions, tableIndex, tableStart;
    uint qHeads, kHeads, headDim, half_, neox, qCols, tableOffset;
} p;

// Element e of the rotated k head starting at hb (rope.comp: X[a] = x0 c − x1 s, X[b] = x0 s + x1 c).
float rotated(uint hb, uint e, uint t) {
    const uint h2 = p.half_;
    if (e >= 2u * h2) return Kx[hb + e];
    uint i, a, b; bool first;
    if (p.neox != 0u) { first = e < h2; i = first ? e : e - h2; a = i; b = i + h2; }
    else { first = (e & 1u) == 0u; i = e >> 1; a = 2u * i; b = a + 1u; }
    const float c = Table[t + i], s = Table[t + h2 + i];
    const float x0 = Kx[hb + a], x1 = Kx[hb + b];
    return first ? x0 * c - x1 * s : x0 * s + x1 * c;
}

void rope_head(uint hb, uint t, bool isQ) {
    for (uint i = gl_LocalInvocationID.x; i < p.half_; i += WG) {
        const uint a = p.neox != 0u ? i : 2u * i, b = p.neox != 0u ? i + p.half_ : 2u * i + 1u;
        const float c = Table[t + i], s = Table[t + p.half_ + i];
        if (isQ) {
            const float x0 = Qx[hb + a], x1 = Qx[hb + b];
            Qx[hb + a] = x0 * c - x1 * s;
            Qx[hb + b] = x0 * s + x1 * c;
        } else {
            const float x0 = Kx[hb + a], x1 = Kx[hb + b];
            Kx[hb + a] = x0 * c - x1 * s;
            Kx[hb + b] = x0 * s + x1 * c;
        }
    }
}

// Workgroup (h, r): q head h and k/v head h of row r (kvDim = kHeads × headDim; the host checks).
void main() {
    const uint h = gl_WorkGroupID.x, r = gl_WorkGroupID.y;
    const uint t = p.tableOffset + r * 2u * p.half_;
    if (h < p.qHeads) rope_head(r * p.qCols + h * p.headDim, t, true);
    if (h >= p.kHeads) return;   // uniform per workgroup
    const uint pos = uint(Step[p.positions + r]);
    const uint table = uint(Step[p.tableStart + uint(Step[p.tableIndex + r])]);
    const uint page = uint(Step[table + pos / p.pageSize]);
    const uint pairs = p.kvDim / 2u, hp = p.headDim / 2u;
    const uint slot = (page * p.pageSize + pos % p.pageSize) * pairs + h * hp;
    const uint hb = r * p.kvDim + h * p.headDim;
    for (uint j = gl_LocalInvocationID.x; j < hp; j += WG) {
        const float k0 = rotated(hb, 2u * j, t), k1 = rotated(hb, 2u * j + 1u, t);
        const vec2 v = Vin[(hb >> 1) + j];
        KV[slot + j] = f32_to_f16(k0) | (f32_to_f16(k1) << 16);
        KV[p.vOffset + slot + j] = f32_to_f16(v.x) | (f32_to_f16(v.y) << 16);
    }
    barrier();
    rope_head(hb, t, false);
}
