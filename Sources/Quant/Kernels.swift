#if arch(x86_64)
import _Builtin_intrinsics.intel
#endif
import GGUF

// All hot-path code (block decoders, dot kernels, row/column drivers and their helpers) lives in this one file on
// purpose: debug builds compile files separately (no whole-module optimization), and only same-file code gets
// inlined and generic-specialized there. Splitting it costs 4-5x in `swift build` (debug) speed.

enum Kernels {
    static func run(_ t: GGMLType, _ g: Geometry) {
        switch t {
        case .q4_0: legacy(BQ4_0.self, g)
        case .q4_1: legacy(BQ4_1.self, g)
        case .q5_0: legacy(BQ5_0.self, g)
        case .q5_1: legacy(BQ5_1.self, g)
        case .q8_0: legacy(BQ8_0.self, g)
        case .q2_K: kquant(g, KDot.q2_K)
        case .q3_K: kquant(g, KDot.q3_K)
        case .q4_K: kquant(g, KDot.q4_K)
        case .q5_K: kquant(g, KDot.q5_K)
        case .q6_K: kquant(g, KDot.q6_K)
        case .f32: float(g, FloatDot.f32)
        case .f16: float(g, FloatDot.f16)
        case .bf16: float(g, FloatDot.bf16)
        case .q8_1, .q8_K: preconditionFailure("\(t) is an activation format, not a weight format")
        }
    }

    struct Geometry {
        let weights: UnsafeRawPointer, rowBytes: Int, rows: Range<Int>
        let act: UnsafeRawPointer, aStride: Int, columns: Int, count: Int
        let out: UnsafeMutablePointer<Float>, oStride: Int
    }

    /// Rows are processed in tiles so that a tile's weights stay in L1/L2 while every column passes over them.
    static var rowTile: Int { 16 }

    @inline(__always)
    static func legacy<B: LegacyBlock>(_ b: B.Type, _ g: Geometry) {
        let nb = g.count / 32
        let lo = g.rows.lowerBound
        if g.columns == 1 {
            for r in g.rows { g.out[r - lo] = LegacyDot.row(B.self, g.weights + r * g.rowBytes, g.act, nb) }
            return
        }
        var t0 = lo
        while t0 < g.rows.upperBound {
            let t1 = Swift.min(t0 + rowTile, g.rows.upperBound)
            var c = 0
            while c + 4 <= g.columns {
                let a = g.act + c * g.aStride
                for r in t0..<t1 {
                    let v = LegacyDot.row4(B.self, g.weights + r * g.rowBytes, a, g.aStride, nb)
                    for k in 0..<4 { g.out[(c + k) * g.oStride + r - lo] = v[k] }
                }
                c += 4
            }
            while c < g.columns {
                let a = g.act + c * g.aStride
                for r in t0..<t1 { g.out[c * g.oStride + r - lo] = LegacyDot.row(B.self, g.weights + r * g.rowBytes, a, nb) }
                c += 1
            }
            t0 = t1
        }
    }

    @inline(__always)
    static func kquant(_ g: Geometry, _ block: (UnsafeRawPointer, UnsafeRawPointer) -> Float) {
        let nb = g.count / 256
        let bb = g.rowBytes / Swift.max(nb, 1)
        let lo = g.rows.lowerBound
        var t0 = lo
        while t0 < g.rows.upperBound {
            let t1 = Swift.min(t0 + rowTile, g.rows.upperBound)
            for c in 0..<g.columns {
                let a = g.act + c * g.aStride
                for r in t0..<t1 {
                    let w = g.weights + r * g.rowBytes
                    var s: Float = 0
                    for i in 0..<nb { s += block(w + i * bb, a + i * 560 /* Act.akBytes */) }
                    g.out[c * g.oStride + r - lo] = s
                }
            }
            t0 = t1
        }
    }

    @inline(__always)
    static func float(_ g: Geometry, _ dot: (UnsafeRawPointer, UnsafeRawPointer, Int) -> Float) {
        let lo = g.rows.lowerBound
        var t0 = lo
        while t0 < g.rows.upperBound {
            let t1 = Swift.min(t0 + rowTile, g.rows.upperBound)
            for c in 0..<g.columns {
                let a = g.act + c * g.aStride
                for r in t0..<t1 { g.out[c * g.oStride + r - lo] = dot(g.weights + r * g.rowBytes, a, g.count) }
            }
            t0 = t1
        }
    }
}


/// Small SIMD building blocks for the integer dot-product kernels.
/// Written so that LLVM can pick pmaddwd / vpmaddwd for `madd` on any x86-64 level.

typealias I16x16 = SIMD16<Int16>
typealias I32x8 = SIMD8<Int32>
typealias U8x16 = SIMD16<UInt8>

