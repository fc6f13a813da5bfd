import GGUF

/// Reference quantizers, ports of ggml's `quantize_row_*_ref` (same arithmetic, same rounding),
/// so that Swift-written model files are byte-identical to what ggml would write.
public enum Quantize {
    /// Quantizes `count` floats (a multiple of `type.blockSize`) into `dst` (`type.rowBytes(count)` bytes).
    public static func row(_ type: GGMLType, _ src: UnsafePointer<Float>, _ dst: UnsafeMutableRawPointer, count: Int) {
        precondition(count % type.blockSize == 0, "count \(count) is not a multiple of the \(type) block size")
        let nb = count / type.blockSize
        let bs = type.blockBytes
        for b in 0..<nb {
            let x = src + b * type.blockSize
            let y = dst + b * bs
            switch type {
            case .f32: y.storeBytes(of: x[0], as: Float.self)
            case .f16: y.storeBytes(of: Half.fromFloat(x[0]), as: UInt16.self)
            case .bf16: y.storeBytes(of: BFloat16.fromFloat(x[0]), as: UInt16.self)
            case .q4_0: q4_0(x, y)
            case .q4_1: q4_1(x, y)
            case .q5_0: q5_0(x, y)
            case .q5_1: q5_1(x, y)
            case .q8_0: q8_0(x, y)
            case .q8_1: q8_1(x, y)
            case .q8_K: q8_K(x, y)
            case .q2_K: q2_K(x, y)
            case .q3_K: q3_K(x, y)
            case .q4_K: q45_K(x, y, nmax: 15, five: false)
            case .q5_K: q45_K(x, y, nmax: 31, five: true)
            case .q6_K: q6_K(x, y)
            }
        }
    }

    // MARK: helpers

    /// ggml's `nearest_int`: round half to even via the 1.5*2^23 trick (valid for |f| <= 4194303).
    @inline(__always)
    static func nearestInt(_ f: Float) -> Int32 {
        let v = f + 12582912.0
        return Int32(bitPattern: v.bitPattern & 0x007f_ffff) - 0x0040_0000
    }

    /// C's `(int)f` truncation, saturated instead of undefined for out-of-range/NaN inputs.
    @inline(__always)
    static func trunc(_ f: Float) -> Int32 {
        guard f == f else { return 0 }
        return Int32(Swift.max(-2e9, Swift.min(2e9, f)))
    }

    @inline(__always)
    static func putF16(_ y: UnsafeMutableRawPointer, _ o: Int, _ v: Float) {
        y.storeBytes(of: Half.fromFloat(v), toByteOffset: o, as: UInt16.self)
    }

    @inline(__always)
    static func put8(_ y: UnsafeMutableRawPointer, _ o: Int, _ v: UInt8) {
        y.storeBytes(of: v, toByteOffset: o, as: UInt8.self)
    }

    // MARK: 32-element blocks

    static func q4_0(_ x: UnsafePointer<Float>, _ y: UnsafeMutableRawPointer) {
        var amax: Float = 0, max: Float = 0
        for j in 0..<32 where amax < abs(x[j]) { amax = abs(x[j]); max = x[j] }
        let d = max / -8
        let id: Float = d != 0 ? 1 / d : 0
        putF16(y, 0, d)
        for j in 0..<16 {
            // C: (int8_t)(x + 8.5f), i.e. truncation; MIN(15, ...)
            let xi0 = UInt8(truncatingIfNeeded: Swift.min(15, trunc(x[j] * id + 8.5)))
            let xi1 = UInt8(truncatingIfNeeded: Swift.min(15, trunc(x[j + 16] * id + 8.5)))
            put8(y, 2 + j, xi0 | (xi1 << 4))
        }
    }

