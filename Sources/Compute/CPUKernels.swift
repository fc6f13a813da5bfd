#if canImport(Glibc)
import Glibc
#endif
#if arch(x86_64)
import _Builtin_intrinsics.intel
#endif
import Quant

/// Scalar/SIMD float kernels of the CPU backend (everything but the quantized matmuls).
enum CPUKernels {
    static func rmsNorm(_ x: UnsafePointer<Float>, _ w: UnsafePointer<Float>, _ out: UnsafeMutablePointer<Float>, _ n: Int, _ eps: Float) {
        var sum: Double = 0
        for i in 0..<n { sum += Double(x[i]) * Double(x[i]) }
        let scale = 1 / sqrtf(Float(sum / Double(n)) + eps)
        for i in 0..<n { out[i] = x[i] * scale * w[i] }
    }

    static func add(_ x: UnsafeMutablePointer<Float>, _ y: UnsafePointer<Float>, _ n: Int) {
        for i in 0..<n { x[i] += y[i] }
    }

    static func swiglu(_ g: UnsafePointer<Float>, _ u: UnsafePointer<Float>, _ out: UnsafeMutablePointer<Float>, _ n: Int) {
        for i in 0..<n {
            let x = g[i]
            out[i] = x / (1 + expf(-x)) * u[i]
        }
    }

    /// Rotates every head of one row by `position`, computing angles the way ggml does
    /// (theta = pos · base^(-2i/dims), accumulated in f32).
    static func rope(_ x: UnsafeMutablePointer<Float>, heads: Int, headDim: Int, position: Int, params: RopeParams) {
        let half = params.dims / 2
        let thetaScale = powf(params.base, -2 / Float(params.dims))
        withUnsafeTemporaryAllocation(of: Float.self, capacity: 2 * half) { table in
            let cosines = table.baseAddress!, sines = table.baseAddress! + half
            var theta = Float(position)
            for i in 0..<half {
                cosines[i] = cosf(theta)
                sines[i] = sinf(theta)
                theta *= thetaScale
            }
            for h in 0..<heads {
                let v = x + h * headDim
                for i in 0..<half {
                    let (a, b) = params.neox ? (i, i + half) : (2 * i, 2 * i + 1)
                    let x0 = v[a], x1 = v[b]
                    v[a] = x0 * cosines[i] - x1 * sines[i]
                    v[b] = x0 * sines[i] + x1 * cosines[i]
                }
            }
        }
    }

    /// Where K/V rows live: page p holds rows p·pageSize ..< (p+1)·pageSize, `rowBytes` apart.
    struct KVLayout {
        var type: KVElementType
        var pageSize: Int
        var rowBytes: Int
    }

    /// One query vector of an attention tile: it attends positions start..<length, writes `out`.
    struct TileQuery {
        var query: UnsafePointer<Float>
        var out: UnsafeMutablePointer<Float>
        var start: Int
        var length: Int
    }

    /// Softmax(q·K^T · scale) · V over positions start..<length of one sequence, for several queries that
    /// read the same K/V head (the query heads of one KV head, for consecutive rows of the sequence),
    /// walking the sequence's pages (`table[pos / pageSize]`): each K and V row is read (and widened from
    /// f16) once for all of them. Each query's arithmetic is the same whatever else is in its tile (the
    /// dot products and V accumulations of `HalfVector.dot`/`axpy`, positions in order), so a row's
    /// result does not depend on the batch. Query i's scores live at `scores + i · span`.
    static func attendTile(_ queries: [TileQuery], keys: UnsafeRawPointer, values: UnsafeRawPointer,
                           table: UnsafeBufferPointer<Int32>, layout: KVLayout, kvOffset: Int, headDim: Int,
                           scale: Float, scores: UnsafeMutablePointer<Float>, span: Int) {
        guard let first = queries.first else { return }
        if queries.count == 1 {
            attendOne(first, keys: keys, values: values, table: table, layout: layout, kvOffset: kvOffset, headDim: headDim,
                      scale: scale, scores: scores)
            return
        }
        withUnsafeTemporaryAllocation(of: Float.self, capacity: headDim) { wide in
            attendTile(queries, keys: keys, values: values, table: table, layout: layout, kvOffset: kvOffset,
                       headDim: headDim, scale: scale, scores: scores, span: span, wide: wide.baseAddress!)
        }
    }

