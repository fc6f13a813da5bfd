import Foundation
import GGUF
@testable import Quant

/// Deterministic xorshift generator with normal samples (Box–Muller), so tests are reproducible.
struct TestRNG {
    var state: UInt64
    init(_ seed: UInt64) { state = seed &* 0x9E37_79B9_7F4A_7C15 | 1 }
    mutating func next() -> UInt64 {
        state ^= state << 13; state ^= state >> 7; state ^= state << 17
        return state
    }
    mutating func uniform() -> Float { Float(next() >> 40) / Float(1 << 24) }
    mutating func normal() -> Float {
        let u1 = max(uniform(), 1e-7), u2 = uniform()
        return (-2 * log(u1)).squareRoot() * cos(2 * Float.pi * u2)
    }
    /// Normal values with a per-32-group magnitude, like real weight rows.
    mutating func weights(_ n: Int) -> [Float] {
        var out = [Float](repeating: 0, count: n)
        var scale: Float = 1
        for i in 0..<n {
            if i % 32 == 0 { scale = 0.05 + 1.5 * uniform() }
            out[i] = normal() * scale
        }
        return out
    }
}

struct Golden {
    let count: Int
    let quantized: Bool
    let src: [Float]
    let data: [UInt8]
    let deq: [Float]

    init(_ name: String) throws {
        let dir = Bundle.module.url(forResource: "Golden", withExtension: nil)!
        let bytes = [UInt8](try Data(contentsOf: dir.appendingPathComponent(name + ".bin")))
        func u32(_ o: Int) -> Int { Int(bytes[o]) | Int(bytes[o + 1]) << 8 | Int(bytes[o + 2]) << 16 | Int(bytes[o + 3]) << 24 }
        func floats(_ o: Int, _ n: Int) -> [Float] {
            (0..<n).map { Float(bitPattern: UInt32(truncatingIfNeeded: u32(o + 4 * $0))) }
        }
        count = u32(0)
        let nbytes = u32(4)
        quantized = u32(8) == 1
        src = floats(12, count)
        data = Array(bytes[(12 + 4 * count)..<(12 + 4 * count + nbytes)])
        deq = floats(12 + 4 * count + nbytes, count)
    }
}

func fileName(_ t: GGMLType) -> String {
    switch t {
    case .q2_K, .q3_K, .q4_K, .q5_K, .q6_K, .q8_K: return t.description.lowercased().replacingOccurrences(of: "_k", with: "_K")
    default: return t.description.lowercased()
    }
}

func quantize(_ t: GGMLType, _ x: [Float]) -> [UInt8] {
    var out = [UInt8](repeating: 0, count: t.rowBytes(x.count)!)
    x.withUnsafeBufferPointer { xb in
        out.withUnsafeMutableBytes { Quantize.row(t, xb.baseAddress!, $0.baseAddress!, count: x.count) }
    }
    return out
}

func dequantize(_ t: GGMLType, _ q: [UInt8], count: Int) -> [Float] {
    var out = [Float](repeating: 0, count: count)
    q.withUnsafeBytes { qb in
        out.withUnsafeMutableBufferPointer { Dequant.row(t, qb.baseAddress!, $0.baseAddress!, count: count) }
    }
    return out
}