    static func q4_1(_ x: UnsafePointer<Float>, _ y: UnsafeMutableRawPointer) {
        var mn = Float.greatestFiniteMagnitude, mx = -Float.greatestFiniteMagnitude
        for j in 0..<32 { if x[j] < mn { mn = x[j] }; if x[j] > mx { mx = x[j] } }
        let d = (mx - mn) / 15
        let id: Float = d != 0 ? 1 / d : 0
        putF16(y, 0, d)
        putF16(y, 2, mn)
        for j in 0..<16 {
            let xi0 = UInt8(truncatingIfNeeded: Swift.min(15, trunc((x[j] - mn) * id + 0.5)))
            let xi1 = UInt8(truncatingIfNeeded: Swift.min(15, trunc((x[j + 16] - mn) * id + 0.5)))
            put8(y, 4 + j, xi0 | (xi1 << 4))
        }
    }

    static func q5_0(_ x: UnsafePointer<Float>, _ y: UnsafeMutableRawPointer) {
        var amax: Float = 0, max: Float = 0
        for j in 0..<32 where amax < abs(x[j]) { amax = abs(x[j]); max = x[j] }
        let d = max / -16
        let id: Float = d != 0 ? 1 / d : 0
        putF16(y, 0, d)
        var qh: UInt32 = 0
        for j in 0..<16 {
            let xi0 = UInt8(truncatingIfNeeded: Swift.min(31, trunc(x[j] * id + 16.5)))
            let xi1 = UInt8(truncatingIfNeeded: Swift.min(31, trunc(x[j + 16] * id + 16.5)))
            put8(y, 6 + j, (xi0 & 0xF) | ((xi1 & 0xF) << 4))
            qh |= UInt32((xi0 & 0x10) >> 4) << UInt32(j)
            qh |= UInt32((xi1 & 0x10) >> 4) << UInt32(j + 16)
        }
        y.storeBytes(of: qh, toByteOffset: 2, as: UInt32.self)
    }

    static func q5_1(_ x: UnsafePointer<Float>, _ y: UnsafeMutableRawPointer) {
        var mn = Float.greatestFiniteMagnitude, mx = -Float.greatestFiniteMagnitude
        for j in 0..<32 { if x[j] < mn { mn = x[j] }; if x[j] > mx { mx = x[j] } }
        let d = (mx - mn) / 31
        let id: Float = d != 0 ? 1 / d : 0
        putF16(y, 0, d)
        putF16(y, 2, mn)
        var qh: UInt32 = 0
        for j in 0..<16 {
            let xi0 = UInt8(truncatingIfNeeded: trunc((x[j] - mn) * id + 0.5))
            let xi1 = UInt8(truncatingIfNeeded: trunc((x[j + 16] - mn) * id + 0.5))
            put8(y, 8 + j, (xi0 & 0xF) | ((xi1 & 0xF) << 4))
            qh |= UInt32((xi0 & 0x10) >> 4) << UInt32(j)
            qh |= UInt32((xi1 & 0x10) >> 4) << UInt32(j + 16)
        }
        y.storeBytes(of: qh, toByteOffset: 4, as: UInt32.self)
    }

    static func q8_0(_ x: UnsafePointer<Float>, _ y: UnsafeMutableRawPointer) {
        var amax: Float = 0
        for j in 0..<32 { amax = Swift.max(amax, abs(x[j])) }
        let d = amax / 127
        let id: Float = d != 0 ? 1 / d : 0
        putF16(y, 0, d)
        for j in 0..<32 {
            put8(y, 2 + j, UInt8(truncatingIfNeeded: trunc((x[j] * id).rounded())))
        }
    }

    static func q8_1(_ x: UnsafePointer<Float>, _ y: UnsafeMutableRawPointer) {
        var amax: Float = 0
        for j in 0..<32 { amax = Swift.max(amax, abs(x[j])) }
        let d = amax / 127
        let id: Float = d != 0 ? 1 / d : 0
        putF16(y, 0, d)
        var sum: Int32 = 0
        for j in 0..<32 {
            let q = Int8(truncatingIfNeeded: trunc((x[j] * id).rounded()))
            put8(y, 4 + j, UInt8(bitPattern: q))
            sum += Int32(q)
        }
        putF16(y, 2, Float(sum) * d)
    }

