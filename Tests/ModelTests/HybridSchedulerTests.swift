import Compute
import Coordinator
import Foundation
import GGUF
import Model
import ShardRuntime
import Synchronization
import Testing

/// Collects one request's events (SerialEngine and HybridScheduler tests); `wait` blocks until its last event.
final class EventLog: Sendable {
    let events = Mutex<[GenerationEvent]>([])
    let done = Atomic<Bool>(false)
    var sink: @Sendable (GenerationEvent) -> Void {
        { e in
            self.events.withLock { $0.append(e) }
            switch e { case .finished, .failed: self.done.store(true, ordering: .releasing); default: break }
        }
    }
    func wait(timeout: Double = 600) -> [GenerationEvent] {
        let start = ContinuousClock.now
        while !done.load(ordering: .acquiring) {
            if (ContinuousClock.now - start) > .seconds(timeout) { Issue.record("request did not finish"); break }
            usleep(1000)
        }
        return events.withLock { $0 }
    }
    var tokens: [Int32] { events.withLock { $0.compactMap { if case .token(let t) = $0 { t.token } else { nil } } } }
    var tokenEvents: [TokenEvent] { events.withLock { $0.compactMap { if case .token(let t) = $0 { t } else { nil } } } }
    var summary: GenerationSummary? {
        events.withLock { if case .finished(let s)? = $0.last { s } else { nil } }
    }
    var failure: String? { events.withLock { if case .failed(let m)? = $0.last { m } else { nil } } }
}

/// Loads SmolLM2 once per test (the file is mmapped, so this is cheap).
struct SmolModel {
    let file: GGUFFile
    let config: ModelConfig
    init() throws {
        file = try GGUFFile(path: try modelPath(smolLM2))
        config = try ModelConfig(gguf: file)
    }
    func pipeline(_ options: ShardOptions, config: ModelConfig? = nil, shards: Int = 1, pool: ThreadPool? = nil) throws -> LocalPipeline {
        let c = config ?? self.config
        let plan = try LayerPlan.even(layers: c.layerCount, shards: shards)
        return LocalPipeline(shards: try plan.map { range in
            try ModelShard(file: file, config: c, layers: range, backend: pool.map { CPUBackend(pool: $0) } ?? CPUBackend(), options: options)
        })
    }
}

/// Prompts of mixed lengths (3 to 75 tokens) of ordinary token ids.
func mixedPrompts(_ n: Int, seed: Int = 0) -> [[Int32]] {
    (0..<n).map { i in
        let length = [3, 75, 17, 40, 9, 33, 61, 5, 28, 50][(i + seed) % 10]
        return [1] + (0..<length - 1).map { j in Int32(500 + ((i * 7919 + j * 104729 + seed * 31) % 40000)) }
    }
}

/// Runs each request alone through a fresh generator: the reference tokens and their logits.
func referenceRuns(_ pipeline: LocalPipeline, _ prompts: [[Int32]], maxTokens: Int) throws -> [(tokens: [Int32], logits: [[Float]])] {
    let gen = Generator(pipeline: pipeline)
    return try prompts.map { p in
        var logits: [[Float]] = []
        let r = try gen.generate(prompt: p, maxTokens: maxTokens, sampling: .greedy, isEndOfGeneration: { _ in false },
                                 onToken: { (_: Int32, l: [Float]) in logits.append(l); return true })
        return (r.generated, logits)
    }
}

