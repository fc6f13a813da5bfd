#if canImport(Glibc)
import Glibc
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

    /// Softmax(q·K^T · scale) · V for one head over positions start..<length of one sequence,
    /// walking the sequence's pages (`table[pos / pageSize]`). Scores take `length - start` floats.
    static func attendHead(query: UnsafePointer<Float>, keys: UnsafeRawPointer, values: UnsafeRawPointer,
                           table: UnsafeBufferPointer<Int32>, layout: KVLayout, start: Int, length: Int, kvOffset: Int,
                           headDim: Int, scale: Float, scores: UnsafeMutablePointer<Float>, out: UnsafeMutablePointer<Float>) {
        let ps = layout.pageSize, rowBytes = layout.rowBytes
        // Byte offset of the head's values inside a row.
        let headByte = layout.type == .f16 ? 2 * kvOffset : kvOffset / 32 * 34
        var maxScore = -Float.infinity
        var pos = start
        while pos < length {
            let page = pos / ps, inPage = pos % ps
            let n = min(ps - inPage, length - pos)
            let base = (Int(table[page]) * ps + inPage) * rowBytes + headByte
            for j in 0..<n {
                let row = keys + base + j * rowBytes
                let dot: Float
                switch layout.type {
                case .f16: dot = HalfVector.dot(row.assumingMemoryBound(to: UInt16.self), query, count: headDim)
                case .q8_0: dot = q8Dot(row, query, count: headDim)
                }
                let s = dot * scale
                scores[pos - start + j] = s
                maxScore = max(maxScore, s)
            }
            pos += n
        }
        let count = length - start
        var sum: Float = 0
        for i in 0..<count {
            let e = expf(scores[i] - maxScore)
            scores[i] = e
            sum += e
        }
        out.initialize(repeating: 0, count: headDim)
        let inv = 1 / sum
        pos = start
        while pos < length {
            let page = pos / ps, inPage = pos % ps
            let n = min(ps - inPage, length - pos)
            let base = (Int(table[page]) * ps + inPage) * rowBytes + headByte
            for j in 0..<n {
                let row = values + base + j * rowBytes
                switch layout.type {
                case .f16: HalfVector.axpy(scores[pos - start + j] * inv, row.assumingMemoryBound(to: UInt16.self), out, count: headDim)
                case .q8_0: q8Axpy(scores[pos - start + j] * inv, row, out, count: headDim)
                }
            }
            pos += n
        }
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
