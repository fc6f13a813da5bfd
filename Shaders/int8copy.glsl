// The n-row int8 copy of rounded activations (what matvec_q8.comp -DQX, matvec_q8_mc.comp and matmul_cm /
// matmul_cmd's int8 X read), shared by its writers (quant.glsl's QSTORE_INT8 producers, quantize_k.comp). The
// includer defines void qstore8(uint i, uint word): the word of 4 int8 values of elements i … i + 3 (i % 4 == 0).
#extension GL_KHR_shader_subgroup_shuffle_relative : require
void qstore8(uint i, uint word);
// Words per row of an N-row int8 copy (row r at word r · qx_stride(K)): K int8 bytes, then the K/256
// scales, padded to 16 bytes (matvec_q8_mc.comp reads uvec4s; VulkanBackend.int8RowWords).
uint qx_stride(uint k) { return (k / 4u + k / 256u + 3u) & ~3u; }
// Element i's int8 value q: lanes 4k ... 4k + 3 hold consecutive elements; lane 4k writes their bytes as one word,
// low byte first.
void qpack(uint i, int q) {
    const uint b = uint(q) & 0xFFu;
    const uint w = b | (subgroupShuffleDown(b, 1u) << 8) | (subgroupShuffleDown(b, 2u) << 16) | (subgroupShuffleDown(b, 3u) << 24);
    if ((gl_SubgroupInvocationID & 3u) == 0u) qstore8(i, w);
}