/// Sum of adjacent Int16 products widened to Int32 (x86 `pmaddwd`). Lane order of the result is
/// irrelevant for dot products; only its total matters. On x86-64 this calls the SSE2 intrinsic (LLVM does not
/// recognize the generic even/odd formulation and emits ~36 instructions instead of 2).
@inline(__always)
func madd(_ a: I16x16, _ b: I16x16) -> I32x8 {
    #if arch(x86_64)
    let x = unsafeBitCast(a, to: (SIMD2<Int64>, SIMD2<Int64>).self)
    let y = unsafeBitCast(b, to: (SIMD2<Int64>, SIMD2<Int64>).self)
    return unsafeBitCast((_mm_madd_epi16(x.0, y.0), _mm_madd_epi16(x.1, y.1)), to: I32x8.self)
    #else
    let a0 = I32x8(truncatingIfNeeded: a.evenHalf), a1 = I32x8(truncatingIfNeeded: a.oddHalf)
    let b0 = I32x8(truncatingIfNeeded: b.evenHalf), b1 = I32x8(truncatingIfNeeded: b.oddHalf)
    return a0 &* b0 &+ a1 &* b1
    #endif
}

/// Zero-extends 16 bytes to 16 Int16 lanes.
@inline(__always)
func widen(_ v: U8x16) -> I16x16 { I16x16(truncatingIfNeeded: v) }

/// Spreads bits 0..<16 of `bits` (bit j -> lane j) into lanes holding 0x10 where the bit is set, else 0.
@inline(__always)
func spreadBits16(_ bits: UInt32) -> U8x16 {
    @inline(__always) func spread8(_ b: UInt32) -> UInt64 {
        // byte k of x = bit k of b, in place (a power of two or 0, at most 0x80): adding 0x7f sets the
        // byte's top bit exactly when it is non-zero, without carries between bytes.
        let x = (UInt64(b & 0xff) &* 0x0101_0101_0101_0101) & 0x8040_2010_0804_0201
        return ((x &+ 0x7f7f_7f7f_7f7f_7f7f) & 0x8080_8080_8080_8080) &>> 3
    }
    return unsafeBitCast(SIMD2<UInt64>(spread8(bits), spread8(bits &>> 8)), to: U8x16.self)
}

extension UnsafeRawPointer {
    @inline(__always) func v8(_ o: Int) -> U8x16 { loadUnaligned(fromByteOffset: o, as: U8x16.self) }
    @inline(__always) func i16x16(_ o: Int) -> I16x16 { loadUnaligned(fromByteOffset: o, as: I16x16.self) }
}

/// Unaligned little-endian field access inside quantized blocks.
extension UnsafeRawPointer {
    @inline(__always) func u8(_ o: Int) -> UInt8 { load(fromByteOffset: o, as: UInt8.self) }
    @inline(__always) func u16(_ o: Int) -> UInt16 { loadUnaligned(fromByteOffset: o, as: UInt16.self) }
    @inline(__always) func u32(_ o: Int) -> UInt32 { loadUnaligned(fromByteOffset: o, as: UInt32.self) }
    @inline(__always) func f32(_ o: Int) -> Float { loadUnaligned(fromByteOffset: o, as: Float.self) }
    @inline(__always) func f16(_ o: Int) -> Float { Half.toFloat(u16(o)) }
    @inline(__always) func f16fast(_ o: Int) -> Float { halfToFloatFinite(u16(o)) }
}

@inline(__always)
func halfToFloatFinite(_ h: UInt16) -> Float {
        let sign = UInt32(h & 0x8000) &<< 16
        let em = UInt32(h & 0x7fff)
        return Float(bitPattern: (Float(bitPattern: em &<< 13) * 0x1p112).bitPattern | sign)
}

enum QK {
    static let k = 256

    /// `get_scale_min_k4`: 6-bit scale and min of sub-block j (0..<8) of a Q4_K/Q5_K block.
    @inline(__always)
    static func scaleMinK4(_ j: Int, _ q: UnsafeRawPointer) -> (sc: UInt8, m: UInt8) {
        if j < 4 {
            return (q.u8(j) & 63, q.u8(j + 4) & 63)
        } else {
            let sc = (q.u8(j + 4) & 0xF) | ((q.u8(j - 4) >> 6) << 4)
            let m = (q.u8(j + 4) >> 4) | ((q.u8(j) >> 6) << 4)
            return (sc, m)
        }
    }

