import Foundation
import GGUF
import Testing
@testable import Quant

let goldenTypes: [GGMLType] = [.f32, .f16, .bf16, .q4_0, .q4_1, .q5_0, .q5_1, .q8_0, .q8_1, .q2_K, .q3_K, .q4_K, .q5_K, .q6_K, .q8_K]

@Test(arguments: goldenTypes)
func dequantMatchesGolden(_ t: GGMLType) throws {
    let g = try Golden(fileName(t))
    #expect(g.data.count == t.rowBytes(g.count))
    let y = dequantize(t, g.data, count: g.count)
    var mismatches = 0
    for i in 0..<g.count where y[i].bitPattern != g.deq[i].bitPattern { mismatches += 1 }
    #expect(mismatches == 0, "\(t): \(mismatches) of \(g.count) values differ from gguf")
    #expect(g.deq.contains { $0 != 0 })
}

@Test(arguments: goldenTypes)
func quantizeMatchesGolden(_ t: GGMLType) throws {
    let g = try Golden(fileName(t))
    guard g.quantized else { return } // gguf-py has no quantizer for this type
    let q = quantize(t, g.src)
    var firstDiff = -1
    for i in 0..<q.count where q[i] != g.data[i] { firstDiff = i; break }
    #expect(firstDiff == -1, "\(t): bytes differ from gguf's quantizer from offset \(firstDiff)")
}

@Test func halfConversions() {
    for bits in stride(from: 0, through: 0xffff, by: 1) {
        let h = UInt16(bits)
        let f = Half.toFloat(h)
        let ref = Float(Float16(bitPattern: h))
        if ref.isNaN { #expect(f.isNaN); continue }
        #expect(f.bitPattern == ref.bitPattern)
        #expect(Half.fromFloat(f) == h)
    }
    #expect(Half.fromFloat(1.0) == 0x3c00)
    #expect(BFloat16.toFloat(0x3f80) == 1)
    #expect(BFloat16.fromFloat(1.00390625) == 0x3f80) // tie rounds to even
    #expect(BFloat16.fromFloat(1.01171875) == 0x3f82) // tie rounds to even (up)
    #expect(BFloat16.toFloat(BFloat16.fromFloat(.nan)).isNaN)
}

/// dequant(quant(x)) ≈ x, with the relative RMS error each format should reach on Gaussian data.
@Test(arguments: [
    (GGMLType.f16, 3e-4), (.bf16, 2.5e-3), (.q4_0, 0.11), (.q4_1, 0.10), (.q5_0, 0.055), (.q5_1, 0.05),
    (.q8_0, 0.007), (.q8_1, 0.007), (.q8_K, 0.012), (.q2_K, 0.35), (.q3_K, 0.19), (.q4_K, 0.095), (.q5_K, 0.047), (.q6_K, 0.022),
] as [(GGMLType, Double)])
func roundTrip(_ t: GGMLType, _ bound: Double) {
    var rng = TestRNG(UInt64(t.rawValue) + 7)
    let n = 1024
    let x = rng.weights(n)
    let y = dequantize(t, quantize(t, x), count: n)
    var err = 0.0, norm = 0.0
    for i in 0..<n {
        err += Double(y[i] - x[i]) * Double(y[i] - x[i])
        norm += Double(x[i]) * Double(x[i])
    }
    let rel = (err / norm).squareRoot()
    if ProcessInfo.processInfo.environment["SHARD_PRINT"] != nil { print("RT \(t) \(rel)") }
    #expect(rel < bound, "\(t): relative RMS error \(rel)")
    #expect(rel > 0 || t == .f32)
}

@Test func zeroBlocksQuantizeToZero() {
    for t in [GGMLType.q4_0, .q4_1, .q5_0, .q5_1, .q8_0, .q8_1, .q8_K, .q2_K, .q3_K, .q4_K, .q5_K, .q6_K] {
        let y = dequantize(t, quantize(t, [Float](repeating: 0, count: 256)), count: 256)
        #expect(y.allSatisfy { $0 == 0 }, "\(t)")
    }
}
