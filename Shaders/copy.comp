#version 450
// O = I over `count` uvec4 (grid-stride): the device-bandwidth probe of `shardctl kernel-bench --vulkan`.
#include "common.glsl"
layout(std430, binding = 0) readonly buffer IBuf { uvec4 I[]; };
layout(std430, binding = 1) writeonly buffer OBuf { uvec4 O[]; };
layout(push_constant) uniform Params { uint count; } p;

void main() {
    const uint stride = gl_NumWorkGroups.x * WG;
    for (uint i = gl_WorkGroupID.x * WG + gl_LocalInvocationID.x; i < p.count; i += stride) O[i] = I[i];
}