    // MARK: K-quants

    static func q8_K(_ x: UnsafePointer<Float>, _ y: UnsafeMutableRawPointer) {
        var max: Float = 0, amax: Float = 0
        for j in 0..<256 where abs(x[j]) > amax { amax = abs(x[j]); max = x[j] }
        if amax == 0 {
            y.initializeMemory(as: UInt8.self, repeating: 0, count: GGMLType.q8_K.blockBytes)
            return
        }
        let iscale: Float = -127 / max
        for j in 0..<256 {
            put8(y, 4 + j, UInt8(truncatingIfNeeded: Swift.min(127, nearestInt(iscale * x[j]))))
        }
        for j in 0..<16 {
            var sum: Int32 = 0
            for i in 0..<16 { sum += Int32(Int8(bitPattern: UnsafeRawPointer(y).u8(4 + 16 * j + i))) }
            y.storeBytes(of: Int16(truncatingIfNeeded: sum), toByteOffset: 260 + 2 * j, as: Int16.self)
        }
        y.storeBytes(of: 1 / iscale, toByteOffset: 0, as: Float.self)
    }

    /// ggml's `make_qkx2_quants`: scale and (negated) min for an asymmetric group.
    static func makeQKX2(_ n: Int, _ nmax: Int32, _ x: UnsafePointer<Float>, _ weights: UnsafePointer<Float>,
                         _ L: UnsafeMutablePointer<UInt8>, _ theMin: inout Float, _ Laux: UnsafeMutablePointer<UInt8>,
                         _ rmin: Float, _ rdelta: Float, _ nstep: Int, _ useMad: Bool) -> Float {
        var mn = x[0], mx = x[0]
        var sumW = weights[0]
        var sumX = sumW * x[0]
        for i in 1..<n {
            if x[i] < mn { mn = x[i] }
            if x[i] > mx { mx = x[i] }
            let w = weights[i]
            sumW += w
            sumX += w * x[i]
        }
        if mn > 0 { mn = 0 }
        if mx == mn {
            for i in 0..<n { L[i] = 0 }
            theMin = -mn
            return 0
        }
        var iscale = Float(nmax) / (mx - mn)
        var scale = 1 / iscale
        var bestError: Float = 0
        for i in 0..<n {
            let l = nearestInt(iscale * (x[i] - mn))
            L[i] = UInt8(Swift.max(0, Swift.min(nmax, l)))
            var diff = scale * Float(L[i]) + mn - x[i]
            diff = useMad ? abs(diff) : diff * diff
            bestError += weights[i] * diff
        }
        if nstep < 1 { theMin = -mn; return scale }
        for step in 0...nstep {
            iscale = (rmin + rdelta * Float(step) + Float(nmax)) / (mx - mn)
            var sumL: Float = 0, sumL2: Float = 0, sumXL: Float = 0
            for i in 0..<n {
                let l = Swift.max(0, Swift.min(nmax, nearestInt(iscale * (x[i] - mn))))
                Laux[i] = UInt8(l)
                let w = weights[i]
                let fl = Float(l)
                sumL += w * fl
                sumL2 += w * fl * fl
                sumXL += w * fl * x[i]
            }
            let D = sumW * sumL2 - sumL * sumL
            if D > 0 {
                var thisScale = (sumW * sumXL - sumX * sumL) / D
                var thisMin = (sumL2 * sumX - sumL * sumXL) / D
                if thisMin > 0 {
                    thisMin = 0
                    thisScale = sumXL / sumL2
                }
                var err: Float = 0
                for i in 0..<n {
                    var diff = thisScale * Float(Laux[i]) + thisMin - x[i]
                    diff = useMad ? abs(diff) : diff * diff
                    err += weights[i] * diff
                }
                if err < bestError {
                    for i in 0..<n { L[i] = Laux[i] }
                    bestError = err
                    scale = thisScale
                    mn = thisMin
                }
            }
        }
        theMin = -mn
        return scale
    }

