/// Dot kernels for float weights (F32, F16, BF16) against f32 activations.
enum FloatDot {
    @inline(__always)
    static func f32(_ w: UnsafeRawPointer, _ x: UnsafeRawPointer, _ n: Int) -> Float {
        var a0 = SIMD16<Float>(), a1 = SIMD16<Float>()
        var i = 0
        while i + 32 <= n {
            a0 += w.loadUnaligned(fromByteOffset: 4 * i, as: SIMD16<Float>.self) * x.loadUnaligned(fromByteOffset: 4 * i, as: SIMD16<Float>.self)
            a1 += w.loadUnaligned(fromByteOffset: 4 * i + 64, as: SIMD16<Float>.self) * x.loadUnaligned(fromByteOffset: 4 * i + 64, as: SIMD16<Float>.self)
            i += 32
        }
        var s = (a0 + a1).sum()
        while i < n { s += w.f32(4 * i) * x.f32(4 * i); i += 1 }
        return s
    }

    @inline(__always)
    static func halfToFloat(_ h: SIMD16<UInt16>) -> SIMD16<Float> {
        let u = SIMD16<UInt32>(truncatingIfNeeded: h)
        let em = (u & 0x7fff) &<< 13
        let sign = (u & 0x8000) &<< 16
        let f = unsafeBitCast(em, to: SIMD16<Float>.self) * 0x1p112
        return unsafeBitCast(unsafeBitCast(f, to: SIMD16<UInt32>.self) | sign, to: SIMD16<Float>.self)
    }

    @inline(__always)
    static func f16(_ w: UnsafeRawPointer, _ x: UnsafeRawPointer, _ n: Int) -> Float {
        var a0 = SIMD16<Float>()
        var i = 0
        while i + 16 <= n {
            a0 += halfToFloat(w.loadUnaligned(fromByteOffset: 2 * i, as: SIMD16<UInt16>.self)) * x.loadUnaligned(fromByteOffset: 4 * i, as: SIMD16<Float>.self)
            i += 16
        }
        var s = a0.sum()
        while i < n { s += w.f16(2 * i) * x.f32(4 * i); i += 1 }
        return s
    }

    @inline(__always)
    static func bf16(_ w: UnsafeRawPointer, _ x: UnsafeRawPointer, _ n: Int) -> Float {
        var a0 = SIMD16<Float>()
        var i = 0
        while i + 16 <= n {
            let u = SIMD16<UInt32>(truncatingIfNeeded: w.loadUnaligned(fromByteOffset: 2 * i, as: SIMD16<UInt16>.self)) &<< 16
            a0 += unsafeBitCast(u, to: SIMD16<Float>.self) * x.loadUnaligned(fromByteOffset: 4 * i, as: SIMD16<Float>.self)
            i += 16
        }
        var s = a0.sum()
        while i < n { s += BFloat16.toFloat(w.u16(2 * i)) * x.f32(4 * i); i += 1 }
        return s
    }
}