    /// A tile of one query (decode, one head per task): the same arithmetic as the general tile, in a
    /// tight loop over the f16 (or q8_0) rows in place.
    private static func attendOne(_ qd: TileQuery, keys: UnsafeRawPointer, values: UnsafeRawPointer,
                                  table: UnsafeBufferPointer<Int32>, layout: KVLayout, kvOffset: Int, headDim: Int,
                                  scale: Float, scores: UnsafeMutablePointer<Float>) {
        let ps = layout.pageSize, rowBytes = layout.rowBytes
        let headByte = layout.type == .f16 ? 2 * kvOffset : kvOffset / 32 * 34
        let half = layout.type == .f16
        var maxScore = -Float.infinity
        var pos = qd.start
        while pos < qd.length {
            let page = pos / ps, inPage = pos % ps
            let n = min(ps - inPage, qd.length - pos)
            let base = (Int(table[page]) * ps + inPage) * rowBytes + headByte
            for j in 0..<n {
                let row = keys + base + j * rowBytes
                let dot = half ? dotHalf(row.assumingMemoryBound(to: UInt16.self), qd.query, headDim) : q8Dot(row, qd.query, count: headDim)
                let s = dot * scale
                scores[pos - qd.start + j] = s
                maxScore = max(maxScore, s)
            }
            pos += n
        }
        var sum: Float = 0
        for i in 0..<(qd.length - qd.start) {
            let e = expf(scores[i] - maxScore)
            scores[i] = e
            sum += e
        }
        qd.out.initialize(repeating: 0, count: headDim)
        let inv = 1 / sum
        pos = qd.start
        while pos < qd.length {
            let page = pos / ps, inPage = pos % ps
            let n = min(ps - inPage, qd.length - pos)
            let base = (Int(table[page]) * ps + inPage) * rowBytes + headByte
            for j in 0..<n {
                let row = values + base + j * rowBytes
                let a = scores[pos - qd.start + j] * inv
                if half { axpyHalf(a, row.assumingMemoryBound(to: UInt16.self), qd.out, headDim) } else { q8Axpy(a, row, qd.out, count: headDim) }
            }
            pos += n
        }
    }