    /// ggml's `make_qx_quants` with `qw == NULL` (only the rmse_type values ggml's ref quantizers use: 1).
    static func makeQX(_ n: Int, _ nmax: Int32, _ x: UnsafePointer<Float>, _ L: UnsafeMutablePointer<Int8>, rmseType: Int) -> Float {
        var max: Float = 0, amax: Float = 0
        for i in 0..<n where abs(x[i]) > amax { amax = abs(x[i]); max = x[i] }
        if amax < 1e-15 {
            for i in 0..<n { L[i] = 0 }
            return 0
        }
        var iscale = -Float(nmax) / max
        @inline(__always) func weight(_ v: Float) -> Float {
            switch rmseType {
            case 1: return v * v
            case 2: return 1
            case 3: return abs(v)
            default: return abs(v).squareRoot()
            }
        }
        var sumlx: Float = 0, suml2: Float = 0
        for i in 0..<n {
            let l = Swift.max(-nmax, Swift.min(nmax - 1, nearestInt(iscale * x[i])))
            L[i] = Int8(l + nmax)
            let w = weight(x[i])
            sumlx += w * x[i] * Float(l)
            suml2 += w * Float(l) * Float(l)
        }
        var scale: Float = suml2 != 0 ? sumlx / suml2 : 0
        var best = scale * sumlx
        for step in -9...9 where step != 0 {
            iscale = -(Float(nmax) + 0.1 * Float(step)) / max
            sumlx = 0; suml2 = 0
            for i in 0..<n {
                let l = Swift.max(-nmax, Swift.min(nmax - 1, nearestInt(iscale * x[i])))
                let w = weight(x[i])
                sumlx += w * x[i] * Float(l)
                suml2 += w * Float(l) * Float(l)
            }
            if suml2 > 0 && sumlx * sumlx > best * suml2 {
                for i in 0..<n {
                    let l = nearestInt(iscale * x[i])
                    L[i] = Int8(nmax + Swift.max(-nmax, Swift.min(nmax - 1, l)))
                }
                scale = sumlx / suml2
                best = scale * sumlx
            }
        }
        return scale
    }

    /// ggml's `make_q3_quants` with `do_rmse == true`.
    static func makeQ3(_ n: Int, _ nmax: Int32, _ x: UnsafePointer<Float>, _ L: UnsafeMutablePointer<Int8>) -> Float {
        var max: Float = 0, amax: Float = 0
        for i in 0..<n where abs(x[i]) > amax { amax = abs(x[i]); max = x[i] }
        if amax < 1e-15 {
            for i in 0..<n { L[i] = 0 }
            return 0
        }
        let iscale = -Float(nmax) / max
        var sumlx: Float = 0, suml2: Float = 0
        for i in 0..<n {
            let l = Swift.max(-nmax, Swift.min(nmax - 1, nearestInt(iscale * x[i])))
            L[i] = Int8(l)
            let w = x[i] * x[i]
            sumlx += w * x[i] * Float(l)
            suml2 += w * Float(l) * Float(l)
        }
        for _ in 0..<5 {
            var nChanged = 0
            for i in 0..<n {
                let w = x[i] * x[i]
                var slx = sumlx - w * x[i] * Float(L[i])
                if slx > 0 {
                    var sl2 = suml2 - w * Float(L[i]) * Float(L[i])
                    let newL = Swift.max(-nmax, Swift.min(nmax - 1, nearestInt(x[i] * sl2 / slx)))
                    if newL != Int32(L[i]) {
                        slx += w * x[i] * Float(newL)
                        sl2 += w * Float(newL) * Float(newL)
                        if sl2 > 0 && slx * slx * suml2 > sumlx * sumlx * sl2 {
                            L[i] = Int8(newL); sumlx = slx; suml2 = sl2
                            nChanged += 1
                        }
                    }
                }
            }
            if nChanged == 0 { break }
        }
        for i in 0..<n { L[i] = Int8(Int32(L[i]) + nmax) }
        return sumlx / suml2
    }

