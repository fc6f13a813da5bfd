import Foundation
import GGUF
import Testing
@testable import Quant

let weightTypes: [GGMLType] = [.f32, .f16, .bf16, .q4_0, .q4_1, .q5_0, .q5_1, .q8_0, .q2_K, .q3_K, .q4_K, .q5_K, .q6_K]

/// Rows of quantized weights, their dequantized values, and quantized activation columns.
struct DotCase {
    let type: GGMLType
    let rows: Int, count: Int, columns: Int
    let weights: [UInt8], rowBytes: Int
    let deq: [Float]          // rows × count
    let x: [Float]            // columns × count
    let act: [UInt8], actStride: Int

    init(_ t: GGMLType, rows: Int, blocks: Int, columns: Int, seed: UInt64) {
        var rng = TestRNG(seed)
        type = t; self.rows = rows; self.columns = columns
        count = blocks * (t.blockSize == 1 ? 32 : t.blockSize)
        rowBytes = t.rowBytes(count)!
        var w = [UInt8](), d = [Float]()
        for _ in 0..<rows {
            let row = rng.weights(count)
            let q = quantize(t, row)
            w += q
            d += dequantize(t, q, count: count)
        }
        weights = w; deq = d
        var xs = [Float]()
        for _ in 0..<columns { xs += rng.weights(count) }
        x = xs
        actStride = QuantDot.activationBytes(for: t, count: count)
        var a = [UInt8](repeating: 0xAA, count: actStride * columns)
        let cnt = count, stride = actStride
        xs.withUnsafeBufferPointer { xb in
            a.withUnsafeMutableBytes { ab in
                for c in 0..<columns {
                    QuantDot.quantizeActivation(for: t, xb.baseAddress! + c * cnt, count: cnt, into: ab.baseAddress! + c * stride)
                }
            }
        }
        act = a
    }

    /// Exact dot of dequantized row r with float column c, and the scale ‖w_r‖‖x_c‖ for the tolerance.
    func reference(_ r: Int, _ c: Int) -> (dot: Double, scale: Double) {
        var s = 0.0, nw = 0.0, nx = 0.0
        for i in 0..<count {
            let w = Double(deq[r * count + i]), v = Double(x[c * count + i])
            s += w * v; nw += w * w; nx += v * v
        }
        return (s, (nw * nx).squareRoot())
    }
}

func tolerance(_ t: GGMLType) -> Double {
    switch t {
    case .f32, .f16, .bf16: return 1e-5
    default: return 5e-3
    }
}

@Test(arguments: weightTypes)
func matVecMatchesReference(_ t: GGMLType) {
    for blocks in [1, 2, 3, 4, 11] {
        let k = DotCase(t, rows: 7, blocks: blocks, columns: 1, seed: UInt64(blocks) * 31 + UInt64(t.rawValue))
        let lo = 2 // also exercise a row range that does not start at 0
        var y = [Float](repeating: .nan, count: k.rows - lo)
        k.weights.withUnsafeBytes { wb in
            k.act.withUnsafeBytes { ab in
                y.withUnsafeMutableBufferPointer { yb in
                    QuantDot.matVec(t, weights: wb.baseAddress!, rowBytes: k.rowBytes, rows: lo..<k.rows,
                                    activation: ab.baseAddress!, count: k.count, output: yb.baseAddress!)
                }
            }
        }
        for r in lo..<k.rows {
            let (ref, scale) = k.reference(r, 0)
            #expect(scale > 0)
            let err = abs(Double(y[r - lo]) - ref) / scale
            if ProcessInfo.processInfo.environment["SHARD_PRINT"] != nil { print("ERR \(t) \(blocks) \(err) \(abs(ref)/scale)") }
            #expect(err < tolerance(t), "\(t) blocks=\(blocks) row=\(r): got \(y[r - lo]) want \(ref) (rel \(err))")
        }
    }
}

