/// IEEE half-precision (f16) and bfloat16 conversions, bit-exact with ggml.
///
/// `toFloat` is exact for every f16 value (normals, subnormals, ±inf, NaN payloads).
/// `fromFloat` rounds to nearest-even, like `GGML_FP32_TO_FP16` / numpy's `astype(float16)`.
public enum Half {
    @inline(__always)
    public static func toFloat(_ h: UInt16) -> Float {
        let sign = UInt32(h & 0x8000) &<< 16
        let em = UInt32(h & 0x7fff)
        if em >= 0x7c00 { // inf / nan
            return Float(bitPattern: sign | 0x7f80_0000 | ((em & 0x3ff) &<< 13))
        }
        return Float(bitPattern: (Float(bitPattern: em &<< 13) * 0x1p112).bitPattern | sign)
    }

    @inline(__always)
    public static func fromFloat(_ f: Float) -> UInt16 {
        Float16(f).bitPattern
    }
}

/// bfloat16 conversions, bit-exact with ggml (`ggml_compute_fp32_to_bf16`: NaN forced quiet, round to nearest even).
public enum BFloat16 {
    @inline(__always)
    public static func toFloat(_ b: UInt16) -> Float {
        Float(bitPattern: UInt32(b) &<< 16)
    }

    @inline(__always)
    public static func fromFloat(_ f: Float) -> UInt16 {
        let u = f.bitPattern
        if (u & 0x7fff_ffff) > 0x7f80_0000 { // NaN: keep sign/payload top bits, force quiet
            return UInt16(truncatingIfNeeded: (u &>> 16) | 64)
        }
        return UInt16(truncatingIfNeeded: (u &+ (0x7fff &+ ((u &>> 16) & 1))) &>> 16)
    }
}