    private static func attendTile(_ queries: [TileQuery], keys: UnsafeRawPointer, values: UnsafeRawPointer,
                                   table: UnsafeBufferPointer<Int32>, layout: KVLayout, kvOffset: Int, headDim: Int,
                                   scale: Float, scores: UnsafeMutablePointer<Float>, span: Int, wide: UnsafeMutablePointer<Float>) {
        let ps = layout.pageSize, rowBytes = layout.rowBytes
        let headByte = layout.type == .f16 ? 2 * kvOffset : kvOffset / 32 * 34
        let count = queries.count
        // q8_0 rows are read in place (`direct`); f16 rows are widened once for all the queries.
        let direct = layout.type == .q8_0
        queries.withUnsafeBufferPointer { qs in
            withUnsafeTemporaryAllocation(of: Float.self, capacity: 2 * count) { stats in
                let maxScores = stats.baseAddress!, inverses = stats.baseAddress! + count
                maxScores.initialize(repeating: -.infinity, count: count)
                var lo = Int.max, hi = 0
                for q in qs { lo = min(lo, q.start); hi = max(hi, q.length) }
                var pos = lo
                while pos < hi {
                    let page = pos / ps, inPage = pos % ps
                    let n = min(ps - inPage, hi - pos)
                    let base = (Int(table[page]) * ps + inPage) * rowBytes + headByte
                    for j in 0..<n {
                        let p = pos + j
                        let row = keys + base + j * rowBytes
                        if !direct { widen(row.assumingMemoryBound(to: UInt16.self), wide, headDim) }
                        for i in 0..<count {
                            let qd = qs[i]
                            if p < qd.start || p >= qd.length { continue }
                            let dot: Float
                            if direct {
                                dot = q8Dot(row, qd.query, count: headDim)
                            } else {
                                dot = dotWide(wide, qd.query, headDim)
                            }
                            let s = dot * scale
                            scores[i * span + p - qd.start] = s
                            maxScores[i] = max(maxScores[i], s)
                        }
                    }
                    pos += n
                }
                for i in 0..<count {
                    let qd = qs[i], sc = scores + i * span, m = maxScores[i]
                    var sum: Float = 0
                    for k in 0..<(qd.length - qd.start) {
                        let e = expf(sc[k] - m)
                        sc[k] = e
                        sum += e
                    }
                    inverses[i] = 1 / sum
                    qd.out.initialize(repeating: 0, count: headDim)
                }
                pos = lo
                while pos < hi {
                    let page = pos / ps, inPage = pos % ps
                    let n = min(ps - inPage, hi - pos)
                    let base = (Int(table[page]) * ps + inPage) * rowBytes + headByte
                    for j in 0..<n {
                        let p = pos + j
                        let row = values + base + j * rowBytes
                        if !direct { widen(row.assumingMemoryBound(to: UInt16.self), wide, headDim) }
                        for i in 0..<count {
                            let qd = qs[i]
                            if p < qd.start || p >= qd.length { continue }
                            let a = scores[i * span + p - qd.start] * inverses[i]
                            if direct {
                                q8Axpy(a, row, qd.out, count: headDim)
                            } else {
                                axpyWide(a, wide, qd.out, headDim)
                            }
                        }
                    }
                    pos += n
                }
            }
        }
    }

    /// `HalfVector.dot` (same arithmetic), inlined here: Σ f16 k[i] · x[i].
    @inline(__always)
    static func dotHalf(_ k: UnsafePointer<UInt16>, _ x: UnsafePointer<Float>, _ count: Int) -> Float {
        var i = 0
        var s: Float = 0
        #if arch(x86_64)
        var a0 = SIMD8<Float>(), a1 = SIMD8<Float>()
        while i + 16 <= count {
            a0 = _mm256_fmadd_ps(_mm256_cvtph_ps(UnsafeRawPointer(k + i).loadUnaligned(as: SIMD2<Int64>.self)),
                                 UnsafeRawPointer(x + i).loadUnaligned(as: SIMD8<Float>.self), a0)
            a1 = _mm256_fmadd_ps(_mm256_cvtph_ps(UnsafeRawPointer(k + i + 8).loadUnaligned(as: SIMD2<Int64>.self)),
                                 UnsafeRawPointer(x + i + 8).loadUnaligned(as: SIMD8<Float>.self), a1)
            i += 16
        }
        s = (a0 + a1).sum()
        #endif
        while i < count { s += Half.toFloat(k[i]) * x[i]; i += 1 }
        return s
    }

    /// `HalfVector.axpy` (same arithmetic), inlined here: y[i] += a · f16 v[i].
    @inline(__always)
    static func axpyHalf(_ a: Float, _ v: UnsafePointer<UInt16>, _ y: UnsafeMutablePointer<Float>, _ count: Int) {
        var i = 0
        #if arch(x86_64)
        let av = SIMD8<Float>(repeating: a)
        while i + 8 <= count {
            let yv = UnsafeRawPointer(y + i).loadUnaligned(as: SIMD8<Float>.self)
            UnsafeMutableRawPointer(y + i).storeBytes(
                of: _mm256_fmadd_ps(av, _mm256_cvtph_ps(UnsafeRawPointer(v + i).loadUnaligned(as: SIMD2<Int64>.self)), yv),
                as: SIMD8<Float>.self)
            i += 8
        }
        #endif
        while i < count { y[i] += a * Half.toFloat(v[i]); i += 1 }
    }

