import Compute
import Coordinator
import Foundation
import GGUF
import Model
import ShardRuntime
import Testing
import VulkanBackend

/// Q8_0 KV on Vulkan against the CPU's Q8_0 KV; the device-memory account and free-memory report.
extension VulkanBackendTests {
    /// Prefill of two sequences in one batch (pages interleaved, GQA, odd lengths), a decode step of
    /// each, then a long sequence over many pages: Vulkan's Q8_0 store + attention against the CPU's.
    /// kvDim 96 (3 blocks) checks the word padding of odd block counts.
    @Test(arguments: [(heads: 4, kvHeads: 2, headDim: 64), (heads: 6, kvHeads: 3, headDim: 32), (heads: 2, kvHeads: 1, headDim: 128)])
    func q8KVAttentionMatchesCPU(geometry g: (heads: Int, kvHeads: Int, headDim: Int)) throws {
        let vk = try Shared.vulkan(), cpu = Shared.cpu
        let pageSize = 8, pages = 64
        let kvDim = g.kvHeads * g.headDim, qDim = g.heads * g.headDim
        let params = AttentionParams(heads: g.heads, kvHeads: g.kvHeads, headDim: g.headDim, scale: 1 / Float(g.headDim).squareRoot())
        let tableA: [Int32] = [5, 2, 9, 1], tableB: [Int32] = [3, 0, 7, 4]
        let longTable: [Int32] = (10..<50).map { Int32($0) }
        let steps: [StepBatch] = [
            StepBatch(positions: (0..<11).map { Int32($0) } + (0..<6).map { Int32($0) },
                      tableIndex: Array(repeating: 0, count: 11) + Array(repeating: 1, count: 6), pageTables: [tableA, tableB]),
            StepBatch(positions: [11, 6], tableIndex: [0, 1], pageTables: [tableA, tableB]),
            StepBatch(positions: (0..<301).map { Int32($0) }, tableIndex: Array(repeating: 0, count: 301), pageTables: [longTable]),
        ]
        func run(_ b: any ComputeBackend, _ type: KVElementType) throws -> [Float] {
            let kv = try b.makeKVStorage(KVShape(layers: 2, pages: pages, pageSize: pageSize, kvDim: kvDim, type: type))
            return try storeAndAttend(b, kv, layer: 1, steps: steps, params: params)
        }
        let gpu = try run(vk, .q8_0), ref = try run(cpu, .q8_0), f16 = try run(vk, .f16)
        // A row at position 0 attends only its own V: its output is V's Q8_0 values, d·q, which must be
        // the CPU's bit for bit (rows 0 and 11 of the first step, row 0 of the last).
        let last = (11 + 6 + 2) * qDim
        for start in [0, 11 * qDim, last] {
            #expect(Array(gpu[start..<start + qDim]) == Array(ref[start..<start + qDim]), "\(g): V of position 0 differs from the CPU's Q8_0")
        }
        // Same quantization (bit for bit, or one flipped quant would show at ~1e-3): only summation order differs.
        let e = relativeError(gpu, ref)
        #expect(e < 1e-5, "q8_0 attention \(g): relative error \(e) against the CPU")
        // And the Q8_0 path is really taken: 8-bit K/V move the outputs by far more than that from f16.
        let fromF16 = relativeError(gpu, f16)
        #expect(fromF16 > 1e-4 && fromF16 < 5e-2, "q8_0 vs f16 KV: relative difference \(fromF16)")
        print("q8_0 KV attention \(g): vs CPU \(e), vs f16 KV \(fromF16)")
    }

