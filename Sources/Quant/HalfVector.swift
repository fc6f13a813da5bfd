#if arch(x86_64)
import _Builtin_intrinsics.intel
#endif

/// f16 vector helpers for the KV cache (K and V are stored as f16, as llama.cpp stores them).
/// On x86-64 the conversions are F16C instructions (the package targets Haswell and later).
public enum HalfVector {
    /// dst[i] = f16(src[i]), round to nearest even.
    @inline(__always)
    public static func store(_ src: UnsafePointer<Float>, _ dst: UnsafeMutablePointer<UInt16>, count: Int) {
        var i = 0
        while i + 8 <= count {
            let v = UnsafeRawPointer(src + i).loadUnaligned(as: SIMD8<Float>.self)
            UnsafeMutableRawPointer(dst + i).storeBytes(of: SIMD8<Float16>(v), as: SIMD8<Float16>.self)
            i += 8
        }
        while i < count { dst[i] = Half.fromFloat(src[i]); i += 1 }
    }

    /// Σ f16 k[i] · x[i] in f32.
    @inline(__always)
    public static func dot(_ k: UnsafePointer<UInt16>, _ x: UnsafePointer<Float>, count: Int) -> Float {
        var i = 0
        var s: Float = 0
        #if arch(x86_64)
        var a0 = SIMD8<Float>(), a1 = SIMD8<Float>()
        while i + 16 <= count {
            a0 = _mm256_fmadd_ps(load8(k + i), UnsafeRawPointer(x + i).loadUnaligned(as: SIMD8<Float>.self), a0)
            a1 = _mm256_fmadd_ps(load8(k + i + 8), UnsafeRawPointer(x + i + 8).loadUnaligned(as: SIMD8<Float>.self), a1)
            i += 16
        }
        s = (a0 + a1).sum()
        #endif
        while i < count { s += Half.toFloat(k[i]) * x[i]; i += 1 }
        return s
    }

    /// y[i] += a · f16 v[i].
    @inline(__always)
    public static func axpy(_ a: Float, _ v: UnsafePointer<UInt16>, _ y: UnsafeMutablePointer<Float>, count: Int) {
        var i = 0
        #if arch(x86_64)
        let av = SIMD8<Float>(repeating: a)
        while i + 8 <= count {
            let yv = UnsafeRawPointer(y + i).loadUnaligned(as: SIMD8<Float>.self)
            UnsafeMutableRawPointer(y + i).storeBytes(of: _mm256_fmadd_ps(av, load8(v + i), yv), as: SIMD8<Float>.self)
            i += 8
        }
        #endif
        while i < count { y[i] += a * Half.toFloat(v[i]); i += 1 }
    }

    /// x[i] = f32(f16(x[i])): the rounding a f16 × f16 dot product applies to its f32 operand.
    @inline(__always)
    public static func roundInPlace(_ x: UnsafeMutablePointer<Float>, count: Int) {
        for i in 0..<count { x[i] = Float(Float16(x[i])) }
    }

    #if arch(x86_64)
    @inline(__always)
    static func load8(_ p: UnsafePointer<UInt16>) -> SIMD8<Float> {
        _mm256_cvtph_ps(UnsafeRawPointer(p).loadUnaligned(as: SIMD2<Int64>.self))
    }
    #endif
}
