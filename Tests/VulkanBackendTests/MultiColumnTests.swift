import Compute
import Foundation
import GGUF
import Quant
import Testing
@testable import VulkanBackend

/// The multi-column mat-vec (matvec.comp -DMC, batched decode steps of 2...multiColumnMax rows) against
/// an exact f64 reference (f32 activations), the CPU backend (activations rounded to the 8-bit grid),
/// and the paths it replaces (multiColumnMax = 0): column counts around the group of 8 and the 64
/// limit, an odd row count (a partial last workgroup of rows), with and without bias, and with the
/// fused residual add (matmul followed by add into the residual).
extension VulkanBackendTests {
    static let multiColumnTypes: [GGMLType] = [.q4_K, .q6_K, .q8_0]

    @Test(arguments: multiColumnTypes)
    func multiColumnMatvecMatchesReferenceAndCPU(type: GGMLType) throws {
        let vk = try Shared.vulkan(), cpu = Shared.cpu
        let defaultMax = vk.multiColumnMax
        vk.multiColumnMax = 64  // every column count below through the multi-column path
        let m = 37, k = type.blockSize == 256 ? 512 : 96
        let g = try TempGGUF([("w", [k, m], type), ("b", [m], .f32)], seed: 321)
        let wf = g.dequantized("w"), bias = g.dequantized("b")
        defer { vk.roundsActivations = true; vk.multiColumnMax = defaultMax }
        for (ni, n) in [2, 3, 8, 9, 16, 33, 64].enumerated() {
            let useBias = ni % 2 == 0
            let x = randomFloats(n * k, seed: UInt64(n) + 7)
            var reference = [Float](repeating: 0, count: n * m)
            for c in 0..<n {
                for r in 0..<m {
                    var acc = 0.0
                    for i in 0..<k { acc += Double(wf[r * k + i]) * Double(x[c * k + i]) }
                    reference[c * m + r] = Float(acc) + (useBias ? bias[r] : 0)
                }
            }
            // 0: multi-column, f32 activations; 1: multi-column, rounded; 2: old paths, rounded; 3: CPU.
            var results: [[Float]] = []
            for (i, b) in [vk as any ComputeBackend, vk, vk, cpu].enumerated() {
                vk.roundsActivations = i != 0
                vk.multiColumnMax = i == 2 ? 0 : 64
                let w = try b.loadWeight(g.tensor("w"), of: g.file), bw = try b.loadWeight(g.tensor("b"), of: g.file)
                let xa = try b.makeActivations(rowCapacity: n + 1, columns: k)
                let out = try b.makeActivations(rowCapacity: n + 1, columns: m)
                let batch = sequenceBatch(rows: n, pageSize: 16, pages: 8)
                results.append(try step(b, batch, {
                    b.upload(x, to: xa)
                    b.matmul(w, xa, bias: useBias ? bw : nil, into: out, rows: nil)
                }, then: { b.download(out, rows: 0..<n) }))
            }
            let exact = relativeError(results[0], reference)
            let vsCPU = relativeError(results[1], results[3])
            let vsOld = relativeError(results[1], results[2])
            #expect(exact < 1e-6, "\(type) n=\(n): relative error vs exact \(exact)")
            #expect(vsCPU < 1e-6, "\(type) n=\(n): relative error vs CPU \(vsCPU)")
            #expect(vsOld < 1e-6, "\(type) n=\(n): relative error vs the old path \(vsOld)")
            #expect(relativeError(results[1], reference) > 1e-4, "\(type) n=\(n): activations were not rounded")
        }
    }

    /// matmul + add(residual, out) fuses into the mat-vec's residual flag (bit 1): same as the CPU.
    @Test(arguments: multiColumnTypes)
    func multiColumnMatvecFusedResidualMatchesCPU(type: GGMLType) throws {
        let vk = try Shared.vulkan(), cpu = Shared.cpu
        let m = 40, k = type.blockSize == 256 ? 256 : 64
        let g = try TempGGUF([("w", [k, m], type), ("b", [m], .f32)], seed: 654)
        let defaultMax = vk.multiColumnMax
        defer { vk.fuses = true; vk.multiColumnMax = defaultMax }
        for n in [2, 9, 33] {
            let x = randomFloats(n * k, seed: UInt64(n) + 70), res = randomFloats(n * m, seed: UInt64(n) + 71)
            var results: [[Float]] = []
            for (i, b) in [vk as any ComputeBackend, vk, cpu].enumerated() {
                vk.fuses = i == 0
                vk.multiColumnMax = 64
                let w = try b.loadWeight(g.tensor("w"), of: g.file), bw = try b.loadWeight(g.tensor("b"), of: g.file)
                let xa = try b.makeActivations(rowCapacity: n, columns: k)
                let out = try b.makeActivations(rowCapacity: n, columns: m), ra = try b.makeActivations(rowCapacity: n, columns: m)
                let batch = sequenceBatch(rows: n, pageSize: 16, pages: 8)
                results.append(try step(b, batch, {
                    b.upload(x, to: xa)
                    b.upload(res, to: ra)
                    b.matmul(w, xa, bias: n == 9 ? bw : nil, into: out, rows: nil)
                    b.add(ra, out)
                }, then: { b.download(ra, rows: 0..<n) + b.download(out, rows: 0..<n) }))
            }
            let fusedVsUnfused = relativeError(results[0], results[1])
            let vsCPU = relativeError(results[0], results[2])
            #expect(fusedVsUnfused < 1e-6, "\(type) n=\(n): fused vs unfused \(fusedVsUnfused)")
            #expect(vsCPU < 1e-6, "\(type) n=\(n): vs CPU \(vsCPU)")
        }
    }
}
