import Compute
import Foundation
import GGUF
import Quant
import Testing
@testable import VulkanBackend

/// The integer-dot-product mat-vecs of decode (matvec_q8.comp, 4 × int8 dot products): -DQX reading
/// the int8 copy of x that rms_quant / swiglu_quant write (the default), and the variant that rounds x
/// to the Q8_K grid in each workgroup (dotRoundsX) with the RMSNorm and SwiGLU fusions it allows;
/// against the CPU backend (int8 dot products on the same grid) and the float mat-vec after a rounding
/// pass: odd row counts (a partial last workgroup), row lengths of 1, 3, 5 and 16 blocks (one or
/// several strides of the workgroup), bias and the fused residual add.
extension VulkanBackendTests {
    /// Whether `body` recorded a dispatch whose label contains `label`.
    func records(_ vk: VulkanBackend, _ label: String, _ body: () throws -> Void) rethrows -> Bool {
        vk.dispatchLog = []
        defer { vk.dispatchLog = nil }
        try body()
        return vk.dispatchLog!.contains { $0.contains(label) }
    }

    @Test(arguments: [GGMLType.q4_K, .q6_K])
    func dotMatvecMatchesCPUAndFloatPath(type: GGMLType) throws {
        let vk = try Shared.vulkan(), cpu = Shared.cpu
        #expect(vk.dotProducts, "the device (lavapipe in CI) should offer VK_KHR_shader_integer_dot_product")
        let saved = vk.dotProducts
        vk.dotRoundsX = true
        defer { vk.dotProducts = saved; vk.dotRoundsX = false }
        for (si, s) in [(m: 37, k: 256), (m: 67, k: 768), (m: 13, k: 4096)].enumerated() {
            let g = try TempGGUF([("w", [s.k, s.m], type), ("b", [s.m], .f32)], seed: UInt64(si) + 40)
            let x = randomFloats(s.k, seed: UInt64(si) + 41, scale: 3), res = randomFloats(s.m, seed: UInt64(si) + 42)
            let useBias = si != 1
            // 0: integer dot; 1: float mat-vec after the rounding pass; 2: CPU.
            var results: [[Float]] = []
            for (i, b) in [vk as any ComputeBackend, vk, cpu].enumerated() {
                vk.dotProducts = i == 0
                let w = try b.loadWeight(g.tensor("w"), of: g.file), bw = try b.loadWeight(g.tensor("b"), of: g.file)
                let xa = try b.makeActivations(rowCapacity: 1, columns: s.k)
                let out = try b.makeActivations(rowCapacity: 1, columns: s.m), ra = try b.makeActivations(rowCapacity: 1, columns: s.m)
                let batch = sequenceBatch(rows: 1, pageSize: 4, pages: 2)
                var got: [Float] = []
                let used = try records(vk, "matvec q8 ") {
                    got = try step(b, batch, {
                        b.upload(x, to: xa)
                        b.upload(res, to: ra)
                        b.matmul(w, xa, bias: useBias ? bw : nil, into: out, rows: nil)
                        b.add(ra, out)   // the residual add fuses into the mat-vec
                    }, then: { b.download(out, rows: 0..<1) + b.download(ra, rows: 0..<1) })
                }
                if i == 0 { #expect(used, "\(type) \(s): matvec_q8 was not used") }
                if i == 1 { #expect(!used, "\(type) \(s): matvec_q8 used with dotProducts off") }
                results.append(got)
            }
            let vsCPU = relativeError(results[0], results[2]), vsFloat = relativeError(results[0], results[1])
            #expect(vsCPU < 1e-6, "\(type) \(s): integer dot vs CPU \(vsCPU)")
            #expect(vsFloat < 1e-6, "\(type) \(s): integer dot vs float mat-vec \(vsFloat)")
        }
    }

    /// rmsNorm + matmuls of its output (a Q4_K and a Q6_K weight, as q/k/v read one norm) with the norm
    /// applied on read by matvec_q8 (normFusion) vs rms_norm dispatched alone vs the CPU; the norm's
    /// output, written by the first mat-vec's workgroup 0, too.
    @Test func normFusedIntoDotMatvecMatchesCPU() throws {
        let vk = try Shared.vulkan(), cpu = Shared.cpu
        let k = 768
        let g = try TempGGUF([("norm", [k], .f32), ("wa", [k, 45], .q4_K), ("wb", [k, 29], .q6_K)], seed: 88)
        vk.dotRoundsX = true
        defer { vk.normFusion = true; vk.dotRoundsX = false }
        for pos in 0..<2 {
            let x = randomFloats(k, seed: UInt64(pos) + 90, scale: 4)
            var results: [[Float]] = []
            for (i, b) in [vk as any ComputeBackend, vk, cpu].enumerated() {
                vk.normFusion = i == 0
                let nw = try b.loadWeight(g.tensor("norm"), of: g.file)
                let wa = try b.loadWeight(g.tensor("wa"), of: g.file), wb = try b.loadWeight(g.tensor("wb"), of: g.file)
                let xa = try b.makeActivations(rowCapacity: 1, columns: k), xn = try b.makeActivations(rowCapacity: 1, columns: k)
                let ya = try b.makeActivations(rowCapacity: 1, columns: 45), yb = try b.makeActivations(rowCapacity: 1, columns: 29)
                var got: [Float] = []
                let fused = try records(vk, "+norm") {
                    got = try step(b, sequenceBatch(rows: 1, start: pos, pageSize: 4, pages: 2), {
                        b.upload(x, to: xa)
                        b.rmsNorm(xa, weight: nw, eps: 1e-5, into: xn)
                        b.matmuls(xn, [MatmulItem(weight: wa, output: ya), MatmulItem(weight: wb, output: yb)], rows: nil)
                    }, then: { b.download(ya, rows: 0..<1) + b.download(yb, rows: 0..<1) + b.download(xn, rows: 0..<1) })
                }
                if i == 0 { #expect(fused, "the norm was not fused into matvec_q8") }
                if i == 1 { #expect(!fused, "the norm was fused with normFusion off") }
                results.append(got)
            }
            // The fused norm sums squares in another order than rms_norm / the CPU: its scale may differ
            // in the last bit, which can flip one 8-bit rounding (the bound of fusedOpsMatchUnfused).
            let vsCPU = relativeError(results[0], results[2]), vsUnfused = relativeError(results[0], results[1])
            #expect(vsCPU < 1e-3, "fused norm vs CPU \(vsCPU)")
            #expect(vsUnfused < 1e-3, "fused norm vs unfused \(vsUnfused)")
            let normVsCPU = relativeError(Array(results[0].suffix(k)), Array(results[2].suffix(k)))
            #expect(normVsCPU < 1e-6, "the norm's output vs CPU \(normVsCPU)")
            print("norm fused into matvec_q8: vs CPU \(vsCPU), vs unfused \(vsUnfused)")
        }
    }
}

extension VulkanBackendTests {
    /// A decode FFN (rmsNorm → gate/up → swiglu → down → residual add; Q4_K gate/up, Q6_K down) with the
    /// swiglu fused into one gate/up dispatch (matvec_q8 PAIR) vs the same ops without that fusion vs
    /// the CPU: the down projection's output in the residual, the swiglu output and the up output.
    @Test func swigluFusedIntoGateUpMatchesCPU() throws {
        let vk = try Shared.vulkan(), cpu = Shared.cpu
        let dim = 512, ff = 1280   // ff: 5 blocks of 256 (the down projection's row length)
        let g = try TempGGUF([("norm", [dim], .f32), ("wg", [dim, ff], .q4_K), ("wu", [dim, ff], .q4_K),
                              ("wd", [ff, dim], .q6_K)], seed: 123)
        vk.dotRoundsX = true
        defer { vk.swigluFusion = true; vk.dotRoundsX = false }
        let x = randomFloats(dim, seed: 124, scale: 2)
        var results: [[Float]] = []
        for (i, b) in [vk as any ComputeBackend, vk, cpu].enumerated() {
            vk.swigluFusion = i == 0
            let w = try ["norm", "wg", "wu", "wd"].map { try b.loadWeight(g.tensor($0), of: g.file) }
            let xa = try b.makeActivations(rowCapacity: 1, columns: dim), xn = try b.makeActivations(rowCapacity: 1, columns: dim)
            let gate = try b.makeActivations(rowCapacity: 1, columns: ff), up = try b.makeActivations(rowCapacity: 1, columns: ff)
            let y = try b.makeActivations(rowCapacity: 1, columns: dim)
            var got: [Float] = []
            let fused = try records(vk, "pair+swiglu") {
                got = try step(b, sequenceBatch(rows: 1, pageSize: 4, pages: 2), {
                    b.upload(x, to: xa)
                    b.rmsNorm(xa, weight: w[0], eps: 1e-5, into: xn)
                    b.matmuls(xn, [MatmulItem(weight: w[1], output: gate), MatmulItem(weight: w[2], output: up)], rows: nil)
                    b.swiglu(gate: gate, up: up, into: gate)
                    b.matmul(w[3], gate, bias: nil, into: y, rows: nil)
                    b.add(xa, y)
                }, then: { b.download(xa, rows: 0..<1) + b.download(gate, rows: 0..<1) + b.download(up, rows: 0..<1) })
            }
            if i == 0 { #expect(fused, "gate/up + swiglu did not fuse") }
            if i == 1 { #expect(!fused, "gate/up + swiglu fused with swigluFusion off") }
            results.append(got)
        }
        let vsCPU = relativeError(results[0], results[2]), vsUnfused = relativeError(results[0], results[1])
        #expect(vsCPU < 1e-3, "fused swiglu vs CPU \(vsCPU)")
        #expect(vsUnfused < 1e-5, "fused swiglu vs unfused \(vsUnfused)")
        print("swiglu fused into gate/up: vs CPU \(vsCPU), vs unfused \(vsUnfused)")
    }
}

extension VulkanBackendTests {
    /// The default decode path: rms_quant and swiglu_quant also write x as packed int8 + block scales
    /// and the Q4_K / Q6_K mat-vecs read that (matvec_q8x), the o-style projection of an input with no
    /// such producer stays on the float mat-vec; a decode FFN-shaped sequence (odd row counts, 3- and
    /// 5-block rows, bias, residual adds) against the same ops with dotProducts off and the CPU.
    @Test func int8InputMatvecMatchesCPUAndFloatPath() throws {
        let vk = try Shared.vulkan(), cpu = Shared.cpu
        let (dim, ff) = (Int8ProducerLayerFile.dim, Int8ProducerLayerFile.ff)
        let g = try Int8ProducerLayerFile(seed: 321)
        let saved = (vk.dotProducts, vk.dotSubgroupRows)
        defer { (vk.dotProducts, vk.dotSubgroupRows) = saved }
        for pos in 0..<2 {
            let x = randomFloats(dim, seed: UInt64(pos) + 322, scale: 3)
            var results: [[Float]] = []
            // The int8 path, the float path, the CPU, and the int8 path with a subgroup per row pair (SGROWS).
            for (i, b) in [vk as any ComputeBackend, vk, cpu, vk].enumerated() {
                vk.dotProducts = i == 0 || i == 3
                vk.dotSubgroupRows = i == 3
                let w = try g.weights(on: b, floatTail: true)
                var log: [String] = []
                vk.dispatchLog = []
                let got = try int8ProducerLayer(b, weights: w, x: x, dim: dim, ff: ff,
                                                batch: sequenceBatch(rows: 1, start: pos, pageSize: 4, pages: 2), floatTail: true)
                log = vk.dispatchLog ?? []
                vk.dispatchLog = nil
                if i == 0 {
                    #expect(log.filter { $0.hasPrefix("matvec q8x") }.count == 6, "int8-input mat-vecs: \(log)")
                    #expect(log.contains { $0.hasPrefix("matvec q4_K 768x768") }, "the last projection should stay float: \(log)")
                }
                if i == 1 { #expect(!log.contains { $0.hasPrefix("matvec q8") }, "matvec_q8 used with dotProducts off: \(log)") }
                if i == 3 { #expect(log.filter { $0.hasPrefix("matvec q8x sg q4_K") }.count == 4, "SGROWS mat-vecs (Q4_K): \(log)") }
                results.append(got)
            }
            let vsSG = relativeError(results[3], results[1])
            #expect(vsSG < 1e-6, "int8 input, subgroup rows vs float mat-vec \(vsSG)")
            let vsFloat = relativeError(results[0], results[1]), vsCPU = relativeError(results[0], results[2])
            #expect(vsFloat < 1e-6, "int8 input vs float mat-vec \(vsFloat)")
            // rms_quant's norm sums squares in another order than the CPU's (a flipped 8-bit rounding at most).
            #expect(vsCPU < 1e-3, "int8 input vs CPU \(vsCPU)")
            print("matvec_q8x: vs float path \(vsFloat), vs CPU \(vsCPU)")
        }
    }
}
