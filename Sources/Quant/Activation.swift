#if arch(x86_64)
import _Builtin_intrinsics.intel
#endif
import GGUF

/// In-memory layouts of quantized activations (Shard's own, not ggml's on-disk blocks). Each column is planar:
/// all int8 quants first (so a 32-value block is one contiguous 256-bit load), then the per-block scales.
///
///     A32 (count n, nb = n / 32):   q[n] int8 @0, then per block b: d f32 @n + 8b, s = d * sum(q) f32 @n + 8b + 4
///                                   (Q8_0 / Q8_1 semantics; 40 bytes per 32 values)
///     AK  (count n, nb = n / 256):  q[n] int8 @0, d f32 @n + 4i, bsums[16] Int16 @n + 4nb + 32i
///                                   (Q8_K semantics; 292 bytes per 256 values)
///
/// Quantization is ggml's: Q8_0/Q8_1 use `roundf(x / (amax/127))`, Q8_K uses `nearest_int(-127/max * x)`.
enum Act {
    static func a32Bytes(_ count: Int) -> Int { count / 32 * 40 }
    static func akBytes(_ count: Int) -> Int { count / 256 * 292 }

    static func quantizeA32(_ x: UnsafePointer<Float>, count: Int, into y: UnsafeMutableRawPointer) {
        let nb = count / 32
        let sc = y + count
        for b in 0..<nb {
            let xb = UnsafeRawPointer(x + 32 * b)
            let v0 = xb.loadUnaligned(fromByteOffset: 0, as: SIMD8<Float>.self)
            let v1 = xb.loadUnaligned(fromByteOffset: 32, as: SIMD8<Float>.self)
            let v2 = xb.loadUnaligned(fromByteOffset: 64, as: SIMD8<Float>.self)
            let v3 = xb.loadUnaligned(fromByteOffset: 96, as: SIMD8<Float>.self)
            // The quantization grid of ggml's AVX2 quantize_row_q8_0/q8_1: id = 127/amax, round half to
            // even, scale rounded to f16 as ggml's blocks store it. The block sum s stays f32 (ggml
            // rounds it to f16 too; on SmolLM2 that alone moves logits by ~0.3 through Q4_1's min term).
            let amax = absMax(v0, v1, v2, v3)
            let d32 = amax / 127
            let id: Float = amax != 0 ? 127 / amax : 0
            let d = Float(Float16(d32))
            let r0 = (v0 * id).rounded(.toNearestOrEven), r1 = (v1 * id).rounded(.toNearestOrEven)
            let r2 = (v2 * id).rounded(.toNearestOrEven), r3 = (v3 * id).rounded(.toNearestOrEven)
            let t = (r0 + r1) + (r2 + r3)
            let t4 = t.lowHalf + t.highHalf
            let t2 = t4.lowHalf + t4.highHalf
            let sum = t2[0] + t2[1] // exact: small integers
            storeInt8(r0, r1, r2, r3, y + 32 * b)
            sc.storeBytes(of: d, toByteOffset: 8 * b, as: Float.self)
            sc.storeBytes(of: d * sum, toByteOffset: 8 * b + 4, as: Float.self)
        }
    }

    /// max |v| over 32 floats.
    @inline(__always)
    static func absMax(_ v0: SIMD8<Float>, _ v1: SIMD8<Float>, _ v2: SIMD8<Float>, _ v3: SIMD8<Float>) -> Float {
        #if arch(x86_64)
        let mask = unsafeBitCast(SIMD8<UInt32>(repeating: 0x7fff_ffff), to: SIMD8<Float>.self)
        let m = _mm256_and_ps(_mm256_max_ps(_mm256_max_ps(_mm256_max_ps(v0, _mm256_sub_ps(.zero, v0)),
                                                          _mm256_max_ps(v1, _mm256_sub_ps(.zero, v1))),
                                            _mm256_max_ps(_mm256_max_ps(v2, _mm256_sub_ps(.zero, v2)),
                                                          _mm256_max_ps(v3, _mm256_sub_ps(.zero, v3)))), mask)
        let m4 = _mm_max_ps(_mm256_castps256_ps128(m), m.highHalf)
        let m2 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4))
        return Swift.max(m2[0], m2[1])
        #else
        var m: Float = 0
        for k in 0..<8 { m = Swift.max(m, abs(v0[k]), abs(v1[k]), abs(v2[k]), abs(v3[k])) }
        return m
        #endif
    }

    /// Stores 32 integral floats in [-127, 127] as int8.
    @inline(__always)
    static func storeInt8(_ r0: SIMD8<Float>, _ r1: SIMD8<Float>, _ r2: SIMD8<Float>, _ r3: SIMD8<Float>,
                          _ y: UnsafeMutableRawPointer) {
        #if arch(x86_64)
        let i0 = _mm256_cvtps_epi32(r0), i1 = _mm256_cvtps_epi32(r1)
        let i2 = _mm256_cvtps_epi32(r2), i3 = _mm256_cvtps_epi32(r3)
        // packs work per 128-bit lane: the result is in lane order 0,2,4,6,1,3,5,7 (dwords); fix with a permute.
        let p = _mm256_packs_epi16(_mm256_packs_epi32(i0, i1), _mm256_packs_epi32(i2, i3))
        let q = _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7))
        y.storeBytes(of: q, as: SIMD4<Int64>.self)
        #else
        for k in 0..<8 {
            y.storeBytes(of: Int8(r0[k]), toByteOffset: k, as: Int8.self)
            y.storeBytes(of: Int8(r1[k]), toByteOffset: 8 + k, as: Int8.self)
            y.storeBytes(of: Int8(r2[k]), toByteOffset: 16 + k, as: Int8.self)
            y.storeBytes(of: Int8(r3[k]), toByteOffset: 24 + k, as: Int8.self)
        }
        #endif
    }

    static func quantizeAK(_ x: UnsafePointer<Float>, count: Int, into y: UnsafeMutableRawPointer) {
        let nb = count / 256
        let ds = y + count, bs = y + count + 4 * nb
        for b in 0..<nb {
            let xb = x + 256 * b, yq = y + 256 * b
            var amax: Float = 0, max: Float = 0
            for j in 0..<256 where abs(xb[j]) > amax { amax = abs(xb[j]); max = xb[j] }
            if amax == 0 {
                yq.initializeMemory(as: UInt8.self, repeating: 0, count: 256)
                (bs + 32 * b).initializeMemory(as: UInt8.self, repeating: 0, count: 32)
                ds.storeBytes(of: 0, toByteOffset: 4 * b, as: Float.self)
                continue
            }
            let iscale: Float = -127 / max
            for g in 0..<16 {
                var sum: Int32 = 0
                for i in 0..<16 {
                    let j = 16 * g + i
                    let q = Swift.min(127, nearestInt(iscale * xb[j]))
                    yq.storeBytes(of: Int8(truncatingIfNeeded: q), toByteOffset: j, as: Int8.self)
                    sum &+= q
                }
                bs.storeBytes(of: Int16(truncatingIfNeeded: sum), toByteOffset: 32 * b + 2 * g, as: Int16.self)
            }
            ds.storeBytes(of: 1 / iscale, toByteOffset: 4 * b, as: Float.self)
        }
    }

    @inline(__always)
    static func nearestInt(_ f: Float) -> Int32 {
        let v = f + 12582912.0
        return Int32(bitPattern: v.bitPattern & 0x007f_ffff) - 0x0040_0000
    }
}
