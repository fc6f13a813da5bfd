import GGUF

/// In-memory layouts of quantized activations (Shard's own, not ggml's on-disk blocks: scales are kept as
/// f32 and the 8-bit quants are stored widened to Int16 so that kernels feed them straight into `pmaddwd`).
///
///     A32 (per 32 values, 72 bytes):  d f32 @0, s = d * sum(q) f32 @4, q[32] Int16 @8     (Q8_0 / Q8_1 semantics)
///     AK  (per 256 values, 560 bytes): d f32 @0, bsums[16] Int16 @16, q[256] Int16 @48    (Q8_K semantics)
///
/// Quantization is ggml's: Q8_0/Q8_1 use `roundf(x / (amax/127))`, Q8_K uses `nearest_int(-127/max * x)`.
enum Act {
    static let a32Bytes = 72
    static let akBytes = 560

    static func quantizeA32(_ x: UnsafePointer<Float>, count: Int, into y: UnsafeMutableRawPointer) {
        for b in 0..<(count / 32) {
            let xb = x + 32 * b, yb = y + a32Bytes * b
            var amax = SIMD8<Float>()
            for k in 0..<4 {
                let v = UnsafeRawPointer(xb + 8 * k).loadUnaligned(as: SIMD8<Float>.self)
                amax = pointwiseMax(amax, pointwiseMax(v, -v))
            }
            let d = amax.max() / 127
            let id: Float = d != 0 ? 1 / d : 0
            var sum: Int32 = 0
            for j in 0..<32 {
                let q = Int16((xb[j] * id).rounded())
                yb.storeBytes(of: q, toByteOffset: 8 + 2 * j, as: Int16.self)
                sum &+= Int32(q)
            }
            yb.storeBytes(of: d, toByteOffset: 0, as: Float.self)
            yb.storeBytes(of: d * Float(sum), toByteOffset: 4, as: Float.self)
        }
    }

    static func quantizeAK(_ x: UnsafePointer<Float>, count: Int, into y: UnsafeMutableRawPointer) {
        for b in 0..<(count / 256) {
            let xb = x + 256 * b, yb = y + akBytes * b
            var amax: Float = 0, max: Float = 0
            for j in 0..<256 where abs(xb[j]) > amax { amax = abs(xb[j]); max = xb[j] }
            if amax == 0 {
                yb.initializeMemory(as: UInt8.self, repeating: 0, count: akBytes)
                continue
            }
            let iscale: Float = -127 / max
            for g in 0..<16 {
                var sum: Int32 = 0
                for i in 0..<16 {
                    let j = 16 * g + i
                    let q = Int16(truncatingIfNeeded: Swift.min(127, nearestInt(iscale * xb[j])))
                    yb.storeBytes(of: q, toByteOffset: 48 + 2 * j, as: Int16.self)
                    sum &+= Int32(q)
                }
                yb.storeBytes(of: Int16(truncatingIfNeeded: sum), toByteOffset: 16 + 2 * g, as: Int16.self)
            }
            yb.storeBytes(of: 1 / iscale, toByteOffset: 0, as: Float.self)
        }
    }

    @inline(__always)
    static func nearestInt(_ f: Float) -> Int32 {
        let v = f + 12582912.0
        return Int32(bitPattern: v.bitPattern & 0x007f_ffff) - 0x0040_0000
    }
}