    /// Signed 6-bit scale j (0..<16) of a Q3_K block, already minus 32.
    @inline(__always)
    static func scaleQ3K(_ j: Int, _ s: UnsafeRawPointer) -> Int32 {
        let lo = j < 8 ? s.u8(j) & 0xF : s.u8(j - 8) >> 4
        let hi = (s.u8(8 + j % 4) >> (2 * (j / 4))) & 3
        return Int32(lo | (hi << 4)) - 32
    }
}

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
        let w0 = widen((v & 0xF) | spreadBits16(qh)) &- sixteen
        let w1 = widen((v &>> 4) | spreadBits16(qh >> 16)) &- sixteen
        return (w0, w1, p.f16fast(0), 0)
    }
}

enum BQ5_1: LegacyBlock {
    static var bytes: Int { 24 }
    static var hasMin: Bool { true }
    @inline(__always) static func decode(_ p: UnsafeRawPointer) -> (w0: I16x16, w1: I16x16, d: Float, m: Float) {
        let v = p.v8(8)
        let qh = p.u32(4)
        let w0 = widen((v & 0xF) | spreadBits16(qh))
        let w1 = widen((v &>> 4) | spreadBits16(qh >> 16))
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
            ap += 72 /* Act.a32Bytes */
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
            ap += 72 /* Act.a32Bytes */
        }
        return SIMD4<Float>(acc0.sum(), acc1.sum(), acc2.sum(), acc3.sum()) + accm
    }
}

/// Dot kernels for the 256-element K-quants against AK activations (Q8_K semantics).
/// Each function returns the contribution of one super-block; sub-block scales are applied in the integer
/// domain (`madd` against a broadcast scale) and the f16 super-scales once per super-block.

enum KDot {
    @inline(__always) static func bcast(_ s: UInt8) -> I16x16 { I16x16(repeating: Int16(s)) }
    @inline(__always) static func bcast(_ s: Int32) -> I16x16 { I16x16(repeating: Int16(truncatingIfNeeded: s)) }
    @inline(__always) static func bsum(_ a: UnsafeRawPointer, _ i: Int) -> Int32 {
        Int32(a.loadUnaligned(fromByteOffset: 16 + 2 * i, as: Int16.self))
    }

    @inline(__always)
    static func q2_K(_ w: UnsafeRawPointer, _ a: UnsafeRawPointer) -> Float {
        let da = a.f32(0)
        let d = w.f16fast(80) * da, dmin = w.f16fast(82) * da
        var isum = I32x8()
        var msum: Int32 = 0
        for n in 0..<2 {
            let q0 = w.v8(16 + 32 * n), q1 = w.v8(32 + 32 * n)
            for j in 0..<4 {
                let shift = UInt8(2 * j)
                let is0 = 8 * n + 2 * j
                let s0 = w.u8(is0), s1 = w.u8(is0 + 1)
                let ap = a + 48 + 2 * (128 * n + 32 * j)
                let p0 = widen((q0 &>> shift) & 3) &* ap.i16x16(0)
                let p1 = widen((q1 &>> shift) & 3) &* ap.i16x16(32)
                isum &+= madd(p0, bcast(s0 & 0xF)) &+ madd(p1, bcast(s1 & 0xF))
                msum &+= Int32(s0 >> 4) &* bsum(a, is0) &+ Int32(s1 >> 4) &* bsum(a, is0 + 1)
            }
        }
        return d * Float(isum.wrappedSum()) - dmin * Float(msum)
    }

    @inline(__always)
    static func q3_K(_ w: UnsafeRawPointer, _ a: UnsafeRawPointer) -> Float {
        let d = w.f16fast(108) * a.f32(0)
        let sc = w + 96
        let hm0 = w.v8(0), hm1 = w.v8(16)
        var isum = I32x8()
        let four = I16x16(repeating: 4)
        for n in 0..<2 {
            let q0 = w.v8(32 + 32 * n), q1 = w.v8(48 + 32 * n)
            for j in 0..<4 {
                let shift = UInt8(2 * j)
                let k = UInt8(4 * n + j)
                let is0 = 8 * n + 2 * j
                let ap = a + 48 + 2 * (128 * n + 32 * j)
                let v0 = ((q0 &>> shift) & 3) | (((hm0 &>> k) & 1) &<< 2)
                let v1 = ((q1 &>> shift) & 3) | (((hm1 &>> k) & 1) &<< 2)
                let p0 = (widen(v0) &- four) &* ap.i16x16(0)
                let p1 = (widen(v1) &- four) &* ap.i16x16(32)
                isum &+= madd(p0, bcast(QK.scaleQ3K(is0, sc))) &+ madd(p1, bcast(QK.scaleQ3K(is0 + 1, sc)))
            }
        }
        return d * Float(isum.wrappedSum())
    }