    static func q2_K(_ x: UnsafePointer<Float>, _ y: UnsafeMutableRawPointer) {
        var L = [UInt8](repeating: 0, count: 256), Laux = [UInt8](repeating: 0, count: 16)
        var weights = [Float](repeating: 0, count: 16)
        var mins = [Float](repeating: 0, count: 16), scales = [Float](repeating: 0, count: 16)
        let q4scale: Float = 15
        var maxScale: Float = 0, maxMin: Float = 0
        for j in 0..<16 {
            for l in 0..<16 { weights[l] = abs(x[16 * j + l]) }
            var m: Float = 0
            scales[j] = L.withUnsafeMutableBufferPointer { Lb in
                Laux.withUnsafeMutableBufferPointer { La in
                    makeQKX2(16, 3, x + 16 * j, weights, Lb.baseAddress! + 16 * j, &m, La.baseAddress!, -0.5, 0.1, 15, true)
                }
            }
            mins[j] = m
            if scales[j] > maxScale { maxScale = scales[j] }
            if m > maxMin { maxMin = m }
        }
        var sc = [UInt8](repeating: 0, count: 16)
        if maxScale > 0 {
            let iscale = q4scale / maxScale
            for j in 0..<16 { sc[j] = UInt8(truncatingIfNeeded: nearestInt(iscale * scales[j])) }
            putF16(y, 80, maxScale / q4scale)
        } else {
            putF16(y, 80, 0)
        }
        if maxMin > 0 {
            let iscale = q4scale / maxMin
            for j in 0..<16 { sc[j] |= UInt8(truncatingIfNeeded: nearestInt(iscale * mins[j]) << 4) }
            putF16(y, 82, maxMin / q4scale)
        } else {
            putF16(y, 82, 0)
        }
        for j in 0..<16 { put8(y, j, sc[j]) }
        let yr = UnsafeRawPointer(y)
        for j in 0..<16 {
            let d = yr.f16(80) * Float(sc[j] & 0xF)
            if d == 0 { continue }
            let dm = yr.f16(82) * Float(sc[j] >> 4)
            for ii in 0..<16 {
                L[16 * j + ii] = UInt8(Swift.max(0, Swift.min(3, nearestInt((x[16 * j + ii] + dm) / d))))
            }
        }
        for j in stride(from: 0, to: 256, by: 128) {
            for l in 0..<32 {
                put8(y, 16 + j / 4 + l, L[j + l] | (L[j + l + 32] << 2) | (L[j + l + 64] << 4) | (L[j + l + 96] << 6))
            }
        }
    }

