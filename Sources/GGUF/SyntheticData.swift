/// SplitMix64 (Steele, Lea, Flood 2014): a fast, seedable generator for synthetic tensor data.
public struct SplitMix64: RandomNumberGenerator, Sendable {
    public var state: UInt64
    public init(seed: UInt64) { state = seed }

    @inline(__always)
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    @inline(__always)
    public mutating func unit() -> Float { Float(next() >> 40) * (1.0 / 16_777_216.0) }

    /// Roughly standard normal (sum of four uniforms, rescaled): bounded by ±3.47, never NaN or Inf.
    @inline(__always)
    public mutating func normalish() -> Float {
        let r = next()
        var s: Float = 0
        for k in 0..<4 { s += Float((r >> (16 * UInt64(k))) & 0xFFFF) }
        return (s * (1.0 / 65536.0) - 2.0) * 1.7320508
    }
}

/// Fills tensor data with random but well-formed values: quantized blocks get random quants and small,
/// finite f16 scales chosen so that the dequantized weights have a root-mean-square near `sigma`; float
/// tensors get roughly normal values. Lives in GGUF (built optimized) so that writing a multi-gigabyte
/// synthetic model takes seconds. Never produces NaN or Inf.
public enum SyntheticData {
    /// Random weights of RMS ≈ `sigma` in `type`'s layout; `chunk.count` must be whole blocks.
    public static func fillWeights(_ chunk: UnsafeMutableRawBufferPointer, type: GGMLType, sigma: Float,
                                   rng: inout SplitMix64) {
        switch type {
        case .f32, .f16, .bf16:
            fillFloats(chunk, type: type, mean: 0, sigma: sigma, rng: &rng)
            return
        default:
            break
        }
        fillRandomBytes(chunk, rng: &rng)
        let bb = type.blockBytes
        let blocks = chunk.count / bb
        guard let base = chunk.baseAddress else { return }
        // RMS of the integer part of a dequantized weight with uniformly random quants and scales
        // (and the min chosen to center the weights), per type.
        let (intRMS, minRatio): (Float, Float) = switch type {
        case .q4_0: (4.64, 0)
        case .q4_1: (4.61, -7.5)
        case .q5_0: (9.25, 0)
        case .q5_1: (9.23, -15.5)
        case .q8_0, .q8_1, .q8_K: (73.9, 0)
        case .q2_K: (13.9, 1.5)
        case .q3_K: (43.3, 0)
        case .q4_K: (258, 7.5)
        case .q5_K: (527, 15.5)
        case .q6_K: (1366, 0)
        case .f32, .f16, .bf16: (1, 0)
        }
        let d0 = sigma / intRMS
        for b in 0..<blocks {
            let p = base + b * bb
            let d = d0 * (0.75 + 0.5 * rng.unit())
            switch type {
            case .q4_0, .q5_0, .q8_0:
                store16(p, 0, d)
            case .q4_1, .q5_1:
                store16(p, 0, d); store16(p, 2, d * minRatio)
            case .q8_1:
                store16(p, 0, d); store16(p, 2, 0)
            case .q2_K:
                store16(p, 80, d); store16(p, 82, d * minRatio)
            case .q3_K:
                store16(p, 108, d)
            case .q4_K, .q5_K:
                store16(p, 0, d); store16(p, 2, d * minRatio)
            case .q6_K:
                store16(p, 208, d)
            case .q8_K:
                p.storeBytes(of: d.bitPattern.littleEndian, toByteOffset: 0, as: UInt32.self)
            case .f32, .f16, .bf16:
                break
            }
        }
    }

    /// Float values `mean + sigma * normalish` (F32, F16 or BF16); used for weights, norms (mean 1) and biases.
    public static func fillFloats(_ chunk: UnsafeMutableRawBufferPointer, type: GGMLType, mean: Float, sigma: Float,
                                  rng: inout SplitMix64) {
        guard let base = chunk.baseAddress else { return }
        switch type {
        case .f32:
            let n = chunk.count / 4
            let p = base.bindMemory(to: UInt32.self, capacity: n)
            for i in 0..<n { p[i] = (mean + sigma * rng.normalish()).bitPattern.littleEndian }
        case .f16:
            let n = chunk.count / 2
            let p = base.bindMemory(to: UInt16.self, capacity: n)
            for i in 0..<n { p[i] = f16Bits(mean + sigma * rng.normalish()).littleEndian }
        case .bf16:
            let n = chunk.count / 2
            let p = base.bindMemory(to: UInt16.self, capacity: n)
            for i in 0..<n { p[i] = UInt16(truncatingIfNeeded: (mean + sigma * rng.normalish()).bitPattern >> 16).littleEndian }
        default:
            preconditionFailure("fillFloats needs F32, F16 or BF16, not \(type)")
        }
    }

    /// Random bytes, eight at a time.
    public static func fillRandomBytes(_ chunk: UnsafeMutableRawBufferPointer, rng: inout SplitMix64) {
        guard let base = chunk.baseAddress else { return }
        let words = chunk.count / 8
        for i in 0..<words { base.storeBytes(of: rng.next(), toByteOffset: i * 8, as: UInt64.self) }
        var tail = rng.next()
        for i in words * 8 ..< chunk.count {
            base.storeBytes(of: UInt8(truncatingIfNeeded: tail), toByteOffset: i, as: UInt8.self)
            tail >>= 8
        }
    }

    /// IEEE half-precision bits of `x` (round to nearest even; values beyond the f16 range saturate to ±65504).
    public static func f16Bits(_ x: Float) -> UInt16 {
        let f = x.isNaN ? 0 : max(-65504, min(65504, x))
        let b = f.bitPattern
        let sign = UInt16(truncatingIfNeeded: (b >> 16) & 0x8000)
        let exp = Int((b >> 23) & 0xFF) - 127 + 15
        var mant = b & 0x7F_FFFF
        if exp <= 0 {  // subnormal half (or zero)
            if exp < -10 { return sign }
            mant |= 0x80_0000
            let shift = UInt32(14 - exp)
            var h = mant >> shift
            let rem = mant & ((1 << shift) - 1), half = UInt32(1) << (shift - 1)
            if rem > half || (rem == half && h & 1 == 1) { h += 1 }
            return sign | UInt16(truncatingIfNeeded: h)
        }
        var h = UInt32(exp) << 10 | (mant >> 13)
        let rem = mant & 0x1FFF
        if rem > 0x1000 || (rem == 0x1000 && h & 1 == 1) { h += 1 }
        return sign | UInt16(truncatingIfNeeded: h)
    }

    @inline(__always)
    private static func store16(_ p: UnsafeMutableRawPointer, _ offset: Int, _ v: Float) {
        p.storeBytes(of: f16Bits(v).littleEndian, toByteOffset: offset, as: UInt16.self)
    }
}