@Test(arguments: weightTypes)
func matMatMatchesReference(_ t: GGMLType) {
    for (blocks, columns) in [(1, 2), (2, 4), (3, 5), (4, 7), (11, 9)] {
        let k = DotCase(t, rows: 5 + blocks % 3 * 2 + (t.blockSize == 256 ? 0 : 14), blocks: blocks, columns: columns,
                        seed: UInt64(blocks * 1000 + columns) + UInt64(t.rawValue))
        let outStride = k.rows + 3
        var y = [Float](repeating: .nan, count: outStride * columns)
        k.weights.withUnsafeBytes { wb in
            k.act.withUnsafeBytes { ab in
                y.withUnsafeMutableBufferPointer { yb in
                    QuantDot.matMat(t, weights: wb.baseAddress!, rowBytes: k.rowBytes, rows: 0..<k.rows,
                                    activations: ab.baseAddress!, activationStride: k.actStride, columns: columns,
                                    count: k.count, output: yb.baseAddress!, outputStride: outStride)
                }
            }
        }
        for c in 0..<columns {
            for r in 0..<k.rows {
                let (ref, scale) = k.reference(r, c)
                let got = Double(y[c * outStride + r])
                let err = abs(got - ref) / scale
                #expect(err < tolerance(t), "\(t) blocks=\(blocks) col=\(c) row=\(r): got \(got) want \(ref) (rel \(err))")
            }
            #expect(y[c * outStride + k.rows].isNaN, "wrote past the row range")
        }
    }
}

@Test func activationTypes() {
    #expect(QuantDot.activationType(for: .q4_1) == .q8_1)
    #expect(QuantDot.activationType(for: .q8_0) == .q8_0)
    #expect(QuantDot.activationType(for: .q6_K) == .q8_K)
    #expect(QuantDot.activationType(for: .f16) == .f32)
    #expect(QuantDot.activationBytes(for: .f32, count: 64) == 256)
}

/// The activation values the kernels actually see: int8 quants times their block scale.
func dequantizedActivation(_ t: GGMLType, _ act: UnsafeRawPointer, count: Int) -> [Double] {
    let isK = QuantDot.activationType(for: t) == .q8_K
    let block = isK ? 256 : 32
    return (0..<count).map { i in
        let b = i / block
        let d = act.loadUnaligned(fromByteOffset: count + (isK ? 4 * b : 8 * b), as: Float.self)
        return Double(d) * Double(act.load(fromByteOffset: i, as: Int8.self))
    }
}

/// The integer kernels must be exact up to float summation: against the dot of the dequantized weights
/// with the *quantized* activation, the error is rounding-level, far below the 8-bit quantization noise
/// the looser test above allows. A systematic slip (a wrong scale, a dropped min term) fails here.
@Test(arguments: weightTypes.filter { QuantDot.activationType(for: $0) != .f32 })
func matVecIsExactForQuantizedActivation(_ t: GGMLType) {
    let c = DotCase(t, rows: 7, blocks: 3, columns: 1, seed: 99)
    var out = [Float](repeating: 0, count: c.rows)
    c.weights.withUnsafeBytes { w in
        c.act.withUnsafeBytes { a in
            QuantDot.matVec(t, weights: w.baseAddress!, rowBytes: c.rowBytes, rows: 0..<c.rows,
                            activation: a.baseAddress!, count: c.count, output: &out)
        }
    }
    let xq = c.act.withUnsafeBytes { dequantizedActivation(t, $0.baseAddress!, count: c.count) }
    for r in 0..<c.rows {
        var exact = 0.0, scale = 0.0
        for i in 0..<c.count {
            exact += Double(c.deq[r * c.count + i]) * xq[i]
            scale += abs(Double(c.deq[r * c.count + i]) * xq[i])
        }
        #expect(abs(Double(out[r]) - exact) <= 1e-5 * scale, "\(t) row \(r): \(out[r]) vs exact \(exact)")
    }
}
