#version 450
// Which (row, column) of a 16 × 16 f16 cooperative matrix (VK_NV_cooperative_matrix) each invocation's
// element i holds: one subgroup loads a matrix whose element (r, c) is r · 16 + c and writes element i
// of invocation l to Out[l · 8 + i] (Out[256]: the elements per invocation). The mapping is the
// driver's; matmul_cmd.comp builds its weight operands element by element and needs it (the host
// checks it against the layout that kernel assumes before using it).
#extension GL_NV_cooperative_matrix : require
#extension GL_KHR_memory_scope_semantics : require
#extension GL_EXT_shader_explicit_arithmetic_types_float16 : require
#include "common.glsl"
layout(std430, binding = 0) writeonly buffer OutBuf { uint Out[]; };
layout(std430, binding = 1) readonly buffer InBuf { uint In[]; };   // unused (a binding for the harness)

shared float16_t S[256];

void main() {
    const uint lane = gl_SubgroupInvocationID;
    for (uint i = lane; i < 256u; i += gl_SubgroupSize) S[i] = float16_t(float(i));
    barrier();
    fcoopmatNV<16, gl_ScopeSubgroup, 16, 16> m;
    coopMatLoadNV(m, S, 0u, 16u, false);
    const uint n = uint(m.length());
    for (uint i = 0u; i < n && i < 8u; i++) Out[lane * 8u + i] = uint(float(m[i]));
    if (lane == 0u) Out[256] = n;
}