    static func q3_K(_ x: UnsafePointer<Float>, _ y: UnsafeMutableRawPointer) {
        var L = [Int8](repeating: 0, count: 256)
        var scales = [Float](repeating: 0, count: 16)
        var maxScale: Float = 0, amax: Float = 0
        L.withUnsafeMutableBufferPointer { Lb in
            for j in 0..<16 {
                scales[j] = makeQ3(16, 4, x + 16 * j, Lb.baseAddress! + 16 * j)
                if abs(scales[j]) > amax { amax = abs(scales[j]); maxScale = scales[j] }
            }
        }
        var s = [UInt8](repeating: 0, count: 12)
        if maxScale != 0 {
            let iscale: Float = -32 / maxScale
            for j in 0..<16 {
                // C: int8_t l = nearest_int(...); l = MAX(-32, MIN(31, l)) + 32;
                var l = Int32(Int8(truncatingIfNeeded: nearestInt(iscale * scales[j])))
                l = Swift.max(-32, Swift.min(31, l)) + 32
                if j < 8 { s[j] = UInt8(l & 0xF) } else { s[j - 8] |= UInt8((l & 0xF) << 4) }
                l >>= 4
                s[j % 4 + 8] |= UInt8(truncatingIfNeeded: l << (2 * (j / 4)))
            }
            putF16(y, 108, 1 / iscale)
        } else {
            putF16(y, 108, 0)
        }
        for j in 0..<12 { put8(y, 96 + j, s[j]) }
        let dAll = UnsafeRawPointer(y).f16(108)
        for j in 0..<16 {
            let sc = s.withUnsafeBytes { QK.scaleQ3K(j, $0.baseAddress!) }
            let d = dAll * Float(sc)
            if d == 0 { continue }
            for ii in 0..<16 {
                L[16 * j + ii] = Int8(Swift.max(-4, Swift.min(3, nearestInt(x[16 * j + ii] / d))) + 4)
            }
        }
        var hmask = [UInt8](repeating: 0, count: 32)
        var m = 0
        var hm: UInt8 = 1
        for j in 0..<256 {
            if L[j] > 3 { hmask[m] |= hm; L[j] -= 4 }
            m += 1
            if m == 32 { m = 0; hm = hm &<< 1 }
        }
        for j in 0..<32 { put8(y, j, hmask[j]) }
        for j in stride(from: 0, to: 256, by: 128) {
            for l in 0..<32 {
                let v = UInt8(L[j + l]) | (UInt8(L[j + l + 32]) << 2) | (UInt8(L[j + l + 64]) << 4) | (UInt8(L[j + l + 96]) << 6)
                put8(y, 32 + j / 4 + l, v)
            }
        }
    }

    /// Q4_K (`five == false`, nmax 15) and Q5_K (`five == true`, nmax 31).
    static func q45_K(_ x: UnsafePointer<Float>, _ y: UnsafeMutableRawPointer, nmax: Int32, five: Bool) {
        var L = [UInt8](repeating: 0, count: 256), Laux = [UInt8](repeating: 0, count: 32)
        var weights = [Float](repeating: 0, count: 32)
        var mins = [Float](repeating: 0, count: 8), scales = [Float](repeating: 0, count: 8)
        var maxScale: Float = 0, maxMin: Float = 0
        for j in 0..<8 {
            var sumX2: Float = 0
            for l in 0..<32 { sumX2 += x[32 * j + l] * x[32 * j + l] }
            let avX = (sumX2 / 32).squareRoot()
            for l in 0..<32 { weights[l] = avX + abs(x[32 * j + l]) }
            var m: Float = 0
            scales[j] = L.withUnsafeMutableBufferPointer { Lb in
                Laux.withUnsafeMutableBufferPointer { La in
                    five
                        ? makeQKX2(32, 31, x + 32 * j, weights, Lb.baseAddress! + 32 * j, &m, La.baseAddress!, -0.5, 0.1, 15, false)
                        : makeQKX2(32, 15, x + 32 * j, weights, Lb.baseAddress! + 32 * j, &m, La.baseAddress!, -1.0, 0.1, 20, false)
                }
            }
            mins[j] = m
            if scales[j] > maxScale { maxScale = scales[j] }
            if m > maxMin { maxMin = m }
        }
        let invScale: Float = maxScale > 0 ? 63 / maxScale : 0
        let invMin: Float = maxMin > 0 ? 63 / maxMin : 0
        var s = [UInt8](repeating: 0, count: 12)
        for j in 0..<8 {
            let ls = Swift.min(63, UInt8(truncatingIfNeeded: nearestInt(invScale * scales[j])))
            let lm = Swift.min(63, UInt8(truncatingIfNeeded: nearestInt(invMin * mins[j])))
            if j < 4 {
                s[j] = ls
                s[j + 4] = lm
            } else {
                s[j + 4] = (ls & 0xF) | ((lm & 0xF) << 4)
                s[j - 4] |= (ls >> 4) << 6
                s[j] |= (lm >> 4) << 6
            }
        }
        putF16(y, 0, maxScale / 63)
        putF16(y, 2, maxMin / 63)
        for j in 0..<12 { put8(y, 4 + j, s[j]) }
        let yr = UnsafeRawPointer(y)
        for j in 0..<8 {
            let (sc, m) = QK.scaleMinK4(j, yr + 4)
            let d = yr.f16(0) * Float(sc)
            if d == 0 { continue }
            let dm = yr.f16(2) * Float(m)
            for ii in 0..<32 {
                L[32 * j + ii] = UInt8(Swift.max(0, Swift.min(nmax, nearestInt((x[32 * j + ii] + dm) / d))))
            }
        }
        if !five {
            for j in stride(from: 0, to: 256, by: 64) {
                for l in 0..<32 { put8(y, 16 + j / 2 + l, L[j + l] | (L[j + l + 32] << 4)) }
            }
        } else {
            var qh = [UInt8](repeating: 0, count: 32)
            var m1: UInt8 = 1, m2: UInt8 = 2
            for n in stride(from: 0, to: 256, by: 64) {
                for j in 0..<32 {
                    var l1 = L[n + j]
                    if l1 > 15 { l1 -= 16; qh[j] |= m1 }
                    var l2 = L[n + j + 32]
                    if l2 > 15 { l2 -= 16; qh[j] |= m2 }
                    put8(y, 48 + n / 2 + j, l1 | (l2 << 4))
                }
                m1 = m1 &<< 2; m2 = m2 &<< 2
            }
            for j in 0..<32 { put8(y, 16 + j, qh[j]) }
        }
    }