    /// Sliding-window attention over ring pages (evicted entries −1): a prefill of 40 rows with a window
    /// of 13, then decode steps whose ring tables have dropped the early pages; Vulkan against the CPU.
    @Test(arguments: [KVElementType.f16, .q8_0])
    func windowAttentionMatchesCPU(type: KVElementType) throws {
        let vk = try Shared.vulkan(), cpu = Shared.cpu
        let heads = 4, kvHeads = 2, headDim = 64, pageSize = 8, window = 13
        let kvDim = kvHeads * headDim, qDim = heads * headDim
        let params = AttentionParams(heads: heads, kvHeads: kvHeads, headDim: headDim, scale: 0.125)
        let full: [Int32] = [0, 1, 2, 3, 4, 5, 6]   // unused by a window store: it must read the ring tables
        let steps: [StepBatch] = [
            StepBatch(positions: (0..<40).map { Int32($0) }, tableIndex: Array(repeating: 0, count: 40), pageTables: [full],
                      windowPageTables: [[5, 2, 9, 1, 7]]),
            StepBatch(positions: [40], tableIndex: [0], pageTables: [full], windowPageTables: [[-1, -1, -1, 1, 7, 3]]),
            StepBatch(positions: [41], tableIndex: [0], pageTables: [full], windowPageTables: [[-1, -1, -1, 1, 7, 3]]),
        ]
        func run(_ b: any ComputeBackend, window: Int) throws -> [Float] {
            let kv = try b.makeKVStorage(KVShape(layers: 1, pages: 12, pageSize: pageSize, kvDim: kvDim, type: type, window: window))
            // Without a window (the comparison run) the ring tables serve as the full tables.
            let batches = window != 0 ? steps : steps.map { batch in
                var batch = batch
                batch.pageTables = batch.windowPageTables.map { $0.map { max($0, 0) } }
                return batch
            }
            return try storeAndAttend(b, kv, layer: 0, steps: batches, params: params, seed: 40)
        }
        let gpu = try run(vk, window: window), ref = try run(cpu, window: window)
        let e = relativeError(gpu, ref)
        #expect(e < 1e-5, "\(type) window attention: relative error \(e) against the CPU")
        // Only the first 13 prefill rows see no difference from full attention: the window is in effect.
        // (Full attention over 40 rows takes the prefill kernel, the window store attn_decode: equal to
        // rounding, not bit for bit.)
        let prefillFull = Array(try run(vk, window: 0).prefix(40 * qDim)), prefillWindow = Array(gpu.prefix(40 * qDim))
        #expect(relativeError(Array(prefillWindow.prefix(13 * qDim)), Array(prefillFull.prefix(13 * qDim))) < 1e-5)
        #expect(relativeError(prefillWindow, prefillFull) > 1e-3)
        print("window attention \(type): vs CPU \(e)")
    }

    /// A tiny llama whose first layer has a sliding window of 16, over a 30-token prompt and 20 decode
    /// steps (the ring wraps): Vulkan's greedy tokens (teacher-forced) equal the CPU's, for both KV types.
    @Test(arguments: [KVElementType.f16, .q8_0])
    func windowModelMatchesCPU(type: KVElementType) throws {
        let vk = try Shared.vulkan()
        let file = try syntheticTinyModel(arch: "llama", quant: "q4_k_m", seed: 8)
        var config = try ModelConfig(gguf: file)
        config.attentionWindows = [16, 0]
        func pipeline(_ b: any ComputeBackend) throws -> LocalPipeline {
            LocalPipeline(shards: [try ModelShard(file: file, config: config, layers: 0..<config.layerCount, backend: b,
                                                  options: ShardOptions(contextLength: 128, maxBatchRows: 32, pageSize: 8, kvType: type))])
        }
        let prompt = (0..<30).map { Int32(($0 * 53 + 7) % 500) }
        let r = try Self.compareTeacherForced(cpu: try pipeline(Shared.cpu), vulkan: try pipeline(vk), prompt: prompt,
                                              steps: 20, logitTolerance: 3e-2, nearTie: 0.1)
        #expect(r.mismatches.isEmpty, "window \(type): greedy token differs at steps \(r.mismatches) (max logit error \(r.maxError))")
        print("window layer, \(type) KV: max relative logit error \(r.maxError)")
    }

    @Test func q8KVRefusesRowsThatAreNotWholeBlocks() throws {
        let vk = try Shared.vulkan()
        #expect(throws: ComputeError.self) { try vk.makeKVStorage(KVShape(layers: 1, pages: 4, pageSize: 8, kvDim: 48, type: .q8_0)) }
    }

    /// A tiny synthetic llama with Q8_0 KV: Vulkan's greedy tokens (teacher-forced) equal the CPU's.
    @Test func q8KVSyntheticModelMatchesCPU() throws {
        let vk = try Shared.vulkan()
        let file = try syntheticTinyModel(arch: "llama", quant: "q4_k_m", seed: 5)
        let config = try ModelConfig(gguf: file)
        func pipeline(_ b: any ComputeBackend, _ type: KVElementType) throws -> LocalPipeline {
            LocalPipeline(shards: [try ModelShard(file: file, config: config, layers: 0..<config.layerCount, backend: b,
                                                  options: ShardOptions(contextLength: 128, maxBatchRows: 32, kvType: type))])
        }
        let prompt: [Int32] = [1, 17, 42, 99, 250, 3, 77, 8, 300, 411, 5, 19, 61]
        let r = try Self.compareTeacherForced(cpu: try pipeline(Shared.cpu, .q8_0), vulkan: try pipeline(vk, .q8_0), prompt: prompt,
                                              steps: 24, logitTolerance: 3e-2, nearTie: 0.1)
        #expect(r.mismatches.isEmpty, "q8_0 KV: greedy token differs at steps \(r.mismatches) (max logit error \(r.maxError))")
        // The KV type is in effect: f16 KV gives other logits.
        let a = try Generator(pipeline: try pipeline(vk, .q8_0)).prefill(prompt, sequence: 1)
        let b = try Generator(pipeline: try pipeline(vk, .f16)).prefill(prompt, sequence: 1)
        #expect(relativeError(a, b) > 1e-6, "q8_0 and f16 KV gave the same logits")
        print("q8_0 KV synthetic llama: max relative logit error \(r.maxError), tokens \(r.tokens)")
    }

