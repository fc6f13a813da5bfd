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
            var r = g.rows.lowerBound
            while B.bytes < 32 && r + 2 <= g.rows.upperBound { // measured: Q8_0 streams from DRAM ~2x faster one row at a time
                let v = LegacyDot.row2(B.self, g.weights + r * g.rowBytes, g.rowBytes, g.act, nb)
                g.out[r - lo] = v.0
                g.out[r + 1 - lo] = v.1
                r += 2
            }
            while r < g.rows.upperBound { g.out[r - lo] = LegacyDot.row(B.self, g.weights + r * g.rowBytes, g.act, nb); r += 1 }
            return
        }
        var t0 = lo
        while t0 < g.rows.upperBound {
            let t1 = Swift.min(t0 + rowTile, g.rows.upperBound)
            var c = 0
            while c + 4 <= g.columns {
                let a = g.act + c * g.aStride
                var r = t0
                while r < t1 {
                    let v = LegacyDot.row4(B.self, g.weights + r * g.rowBytes, a, g.aStride, nb)
                    for k in 0..<4 { g.out[(c + k) * g.oStride + r - lo] = v[k] }
                    r += 1
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

    /// `block(weights, q8 (256 int8), d (activation scale), bsums (16 Int16))` → one super-block's contribution.
    @inline(__always)
    static func kquant(_ g: Geometry, _ block: (UnsafeRawPointer, UnsafeRawPointer, Float, UnsafeRawPointer) -> Float) {
        let nb = g.count / 256
        let bb = g.rowBytes / Swift.max(nb, 1)
        let lo = g.rows.lowerBound
        var t0 = lo
        while t0 < g.rows.upperBound {
            let t1 = Swift.min(t0 + rowTile, g.rows.upperBound)
            for c in 0..<g.columns {
                let a = g.act + c * g.aStride
                let ds = a + g.count, bs = a + g.count + 4 * nb
                for r in t0..<t1 {
                    let w = g.weights + r * g.rowBytes
                    var s: Float = 0
                    for i in 0..<nb { s += block(w + i * bb, a + 256 * i, ds.f32(4 * i), bs + 32 * i) }
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

typealias I16x16 = SIMD16<Int16>
typealias I32x8 = SIMD8<Int32>
typealias U8x16 = SIMD16<UInt8>
#if arch(x86_64)
typealias V256 = SIMD4<Int64> // __m256i
#endif

/// Sum of adjacent Int16 products widened to Int32 (x86 `pmaddwd`). Lane order of the result is
/// irrelevant for dot products; only its total matters.
@inline(__always)
func madd(_ a: I16x16, _ b: I16x16) -> I32x8 {
    #if arch(x86_64)
    return unsafeBitCast(_mm256_madd_epi16(unsafeBitCast(a, to: V256.self), unsafeBitCast(b, to: V256.self)), to: I32x8.self)
    #else
    let a0 = I32x8(truncatingIfNeeded: a.evenHalf), a1 = I32x8(truncatingIfNeeded: a.oddHalf)
    let b0 = I32x8(truncatingIfNeeded: b.evenHalf), b1 = I32x8(truncatingIfNeeded: b.oddHalf)
    return a0 &* b0 &+ a1 &* b1
    #endif
}

/// Zero-extends 16 bytes to 16 Int16 lanes.
@inline(__always)
func widen(_ v: U8x16) -> I16x16 {
    #if arch(x86_64)
    return unsafeBitCast(_mm256_cvtepu8_epi16(unsafeBitCast(v, to: SIMD2<Int64>.self)), to: I16x16.self)
    #else
    return I16x16(truncatingIfNeeded: v)
    #endif
}

/// Sign-extends the 16 int8 activations at byte offset `o` to Int16 lanes.
@inline(__always)
func s16(_ p: UnsafeRawPointer, _ o: Int) -> I16x16 {
    #if arch(x86_64)
    return unsafeBitCast(_mm256_cvtepi8_epi16(p.loadUnaligned(fromByteOffset: o, as: SIMD2<Int64>.self)), to: I16x16.self)
    #else
    return I16x16(truncatingIfNeeded: p.loadUnaligned(fromByteOffset: o, as: SIMD16<Int8>.self))
    #endif
}

/// Horizontal sum of 8 floats.
@inline(__always)
func hsum(_ v: SIMD8<Float>) -> Float {
    let h = v.lowHalf + v.highHalf
    let q = h.lowHalf + h.highHalf
    return q[0] + q[1]
}

#if arch(x86_64)
/// 16 bytes of nibbles at `o` → 32 bytes: low nibbles (elements 0..<16) then high nibbles (16..<32).
@inline(__always)
func nibbles32(_ p: UnsafeRawPointer, _ o: Int) -> V256 {
    let t = p.loadUnaligned(fromByteOffset: o, as: SIMD2<Int64>.self)
    return _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(t, 4), t), _mm256_set1_epi8(0x0F))
}

/// Byte j = 0x10 where bit j of `qh` is set, else 0 (ggml's bytes_from_bits_32, masked).
@inline(__always)
func bits32x10(_ qh: UInt32) -> V256 {
    let shuf = _mm256_setr_epi64x(0, 0x0101_0101_0101_0101, 0x0202_0202_0202_0202, 0x0303_0303_0303_0303)
    let b = _mm256_or_si256(_mm256_shuffle_epi8(_mm256_set1_epi32(Int32(bitPattern: qh)), shuf),
                            _mm256_set1_epi64x(0x7fbf_dfef_f7fb_fdfe))
    return _mm256_and_si256(_mm256_cmpeq_epi8(b, _mm256_set1_epi64x(-1)), _mm256_set1_epi8(0x10))
}

@inline(__always)
func load256(_ p: UnsafeRawPointer, _ o: Int) -> V256 { p.loadUnaligned(fromByteOffset: o, as: V256.self) }
#endif

/// (f16 @o, f16 @o+2, 0, 0) as floats.
@inline(__always)
func f16pair(_ p: UnsafeRawPointer, _ o: Int) -> SIMD4<Float> {
    #if arch(x86_64)
    return _mm_cvtph_ps(_mm_cvtsi32_si128(Int32(bitPattern: p.u32(o))))
    #else
    return SIMD4(p.f16(o), p.f16(o + 2), 0, 0)
    #endif
}

/// (f16 @o, f16 @o, 0, 0) as floats.
@inline(__always)
func f16dup(_ p: UnsafeRawPointer, _ o: Int) -> SIMD4<Float> {
    #if arch(x86_64)
    return _mm_moveldup_ps(_mm_cvtph_ps(_mm_cvtsi32_si128(Int32(p.u16(o)))))
    #else
    let d = p.f16(o)
    return SIMD4(d, d, 0, 0)
    #endif
}

extension UnsafeRawPointer {
    @inline(__always) func v8(_ o: Int) -> U8x16 { loadUnaligned(fromByteOffset: o, as: U8x16.self) }
}

/// Unaligned little-endian field access inside quantized blocks.
extension UnsafeRawPointer {
    @inline(__always) func u8(_ o: Int) -> UInt8 { load(fromByteOffset: o, as: UInt8.self) }
    @inline(__always) func u16(_ o: Int) -> UInt16 { loadUnaligned(fromByteOffset: o, as: UInt16.self) }
    @inline(__always) func u32(_ o: Int) -> UInt32 { loadUnaligned(fromByteOffset: o, as: UInt32.self) }
    @inline(__always) func f32(_ o: Int) -> Float { loadUnaligned(fromByteOffset: o, as: Float.self) }
    @inline(__always) func f16(_ o: Int) -> Float {
        #if arch(x86_64)
        return _cvtsh_ss(u16(o))
        #else
        return Half.toFloat(u16(o))
        #endif
    }
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

/// Dot kernels for the 32-element "legacy" formats against A32 activations (int8 quants, f32 d and s = d·Σq).
/// Every format is reduced to 32 quant bytes q (unsigned, except Q8_0) plus per-block (d, c) such that
/// the block's contribution is d·d_a·Σ(q·y) + c·s_a (c is the min for Q4_1/Q5_1, −offset·d for Q4_0/Q5_0).

protocol LegacyBlock {
    static var bytes: Int { get }
    /// Quants are signed bytes (Q8_0); otherwise unsigned.
    static var signed: Bool { get }
    /// The block adds c·s_a.
    static var hasConst: Bool { get }
    /// (d, c, 0, 0).
    static func scales(_ p: UnsafeRawPointer) -> SIMD4<Float>
    /// Quant j (0..<32) as stored, for the portable path.
    static func value(_ p: UnsafeRawPointer, _ j: Int) -> Int32
    #if arch(x86_64)
    static func quants(_ p: UnsafeRawPointer) -> V256
    #endif
}

enum BQ4_0: LegacyBlock {
    static var bytes: Int { 18 }
    static var signed: Bool { false }
    static var hasConst: Bool { true }
    @inline(__always) static func scales(_ p: UnsafeRawPointer) -> SIMD4<Float> { f16dup(p, 0) * SIMD4(1, -8, 0, 0) }
    @inline(__always) static func value(_ p: UnsafeRawPointer, _ j: Int) -> Int32 {
        Int32(j < 16 ? p.u8(2 + j) & 0xF : p.u8(2 + j - 16) >> 4)
    }
    #if arch(x86_64)
    @inline(__always) static func quants(_ p: UnsafeRawPointer) -> V256 { nibbles32(p, 2) }
    #endif
}

enum BQ4_1: LegacyBlock {
    static var bytes: Int { 20 }
    static var signed: Bool { false }
    static var hasConst: Bool { true }
    @inline(__always) static func scales(_ p: UnsafeRawPointer) -> SIMD4<Float> { f16pair(p, 0) }
    @inline(__always) static func value(_ p: UnsafeRawPointer, _ j: Int) -> Int32 {
        Int32(j < 16 ? p.u8(4 + j) & 0xF : p.u8(4 + j - 16) >> 4)
    }
    #if arch(x86_64)
    @inline(__always) static func quants(_ p: UnsafeRawPointer) -> V256 { nibbles32(p, 4) }
    #endif
}

enum BQ5_0: LegacyBlock {
    static var bytes: Int { 22 }
    static var signed: Bool { false }
    static var hasConst: Bool { true }
    @inline(__always) static func scales(_ p: UnsafeRawPointer) -> SIMD4<Float> { f16dup(p, 0) * SIMD4(1, -16, 0, 0) }
    @inline(__always) static func value(_ p: UnsafeRawPointer, _ j: Int) -> Int32 {
        let lo = Int32(j < 16 ? p.u8(6 + j) & 0xF : p.u8(6 + j - 16) >> 4)
        return lo | Int32((p.u32(2) >> UInt32(j)) & 1) << 4
    }
    #if arch(x86_64)
    @inline(__always) static func quants(_ p: UnsafeRawPointer) -> V256 { _mm256_or_si256(nibbles32(p, 6), bits32x10(p.u32(2))) }
    #endif
}

enum BQ5_1: LegacyBlock {
    static var bytes: Int { 24 }
    static var signed: Bool { false }
    static var hasConst: Bool { true }
    @inline(__always) static func scales(_ p: UnsafeRawPointer) -> SIMD4<Float> { f16pair(p, 0) }
    @inline(__always) static func value(_ p: UnsafeRawPointer, _ j: Int) -> Int32 {
        let lo = Int32(j < 16 ? p.u8(8 + j) & 0xF : p.u8(8 + j - 16) >> 4)
        return lo | Int32((p.u32(4) >> UInt32(j)) & 1) << 4
    }
    #if arch(x86_64)
    @inline(__always) static func quants(_ p: UnsafeRawPointer) -> V256 { _mm256_or_si256(nibbles32(p, 8), bits32x10(p.u32(4))) }
    #endif
}

enum BQ8_0: LegacyBlock {
    static var bytes: Int { 34 }
    static var signed: Bool { true }
    static var hasConst: Bool { false }
    @inline(__always) static func scales(_ p: UnsafeRawPointer) -> SIMD4<Float> { f16dup(p, 0) }
    @inline(__always) static func value(_ p: UnsafeRawPointer, _ j: Int) -> Int32 {
        Int32(p.load(fromByteOffset: 2 + j, as: Int8.self))
    }
    #if arch(x86_64)
    @inline(__always) static func quants(_ p: UnsafeRawPointer) -> V256 { load256(p, 2) }
    #endif
}

enum LegacyDot {
    /// (d_a, s_a, 0, 0) of activation block b; `sc` = start of the activation's scale area.
    @inline(__always)
    static func pair(_ sc: UnsafeRawPointer, _ b: Int) -> SIMD4<Float> {
        SIMD4(lowHalf: sc.loadUnaligned(fromByteOffset: 8 * b, as: SIMD2<Float>.self), highHalf: .zero)
    }

    #if arch(x86_64)
    /// Σ q·y of one block as 8 float partial sums; `ax` = `prep(q)`.
    @inline(__always)
    static func idot<B: LegacyBlock>(_: B.Type, _ ax: V256, _ q: V256, _ y: V256) -> SIMD8<Float> {
        let p = B.signed ? _mm256_maddubs_epi16(ax, _mm256_sign_epi8(y, q)) : _mm256_maddubs_epi16(q, y)
        return _mm256_cvtepi32_ps(_mm256_madd_epi16(p, _mm256_set1_epi16(1)))
    }

    @inline(__always)
    static func prep<B: LegacyBlock>(_: B.Type, _ q: V256) -> V256 { B.signed ? _mm256_sign_epi8(q, q) : q }
    #endif

    /// dot(weight row, activation) for `nb` blocks.
    @inline(__always)
    static func row<B: LegacyBlock>(_: B.Type, _ w: UnsafeRawPointer, _ a: UnsafeRawPointer, _ nb: Int) -> Float {
        let sc = a + 32 * nb
        #if arch(x86_64)
        // One accumulator in block order, exactly as row2 and row4 do it: a row's result must not
        // depend on how many columns or rows were computed with it (batched = alone, bit for bit).
        var acc = SIMD8<Float>()
        var accm = SIMD4<Float>()
        for b in 0..<nb {
            let wp = w + b * B.bytes
            let q = B.quants(wp)
            let ds = B.scales(wp) * pair(sc, b)
            acc = _mm256_fmadd_ps(_mm256_broadcastss_ps(ds), idot(B.self, prep(B.self, q), q, load256(a, 32 * b)), acc)
            if B.hasConst { accm += ds }
        }
        return hsum(acc) + (B.hasConst ? accm[1] : 0)
        #else
        var s: Float = 0
        for b in 0..<nb {
            let wp = w + b * B.bytes
            var isum: Int32 = 0
            for j in 0..<32 { isum &+= B.value(wp, j) &* Int32(a.load(fromByteOffset: 32 * b + j, as: Int8.self)) }
            let ds = B.scales(wp) * pair(sc, b)
            s += ds[0] * Float(isum) + (B.hasConst ? ds[1] : 0)
        }
        return s
        #endif
    }

    /// Two consecutive weight rows (`rb` bytes apart) against one activation.
    @inline(__always)
    static func row2<B: LegacyBlock>(_: B.Type, _ w: UnsafeRawPointer, _ rb: Int, _ a: UnsafeRawPointer, _ nb: Int) -> (Float, Float) {
        #if arch(x86_64)
        let sc = a + 32 * nb
        var acc0 = SIMD8<Float>(), acc1 = SIMD8<Float>()
        var m0 = SIMD4<Float>(), m1 = SIMD4<Float>()
        for b in 0..<nb {
            let wp0 = w + b * B.bytes, wp1 = wp0 + rb
            let y = load256(a, 32 * b)
            let s = pair(sc, b)
            let q0 = B.quants(wp0), q1 = B.quants(wp1)
            let ds0 = B.scales(wp0) * s, ds1 = B.scales(wp1) * s
            acc0 = _mm256_fmadd_ps(_mm256_broadcastss_ps(ds0), idot(B.self, prep(B.self, q0), q0, y), acc0)
            acc1 = _mm256_fmadd_ps(_mm256_broadcastss_ps(ds1), idot(B.self, prep(B.self, q1), q1, y), acc1)
            if B.hasConst { m0 += ds0; m1 += ds1 }
        }
        return (hsum(acc0) + (B.hasConst ? m0[1] : 0), hsum(acc1) + (B.hasConst ? m1[1] : 0))
        #else
        return (row(B.self, w, a, nb), row(B.self, w + rb, a, nb))
        #endif
    }

    /// One weight row against 4 activation columns: each weight block is decoded once and used 4 times.
    @inline(__always)
    static func row4<B: LegacyBlock>(_: B.Type, _ w: UnsafeRawPointer, _ a: UnsafeRawPointer, _ aStride: Int, _ nb: Int) -> SIMD4<Float> {
        #if arch(x86_64)
        let a0 = a, a1 = a + aStride, a2 = a + 2 * aStride, a3 = a + 3 * aStride
        let s0 = a0 + 32 * nb, s1 = a1 + 32 * nb, s2 = a2 + 32 * nb, s3 = a3 + 32 * nb
        var acc0 = SIMD8<Float>(), acc1 = SIMD8<Float>(), acc2 = SIMD8<Float>(), acc3 = SIMD8<Float>()
        var accm = SIMD4<Float>()
        for b in 0..<nb {
            let wp = w + b * B.bytes
            let q = B.quants(wp), ax = prep(B.self, q)
            let k = B.scales(wp)
            let d = _mm256_broadcastss_ps(k)
            let o = 32 * b
            acc0 = _mm256_fmadd_ps(d * SIMD8(repeating: s0.f32(8 * b)), idot(B.self, ax, q, load256(a0, o)), acc0)
            acc1 = _mm256_fmadd_ps(d * SIMD8(repeating: s1.f32(8 * b)), idot(B.self, ax, q, load256(a1, o)), acc1)
            acc2 = _mm256_fmadd_ps(d * SIMD8(repeating: s2.f32(8 * b)), idot(B.self, ax, q, load256(a2, o)), acc2)
            acc3 = _mm256_fmadd_ps(d * SIMD8(repeating: s3.f32(8 * b)), idot(B.self, ax, q, load256(a3, o)), acc3)
            if B.hasConst {
                accm += SIMD4(repeating: k[1]) * SIMD4(s0.f32(8 * b + 4), s1.f32(8 * b + 4), s2.f32(8 * b + 4), s3.f32(8 * b + 4))
            }
        }
        return SIMD4(hsum(acc0), hsum(acc1), hsum(acc2), hsum(acc3)) + accm
        #else
        return SIMD4(row(B.self, w, a, nb), row(B.self, w, a + aStride, nb), row(B.self, w, a + 2 * aStride, nb),
                     row(B.self, w, a + 3 * aStride, nb))
        #endif
    }
}

/// Dot kernels for the 256-element K-quants against AK activations (Q8_K semantics).
/// Each function returns the contribution of one super-block: `w` = weight block, `q` = its 256 int8 activations,
/// `da` = activation scale, `bs` = 16 Int16 sums of 16 activations each.

enum KDot {
    @inline(__always) static func bcast(_ s: UInt8) -> I16x16 { I16x16(repeating: Int16(s)) }
    @inline(__always) static func bcast(_ s: Int32) -> I16x16 { I16x16(repeating: Int16(truncatingIfNeeded: s)) }
    @inline(__always) static func bsum(_ bs: UnsafeRawPointer, _ i: Int) -> Int32 {
        Int32(bs.loadUnaligned(fromByteOffset: 2 * i, as: Int16.self))
    }

    @inline(__always)
    static func q2_K(_ w: UnsafeRawPointer, _ a: UnsafeRawPointer, _ da: Float, _ bs: UnsafeRawPointer) -> Float {
        let d = w.f16(80) * da, dmin = w.f16(82) * da
        var isum = I32x8()
        var msum: Int32 = 0
        for n in 0..<2 {
            let q0 = w.v8(16 + 32 * n), q1 = w.v8(32 + 32 * n)
            for j in 0..<4 {
                let shift = UInt8(2 * j)
                let is0 = 8 * n + 2 * j
                let s0 = w.u8(is0), s1 = w.u8(is0 + 1)
                let e = 128 * n + 32 * j
                let p0 = widen((q0 &>> shift) & 3) &* s16(a, e)
                let p1 = widen((q1 &>> shift) & 3) &* s16(a, e + 16)
                isum &+= madd(p0, bcast(s0 & 0xF)) &+ madd(p1, bcast(s1 & 0xF))
                msum &+= Int32(s0 >> 4) &* bsum(bs, is0) &+ Int32(s1 >> 4) &* bsum(bs, is0 + 1)
            }
        }
        return d * Float(isum.wrappedSum()) - dmin * Float(msum)
    }

    @inline(__always)
    static func q3_K(_ w: UnsafeRawPointer, _ a: UnsafeRawPointer, _ da: Float, _ bs: UnsafeRawPointer) -> Float {
        let d = w.f16(108) * da
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
                let e = 128 * n + 32 * j
                let v0 = ((q0 &>> shift) & 3) | (((hm0 &>> k) & 1) &<< 2)
                let v1 = ((q1 &>> shift) & 3) | (((hm1 &>> k) & 1) &<< 2)
                let p0 = (widen(v0) &- four) &* s16(a, e)
                let p1 = (widen(v1) &- four) &* s16(a, e + 16)
                isum &+= madd(p0, bcast(QK.scaleQ3K(is0, sc))) &+ madd(p1, bcast(QK.scaleQ3K(is0 + 1, sc)))
            }
        }
        return d * Float(isum.wrappedSum())
    }

    @inline(__always)
    static func q4_K(_ w: UnsafeRawPointer, _ a: UnsafeRawPointer, _ da: Float, _ bs: UnsafeRawPointer) -> Float {
        let dm = f16pair(w, 0) * da
        let d = dm[0], dmin = dm[1]
        #if arch(x86_64)
        // ggml_vec_dot_q4_K_q8_K (AVX2): 8 six-bit scales and mins unpacked into bytes.
        let k1: UInt32 = 0x3f3f_3f3f, k2: UInt32 = 0x0f0f_0f0f, k3: UInt32 = 0x0303_0303
        let u0 = w.u32(4), u1 = w.u32(8), u2 = w.u32(12)
        let t3 = ((u2 >> 4) & k2) | (((u1 >> 6) & k3) << 4)
        let t2 = u1 & k1
        let t1 = (u2 & k2) | (((u0 >> 6) & k3) << 4)
        let t0 = u0 & k1
        let ms = _mm256_cvtepu8_epi16(_mm_setr_epi32(Int32(bitPattern: t0), Int32(bitPattern: t1),
                                                     Int32(bitPattern: t2), Int32(bitPattern: t3)))
        let bsv = bs.loadUnaligned(as: V256.self)
        let q8s = _mm_hadd_epi16(_mm256_castsi256_si128(bsv), bsv.highHalf)
        let mins = ms.highHalf
        let prod = unsafeBitCast(_mm_madd_epi16(mins, q8s), to: SIMD4<Int32>.self)
        let msum = prod.wrappedSum()
        let sc128 = _mm256_castsi256_si128(ms)
        let scales = _mm256_set_m128i(sc128, sc128)
        let m4 = _mm256_set1_epi8(0x0F)
        var sumi = _mm256_setzero_si256()
        for j in 0..<4 {
            let shl = _mm256_set1_epi16(Int16(4 * j) | Int16(4 * j + 1) << 8)
            let shh = _mm256_set1_epi16(Int16(4 * j + 2) | Int16(4 * j + 3) << 8)
            let sl = _mm256_shuffle_epi8(scales, shl), sh = _mm256_shuffle_epi8(scales, shh)
            let bits = load256(w, 16 + 32 * j)
            let ql = _mm256_and_si256(bits, m4), qh = _mm256_and_si256(_mm256_srli_epi16(bits, 4), m4)
            let pl = _mm256_madd_epi16(sl, _mm256_maddubs_epi16(ql, load256(a, 64 * j)))
            let ph = _mm256_madd_epi16(sh, _mm256_maddubs_epi16(qh, load256(a, 64 * j + 32)))
            sumi = _mm256_add_epi32(sumi, _mm256_add_epi32(pl, ph))
        }
        return d * hsum(_mm256_cvtepi32_ps(sumi)) - dmin * Float(msum)
        #else
        let s = w + 4
        var isum = I32x8()
        var msum: Int32 = 0
        for c in 0..<4 {
            let (s1, m1) = QK.scaleMinK4(2 * c, s)
            let (s2, m2) = QK.scaleMinK4(2 * c + 1, s)
            let q0 = w.v8(16 + 32 * c), q1 = w.v8(32 + 32 * c)
            let e = 64 * c
            let pl = widen(q0 & 0xF) &* s16(a, e) &+ widen(q1 & 0xF) &* s16(a, e + 16)
            let ph = widen(q0 &>> 4) &* s16(a, e + 32) &+ widen(q1 &>> 4) &* s16(a, e + 48)
            isum &+= madd(pl, bcast(s1)) &+ madd(ph, bcast(s2))
            msum &+= Int32(m1) &* (bsum(bs, 4 * c) &+ bsum(bs, 4 * c + 1)) &+ Int32(m2) &* (bsum(bs, 4 * c + 2) &+ bsum(bs, 4 * c + 3))
        }
        return d * Float(isum.wrappedSum()) - dmin * Float(msum)
        #endif
    }

    @inline(__always)
    static func q5_K(_ w: UnsafeRawPointer, _ a: UnsafeRawPointer, _ da: Float, _ bs: UnsafeRawPointer) -> Float {
        let dm = f16pair(w, 0) * da
        let d = dm[0], dmin = dm[1]
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
            let e = 64 * c
            let pl = widen(l0) &* s16(a, e) &+ widen(l1) &* s16(a, e + 16)
            let ph = widen(u0) &* s16(a, e + 32) &+ widen(u1) &* s16(a, e + 48)
            isum &+= madd(pl, bcast(s1)) &+ madd(ph, bcast(s2))
            msum &+= Int32(m1) &* (bsum(bs, 4 * c) &+ bsum(bs, 4 * c + 1)) &+ Int32(m2) &* (bsum(bs, 4 * c + 2) &+ bsum(bs, 4 * c + 3))
        }
        return d * Float(isum.wrappedSum()) - dmin * Float(msum)
    }

    @inline(__always)
    static func q6_K(_ w: UnsafeRawPointer, _ a: UnsafeRawPointer, _ da: Float, _ bs: UnsafeRawPointer) -> Float {
        let d = w.f16(208) * da
        #if arch(x86_64)
        // ggml_vec_dot_q6_K_q8_K (AVX2), with the −32 offset applied once through the activation block sums.
        let scales = w.loadUnaligned(fromByteOffset: 192, as: SIMD2<Int64>.self)
        let sub = _mm256_slli_epi32(_mm256_madd_epi16(bs.loadUnaligned(as: V256.self), _mm256_cvtepi8_epi16(scales)), 5)
        let m4 = _mm256_set1_epi8(0x0F), m2 = _mm256_set1_epi8(0x03)
        var sumi = _mm256_setzero_si256()
        for n in 0..<2 {
            let hb = load256(w, 128 + 32 * n)
            let h0 = _mm256_slli_epi16(_mm256_and_si256(hb, m2), 4)
            let h1 = _mm256_slli_epi16(_mm256_and_si256(hb, _mm256_set1_epi8(0x0C)), 2)
            let h2 = _mm256_and_si256(hb, _mm256_set1_epi8(0x30))
            let h3 = _mm256_srli_epi16(_mm256_and_si256(hb, _mm256_set1_epi8(-64)), 2)
            let b1 = load256(w, 64 * n), b2 = load256(w, 64 * n + 32)
            let v0 = _mm256_or_si256(_mm256_and_si256(b1, m4), h0)
            let v1 = _mm256_or_si256(_mm256_and_si256(b2, m4), h1)
            let v2 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(b1, 4), m4), h2)
            let v3 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(b2, 4), m4), h3)
            @inline(__always) func sc(_ i: Int) -> V256 {
                let lo = Int64(0x0101_0101_0101_0101) &* Int64(2 * i), hi = Int64(0x0101_0101_0101_0101) &* Int64(2 * i + 1)
                return _mm256_cvtepi8_epi16(_mm_shuffle_epi8(scales, _mm_set_epi64x(hi, lo)))
            }
            let e = 128 * n
            let p0 = _mm256_madd_epi16(sc(4 * n), _mm256_maddubs_epi16(v0, load256(a, e)))
            let p1 = _mm256_madd_epi16(sc(4 * n + 1), _mm256_maddubs_epi16(v1, load256(a, e + 32)))
            let p2 = _mm256_madd_epi16(sc(4 * n + 2), _mm256_maddubs_epi16(v2, load256(a, e + 64)))
            let p3 = _mm256_madd_epi16(sc(4 * n + 3), _mm256_maddubs_epi16(v3, load256(a, e + 96)))
            sumi = _mm256_add_epi32(sumi, _mm256_add_epi32(_mm256_add_epi32(p0, p1), _mm256_add_epi32(p2, p3)))
        }
        return d * hsum(_mm256_cvtepi32_ps(_mm256_sub_epi32(sumi, sub)))
        #else
        var isum = I32x8()
        let thirtyTwo = I16x16(repeating: 32)
        for n in 0..<2 {
            let ql = w + 64 * n, qh = w + 128 + 32 * n, sc = w + 192 + 8 * n
            let e = 128 * n
            for h in 0..<2 {
                let qa = ql.v8(16 * h), qb = ql.v8(32 + 16 * h), hv = qh.v8(16 * h)
                let v1 = (qa & 0xF) | ((hv & 3) &<< 4)
                let v2 = (qb & 0xF) | (((hv &>> 2) & 3) &<< 4)
                let v3 = (qa &>> 4) | (((hv &>> 4) & 3) &<< 4)
                let v4 = (qb &>> 4) | ((hv &>> 6) &<< 4)
                @inline(__always) func s(_ k: Int) -> I16x16 {
                    I16x16(repeating: Int16(Int8(bitPattern: sc.u8(k))))
                }
                let o = e + 16 * h
                isum &+= madd((widen(v1) &- thirtyTwo) &* s16(a, o), s(h))
                isum &+= madd((widen(v2) &- thirtyTwo) &* s16(a, o + 32), s(h + 2))
                isum &+= madd((widen(v3) &- thirtyTwo) &* s16(a, o + 64), s(h + 4))
                isum &+= madd((widen(v4) &- thirtyTwo) &* s16(a, o + 96), s(h + 6))
            }
        }
        return d * Float(isum.wrappedSum())
        #endif
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
