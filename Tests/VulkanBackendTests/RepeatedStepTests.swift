import Compute
import Coordinator
import GGUF
import Model
import ShardRuntime
import Testing
@testable import VulkanBackend

/// Repeated steps whose op calls are skipped (`repeatsOps`): the same results as walking them, checked walks that
/// find nothing to differ, and a broken promise caught.
extension VulkanBackendTests {
    /// Greedy decode of a tiny llama one token at a time (teacher-forced with a fixed token list), every step's
    /// logits; small pages so that the page table's padded length doubles (16 → 32 entries at position 64) and the
    /// longest-context bucket too (32, 64, 128) along the way.
    static func decodeLogits(_ vk: VulkanBackend, _ pipeline: LocalPipeline, prompt: [Int32], steps: Int) throws -> [[Float]] {
        var out: [[Float]] = []
        out.append(try pipeline.step(tokens: prompt, rows: prompt.indices.map { StepRow(sequence: 1, position: $0) },
                                     logitRows: [prompt.count - 1]))
        for s in 0..<steps {
            let token = Int32((s * 37 + 11) % 400)
            out.append(try pipeline.step(tokens: [token], rows: [StepRow(sequence: 1, position: prompt.count + s)], logitRows: [0]))
        }
        try pipeline.release(1)
        return out
    }

    static func pagedPipeline(_ file: GGUFFile, _ backend: any ComputeBackend, shards: Int = 1, rows: Int = 16) throws -> LocalPipeline {
        let config = try ModelConfig(gguf: file)
        let plan = try LayerPlan.even(layers: config.layerCount, shards: shards)
        return LocalPipeline(shards: try plan.map {
            try ModelShard(file: file, config: config, layers: $0, backend: backend,
                           options: ShardOptions(contextLength: 256, maxBatchRows: rows, pageSize: 4, maxSequences: 4))
        })
    }

    /// Skipped steps give bit-identical logits to walked ones, across table-layout and split-count changes.
    @Test func skippedDecodeStepsEqualWalkedOnes() throws {
        let vk = try Shared.vulkan()
        let saved = (vk.skipsRepeatedOps, vk.skipCheckInterval)
        defer { (vk.skipsRepeatedOps, vk.skipCheckInterval) = saved }
        let file = try syntheticTinyModel(arch: "llama", quant: "q4_k_m", seed: 7)
        let pipeline = try Self.pagedPipeline(file, vk)
        let prompt: [Int32] = [1, 17, 42, 99, 250, 3, 77, 8, 300, 411, 5]
        vk.skipsRepeatedOps = false
        let walked = try Self.decodeLogits(vk, pipeline, prompt: prompt, steps: 70)
        vk.skipsRepeatedOps = true
        vk.skipCheckInterval = 0
        let skipped0 = vk.skippedSteps
        let skipped = try Self.decodeLogits(vk, pipeline, prompt: prompt, steps: 70)
        // Every decode step but those that changed shape (new table layout or split count) and the first of each.
        #expect(vk.skippedSteps - skipped0 >= 55, "\(vk.skippedSteps - skipped0) of 70 decode steps skipped their ops")
        #expect(walked.count == skipped.count)
        for (i, (a, b)) in zip(walked, skipped).enumerated() where a != b {
            Issue.record("step \(i): logits differ (relative \(relativeError(b, a)))")
            break
        }
    }

    /// With every repeat walked and compared (skipCheckInterval 1): batched decode of sequences that join, leave and
    /// grow past page and bucket boundaries, with prefill chunks in between (which grow scratch buffers), and two
    /// shards on one backend (hidden states uploaded) — no repeat differs from its recording.
    @Test func checkedRepeatsMatchTheirRecordings() throws {
        let vk = try Shared.vulkan()
        let saved = (vk.skipsRepeatedOps, vk.skipCheckInterval)
        defer { (vk.skipsRepeatedOps, vk.skipCheckInterval) = saved }
        vk.skipsRepeatedOps = true
        vk.skipCheckInterval = 1
        let mismatches0 = vk.skipMismatches, checks0 = vk.skipChecks
        let file = try syntheticTinyModel(arch: "qwen2", quant: "q4_k_m", seed: 4)
        for shards in [1, 2] {
            let pipeline = try Self.pagedPipeline(file, vk, shards: shards, rows: 32)
            var length: [SequenceID: Int] = [:]
            func prefill(_ s: SequenceID, _ n: Int) throws {
                let start = length[s] ?? 0
                _ = try pipeline.step(tokens: (0..<n).map { Int32(($0 * 13 + Int(s)) % 300) },
                                      rows: (0..<n).map { StepRow(sequence: s, position: start + $0) }, logitRows: [n - 1])
                length[s] = start + n
            }
            func decode(_ seqs: [SequenceID]) throws {
                let rows = seqs.map { StepRow(sequence: $0, position: length[$0]!) }
                _ = try pipeline.run(PipelineStep(tokens: seqs.map { Int32($0 * 7 % 300) }, rows: rows, logitRows: Array(rows.indices),
                                                  sampling: .greedy(logprobs: false, top: 0)))
                for s in seqs { length[s]! += 1 }
            }
            try prefill(1, 9)
            for _ in 0..<30 { try decode([1]) }
            // A longer step grows the scratch buffers that decode steps bind: their recordings must be walked again.
            try prefill(2, 20)
            for _ in 0..<5 { try decode([1]) }
            for i in 0..<40 {
                try decode([1, 2])
                if i == 20 { try prefill(3, 5) }
            }
            for _ in 0..<10 { try decode([1, 2, 3]) }
            try pipeline.release(2)
            for _ in 0..<10 { try decode([1, 3]) }
            for s in [1, 3] as [SequenceID] { try pipeline.release(s) }
        }
        #expect(vk.skipChecks - checks0 >= 80, "only \(vk.skipChecks - checks0) repeats checked")
        print("checked repeats: \(vk.skipChecks - checks0)")
        #expect(vk.skipMismatches == mismatches0, "a repeated step's walk differed from its recording")
        #expect(vk.skipsRepeatedOps)
    }