@Suite(.serialized) struct HybridSchedulerTests {
    /// Each of 8 mixed-length requests batched together (prefill chunks of 16 mixed with decode rows)
    /// gets the same greedy tokens as alone, and the same logits: the CPU kernels give bit-identical
    /// rows whatever else is in the batch, so the log-probabilities match exactly.
    @Test func batchOfEightEqualsEachAlone() throws {
        let m = try SmolModel()
        let options = ShardOptions(contextLength: 256, maxBatchRows: 64, pageSize: 16, maxSequences: 8)
        let prompts = mixedPrompts(8)
        let reference = try referenceRuns(try m.pipeline(options), prompts, maxTokens: 10)

        var s = SchedulerOptions()
        s.prefillChunk = 16
        s.maxSequences = 8
        let pipeline = try m.pipeline(options)
        let engine = HybridScheduler(pipeline: pipeline, options: s)
        defer { engine.shutdown() }
        let logs = prompts.map { _ in EventLog() }
        for (p, log) in zip(prompts, logs) {
            _ = try engine.submit(GenerationRequest(prompt: p, maxTokens: 10, topLogprobs: 1), events: log.sink)
        }
        for (i, log) in logs.enumerated() {
            _ = log.wait()
            #expect(log.tokens == reference[i].tokens, "request \(i)")
            #expect(log.summary?.reason == .length && log.summary?.generatedTokens == 10)
            for (t, ref) in zip(log.tokenEvents, reference[i].logits) {
                let expected = ref.withUnsafeBufferPointer { logprobs($0, token: t.token, top: 1) }
                #expect(t.logprob == expected.logprob, "request \(i): logits differ from the request alone")
            }
        }
        #expect(engine.counters().steps < 8 * 10, "requests were batched")
        // What stays is the prefix cache of finished sequences, the same on the shard as in the scheduler.
        for _ in 0..<1000 where pipeline.shards[0].kv.usedPageCount != engine.stats().kvPagesUsed { usleep(1000) }
        // Six of the eight computed at least one whole page (16 positions) and are cached.
        #expect(engine.stats().running == 0 && engine.counters().cachedSequences == 6)
        #expect(pipeline.shards[0].kv.usedPageCount == engine.stats().kvPagesUsed)
    }

    /// Requests that do not ask for log-probabilities (mixed with one that does, in the same batches)
    /// get the same greedy tokens; their events carry no log-probability, the other's do.
    @Test func requestsWithoutLogprobsGetTheSameTokens() throws {
        let m = try SmolModel()
        let options = ShardOptions(contextLength: 256, maxBatchRows: 64, pageSize: 16, maxSequences: 4)
        let prompts = mixedPrompts(4, seed: 3)
        let reference = try referenceRuns(try m.pipeline(options), prompts, maxTokens: 8)
        var s = SchedulerOptions()
        s.maxSequences = 4
        let engine = HybridScheduler(pipeline: try m.pipeline(options), options: s)
        defer { engine.shutdown() }
        let logs = prompts.map { _ in EventLog() }
        for (i, (p, log)) in zip(prompts, logs).enumerated() {
            _ = try engine.submit(GenerationRequest(prompt: p, maxTokens: 8, logprobs: i == 0), events: log.sink)
        }
        for (i, log) in logs.enumerated() {
            _ = log.wait()
            #expect(log.tokens == reference[i].tokens, "request \(i)")
            if i == 0 {
                #expect(log.tokenEvents.allSatisfy { $0.logprob < 0 }, "asked for: real log-probabilities")
            } else {
                #expect(log.tokenEvents.allSatisfy { $0.logprob == 0 && $0.top.isEmpty }, "request \(i)")
            }
        }
    }

