// TEMPORARY: naive stand-in for the Quant module's API until the real one is merged.
import GGUF

public enum Dequant {
    public static func row(_ type: GGMLType, _ src: UnsafeRawPointer, _ dst: UnsafeMutablePointer<Float>, count: Int) {
        switch type {
        case .f32: dst.update(from: src.assumingMemoryBound(to: Float.self), count: count)
        case .q8_0:
            for b in 0..<count / 32 {
                let p = src + b * 34
                let d = Float(Float16(bitPattern: p.loadUnaligned(as: UInt16.self)))
                for i in 0..<32 { dst[b * 32 + i] = d * Float(p.load(fromByteOffset: 2 + i, as: Int8.self)) }
            }
        case .q4_1:
            for b in 0..<count / 32 {
                let p = src + b * 20
                let d = Float(Float16(bitPattern: p.loadUnaligned(as: UInt16.self)))
                let m = Float(Float16(bitPattern: p.loadUnaligned(fromByteOffset: 2, as: UInt16.self)))
                for i in 0..<16 {
                    let q = p.load(fromByteOffset: 4 + i, as: UInt8.self)
                    dst[b * 32 + i] = d * Float(q & 15) + m
                    dst[b * 32 + i + 16] = d * Float(q >> 4) + m
                }
            }
        default: fatalError("temporary quant: \(type)")
        }
    }
}

public enum QuantDot {
    public static func activationType(for weight: GGMLType) -> GGMLType { .f32 }
    public static func activationBytes(for weight: GGMLType, count: Int) -> Int { count * 4 }
    public static func quantizeActivation(for weight: GGMLType, _ x: UnsafePointer<Float>, count: Int, into: UnsafeMutableRawPointer) {
        into.copyMemory(from: x, byteCount: count * 4)
    }
    public static func matVec(_ type: GGMLType, weights: UnsafeRawPointer, rowBytes: Int, rows: Range<Int>, activation: UnsafeRawPointer, count: Int, output: UnsafeMutablePointer<Float>) {
        matMat(type, weights: weights, rowBytes: rowBytes, rows: rows, activations: activation, activationStride: count * 4, columns: 1, count: count, output: output, outputStride: rows.count)
    }
    public static func matMat(_ type: GGMLType, weights: UnsafeRawPointer, rowBytes: Int, rows: Range<Int>, activations: UnsafeRawPointer, activationStride: Int, columns: Int, count: Int, output: UnsafeMutablePointer<Float>, outputStride: Int) {
        let tmp = UnsafeMutablePointer<Float>.allocate(capacity: count); defer { tmp.deallocate() }
        for r in rows {
            Dequant.row(type, weights + r * rowBytes, tmp, count: count)
            for t in 0..<columns {
                let x = (activations + t * activationStride).assumingMemoryBound(to: Float.self)
                var s: Float = 0
                for i in 0..<count { s += tmp[i] * x[i] }
                output[t * outputStride + (r - rows.lowerBound)] = s
            }
        }
    }
}