    static func q6_K(_ x: UnsafePointer<Float>, _ y: UnsafeMutableRawPointer) {
        var L = [Int8](repeating: 0, count: 256)
        var scales = [Float](repeating: 0, count: 16)
        var maxScale: Float = 0, maxAbsScale: Float = 0
        L.withUnsafeMutableBufferPointer { Lb in
            for ib in 0..<16 {
                let scale = makeQX(16, 32, x + 16 * ib, Lb.baseAddress! + 16 * ib, rmseType: 1)
                scales[ib] = scale
                if abs(scale) > maxAbsScale { maxAbsScale = abs(scale); maxScale = scale }
            }
        }
        if maxAbsScale < 1e-15 {
            y.initializeMemory(as: UInt8.self, repeating: 0, count: GGMLType.q6_K.blockBytes)
            return
        }
        let iscale: Float = -128 / maxScale
        putF16(y, 208, 1 / iscale)
        var sc = [Int8](repeating: 0, count: 16)
        for ib in 0..<16 {
            sc[ib] = Int8(truncatingIfNeeded: Swift.min(127, nearestInt(iscale * scales[ib])))
            put8(y, 192 + ib, UInt8(bitPattern: sc[ib]))
        }
        let d0 = UnsafeRawPointer(y).f16(208)
        for j in 0..<16 {
            let d = d0 * Float(sc[j])
            if d == 0 { continue }
            for ii in 0..<16 {
                L[16 * j + ii] = Int8(Swift.max(-32, Swift.min(31, nearestInt(x[16 * j + ii] / d))) + 32)
            }
        }
        for (half, j) in stride(from: 0, to: 256, by: 128).enumerated() {
            for l in 0..<32 {
                let q1 = UInt8(L[j + l]) & 0xF, q2 = UInt8(L[j + l + 32]) & 0xF
                let q3 = UInt8(L[j + l + 64]) & 0xF, q4 = UInt8(L[j + l + 96]) & 0xF
                put8(y, 64 * half + l, q1 | (q3 << 4))
                put8(y, 64 * half + l + 32, q2 | (q4 << 4))
                let h = (UInt8(L[j + l]) >> 4) | ((UInt8(L[j + l + 32]) >> 4) << 2)
                    | ((UInt8(L[j + l + 64]) >> 4) << 4) | ((UInt8(L[j + l + 96]) >> 4) << 6)
                put8(y, 128 + 32 * half + l, h)
            }
        }
    }
}
