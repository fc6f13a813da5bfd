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
        case .q8_0, .q8_1: return Act.a32Bytes(count)
        case .q8_K: return Act.akBytes(count)
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
        Kernels.run(type, Kernels.Geometry(weights: weights, rowBytes: rowBytes, rows: rows, act: activations,
                                           aStride: activationStride, columns: columns, count: count, out: output,
                                           oStride: outputStride))
    }
}
