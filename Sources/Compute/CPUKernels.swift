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

    /// Softmax(q·K^T · scale) · V for one head over positions 0..<length of one sequence,
    /// walking the sequence's pages (K/V of page p start at p · pageSize · kvDim).
    static func attendHead(query: UnsafePointer<Float>, keys: UnsafePointer<UInt16>, values: UnsafePointer<UInt16>,
                           table: UnsafeBufferPointer<Int32>, pageSize: Int, kvDim: Int, length: Int, kvOffset: Int,
                           headDim: Int, scale: Float, scores: UnsafeMutablePointer<Float>, out: UnsafeMutablePointer<Float>) {
        var maxScore = -Float.infinity
        var pos = 0
        var page = 0
        while pos < length {
            let base = Int(table[page]) * pageSize * kvDim + kvOffset
            let n = min(pageSize, length - pos)
            for j in 0..<n {
                let s = HalfVector.dot(keys + base + j * kvDim, query, count: headDim) * scale
                scores[pos + j] = s
                maxScore = max(maxScore, s)
            }
            pos += n
            page += 1
        }
        var sum: Float = 0
        for i in 0..<length {
            let e = expf(scores[i] - maxScore)
            scores[i] = e
            sum += e
        }
        out.initialize(repeating: 0, count: headDim)
        let inv = 1 / sum
        pos = 0
        page = 0
        while pos < length {
            let base = Int(table[page]) * pageSize * kvDim + kvOffset
            let n = min(pageSize, length - pos)
            for j in 0..<n { HalfVector.axpy(scores[pos + j] * inv, values + base + j * kvDim, out, count: headDim) }
            pos += n
            page += 1
        }
    }
}