    /// Steps asking for more logit rows than the head's buffers hold run the head in several passes:
    /// every row's logits equal those of the same row asked for alone (CPU), and Vulkan's match the CPU's.
    @Test func logitsOfManyRowsComeInPasses() throws {
        let vk = try Shared.vulkan()
        let file = try syntheticTinyModel(arch: "llama", quant: "q8_0", seed: 9)
        let config = try ModelConfig(gguf: file)
        let n = 100
        let tokens = (0..<n).map { Int32(($0 * 37 + 11) % config.vocabSize) }
        let rows = (0..<n).map { StepRow(sequence: 1, position: $0) }
        func logits(_ b: any ComputeBackend, _ logitRows: [Int]) throws -> [Float] {
            let shard = try ModelShard(file: file, config: config, layers: 0..<config.layerCount, backend: b,
                                       options: ShardOptions(contextLength: 128, maxBatchRows: 128))
            guard case .logits(let l) = try shard.forward(.tokens(tokens), rows: rows, logitRows: logitRows) else {
                Issue.record("no logits")
                return []
            }
            return l
        }
        let all = Array(0..<n), vocab = config.vocabSize
        let cpuAll = try logits(Shared.cpu, all)
        #expect(cpuAll.count == n * vocab)
        for r in [0, 63, 64, 70, 99] {
            let alone = try logits(Shared.cpu, [r])
            #expect(relativeError(Array(cpuAll[r * vocab..<(r + 1) * vocab]), alone) < 1e-5, "row \(r)")
        }
        let vkAll = try logits(vk, all)
        let e = relativeError(vkAll, cpuAll)
        #expect(e < 3e-2, "Vulkan vs CPU logits of \(n) rows: \(e)")
    }

    /// Weights announced with reserveMemory land in one exactly-sized block; the KV cache gets a block of
    /// its own size; the upload staging is freed once a step runs; the account adds up.
    @Test func memoryAccountAndExactBlocks() throws {
        _ = try Shared.vulkan()
        let vk = try VulkanBackend()
        let g = try TempGGUF([("a", [256, 64], .q4_K), ("b", [512, 96], .q6_K), ("c", [256], .f32), ("d", [4096, 33], .q8_0)])
        let infos = ["a", "b", "c", "d"].map { g.tensor($0) }
        let bytes = infos.reduce(0) { $0 + $1.byteCount }
        vk.reserveMemory(bytes: bytes, buffers: infos.count, for: .weights)
        let weights = try infos.map { try vk.loadWeight($0, of: g.file) }
        var a = vk.memoryAccount
        #expect(a.buffers[.weights] == bytes + 16 * infos.count)
        // One block for the weights: its slack is the announced padding and page rounding only.
        #expect(a.blockBytes >= a.blockBound && a.blockBytes - a.blockBound <= infos.count * 272 + 4096, "\(a)")
        #expect((a.buffers[.upload] ?? 0) > 0, "weights went through no upload staging")
        let shape = KVShape(layers: 3, pages: 5, pageSize: 16, kvDim: 128, type: .q8_0)
        let before = a.blockBytes
        let kv = try vk.makeKVStorage(shape)
        a = vk.memoryAccount
        let layerBytes = 2 * 5 * 16 * ((17 * 4 + 1) / 2) * 4
        #expect(a.buffers[.kv] == 3 * (layerBytes + 16))
        #expect(a.blockBytes - before <= 3 * (layerBytes + 16 + 256) + 4096, "KV block of \(a.blockBytes - before) bytes")
        // A step frees the upload slots.
        let x = try vk.makeActivations(rowCapacity: 2, columns: 256), y = try vk.makeActivations(rowCapacity: 2, columns: 64)
        let out = try step(vk, sequenceBatch(rows: 2, pageSize: 16, pages: 5), {
            vk.upload(randomFloats(512, seed: 3), to: x)
            vk.matmul(weights[0], x, bias: nil, into: y, rows: nil)
        }, then: { vk.download(y, rows: 0..<2) })
        #expect(out.contains { $0 != 0 })
        a = vk.memoryAccount
        #expect((a.buffers[.upload] ?? 0) == 0, "upload staging kept after a step: \(a)")
        #expect(a.deviceAllocated >= a.blockBytes && a.devicePeak >= a.deviceAllocated)
        let report = Dictionary(uniqueKeysWithValues: vk.memoryReport())
        #expect(report["weights"] != nil && report["kv"] != nil && report["device_allocated"]! > 0)
        print("memory report: \(vk.memoryReport())")
        withExtendedLifetime((weights, kv)) {}
    }

