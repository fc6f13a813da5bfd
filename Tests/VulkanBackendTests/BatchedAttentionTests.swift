import Compute
import Coordinator
import ShardRuntime
import Foundation
import Testing
@testable import VulkanBackend

/// Decode attention of batched steps (one row per sequence, each at its own position over its own pages):
/// attn_decode_vec.comp against the CPU, under each split / merge choice, and against attn_decode.comp.
extension VulkanBackendTests {
    /// Six sequences of odd lengths (1 … 45 positions, pages of 8 in scrambled order, so that splits and
    /// lane groups cross page boundaries) stored by one mixed step, then two decode steps of one row each;
    /// f16 and Q8_0 KV (Q8_0 keeps attn_decode), GQA and head dims of 128, 64 and 32 (1 or 2 chunks per
    /// lane, 1 or 2 positions per lane-group load on lavapipe's 8-lane subgroups).
    @Test(arguments: [(heads: 4, kvHeads: 2, headDim: 128), (heads: 4, kvHeads: 4, headDim: 64), (heads: 6, kvHeads: 3, headDim: 32)],
          [KVElementType.f16, .q8_0])
    func batchedDecodeAttentionMatchesCPU(geometry g: (heads: Int, kvHeads: Int, headDim: Int), type: KVElementType) throws {
        let vk = try Shared.vulkan(), cpu = Shared.cpu
        let pageSize = 8, pages = 64
        let kvDim = g.kvHeads * g.headDim
        let params = AttentionParams(heads: g.heads, kvHeads: g.kvHeads, headDim: g.headDim, scale: 1 / Float(g.headDim).squareRoot())
        let lengths = [1, 45, 9, 16, 23, 7]
        // Page tables: sequence s owns pages s, s + 6, s + 12, … reversed (interleaved with the others').
        let tables: [[Int32]] = lengths.indices.map { s in (0..<8).map { Int32(s + 6 * (7 - $0)) } }
        var prefillPositions: [Int32] = [], prefillTables: [Int32] = []
        for (s, n) in lengths.enumerated() {
            prefillPositions += (0..<n).map { Int32($0) }
            prefillTables += Array(repeating: Int32(s), count: n)
        }
        let steps: [StepBatch] = [
            StepBatch(positions: prefillPositions, tableIndex: prefillTables, pageTables: tables),
            StepBatch(positions: lengths.map { Int32($0) }, tableIndex: lengths.indices.map { Int32($0) }, pageTables: tables),
            // Two of the sequences only, in another order.
            StepBatch(positions: [Int32(lengths[4] + 1), Int32(lengths[1] + 1)], tableIndex: [4, 1], pageTables: tables),
        ]
        func run(_ b: any ComputeBackend) throws -> [Float] {
            let kv = try b.makeKVStorage(KVShape(layers: 2, pages: pages, pageSize: pageSize, kvDim: kvDim, type: type))
            return try storeAndAttend(b, kv, layer: 1, steps: steps, params: params, seed: 31)
        }
        let ref = try run(cpu)
        let saved = (vk.attentionVec, vk.attentionVecWorkgroups, vk.attentionVecMinPositions, vk.attentionVecFusedMaxRows, vk.attentionSplits)
        defer { (vk.attentionVec, vk.attentionVecWorkgroups, vk.attentionVecMinPositions, vk.attentionVecFusedMaxRows, vk.attentionSplits) = saved }
        // (name, vec, workgroups, min positions per split, fused up to rows, splits cap)
        let variants: [(String, Bool, Int, Int, Int, Int)] = [
            ("default", true, saved.1, saved.2, saved.3, saved.4),
            ("one split", true, 1, 0, 64, 16),
            ("7 splits, fused merge", true, 1 << 20, 0, 1 << 20, 7),
            ("7 splits, merge dispatch", true, 1 << 20, 0, 0, 7),
            ("attn_decode", false, saved.1, saved.2, saved.3, saved.4),
        ]
        var outputs: [[Float]] = []
        for (name, vec, wgs, minPos, fused, cap) in variants {
            (vk.attentionVec, vk.attentionVecWorkgroups, vk.attentionVecMinPositions, vk.attentionVecFusedMaxRows, vk.attentionSplits) = (vec, wgs, minPos, fused, cap)
            vk.dispatchLog = []
            let got = try run(vk)
            let log = vk.dispatchLog ?? []
            vk.dispatchLog = nil
            let e = relativeError(got, ref)
            #expect(e < 1e-5, "\(g) \(type) \(name): relative error \(e) against the CPU")
            let usesVec = log.contains { $0.hasPrefix("attn_decode_vec") }
            #expect(usesVec == (vec && type == .f16), "\(g) \(type) \(name): \(log)")
            if usesVec && name.contains("merge dispatch") { #expect(!log.contains("attn_decode_vec_merge") && log.contains("attention_merge"), "\(log)") }
            if usesVec && name.contains("fused") { #expect(log.contains("attn_decode_vec_merge") && !log.contains("attention_merge"), "\(log)") }
            outputs.append(got)
            print("batched decode attention \(g) \(type) \(name): vs CPU \(e)")
        }
        // attn_decode_vec and attn_decode differ only in summation order.
        #expect(relativeError(outputs[0], outputs[4]) < 1e-5)
    }

    /// attn_decode_vec's split count: from rows × heads (about `attentionVecWorkgroups` workgroups), bounded by
    /// the longest context's power of two over `attentionVecMinPositions` and by `attentionSplits`.
    @Test func vecSplitsFollowRowsAndContext() throws {
        let vk = try Shared.vulkan()
        let saved = (vk.attentionVecWorkgroups, vk.attentionVecMinPositions, vk.attentionSplits)
        defer { (vk.attentionVecWorkgroups, vk.attentionVecMinPositions, vk.attentionSplits) = saved }
        (vk.attentionVecWorkgroups, vk.attentionVecMinPositions, vk.attentionSplits) = (2048, 32, 16)
        func splits(rows: Int, longest: Int) throws -> Int {
            try vk.beginStep(StepBatch(positions: (0..<rows).map { Int32($0 == 0 ? longest - 1 : 0) }, tableIndex: Array(repeating: 0, count: rows),
                                       pageTables: [[0]]))
            defer { try? vk.endStep() }
            return vk.vecSplits(rows: rows, heads: 32)
        }
        #expect(try splits(rows: 64, longest: 256) == 1)      // 2048 row-heads fill the grid
        #expect(try splits(rows: 16, longest: 256) == 4)      // 512 row-heads: 4 splits
        #expect(try splits(rows: 16, longest: 100) == 4)      // 128 / 32
        #expect(try splits(rows: 16, longest: 40) == 2)       // 64 / 32
        #expect(try splits(rows: 2, longest: 4096) == 16)     // capped by attentionSplits
        #expect(try splits(rows: 2, longest: 9) == 1)
    }
}

/// One-row decode on attn_decode_vec (`attentionVecMinRows` 1, the default), its merge packing the o projection's
/// int8 input, gives the CPU's greedy tokens on the synthetic llama and qwen2.
extension VulkanBackendTests {
    @Test(arguments: ["llama", "qwen2"])
    func oneRowDecodeOnVecAttentionMatchesCPU(arch: String) throws {
        let vk = try Shared.vulkan()
        let saved = vk.attentionVecMinRows
        defer { vk.attentionVecMinRows = saved }
        vk.attentionVecMinRows = 1
        let file = try syntheticTinyModel(arch: arch, quant: "q4_k_m", seed: 3)
        let cpu = try Self.pipeline(file, backend: Shared.cpu), vulkan = try Self.pipeline(file, backend: vk)
        let prompt: [Int32] = [1, 17, 42, 99, 250, 3, 77, 8, 300, 411, 5]
        let r = try Self.compareTeacherForced(cpu: cpu, vulkan: vulkan, prompt: prompt, steps: 16, logitTolerance: 3e-2, nearTie: 0.1)
        #expect(r.mismatches.isEmpty, "\(arch): greedy token differs at steps \(r.mismatches) (max logit error \(r.maxError))")
        // A one-row step ran on attn_decode_vec (and not on attn_decode).
        vk.dispatchLog = []
        _ = try vulkan.step(tokens: [5], rows: [StepRow(sequence: 9, position: 0)], logitRows: [0])
        let log = vk.dispatchLog ?? []
        vk.dispatchLog = nil
        try vulkan.release(9)
        #expect(log.contains { $0.hasPrefix("attn_decode_vec") } && !log.contains { $0 == "attn_decode" || $0 == "attn_decode_merge" }, "\(log)")
        print("one-row decode on attn_decode_vec, \(arch): max relative logit error \(r.maxError)")
    }
}