    /// f32 copies of `count` f16 values (exact).
    @inline(__always)
    static func widen(_ src: UnsafePointer<UInt16>, _ dst: UnsafeMutablePointer<Float>, _ count: Int) {
        var i = 0
        #if arch(x86_64)
        while i + 8 <= count {
            UnsafeMutableRawPointer(dst + i).storeBytes(of: _mm256_cvtph_ps(UnsafeRawPointer(src + i).loadUnaligned(as: SIMD2<Int64>.self)),
                                                        as: SIMD8<Float>.self)
            i += 8
        }
        #endif
        while i < count { dst[i] = Half.toFloat(src[i]); i += 1 }
    }

    /// Σ k[i] · x[i] with `HalfVector.dot`'s arithmetic (two 8-lane FMA accumulators over 16 values at a
    /// time, then the scalar tail), on a K row already widened to f32.
    @inline(__always)
    static func dotWide(_ k: UnsafePointer<Float>, _ x: UnsafePointer<Float>, _ count: Int) -> Float {
        var i = 0
        var s: Float = 0
        #if arch(x86_64)
        var a0 = SIMD8<Float>(), a1 = SIMD8<Float>()
        while i + 16 <= count {
            a0 = _mm256_fmadd_ps(UnsafeRawPointer(k + i).loadUnaligned(as: SIMD8<Float>.self),
                                 UnsafeRawPointer(x + i).loadUnaligned(as: SIMD8<Float>.self), a0)
            a1 = _mm256_fmadd_ps(UnsafeRawPointer(k + i + 8).loadUnaligned(as: SIMD8<Float>.self),
                                 UnsafeRawPointer(x + i + 8).loadUnaligned(as: SIMD8<Float>.self), a1)
            i += 16
        }
        s = (a0 + a1).sum()
        #endif
        while i < count { s += k[i] * x[i]; i += 1 }
        return s
    }

    /// y[i] += a · v[i] with `HalfVector.axpy`'s arithmetic, on a V row already widened to f32.
    @inline(__always)
    static func axpyWide(_ a: Float, _ v: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ count: Int) {
        var i = 0
        #if arch(x86_64)
        let av = SIMD8<Float>(repeating: a)
        while i + 8 <= count {
            let yv = UnsafeRawPointer(y + i).loadUnaligned(as: SIMD8<Float>.self)
            UnsafeMutableRawPointer(y + i).storeBytes(of: _mm256_fmadd_ps(av, UnsafeRawPointer(v + i).loadUnaligned(as: SIMD8<Float>.self), yv),
                                                      as: SIMD8<Float>.self)
            i += 8
        }
        #endif
        while i < count { y[i] += a * v[i]; i += 1 }
    }

    /// Σ x[i] · q8_0 value i, over `count` values (a multiple of 32) of consecutive Q8_0 blocks.
    @inline(__always)
    static func q8Dot(_ blocks: UnsafeRawPointer, _ x: UnsafePointer<Float>, count: Int) -> Float {
        var total: Float = 0
        for b in 0..<count / 32 {
            let block = blocks + b * 34
            let d = Half.toFloat(block.loadUnaligned(as: UInt16.self))
            let qs = (block + 2).assumingMemoryBound(to: Int8.self)
            var acc = SIMD8<Float>()
            for g in 0..<4 {
                var qv = SIMD8<Float>()
                for i in 0..<8 { qv[i] = Float(qs[g * 8 + i]) }
                acc = acc + qv * UnsafeRawPointer(x + b * 32 + g * 8).loadUnaligned(as: SIMD8<Float>.self)
            }
            total += d * acc.sum()
        }
        return total
    }

    /// y[i] += a · q8_0 value i.
    @inline(__always)
    static func q8Axpy(_ a: Float, _ blocks: UnsafeRawPointer, _ y: UnsafeMutablePointer<Float>, count: Int) {
        for b in 0..<count / 32 {
            let block = blocks + b * 34
            let d = a * Half.toFloat(block.loadUnaligned(as: UInt16.self))
            let qs = (block + 2).assumingMemoryBound(to: Int8.self)
            for i in 0..<32 { y[b * 32 + i] += d * Float(qs[i]) }
        }
    }
}
