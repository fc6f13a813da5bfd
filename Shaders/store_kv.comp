#version 450
// Writes each row's K and V (f32) as f16 (round to nearest even) into its sequence's page:
// slot = page_table[pos / pageSize] * pageSize + pos % pageSize. One workgroup per row.
#include "common.glsl"
layout(std430, binding = 0) buffer KVBuf { uint KV[]; };  // packed f16 pairs: K pages, then V pages
layout(std430, binding = 1) readonly buffer KBuf { vec2 Kin[]; };
layout(std430, binding = 2) readonly buffer VBuf { vec2 Vin[]; };
layout(std430, binding = 3) readonly buffer SBuf { int Step[]; };
layout(push_constant) uniform Params { uint kvDim, pageSize, vOffset, positions, tableIndex, tableStart; } p;

void main() {
    const uint r = gl_WorkGroupID.x;
    const uint pos = uint(Step[p.positions + r]);
    const uint table = uint(Step[p.tableStart + uint(Step[p.tableIndex + r])]);
    const uint page = uint(Step[table + pos / p.pageSize]);
    const uint pairs = p.kvDim / 2u;
    const uint slot = (page * p.pageSize + pos % p.pageSize) * pairs;
    for (uint j = gl_LocalInvocationID.x; j < pairs; j += WG) {
        const vec2 k = Kin[r * pairs + j], v = Vin[r * pairs + j];
        KV[slot + j] = f32_to_f16(k.x) | (f32_to_f16(k.y) << 16);
        KV[p.vOffset + slot + j] = f32_to_f16(v.x) | (f32_to_f16(v.y) << 16);
    }
}