    /// More and longer sequences than the pool holds: sequences are preempted and recomputed, the
    /// tokens are the same as alone, and the pool (as the scheduler and every shard see it) never
    /// exceeds its pages.
    @Test func preemptionKeepsTokensAndBoundsThePool() throws {
        let m = try SmolModel()
        // 14 pages of 16 positions: two sequences of ~100 positions at most at once.
        let small = ShardOptions(contextLength: 256, maxBatchRows: 64, pageSize: 16, kvPages: 14, maxSequences: 6)
        let prompts = mixedPrompts(6, seed: 1).map { Array($0.prefix(60)) }
        let maxTokens = 40
        let big = ShardOptions(contextLength: 256, maxBatchRows: 64, pageSize: 16, maxSequences: 1)
        let reference = try referenceRuns(try m.pipeline(big), prompts, maxTokens: maxTokens)

        var s = SchedulerOptions()
        s.prefillChunk = 32
        s.maxSequences = 6
        let pipeline = try m.pipeline(small, shards: 2)
        let engine = HybridScheduler(pipeline: pipeline, options: s)
        defer { engine.shutdown() }
        let logs = prompts.map { _ in EventLog() }
        for (p, log) in zip(prompts, logs) {
            _ = try engine.submit(GenerationRequest(prompt: p, maxTokens: maxTokens), events: log.sink)
        }
        var shardPeak = 0
        while !logs.allSatisfy({ $0.done.load(ordering: .acquiring) }) {
            shardPeak = max(shardPeak, pipeline.shards.map(\.kv.usedPageCount).max()!)
            #expect(engine.stats().kvPagesUsed <= 14)
            usleep(2000)
        }
        for (i, log) in logs.enumerated() {
            #expect(log.failure == nil, "request \(i): \(log.failure ?? "")")
            #expect(log.tokens == reference[i].tokens, "request \(i)")
        }
        let c = engine.counters()
        #expect(c.preemptions > 0, "the pool was large enough: nothing was preempted")
        #expect(c.peakPagesUsed <= 14 && shardPeak <= 14)
        // Finished sequences stay as prefix cache while the pool allows: the shards hold exactly those.
        for _ in 0..<1000 where pipeline.shards[0].kv.usedPageCount != engine.stats().kvPagesUsed { usleep(1000) }
        #expect(pipeline.shards.allSatisfy { $0.kv.usedPageCount == engine.stats().kvPagesUsed }, "shards and scheduler agree")
    }

    /// Requests that share a 64-token system prompt start on the first request's pages: same tokens
    /// as without sharing, fewer pages.
    @Test func prefixSharingGivesTheSameTokensWithFewerPages() throws {
        let m = try SmolModel()
        let options = ShardOptions(contextLength: 256, maxBatchRows: 64, pageSize: 16, maxSequences: 4)
        let system: [Int32] = [1] + (0..<69).map { Int32(1000 + $0 * 37) }
        let prompts = (0..<4).map { i in system + (0..<(5 + 3 * i)).map { Int32(20000 + i * 100 + $0) } }
        func run(sharing: Bool) throws -> ([[Int32]], HybridScheduler.Counters) {
            var s = SchedulerOptions()
            s.prefixSharing = sharing
            s.prefillChunk = 32
            let engine = HybridScheduler(pipeline: try m.pipeline(options, shards: 2), options: s)
            defer { engine.shutdown() }
            let logs = prompts.map { _ in EventLog() }
            for (p, log) in zip(prompts, logs) {
                _ = try engine.submit(GenerationRequest(prompt: p, maxTokens: 8), events: log.sink)
            }
            return (logs.map { _ = $0.wait(); return $0.tokens }, engine.counters())
        }
        let (shared, withSharing) = try run(sharing: true)
        let (plain, without) = try run(sharing: false)
        #expect(shared == plain)
        #expect(withSharing.sharedPrefixPages == 3 * 4, "each later request reuses the 4 whole pages of the prefix")
        #expect(without.sharedPrefixPages == 0)
        #expect(withSharing.peakPagesUsed < without.peakPagesUsed)
    }

