// Shared by every Shard compute shader: workgroup size from specialization constant 0 (the host picks
// it from the device's subgroup size), workgroup reductions built on subgroup arithmetic.
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_shader_subgroup_arithmetic : require

layout(constant_id = 0) const uint WG = 64;
layout(local_size_x_id = 0) in;

// One slot per subgroup: WG / subgroupSize <= 64 for every size the host picks.
shared float red_sh[64];

float wg_sum(float v) {
    v = subgroupAdd(v);
    if (gl_NumSubgroups == 1) return v;
    barrier();
    if (subgroupElect()) red_sh[gl_SubgroupID] = v;
    barrier();
    float t = 0.0;
    for (uint i = 0; i < gl_NumSubgroups; i++) t += red_sh[i];
    return t;
}

float wg_max(float v) {
    v = subgroupMax(v);
    if (gl_NumSubgroups == 1) return v;
    barrier();
    if (subgroupElect()) red_sh[gl_SubgroupID] = v;
    barrier();
    float t = red_sh[0];
    for (uint i = 1; i < gl_NumSubgroups; i++) t = max(t, red_sh[i]);
    return t;
}

// f32 -> f16 bits, round to nearest even (as F16C / ggml's FP32_TO_FP16 do), independent of the
// driver's conversion rounding mode.
uint f32_to_f16(float f) {
    uint x = floatBitsToUint(f);
    uint sign = (x >> 16) & 0x8000u;
    uint e = (x >> 23) & 0xFFu;
    uint m = x & 0x7FFFFFu;
    if (e == 0xFFu) return sign | 0x7C00u | (m != 0u ? 0x200u : 0u);      // inf / nan
    int ue = int(e) - 127 + 15;
    if (ue >= 31) return sign | 0x7C00u;                                   // overflow -> inf
    if (ue <= 0) {                                                         // subnormal half or zero
        if (ue < -10) return sign;
        m |= 0x800000u;
        uint shift = uint(14 - ue);
        uint h = m >> shift;
        uint rem = m & ((1u << shift) - 1u), halfway = 1u << (shift - 1u);
        if (rem > halfway || (rem == halfway && (h & 1u) != 0u)) h += 1u;
        return sign | h;
    }
    uint h = (uint(ue) << 10) | (m >> 13);
    uint rem = m & 0x1FFFu;
    if (rem > 0x1000u || (rem == 0x1000u && (h & 1u) != 0u)) h += 1u;  // may carry into the exponent: correct
    return sign | h;
}

float round_f16(float f) { return unpackHalf2x16(f32_to_f16(f)).x; }

// 2D/3D grids: large 1D work is spread over x and y (maxComputeWorkGroupCount[0] may be 65535).
uint flat_group() { return gl_WorkGroupID.y * gl_NumWorkGroups.x + gl_WorkGroupID.x; }
