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