    /// A request that arrives after another with the same 64-token system prompt has finished starts
    /// on the finished one's cached pages; with the cache off it recomputes them. Same tokens either way;
    /// with the cache off every page is back in the pool once the requests end.
    @Test func prefixCacheServesASystemPromptToLaterRequests() throws {
        let m = try SmolModel()
        let options = ShardOptions(contextLength: 256, maxBatchRows: 64, pageSize: 16, maxSequences: 4)
        let system: [Int32] = [1] + (0..<69).map { Int32(3000 + $0 * 41) }
        let prompts = [system + [20001, 20002, 20003], system + [20101, 20102]]
        func run(cache: Int) throws -> ([[Int32]], HybridScheduler.Counters, Int) {
            var s = SchedulerOptions()
            s.prefixCache = cache
            let pipeline = try m.pipeline(options)
            let engine = HybridScheduler(pipeline: pipeline, options: s)
            defer { engine.shutdown() }
            var tokens: [[Int32]] = []
            for p in prompts {  // one after the other
                let log = EventLog()
                _ = try engine.submit(GenerationRequest(prompt: p, maxTokens: 6), events: log.sink)
                _ = log.wait()
                tokens.append(log.tokens)
            }
            for _ in 0..<1000 where pipeline.shards[0].kv.usedPageCount != engine.stats().kvPagesUsed { usleep(1000) }
            return (tokens, engine.counters(), pipeline.shards[0].kv.usedPageCount)
        }
        let (cachedTokens, withCache, _) = try run(cache: 4)
        let (plainTokens, without, leftOver) = try run(cache: 0)
        #expect(cachedTokens == plainTokens)
        #expect(withCache.sharedPrefixPages == 4 && withCache.cachedSequences == 2)
        #expect(without.sharedPrefixPages == 0 && without.cachedSequences == 0)
        #expect(leftOver == 0, "without the cache, pages are freed when a sequence ends")
    }

    @Test func cancellationFreesPagesAndNeverFittingRequestsAreRefused() throws {
        let m = try SmolModel()
        let options = ShardOptions(contextLength: 256, maxBatchRows: 64, pageSize: 16, kvPages: 8, maxSequences: 4)
        let pipeline = try m.pipeline(options)
        let engine = HybridScheduler(pipeline: pipeline)
        defer { engine.shutdown() }
        let log = EventLog()
        let handle = try engine.submit(GenerationRequest(prompt: [1, 2, 3, 4], maxTokens: 100), events: log.sink)
        while log.tokens.count < 3 { usleep(1000) }
        #expect(engine.stats().kvPagesUsed > 0)
        handle.cancel()
        _ = log.wait()
        #expect(log.summary?.reason == .cancelled)
        for _ in 0..<1000 where pipeline.shards[0].kv.usedPageCount > 0 { usleep(1000) }
        #expect(engine.stats().kvPagesUsed == 0)
        #expect(pipeline.shards[0].kv.usedPageCount == 0, "the shard got the pages back")
        // 8 pages × 16 = 128 positions: a 100-token prompt with 100 more tokens can never fit.
        do {
            _ = try engine.submit(GenerationRequest(prompt: Array(repeating: 5, count: 100), maxTokens: 100), events: { _ in })
            Issue.record("a request larger than the KV pool was accepted")
        } catch {
            #expect("\(error)".contains("KV pool holds 8"), "\(error)")
        }
    }