    @inline(__always)
    static func q4_K(_ w: UnsafeRawPointer, _ a: UnsafeRawPointer) -> Float {
        let da = a.f32(0)
        let d = w.f16fast(0) * da, dmin = w.f16fast(2) * da
        let s = w + 4
        var isum = I32x8()
        var msum: Int32 = 0
        for c in 0..<4 {
            let (s1, m1) = QK.scaleMinK4(2 * c, s)
            let (s2, m2) = QK.scaleMinK4(2 * c + 1, s)
            let q0 = w.v8(16 + 32 * c), q1 = w.v8(32 + 32 * c)
            let ap = a + 48 + 128 * c
            let pl = widen(q0 & 0xF) &* ap.i16x16(0) &+ widen(q1 & 0xF) &* ap.i16x16(32)
            let ph = widen(q0 &>> 4) &* ap.i16x16(64) &+ widen(q1 &>> 4) &* ap.i16x16(96)
            isum &+= madd(pl, bcast(s1)) &+ madd(ph, bcast(s2))
            msum &+= Int32(m1) &* (bsum(a, 4 * c) &+ bsum(a, 4 * c + 1)) &+ Int32(m2) &* (bsum(a, 4 * c + 2) &+ bsum(a, 4 * c + 3))
        }
        return d * Float(isum.wrappedSum()) - dmin * Float(msum)
    }

    @inline(__always)
    static func q5_K(_ w: UnsafeRawPointer, _ a: UnsafeRawPointer) -> Float {
        let da = a.f32(0)
        let d = w.f16fast(0) * da, dmin = w.f16fast(2) * da
        let s = w + 4
        let h0 = w.v8(16), h1 = w.v8(32)
        var isum = I32x8()
        var msum: Int32 = 0
        for c in 0..<4 {
            let (s1, m1) = QK.scaleMinK4(2 * c, s)
            let (s2, m2) = QK.scaleMinK4(2 * c + 1, s)
            let q0 = w.v8(48 + 32 * c), q1 = w.v8(64 + 32 * c)
            let bl = UInt8(2 * c), bh = UInt8(2 * c + 1)
            let l0 = (q0 & 0xF) | (((h0 &>> bl) & 1) &<< 4), l1 = (q1 & 0xF) | (((h1 &>> bl) & 1) &<< 4)
            let u0 = (q0 &>> 4) | (((h0 &>> bh) & 1) &<< 4), u1 = (q1 &>> 4) | (((h1 &>> bh) & 1) &<< 4)
            let ap = a + 48 + 128 * c
            let pl = widen(l0) &* ap.i16x16(0) &+ widen(l1) &* ap.i16x16(32)
            let ph = widen(u0) &* ap.i16x16(64) &+ widen(u1) &* ap.i16x16(96)
            isum &+= madd(pl, bcast(s1)) &+ madd(ph, bcast(s2))
            msum &+= Int32(m1) &* (bsum(a, 4 * c) &+ bsum(a, 4 * c + 1)) &+ Int32(m2) &* (bsum(a, 4 * c + 2) &+ bsum(a, 4 * c + 3))
        }
        return d * Float(isum.wrappedSum()) - dmin * Float(msum)
    }

    @inline(__always)
    static func q6_K(_ w: UnsafeRawPointer, _ a: UnsafeRawPointer) -> Float {
        let d = w.f16fast(208) * a.f32(0)
        var isum = I32x8()
        let thirtyTwo = I16x16(repeating: 32)
        for n in 0..<2 {
            let ql = w + 64 * n, qh = w + 128 + 32 * n, sc = w + 192 + 8 * n
            let ap = a + 48 + 2 * 128 * n
            for h in 0..<2 {
                let qa = ql.v8(16 * h), qb = ql.v8(32 + 16 * h), hv = qh.v8(16 * h)
                let v1 = (qa & 0xF) | ((hv & 3) &<< 4)
                let v2 = (qb & 0xF) | (((hv &>> 2) & 3) &<< 4)
                let v3 = (qa &>> 4) | (((hv &>> 4) & 3) &<< 4)
                let v4 = (qb &>> 4) | ((hv &>> 6) &<< 4)
                @inline(__always) func s(_ k: Int) -> I16x16 {
                    I16x16(repeating: Int16(Int8(bitPattern: sc.u8(k))))
                }
                let o = 32 * h
                isum &+= madd((widen(v1) &- thirtyTwo) &* ap.i16x16(o), s(h))
                isum &+= madd((widen(v2) &- thirtyTwo) &* ap.i16x16(o + 64), s(h + 2))
                isum &+= madd((widen(v3) &- thirtyTwo) &* ap.i16x16(o + 128), s(h + 4))
                isum &+= madd((widen(v4) &- thirtyTwo) &* ap.i16x16(o + 192), s(h + 6))
            }
        }
        return d * Float(isum.wrappedSum())
    }
}

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
