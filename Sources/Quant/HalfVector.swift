/// f16 vector helpers for the KV cache (K and V are stored as f16, as llama.cpp stores them).
public enum HalfVector {
    /// dst[i] = f16(src[i]), round to nearest even.
    @inline(__always)
    public static func store(_ src: UnsafePointer<Float>, _ dst: UnsafeMutablePointer<UInt16>, count: Int) {
        var i = 0
        while i + 8 <= count {
            let v = UnsafeRawPointer(src + i).loadUnaligned(as: SIMD8<Float>.self)
            UnsafeMutableRawPointer(dst + i).storeBytes(of: unsafeBitCast(SIMD8<Float16>(v), to: SIMD8<UInt16>.self), as: SIMD8<UInt16>.self)
            i += 8
        }
        while i < count { dst[i] = Half.fromFloat(src[i]); i += 1 }
    }

    /// Σ f16 k[i] · x[i] in f32.
    @inline(__always)
    public static func dot(_ k: UnsafePointer<UInt16>, _ x: UnsafePointer<Float>, count: Int) -> Float {
        FloatDot.f16(UnsafeRawPointer(k), UnsafeRawPointer(x), count)
    }

    /// y[i] += a · f16 v[i].
    @inline(__always)
    public static func axpy(_ a: Float, _ v: UnsafePointer<UInt16>, _ y: UnsafeMutablePointer<Float>, count: Int) {
        let av = SIMD16<Float>(repeating: a)
        var i = 0
        while i + 16 <= count {
            let h = FloatDot.halfToFloat(UnsafeRawPointer(v + i).loadUnaligned(as: SIMD16<UInt16>.self))
            let yv = UnsafeRawPointer(y + i).loadUnaligned(as: SIMD16<Float>.self)
            UnsafeMutableRawPointer(y + i).storeBytes(of: yv.addingProduct(av, h), as: SIMD16<Float>.self)
            i += 16
        }
        while i < count { y[i] += a * Half.toFloat(v[i]); i += 1 }
    }

    /// x[i] = f32(f16(x[i])): the rounding a f16 × f16 dot product applies to its f32 operand.
    @inline(__always)
    public static func roundInPlace(_ x: UnsafeMutablePointer<Float>, count: Int) {
        for i in 0..<count { x[i] = Float(Float16(x[i])) }
    }
}