    /// Sliding-window layers (a synthetic window on SmolLM2's odd layers) hold at most their ring of
    /// pages per sequence, however long it grows; the ring gives the same logits whether positions
    /// arrive one per step or in chunks that wrap around it; with a window longer than the sequence
    /// they equal full attention.
    @Test func slidingWindowLayersHoldAtMostTheirRing() throws {
        let m = try SmolModel()
        var windowed = m.config
        windowed.attentionWindows = (0..<m.config.layerCount).map { $0 % 2 == 1 ? 40 : 0 }
        let options = ShardOptions(contextLength: 256, maxBatchRows: 24, pageSize: 8, maxSequences: 2)
        let tokens: [Int32] = [1] + (0..<149).map { Int32(700 + $0 * 13) }
        func logits(_ config: ModelConfig, chunk: Int) throws -> ([Float], ModelShard) {
            let shard = try ModelShard(file: m.file, config: config, layers: 0..<config.layerCount, backend: CPUBackend(), options: options)
            var out: [Float] = []
            var start = 0
            var maxWindowPages = 0
            while start < tokens.count {
                let end = min(tokens.count, start + chunk)
                let rows = (start..<end).map { StepRow(sequence: 7, position: $0) }
                if case .logits(let l) = try shard.forward(.tokens(Array(tokens[start..<end])), rows: rows, logitRows: [end - start - 1]) {
                    out += l
                }
                maxWindowPages = max(maxWindowPages, shard.kv.usedWindowPageCount)
                start = end
            }
            #expect(maxWindowPages <= shard.kv.ringPages, "a window layer held \(maxWindowPages) pages, ring is \(shard.kv.ringPages)")
            return (out, shard)
        }
        let (oneByOne, _) = try logits(windowed, chunk: 1)
        let (chunked, shard) = try logits(windowed, chunk: 24)
        // Window 40 + a step of up to 24 rows, in pages of 8, plus one page: 9 pages of 150 positions' 19.
        #expect(shard.kv.ringPages == (40 - 1 + 24 + 7) / 8 + 1)
        // Compare the logits of the last position (every chunk's last row is a different position).
        let vocab = m.config.vocabSize
        #expect(Array(oneByOne.suffix(vocab)) == Array(chunked.suffix(vocab)), "ring order depends on the chunking")
        #expect(shard.kv.usedWindowPageCount <= shard.kv.ringPages)
        #expect(shard.kv.usedPageCount == (150 + 7) / 8, "full layers keep every position")
        var wide = m.config
        wide.attentionWindows = (0..<m.config.layerCount).map { $0 % 2 == 1 ? 1000 : 0 }
        let (full, _) = try logits(m.config, chunk: 24)
        let (wideWindow, _) = try logits(wide, chunk: 24)
        #expect(full == wideWindow, "a window longer than the sequence is full attention")
        #expect(full.suffix(vocab) != chunked.suffix(vocab), "the window changes the result")
    }

    /// q8_0 KV against f16 KV on a 91-token prompt: the same top token, next-token distributions within
    /// KL 0.01 nats and 0.02 in any probability, logits within 5% of their spread (measured: KL 0.0036,
    /// 0.0007, 3.1%). Why that tolerance: Q8_0 stores each block of 32 values to 1/254 of the block's
    /// largest magnitude (≈0.4% error per value, against f16's 0.05%); the errors enter every attention
    /// score and output of 30 layers and compound, more in a 135M model than in large ones. The bounds
    /// are loose enough for that and tight enough to catch a wrong block layout or scale (which gives
    /// KL ≫ 1).
    @Test func q8KVStaysCloseToF16() throws {
        let m = try SmolModel()
        let prompt: [Int32] = [1] + (0..<90).map { Int32(600 + $0 * 211 % 30000) }
        var results: [[Float]] = []
        var bytes: [Int] = []
        for type in [KVElementType.f16, .q8_0] {
            let options = ShardOptions(contextLength: 128, maxBatchRows: 64, pageSize: 16, kvType: type)
            let p = try m.pipeline(options)
            bytes.append(p.shards[0].kvBytes)
            results.append(try Generator(pipeline: p).prefill(prompt, sequence: 1))
        }
        let (f16, q8) = (results[0], results[1])
        // Softmax distributions: KL(f16 ‖ q8) and the largest probability difference.
        func softmax(_ x: [Float]) -> [Double] {
            let m = x.max()!
            let e = x.map { exp(Double($0 - m)) }
            let z = e.reduce(0, +)
            return e.map { $0 / z }
        }
        let p = softmax(f16), q = softmax(q8)
        let kl = zip(p, q).map { $0 > 0 ? $0 * log($0 / max($1, 1e-300)) : 0 }.reduce(0, +)
        let maxProbDiff = zip(p, q).map { abs($0 - $1) }.max()!
        let spread = f16.max()! - f16.min()!
        let worst = zip(f16, q8).map { abs($0 - $1) }.max()!
        print("q8_0 vs f16 KV: KL \(kl), max probability difference \(maxProbDiff), worst logit difference \(worst) of spread \(spread)")
        #expect(kl < 0.01, "KL(f16 ‖ q8_0) = \(kl)")
        #expect(maxProbDiff < 0.02)
        #expect(worst < 0.05 * spread, "q8_0 logits differ by \(worst), spread \(spread)")
        #expect(f16.indices.max { f16[$0] < f16[$1] } == q8.indices.max { q8[$0] < q8[$1] })
        #expect(Double(bytes[1]) / Double(bytes[0]) == 34.0 / 64.0)
    }