    /// A fresh backend's first step grows its scratch buffers part-way (the rounded activations: the model's width,
    /// then the FFN's): that step must not be repeated by skipping, since a repeat binds the new buffer throughout.
    @Test func stepsThatGrowScratchBuffersAreNotSkipPoints() throws {
        let vk = try VulkanBackend()
        vk.skipCheckInterval = 1
        let file = try syntheticTinyModel(arch: "llama", quant: "q4_k_m", seed: 9)
        let pipeline = try Self.pipeline(file, backend: vk)
        // The first token of 8 sequences: steps of one shape and signature (position 0) from the first one on.
        for s in 1...8 as ClosedRange<SequenceID> {
            _ = try pipeline.step(tokens: [Int32(s * 5 + 1)], rows: [StepRow(sequence: s, position: 0)], logitRows: [0])
            try pipeline.release(s)
        }
        #expect(vk.skipChecks >= 6, "\(vk.skipChecks) repeats checked")
        #expect(vk.skipMismatches == 0)
    }

    /// A caller that breaks its promise (other ops after the same key) is caught by a checked walk, which turns
    /// skipping off; an op call after `repeatsOps` said yes fails the step, and the next step works.
    @Test func brokenRepeatPromisesAreCaught() throws {
        let vk = try Shared.vulkan()
        let saved = (vk.skipsRepeatedOps, vk.skipCheckInterval, vk.skipMismatchIsFatal)
        defer { (vk.skipsRepeatedOps, vk.skipCheckInterval, vk.skipMismatchIsFatal) = saved }
        vk.skipsRepeatedOps = true
        vk.skipMismatchIsFatal = false
        let cols = 96
        let x = try vk.makeActivations(rowCapacity: 1, columns: cols), y = try vk.makeActivations(rowCapacity: 1, columns: cols)
        let batch = sequenceBatch(rows: 1, start: 3, pageSize: 16, pages: 1)
        let xs = randomFloats(cols, seed: 1), ys = randomFloats(cols, seed: 2)
        /// x = xs; (x += y) `adds` times; whether the ops were skipped; x.
        func run(adds: Int) throws -> (Bool, [Float]) {
            try vk.beginStep(batch)
            vk.upload(ys, to: y)
            vk.upload(xs, to: x)
            let skipped = vk.repeatsOps([42])
            if !skipped { for _ in 0..<adds { vk.add(x, y) } }
            try vk.endStep()
            return (skipped, vk.download(x, rows: 0..<1))
        }
        let want2 = zip(xs, ys).map { $0 + $1 + $1 }
        vk.skipCheckInterval = 0
        #expect(try run(adds: 2) == (false, want2))
        #expect(try run(adds: 2) == (true, want2))
        // The op after a yes: an error, nothing submitted; the next step is fine.
        try vk.beginStep(batch)
        vk.upload(ys, to: y)
        vk.upload(xs, to: x)
        #expect(vk.repeatsOps([42]))
        vk.add(x, y)
        #expect(throws: (any Error).self) { try vk.endStep() }
        #expect(try run(adds: 2).1 == want2)
        // A checked walk that does something else: counted, skipping off, and the result is the walk's.
        vk.skipCheckInterval = 1
        let mismatches0 = vk.skipMismatches
        let (skipped, got) = try run(adds: 3)
        #expect(!skipped)
        #expect(got == zip(xs, ys).map { $0 + $1 + $1 + $1 })
        #expect(vk.skipMismatches == mismatches0 + 1)
        #expect(!vk.skipsRepeatedOps)
    }
}

extension VulkanBackendTests {
    /// Rows copied out inside the step (`prepareDownload`) read back as `download` gives them; rows not prepared,
    /// and a later step's, still come from the buffer itself.
    @Test func preparedDownloadsReadTheStepsRows() throws {
        let vk = try Shared.vulkan()
        let cols = 40
        let a = try vk.makeActivations(rowCapacity: 4, columns: cols)
        let v1 = randomFloats(4 * cols, seed: 3), v2 = randomFloats(4 * cols, seed: 4)
        let batch = sequenceBatch(rows: 4, pageSize: 16, pages: 1)
        try vk.beginStep(batch)
        vk.upload(v1, to: a)
        vk.prepareDownload(a, rows: 1..<3)
        try vk.endStep()
        #expect(vk.download(a, rows: 1..<3) == Array(v1[cols..<3 * cols]))
        #expect(vk.download(a, rows: 0..<1) == Array(v1[0..<cols]))
        try vk.beginStep(batch)
        vk.upload(v2, to: a)
        try vk.endStep()
        #expect(vk.download(a, rows: 1..<3) == Array(v2[cols..<3 * cols]))
    }
}
