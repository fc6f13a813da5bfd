import GGUF
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

extension QuantDot {
    public struct BenchmarkResult: Sendable, CustomStringConvertible {
        public let type: GGMLType
        public let rows: Int, count: Int, columns: Int
        /// Seconds per call of `matMat` (or `matVec` for one column) over all rows.
        public let seconds: Double
        /// Weight bytes streamed per second (one pass over the weights per call).
        public var weightGBps: Double { Double(rows * type.rowBytes(count)!) / seconds / 1e9 }
        public var description: String {
            "\(type) \(rows)x\(count) cols=\(columns): \(Double(Int(weightGBps * 100)) / 100) GB/s of weights, \(Double(Int(seconds * 1e7)) / 10) µs/call"
        }
    }

    /// Single-threaded throughput of `matVec` (columns == 1) or `matMat` on a rows × count weight matrix of `type`
    /// (realistic blocks: a few quantized random rows repeated). Runs for about `minSeconds`.
    public static func benchmark(_ type: GGMLType, rows: Int, count: Int, columns: Int = 1, minSeconds: Double = 0.3) -> BenchmarkResult {
        let rb = type.rowBytes(count)!
        let w = UnsafeMutableRawPointer.allocate(byteCount: rows * rb, alignment: 64)
        defer { w.deallocate() }
        var seed: UInt64 = 0x1234_5678
        func rnd() -> Float {
            seed = seed &* 6364136223846793005 &+ 1442695040888963407
            return Float(Int64(bitPattern: seed) >> 40) / Float(1 << 23)
        }
        let x = UnsafeMutablePointer<Float>.allocate(capacity: count * columns)
        defer { x.deallocate() }
        let distinct = Swift.min(rows, 16)
        for r in 0..<distinct {
            for i in 0..<count { x[i] = rnd() }
            Quantize.row(type, x, w + r * rb, count: count)
        }
        for r in distinct..<rows { (w + r * rb).copyMemory(from: w + (r % distinct) * rb, byteCount: rb) }
        for i in 0..<(count * columns) { x[i] = rnd() }
        let ab = activationBytes(for: type, count: count)
        let a = UnsafeMutableRawPointer.allocate(byteCount: ab * columns, alignment: 64)
        defer { a.deallocate() }
        for c in 0..<columns { quantizeActivation(for: type, x + c * count, count: count, into: a + c * ab) }
        let out = UnsafeMutablePointer<Float>.allocate(capacity: rows * columns)
        defer { out.deallocate() }

        func now() -> Double {
            var ts = timespec()
            clock_gettime(CLOCK_MONOTONIC, &ts)
            return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
        }
        func call() {
            if columns == 1 {
                matVec(type, weights: w, rowBytes: rb, rows: 0..<rows, activation: a, count: count, output: out)
            } else {
                matMat(type, weights: w, rowBytes: rb, rows: 0..<rows, activations: a, activationStride: ab,
                       columns: columns, count: count, output: out, outputStride: rows)
            }
        }
        call() // warm up
        var iters = 0
        let t0 = now()
        var t1 = t0
        repeat {
            call()
            iters += 1
            t1 = now()
        } while t1 - t0 < minSeconds
        return BenchmarkResult(type: type, rows: rows, count: count, columns: columns, seconds: (t1 - t0) / Double(iters))
    }
}