    /// A long prompt is prefilled in chunks between the decode steps of streams already running: they
    /// keep getting tokens before the long request's first token.
    @Test func longPromptDoesNotStallStreamingRequests() throws {
        let m = try SmolModel()
        let options = ShardOptions(contextLength: 512, maxBatchRows: 64, pageSize: 16, maxSequences: 4)
        var s = SchedulerOptions()
        s.prefillChunk = 16
        let engine = HybridScheduler(pipeline: try m.pipeline(options), options: s)
        defer { engine.shutdown() }
        let streams = (0..<2).map { _ in EventLog() }
        for (i, log) in streams.enumerated() {
            _ = try engine.submit(GenerationRequest(prompt: [1, Int32(300 + i)], maxTokens: 200), events: log.sink)
        }
        while streams.contains(where: { $0.tokens.isEmpty }) { usleep(500) }
        let long = EventLog()
        let longPrompt: [Int32] = [1] + (0..<319).map { Int32(800 + $0 * 7) }
        let before = streams.map(\.tokens.count)
        _ = try engine.submit(GenerationRequest(prompt: longPrompt, maxTokens: 2), events: long.sink)
        while long.tokens.isEmpty && long.failure == nil { usleep(200) }
        let during = zip(streams, before).map { $0.tokens.count - $1 }
        // 320 prompt tokens in chunks of 16: 20 steps, each also decoding the two streams.
        #expect(during.allSatisfy { $0 >= 15 }, "streams got \(during) tokens while the long prompt was prefilled")
        for h in streams { _ = h.wait() }
        _ = long.wait()
    }

    /// At most `maxSequences` run at once; the rest wait their turn and all finish, in order of arrival.
    /// Each request samples with its own seed, as it would alone.
    @Test func maxSequencesAndPerRequestSampling() throws {
        let m = try SmolModel()
        let options = ShardOptions(contextLength: 256, maxBatchRows: 64, pageSize: 16, maxSequences: 2)
        var sampling = SamplingParams()
        sampling.temperature = 0.9
        let prompts = mixedPrompts(5, seed: 3)
        let gen = Generator(pipeline: try m.pipeline(options))
        let reference = try prompts.enumerated().map { i, p in
            var sp = sampling
            sp.seed = UInt64(100 + i)
            return try gen.generate(prompt: p, maxTokens: 12, sampling: sp, isEndOfGeneration: { _ in false }, onToken: { _ in true }).generated
        }
        var s = SchedulerOptions()
        s.maxSequences = 2
        let engine = HybridScheduler(pipeline: try m.pipeline(options), options: s)
        defer { engine.shutdown() }
        let logs = prompts.map { _ in EventLog() }
        for (i, (p, log)) in zip(prompts, logs).enumerated() {
            var sp = sampling
            sp.seed = UInt64(100 + i)
            _ = try engine.submit(GenerationRequest(prompt: p, maxTokens: 12, sampling: sp), events: log.sink)
        }
        var mostRunning = 0
        while !logs.allSatisfy({ $0.done.load(ordering: .acquiring) }) {
            mostRunning = max(mostRunning, engine.stats().running)
            usleep(500)
        }
        #expect(mostRunning <= 2)
        #expect(logs.map(\.tokens) == reference)
        let finished = logs.map { $0.summary!.totalSeconds - $0.summary!.timeToFirstToken }
        #expect(finished.allSatisfy { $0 >= 0 })
    }