    /// A token-embedding table only `embed` reads stays on the host: the rows equal the device table's
    /// and the CPU's (every format), a whole shard puts no device memory into it, and a tied table (also the
    /// output head) is on the device.
    @Test func embeddingTableStaysOnHost() throws {
        let vk = try Shared.vulkan(), cpu = Shared.cpu
        for type in [GGMLType.q4_K, .q6_K, .q8_0, .f16, .q4_0] {
            let k = type.blockSize == 256 ? 512 : 64
            let g = try TempGGUF([("emb", [k, 11], type)], seed: 6)
            let tokens: [Int32] = [3, 0, 10, 3, 7, 9]
            var results: [[Float]] = []
            let backends: [(any ComputeBackend, Bool)] = [(vk, true), (vk, false), (cpu, false)]
            for (b, host) in backends {
                let w = try host ? b.loadEmbeddingTable(g.tensor("emb"), of: g.file) : b.loadWeight(g.tensor("emb"), of: g.file)
                let out = try b.makeActivations(rowCapacity: 8, columns: k)
                results.append(try step(b, sequenceBatch(rows: tokens.count, pageSize: 4, pages: 2), {
                    b.embed(w, tokens: tokens, into: out)
                }, then: { b.download(out, rows: 0..<tokens.count) }))
            }
            #expect(results[0] == results[2], "\(type): host rows differ from the CPU's")
            #expect(relativeError(results[1], results[0]) < 1e-6, "\(type)")
        }
        let file = try syntheticTinyModel(arch: "llama", quant: "q4_k_m", seed: 2)
        let config = try ModelConfig(gguf: file)
        let fresh = try VulkanBackend()
        let shard = try ModelShard(file: file, config: config, layers: 0..<config.layerCount, backend: fresh,
                                   options: ShardOptions(contextLength: 64, maxBatchRows: 8))
        let names = [TensorNames.outputNorm, TensorNames.output] + (0..<config.layerCount).flatMap { TensorNames.layerTensors(config, layer: $0).map(\.name) }
        let infos = names.compactMap { file.tensor(named: $0) }
        let a = fresh.memoryAccount
        #expect(a.buffers[.weights] == infos.reduce(0) { $0 + $1.byteCount + 16 }, "token_embd is on the device: \(a)")
        // Weights and activations were announced: their blocks have (almost) no slack.
        #expect(a.blockBytes - a.blockBound < 64 << 10, "block slack \(a.blockBytes - a.blockBound) bytes: \(fresh.memoryReport())")
        withExtendedLifetime(shard) {}
    }

    /// `freeMemoryBytes` comes from VK_EXT_memory_budget where the device offers it (then `--kv-memory`
    /// as a fraction sizes the pool from it); otherwise it is nil and a fraction is refused by name.
    @Test func freeMemoryFromTheBudgetExtension() throws {
        let vk = try Shared.vulkan()
        let dir = ProcessInfo.processInfo.environment["SHARD_MODELS_DIR"] ?? packageRoot.appendingPathComponent("models").path
        let file = try GGUFFile(path: dir + "/SmolLM2-135M-Instruct.Q4_1.gguf")
        let config = try ModelConfig(gguf: file)
        let options = ShardOptions(contextLength: 64, maxBatchRows: 8, kvMemory: .fraction(0.0001))
        if let free = vk.freeMemoryBytes {
            #expect(free > 0 && free <= vk.device.deviceLocalBytes, "free \(free) of \(vk.device.deviceLocalBytes)")
            #expect(BackendFactory.freeMemory(.vulkan) > 0)
            let shard = try ModelShard(file: file, config: config, layers: 0..<2, backend: vk, options: options)
            #expect(shard.kvBytes > 0 && shard.kvBytes <= Int(Double(free) * 0.0001), "\(shard.kvBytes) bytes of KV")
            print("Vulkan free memory \(free >> 20) MiB; --kv-memory 0.0001 gave \(shard.kvBytes) bytes of KV")
        } else {
            print("\(vk.device.name) has no VK_EXT_memory_budget: free memory unknown")
            #expect(BackendFactory.freeMemory(.vulkan) > 0)   // the heap's size, for the split planner
            do {
                _ = try ModelShard(file: file, config: config, layers: 0..<2, backend: vk, options: options)
                Issue.record("--kv-memory as a fraction was accepted without a free-memory figure")
            } catch {
                #expect("\(error)".contains("does not report its free memory"), "\(error)")
            }
        }
    }
}
