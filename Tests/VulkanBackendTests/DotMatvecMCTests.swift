import Compute
import Coordinator
import Foundation
import GGUF
import Model
import Quant
import ShardRuntime
import Testing
@testable import VulkanBackend

/// The multi-column integer-dot-product mat-vec of batched decode (matvec_q8_mc.comp) and the n-row int8
/// copies its producers write (rms_quant, swiglu_quant, attention_merge_quant): against the same ops
/// with it off (mcDotMax = 0: the float multi-column mat-vec over the rounded f32 copy) and the CPU,
/// for column counts below, at and above a workgroup's columns (partial column groups), odd row counts
/// (a partial last row group), row lengths of 3 and 5 blocks (the down projection's copy has another
/// stride than the others), bias and the fused residual add; and a whole model's batched decode steps.
extension VulkanBackendTests {
    /// (n, most columns per workgroup, rows per workgroup, x loaded first)
    @Test(arguments: [(2, 8, 2, true), (3, 8, 1, false), (8, 4, 2, true), (13, 4, 4, false), (17, 8, 2, false), (64, 16, 2, true)])
    func multiColumnInt8MatvecMatchesCPUAndFloatPath(n: Int, columns: Int, rows: Int, preload: Bool) throws {
        let vk = try Shared.vulkan(), cpu = Shared.cpu
        #expect(vk.dotProducts, "the device (lavapipe in CI) should offer VK_KHR_shader_integer_dot_product")
        let (dim, ff) = (Int8ProducerLayerFile.dim, Int8ProducerLayerFile.ff)
        let g = try Int8ProducerLayerFile(seed: 421)
        let saved = (vk.dotProducts, vk.mcDotMax, vk.mcDotColumns, vk.mcDotRows, vk.mcDotPreload)
        defer { (vk.dotProducts, vk.mcDotMax, vk.mcDotColumns, vk.mcDotRows, vk.mcDotPreload) = saved }
        (vk.mcDotColumns, vk.mcDotRows, vk.mcDotPreload) = (columns, rows, preload)
        let x = randomFloats(n * dim, seed: UInt64(n) + 422, scale: 3)
        var results: [[Float]] = []
        for (i, b) in [vk as any ComputeBackend, vk, cpu].enumerated() {
            vk.mcDotMax = i == 0 ? 64 : 0
            let w = try g.weights(on: b, floatTail: false)
            vk.dispatchLog = []
            let got = try int8ProducerLayer(b, weights: w, x: x, dim: dim, ff: ff, batch: sequenceBatch(rows: n, pageSize: 4, pages: 32))
            let log = vk.dispatchLog ?? []
            vk.dispatchLog = nil
            if i == 0 {
                #expect(log.filter { $0.hasPrefix("matvec q8mc") }.count == 6, "n=\(n): int8 multi-column mat-vecs: \(log)")
                #expect(!log.contains { $0.hasPrefix("quantize") }, "n=\(n): a separate rounding pass: \(log)")
            }
            if i == 1 { #expect(!log.contains { $0.hasPrefix("matvec q8mc") }, "n=\(n): matvec_q8_mc used with mcDotMax 0: \(log)") }
            results.append(got)
        }
        let vsFloat = relativeError(results[0], results[1]), vsCPU = relativeError(results[0], results[2])
        #expect(vsFloat < 1e-6, "n=\(n), \(columns) columns per workgroup: int8 multi-column vs float path \(vsFloat)")
        // rms_quant's norm sums squares in another order than the CPU's (a flipped 8-bit rounding at most).
        #expect(vsCPU < 1e-3, "n=\(n), \(columns) columns per workgroup: vs CPU \(vsCPU)")
        print("matvec_q8_mc n=\(n) NC≤\(columns): vs float path \(vsFloat), vs CPU \(vsCPU)")
    }

    /// Which steps take matvec_q8_mc: 2...mcDotMax rows with integer dot products and rounded activations.
    @Test func multiColumnInt8Selection() throws {
        let vk = try Shared.vulkan()
        let saved = (vk.dotProducts, vk.mcDotMax, vk.mcDotColumns, vk.roundsActivations)
        defer { (vk.dotProducts, vk.mcDotMax, vk.mcDotColumns, vk.roundsActivations) = saved }
        (vk.dotProducts, vk.mcDotMax, vk.mcDotColumns, vk.roundsActivations) = (true, 64, 8, true)
        #expect(vk.mcDotShape(1) == nil)
        #expect(vk.mcDotShape(2) == 2 && vk.mcDotShape(3) == 4 && vk.mcDotShape(8) == 8 && vk.mcDotShape(9) == 8 && vk.mcDotShape(64) == 8)
        #expect(vk.mcDotShape(65) == nil)
        vk.mcDotColumns = 16
        #expect(vk.mcDotShape(9) == 16 && vk.mcDotShape(5) == 8)
        vk.mcDotMax = 16
        #expect(vk.mcDotShape(16) == 16 && vk.mcDotShape(17) == nil)
        vk.mcDotMax = 0
        #expect(vk.mcDotShape(2) == nil)
        vk.mcDotMax = 64
        vk.roundsActivations = false
        #expect(vk.mcDotShape(4) == nil)
        vk.roundsActivations = true
        vk.dotProducts = false
        #expect(vk.mcDotShape(4) == nil)
        #expect(VulkanBackend.int8RowWords(256) == 68 && VulkanBackend.int8RowWords(768) == 196 && VulkanBackend.int8RowWords(11008) == 2796)
    }

    /// A synthetic Q4_K_M model's batched decode steps (several sequences per step: every Q4_K / Q6_K
    /// product on matvec_q8_mc, the o projection's input packed by attention_merge_quant) against the
    /// CPU's batched steps and the Vulkan backend's steps of each sequence alone (matvec_q8x).
    @Test func batchedDecodeOnInt8MultiColumnMatchesCPUAndSingleRows() throws {
        let vk = try Shared.vulkan()
        #expect(vk.dotProducts)
        let file = try syntheticTinyModel(arch: "llama", quant: "q4_k_m", seed: 5)
        let config = try ModelConfig(gguf: file)
        // Room for the five sequences' KV pages.
        func pipeline(_ b: any ComputeBackend) throws -> LocalPipeline {
            LocalPipeline(shards: [try ModelShard(file: file, config: config, layers: LayerPlan.even(layers: config.layerCount, shards: 1)[0],
                                                  backend: b, options: ShardOptions(contextLength: 128, maxBatchRows: 32, maxSequences: 8))])
        }
        let cpu = try pipeline(Shared.cpu), vulkan = try pipeline(vk), alone = try pipeline(vk)
        let prompts: [[Int32]] = [[1, 17, 42, 99], [1, 250, 3], [1, 77, 8, 300, 411], [1, 5], [1, 9, 9]]
        let seqs = prompts.indices.map { SequenceID(20 + $0) }
        var tokens: [Int32] = []
        var positions = prompts.map(\.count)
        for (s, p) in zip(seqs, prompts) {
            let l = try Generator(pipeline: cpu).prefill(p, sequence: s)
            _ = try Generator(pipeline: vulkan).prefill(p, sequence: s)
            _ = try Generator(pipeline: alone).prefill(p, sequence: s)
            tokens.append(Sampler.argmax(l))
        }
        var worst = 0.0, worstAlone = 0.0, used = false
        for _ in 0..<6 {
            let rows = zip(seqs, positions).map { StepRow(sequence: $0, position: $1) }
            let lc = try cpu.step(tokens: tokens, rows: rows, logitRows: Array(0..<rows.count))
            vk.dispatchLog = []
            let lv = try vulkan.step(tokens: tokens, rows: rows, logitRows: Array(0..<rows.count))
            used = used || (vk.dispatchLog ?? []).contains { $0.hasPrefix("matvec q8mc q4_K") }
            vk.dispatchLog = nil
            worst = max(worst, relativeError(lv, lc))
            let vocab = lc.count / rows.count
            for r in rows.indices {
                let c = Array(lc[(r * vocab)..<((r + 1) * vocab)]), v = Array(lv[(r * vocab)..<((r + 1) * vocab)])
                let la = try alone.step(tokens: [tokens[r]], rows: [rows[r]], logitRows: [0])
                worstAlone = max(worstAlone, relativeError(v, la))
                let top = Sampler.topK(c, 2)
                if top[0].logit - top[1].logit > 0.1 { #expect(Sampler.argmax(v) == top[0].id, "row \(r): greedy token differs from the CPU's") }
                tokens[r] = top[0].id
            }
            positions = positions.map { $0 + 1 }
        }
        for s in seqs { try cpu.release(s); try vulkan.release(s); try alone.release(s) }
        #expect(used, "no matvec_q8_mc in a batched decode step")
        #expect(worst < 3e-2, "batched decode logits vs CPU: \(worst)")
        #expect(worstAlone < 1e-4, "batched decode logits vs each row alone: \(worstAlone)")
        print("batched decode on matvec_q8_mc: max relative logit error vs CPU \(worst), vs rows alone \(worstAlone)")
    }
}

extension VulkanBackendTests {
    /// An input of several rows that no fused op produced (here a down projection's output feeding another Q4_K
    /// product, as attention's output feeds the o projection after prefill attention): quantize_k rounds it and also
    /// writes the n-row int8 copy, so that product too runs on integer dot products (matvec_q8_mc here; matmul_cm /
    /// matmul_cmd on GPUs), against the rounded f32 copy alone (`quantizeWritesInt8` off) and the CPU.
    @Test(arguments: [2, 5, 16])
    func quantizeKWritesTheInt8CopyForInputsWithoutAProducer(n: Int) throws {
        let vk = try Shared.vulkan(), cpu = Shared.cpu
        let (dim, ff) = (Int8ProducerLayerFile.dim, Int8ProducerLayerFile.ff)
        let g = try Int8ProducerLayerFile(seed: 521)
        let saved = (vk.quantizeWritesInt8, vk.mcDotMax)
        defer { (vk.quantizeWritesInt8, vk.mcDotMax) = saved }
        vk.mcDotMax = 64
        let x = randomFloats(n * dim, seed: UInt64(n) + 522, scale: 3)
        var results: [[Float]] = []
        for (i, b) in [vk as any ComputeBackend, vk, cpu].enumerated() {
            vk.quantizeWritesInt8 = i == 0
            let w = try g.weights(on: b, floatTail: true)
            vk.dispatchLog = []
            let got = try int8ProducerLayer(b, weights: w, x: x, dim: dim, ff: ff, batch: sequenceBatch(rows: n, pageSize: 4, pages: 32),
                                            floatTail: true)
            let log = vk.dispatchLog ?? []
            vk.dispatchLog = nil
            if i < 2 {
                #expect(log.contains { $0.hasPrefix("quantize_k") }, "n=\(n): the tail's input should be rounded by quantize_k: \(log)")
                #expect(log.filter { $0.hasPrefix("matvec q8mc") }.count == (i == 0 ? 7 : 6), "n=\(n): int8 multi-column mat-vecs: \(log)")
            }
            results.append(got)
        }
        // The same rounded values either way: integer dot products against float products of the rounded copy.
        let vsFloat = relativeError(results[0], results[1]), vsCPU = relativeError(results[0], results[2])
        #expect(vsFloat < 1e-6, "n=\(n): the int8 copy of quantize_k vs its f32 copy \(vsFloat)")
        #expect(vsCPU < 1e-3, "n=\(n): vs CPU \(vsCPU)")
    }
}
