import GGUF

/// Reference dequantization, element-for-element the same arithmetic as ggml's `dequantize_row_*`.
public enum Dequant {
    /// Dequantizes `count` values (a multiple of `type.blockSize`) from `src` into `dst`.
    public static func row(_ type: GGMLType, _ src: UnsafeRawPointer, _ dst: UnsafeMutablePointer<Float>, count: Int) {
        precondition(count % type.blockSize == 0, "count \(count) is not a multiple of the \(type) block size")
        let nb = count / type.blockSize
        let bs = type.blockBytes
        switch type {
        case .f32:
            for i in 0..<count { dst[i] = src.f32(4 * i) }
        case .f16:
            for i in 0..<count { dst[i] = src.f16(2 * i) }
        case .bf16:
            for i in 0..<count { dst[i] = BFloat16.toFloat(src.u16(2 * i)) }
        case .q4_0:
            for b in 0..<nb {
                let x = src + b * bs, y = dst + 32 * b
                let d = x.f16(0)
                for j in 0..<16 {
                    let q = x.u8(2 + j)
                    y[j] = Float(Int32(q & 0xF) - 8) * d
                    y[j + 16] = Float(Int32(q >> 4) - 8) * d
                }
            }
        case .q4_1:
            for b in 0..<nb {
                let x = src + b * bs, y = dst + 32 * b
                let d = x.f16(0), m = x.f16(2)
                for j in 0..<16 {
                    let q = x.u8(4 + j)
                    y[j] = Float(q & 0xF) * d + m
                    y[j + 16] = Float(q >> 4) * d + m
                }
            }
        case .q5_0:
            for b in 0..<nb {
                let x = src + b * bs, y = dst + 32 * b
                let d = x.f16(0)
                let qh = x.u32(2)
                for j in 0..<16 {
                    let q = UInt32(x.u8(6 + j))
                    let h0 = ((qh >> UInt32(j)) << 4) & 0x10
                    let h1 = (qh >> UInt32(j + 12)) & 0x10
                    y[j] = Float(Int32((q & 0xF) | h0) - 16) * d
                    y[j + 16] = Float(Int32((q >> 4) | h1) - 16) * d
                }
            }
        case .q5_1:
            for b in 0..<nb {
                let x = src + b * bs, y = dst + 32 * b
                let d = x.f16(0), m = x.f16(2)
                let qh = x.u32(4)
                for j in 0..<16 {
                    let q = UInt32(x.u8(8 + j))
                    let h0 = ((qh >> UInt32(j)) << 4) & 0x10
                    let h1 = (qh >> UInt32(j + 12)) & 0x10
                    y[j] = Float((q & 0xF) | h0) * d + m
                    y[j + 16] = Float((q >> 4) | h1) * d + m
                }
            }
        case .q8_0:
            for b in 0..<nb {
                let x = src + b * bs, y = dst + 32 * b
                let d = x.f16(0)
                for j in 0..<32 { y[j] = Float(Int8(bitPattern: x.u8(2 + j))) * d }
            }
        case .q8_1:
            for b in 0..<nb {
                let x = src + b * bs, y = dst + 32 * b
                let d = x.f16(0)
                for j in 0..<32 { y[j] = Float(Int8(bitPattern: x.u8(4 + j))) * d }
            }
        case .q8_K:
            for b in 0..<nb {
                let x = src + b * bs, y = dst + 256 * b
                let d = x.f32(0)
                for j in 0..<256 { y[j] = Float(Int8(bitPattern: x.u8(4 + j))) * d }
            }
        case .q2_K:
            for b in 0..<nb {
                let x = src + b * bs
                var y = dst + 256 * b
                let d = x.f16(80), mn = x.f16(82)
                var si = 0
                for n in stride(from: 0, to: 256, by: 128) {
                    let q = x + 16 + n / 4
                    for j in 0..<4 {
                        let shift = UInt8(2 * j)
                        for half in 0..<2 {
                            let sc = x.u8(si); si += 1
                            let dl = d * Float(sc & 0xF), ml = mn * Float(sc >> 4)
                            for l in 0..<16 { y[l] = dl * Float((q.u8(l + 16 * half) >> shift) & 3) - ml }
                            y += 16
                        }
                    }
                }
            }
        case .q3_K:
            for b in 0..<nb {
                let x = src + b * bs
                var y = dst + 256 * b
                let dAll = x.f16(108)
                let hm = x, sc = x + 96
                var si = 0
                var m: UInt8 = 1
                for n in stride(from: 0, to: 256, by: 128) {
                    let q = x + 32 + n / 4
                    for j in 0..<4 {
                        let shift = UInt8(2 * j)
                        for half in 0..<2 {
                            let dl = dAll * Float(QK.scaleQ3K(si, sc)); si += 1
                            for l in 0..<16 {
                                let lo = Int32((q.u8(l + 16 * half) >> shift) & 3)
                                let h: Int32 = (hm.u8(l + 16 * half) & m) != 0 ? 0 : 4
                                y[l] = dl * Float(lo - h)
                            }
                            y += 16
                        }
                        m = m &<< 1
                    }
                }
            }
        case .q4_K:
            for b in 0..<nb {
                let x = src + b * bs
                var y = dst + 256 * b
                let d = x.f16(0), mn = x.f16(2)
                for c in 0..<4 {
                    let q = x + 16 + 32 * c
                    let (s1, m1) = QK.scaleMinK4(2 * c, x + 4)
                    let (s2, m2) = QK.scaleMinK4(2 * c + 1, x + 4)
                    let d1 = d * Float(s1), mm1 = mn * Float(m1)
                    let d2 = d * Float(s2), mm2 = mn * Float(m2)
                    for l in 0..<32 { y[l] = d1 * Float(q.u8(l) & 0xF) - mm1 }
                    for l in 0..<32 { y[32 + l] = d2 * Float(q.u8(l) >> 4) - mm2 }
                    y += 64
                }
            }
        case .q5_K:
            for b in 0..<nb {
                let x = src + b * bs
                var y = dst + 256 * b
                let d = x.f16(0), mn = x.f16(2)
                let qh = x + 16
                for c in 0..<4 {
                    let ql = x + 48 + 32 * c
                    let u1 = UInt8(1) << UInt8(2 * c), u2 = UInt8(2) << UInt8(2 * c)
                    let (s1, m1) = QK.scaleMinK4(2 * c, x + 4)
                    let (s2, m2) = QK.scaleMinK4(2 * c + 1, x + 4)
                    let d1 = d * Float(s1), mm1 = mn * Float(m1)
                    let d2 = d * Float(s2), mm2 = mn * Float(m2)
                    for l in 0..<32 { y[l] = d1 * Float((ql.u8(l) & 0xF) + (qh.u8(l) & u1 != 0 ? 16 : 0)) - mm1 }
                    for l in 0..<32 { y[32 + l] = d2 * Float((ql.u8(l) >> 4) + (qh.u8(l) & u2 != 0 ? 16 : 0)) - mm2 }
                    y += 64
                }
            }
        case .q6_K:
            for b in 0..<nb {
                let x = src + b * bs
                var y = dst + 256 * b
                let d = x.f16(208)
                for n in 0..<2 {
                    let ql = x + 64 * n, qh = x + 128 + 32 * n, sc = x + 192 + 8 * n
                    for l in 0..<32 {
                        let iS = l / 16
                        let h = qh.u8(l)
                        let q1 = Int32((ql.u8(l) & 0xF) | ((h & 3) << 4)) - 32
                        let q2 = Int32((ql.u8(l + 32) & 0xF) | (((h >> 2) & 3) << 4)) - 32
                        let q3 = Int32((ql.u8(l) >> 4) | (((h >> 4) & 3) << 4)) - 32
                        let q4 = Int32((ql.u8(l + 32) >> 4) | (((h >> 6) & 3) << 4)) - 32
                        @inline(__always) func s(_ k: Int) -> Float { Float(Int8(bitPattern: sc.u8(k))) }
                        y[l] = d * s(iS) * Float(q1)
                        y[l + 32] = d * s(iS + 2) * Float(q2)
                        y[l + 64] = d * s(iS + 4) * Float(q3)
                        y[l + 96] = d * s(iS + 6) * Float(q4)
                    }
                    y += 128
                }
            }
        }
    }
}
