import GGUF

/// Quantized mat-vec / mat-mat products for the CPU hot path, llama.cpp style: the activation vector is
/// quantized once (to Q8_0 / Q8_1 / Q8_K semantics, see `Act` for the in-memory layout) and every weight block
/// is multiplied in the integer domain, scales applied once per block. Single-threaded; callers split rows.
public enum QuantDot {
    /// The "vec dot type" the activations are quantized to for `weight` (F32 for float weights).
    public static func activationType(for weight: GGMLType) -> GGMLType {
        switch weight {
        case .f32, .f16, .bf16: return .f32
        case .q4_0, .q5_0, .q8_0: return .q8_0
        case .q4_1, .q5_1, .q8_1: return .q8_1
        case .q2_K, .q3_K, .q4_K, .q5_K, .q6_K, .q8_K: return .q8_K
        }
    }

    /// Bytes needed to hold `count` activations quantized for `weight` (Shard's layout, see `Act`).
    public static func activationBytes(for weight: GGMLType, count: Int) -> Int {
        switch activationType(for: weight) {
        case .q8_0, .q8_1: return count / 32 * Act.a32Bytes
        case .q8_K: return count / 256 * Act.akBytes
        default: return count * 4
        }
    }

    /// Quantizes `count` activations (a multiple of the weight block size) for use with `weight` rows.
    public static func quantizeActivation(for weight: GGMLType, _ x: UnsafePointer<Float>, count: Int, into: UnsafeMutableRawPointer) {
        precondition(count % weight.blockSize == 0, "count \(count) is not a multiple of the \(weight) block size")
        switch activationType(for: weight) {
        case .q8_0, .q8_1: Act.quantizeA32(x, count: count, into: into)
        case .q8_K: Act.quantizeAK(x, count: count, into: into)
        default: into.copyMemory(from: x, byteCount: 4 * count)
        }
    }

    /// `output[r - rows.lowerBound] = dot(weight row r, activation)` for r in `rows`; row r starts at
    /// `weights + r * rowBytes`; `activation` comes from `quantizeActivation(for: type, …)` of `count` values.
    public static func matVec(_ type: GGMLType, weights: UnsafeRawPointer, rowBytes: Int, rows: Range<Int>,
                              activation: UnsafeRawPointer, count: Int, output: UnsafeMutablePointer<Float>) {
        matMat(type, weights: weights, rowBytes: rowBytes, rows: rows, activations: activation,
               activationStride: 0, columns: 1, count: count, output: output, outputStride: 0)
    }

    /// Several activation columns at once: `output[t * outputStride + (r - rows.lowerBound)] = dot(row r, activation t)`,
    /// activation t at `activations + t * activationStride` (bytes).
    public static func matMat(_ type: GGMLType, weights: UnsafeRawPointer, rowBytes: Int, rows: Range<Int>,
                              activations: UnsafeRawPointer, activationStride: Int, columns: Int, count: Int,
                              output: UnsafeMutablePointer<Float>, outputStride: Int) {
        precondition(count % type.blockSize == 0, "count \(count) is not a multiple of the \(type) block size")
        let g = Geometry(weights: weights, rowBytes: rowBytes, rows: rows, act: activations, aStride: activationStride,
                         columns: columns, count: count, out: output, oStride: outputStride)
        switch type {
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
        case .q8_1, .q8_K: preconditionFailure("\(type) is an activation format, not a weight format")
        }
    }

    struct Geometry {
        let weights: UnsafeRawPointer, rowBytes: Int, rows: Range<Int>
        let act: UnsafeRawPointer, aStride: Int, columns: Int, count: Int
        let out: UnsafeMutablePointer<Float>, oStride: Int
    }

    /// Rows are processed in tiles so that a tile's weights stay in L1/L2 while every column passes over them.
    static let rowTile = 16

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
                    for i in 0..<nb { s += block(w + i * bb, a + i * Act.akBytes) }
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
