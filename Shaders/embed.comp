#version 450
// Out[r] = dequantized row Tokens[r] of the table W (TYPE_*). One workgroup per token.
#include "common.glsl"
layout(std430, binding = 0) readonly buffer WBuf { uint W[]; };
#include "dequant.glsl"
layout(std430, binding = 1) readonly buffer TBuf { uint Step[]; };
layout(std430, binding = 2) writeonly buffer OBuf { vec4 O[]; };
layout(push_constant) uniform Params { uint K, rowBytes, tokensOffset; } p;

void main() {
    const uint r = gl_WorkGroupID.x;
    const uint rowOff = Step[p.tokensOffset + r] * p.rowBytes;
    const uint groups = BS / 4u, total = p.K / 4u;
    for (uint g = gl_LocalInvocationID.x; g < total; g += WG) {
        const uint blk = g / groups;
        O[r * total + g] = dq4(rowOff + blk * BB, (g - blk * groups) * 4u);
    }
}