    @Test func backpressureRefusesBeyondTheQueueLimit() throws {
        let m = try SmolModel()
        var s = SchedulerOptions()
        s.maxSequences = 1
        s.maxQueued = 2
        let engine = HybridScheduler(pipeline: try m.pipeline(ShardOptions(contextLength: 128, maxBatchRows: 32)), options: s)
        defer { engine.shutdown() }
        var refused = 0
        var handles: [RequestHandle] = []
        for _ in 0..<6 {
            do {
                handles.append(try engine.submit(GenerationRequest(prompt: [1, 2, 3], maxTokens: 50), events: { _ in }))
            } catch {
                #expect("\(error)".contains("busy"))
                refused += 1
            }
        }
        #expect(refused >= 1)
        handles.forEach { $0.cancel() }
    }

    @Test func kvMemoryBudgetsParse() {
        #expect(KVMemory(parsing: "512MiB") == .bytes(512 << 20))
        #expect(KVMemory(parsing: "2GiB") == .bytes(2 << 30))
        #expect(KVMemory(parsing: "1000000") == .bytes(1_000_000))
        #expect(KVMemory(parsing: "0.5") == .fraction(0.5))
        #expect(KVMemory(parsing: "1.5") == nil)
        #expect(KVMemory(parsing: "-3MiB") == nil)
        #expect(KVMemory(parsing: "lots") == nil)
    }

    /// A budget becomes whole pages: SmolLM2 (30 layers, kvDim 192) takes 30 × 2 × 32 × 192 × 2 bytes
    /// = 737,280 bytes per f16 page of 32 positions.
    @Test func poolIsSizedFromTheBudget() throws {
        let m = try SmolModel()
        let options = ShardOptions(contextLength: 8192, maxBatchRows: 64, kvMemory: .bytes(100 << 20), maxSequences: 4)
        let shard = try ModelShard(file: m.file, config: m.config, layers: 0..<30, backend: CPUBackend(), options: options)
        #expect(shard.kv.pageCount == (100 << 20) / 737_280)
        #expect(shard.kvBytes <= 100 << 20)
        #expect(throws: (any Error).self) {
            _ = try ModelShard(file: m.file, config: m.config, layers: 0..<30, backend: CPUBackend(),
                               options: ShardOptions(contextLength: 256, kvMemory: .bytes(1000)))
        }
    }
}

/// Long context on a reduced model: the tiny synthetic llama with an 8192-token context prefills a
/// 8100-token prompt in chunks and generates, with the KV pool (and so memory) fixed up front.
@Suite struct LongContextTests {
    @Test func tinyModelAt8192Tokens() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("shard-long-\(getpid())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("tiny-8k.gguf").path
        var c = try SyntheticModel.config(arch: "llama", preset: "tiny")
        c.contextLength = 8192
        try SyntheticModel.writer(config: c, quant: SyntheticModel.quant("q8_0")).write(to: path)
        let file = try GGUFFile(path: path)
        let config = try ModelConfig(gguf: file)
        #expect(config.contextLength == 8192)
        // 2 layers × K,V × 32 positions × kvDim 128 × 2 bytes = 32 KiB a page: 8 MiB is 256 pages, 8192 positions.
        let options = ShardOptions(contextLength: 8192, maxBatchRows: 512, pageSize: 32, kvMemory: .bytes(8 << 20), maxSequences: 2)
        let shard = try ModelShard(file: file, config: config, layers: 0..<config.layerCount, backend: CPUBackend(), options: options)
        let pages = shard.kv.pageCount
        #expect(pages == 256 && shard.kvBytes == 8 << 20)
        var s = SchedulerOptions()
        s.prefillChunk = 512
        let engine = HybridScheduler(pipeline: LocalPipeline(shards: [shard]), options: s)
        defer { engine.shutdown() }
        let prompt: [Int32] = [1] + (0..<8179).map { Int32(3 + $0 % 500) }
        let log = EventLog()
        _ = try engine.submit(GenerationRequest(prompt: prompt, maxTokens: 8), events: log.sink)
        _ = log.wait()
        #expect(log.failure == nil, "\(log.failure ?? "")")
        #expect(log.tokens.count == 8)
        #expect(engine.counters().peakPagesUsed <= pages)
    }
}
