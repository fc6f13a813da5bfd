import GGUF

// Field accessors and the `QK` scale helpers live in Kernels.swift (same-file inlining for debug builds).

/// Byte offsets of the fields inside ggml's quantized blocks (ggml-common.h), and small shared helpers.
///
///     Q4_0 (18):  d f16 @0, qs[16] @2                  elements j / j+16 = low / high nibble of qs[j]
///     Q4_1 (20):  d @0, m @2, qs[16] @4
///     Q5_0 (22):  d @0, qh u32 @2, qs[16] @6           bit j of qh = 5th bit of element j
///     Q5_1 (24):  d @0, m @2, qh @4, qs[16] @8
///     Q8_0 (34):  d @0, qs[32] int8 @2
///     Q8_1 (36):  d @0, s = d*sum(qs) @2, qs[32] @4
///     Q2_K (84):  scales[16] @0 (lo nibble scale, hi nibble min), qs[64] @16, d @80, dmin @82
///     Q3_K (110): hmask[32] @0, qs[64] @32, scales[12] @96 (16 x 6 bit), d @108
///     Q4_K (144): d @0, dmin @2, scales[12] @4 (8 x (6-bit scale, 6-bit min)), qs[128] @16
///     Q5_K (176): d @0, dmin @2, scales[12] @4, qh[32] @16, qs[128] @48
///     Q6_K (210): ql[128] @0, qh[64] @128, scales[16] int8 @192, d @208
///     Q8_K (292): d f32 @0, qs[256] int8 @4, bsums[16] int16 @260
enum BlockLayout {} // documentation anchor for the table above
