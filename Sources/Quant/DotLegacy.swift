/// Dot kernels for the 32-element "legacy" formats against A32 activations.
/// A weight block is decoded once into two Int16x16 halves (elements 0..<16 and 16..<32) plus d (and m).

protocol LegacyBlock {
    static var bytes: Int { get }
    static var hasMin: Bool { get }
    static func decode(_ p: UnsafeRawPointer) -> (w0: I16x16, w1: I16x16, d: Float, m: Float)
}

enum BQ4_0: LegacyBlock {
    static var bytes: Int { 18 }
    static var hasMin: Bool { false }
    @inline(__always) static func decode(_ p: UnsafeRawPointer) -> (w0: I16x16, w1: I16x16, d: Float, m: Float) {
        let v = p.v8(2)
        let eight = I16x16(repeating: 8)
        return (widen(v & 0xF) &- eight, widen(v &>> 4) &- eight, p.f16fast(0), 0)
    }
}

enum BQ4_1: LegacyBlock {
    static var bytes: Int { 20 }
    static var hasMin: Bool { true }
    @inline(__always) static func decode(_ p: UnsafeRawPointer) -> (w0: I16x16, w1: I16x16, d: Float, m: Float) {
        let v = p.v8(4)
        return (widen(v & 0xF), widen(v &>> 4), p.f16fast(0), p.f16fast(2))
    }
}

enum BQ5_0: LegacyBlock {
    static var bytes: Int { 22 }
    static var hasMin: Bool { false }
    @inline(__always) static func decode(_ p: UnsafeRawPointer) -> (w0: I16x16, w1: I16x16, d: Float, m: Float) {
        let v = p.v8(6)
        let qh = p.u32(2)
        let sixteen = I16x16(repeating: 16)
        let w0 = widen((v & 0xF) | spreadBits(qh, 0x10)) &- sixteen
        let w1 = widen((v &>> 4) | spreadBits(qh >> 16, 0x10)) &- sixteen
        return (w0, w1, p.f16fast(0), 0)
    }
}

enum BQ5_1: LegacyBlock {
    static var bytes: Int { 24 }
    static var hasMin: Bool { true }
    @inline(__always) static func decode(_ p: UnsafeRawPointer) -> (w0: I16x16, w1: I16x16, d: Float, m: Float) {
        let v = p.v8(8)
        let qh = p.u32(4)
        let w0 = widen((v & 0xF) | spreadBits(qh, 0x10))
        let w1 = widen((v &>> 4) | spreadBits(qh >> 16, 0x10))
        return (w0, w1, p.f16fast(0), p.f16fast(2))
    }
}

enum BQ8_0: LegacyBlock {
    static var bytes: Int { 34 }
    static var hasMin: Bool { false }
    @inline(__always) static func decode(_ p: UnsafeRawPointer) -> (w0: I16x16, w1: I16x16, d: Float, m: Float) {
        let a = p.loadUnaligned(fromByteOffset: 2, as: SIMD16<Int8>.self)
        let b = p.loadUnaligned(fromByteOffset: 18, as: SIMD16<Int8>.self)
        return (I16x16(truncatingIfNeeded: a), I16x16(truncatingIfNeeded: b), p.f16fast(0), 0)
    }
}

enum LegacyDot {
    /// dot(weight row, activation) for `nb` blocks.
    @inline(__always)
    static func row<B: LegacyBlock>(_: B.Type, _ w: UnsafeRawPointer, _ a: UnsafeRawPointer, _ nb: Int) -> Float {
        var acc = SIMD8<Float>()
        var accm: Float = 0
        var wp = w, ap = a
        for _ in 0..<nb {
            let (w0, w1, d, m) = B.decode(wp)
            let isum = madd(w0, ap.i16x16(8)) &+ madd(w1, ap.i16x16(40))
            acc += SIMD8<Float>(isum) * (d * ap.f32(0))
            if B.hasMin { accm += m * ap.f32(4) }
            wp += B.bytes
            ap += Act.a32Bytes
        }
        return acc.sum() + accm
    }

    /// One weight row against 4 activation columns: each weight block is decoded once and used 4 times.
    @inline(__always)
    static func row4<B: LegacyBlock>(_: B.Type, _ w: UnsafeRawPointer, _ a: UnsafeRawPointer, _ aStride: Int, _ nb: Int) -> SIMD4<Float> {
        var acc0 = SIMD8<Float>(), acc1 = SIMD8<Float>(), acc2 = SIMD8<Float>(), acc3 = SIMD8<Float>()
        var accm = SIMD4<Float>()
        var wp = w, ap = a
        for _ in 0..<nb {
            let (w0, w1, d, m) = B.decode(wp)
            let a0 = ap, a1 = ap + aStride, a2 = ap + 2 * aStride, a3 = ap + 3 * aStride
            acc0 += SIMD8<Float>(madd(w0, a0.i16x16(8)) &+ madd(w1, a0.i16x16(40))) * (d * a0.f32(0))
            acc1 += SIMD8<Float>(madd(w0, a1.i16x16(8)) &+ madd(w1, a1.i16x16(40))) * (d * a1.f32(0))
            acc2 += SIMD8<Float>(madd(w0, a2.i16x16(8)) &+ madd(w1, a2.i16x16(40))) * (d * a2.f32(0))
            acc3 += SIMD8<Float>(madd(w0, a3.i16x16(8)) &+ madd(w1, a3.i16x16(40))) * (d * a3.f32(0))
            if B.hasMin { accm += m * SIMD4<Float>(a0.f32(4), a1.f32(4), a2.f32(4), a3.f32(4)) }
            wp += B.bytes
            ap += Act.a32Bytes
        }
        return SIMD4<Float>(acc0.sum(), acc1.sum(), acc2.sum(), acc3.sum()) + accm
    }
}
