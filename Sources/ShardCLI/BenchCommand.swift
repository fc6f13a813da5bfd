import ArgumentParser
#if canImport(Glibc)
import Glibc
#endif
import Synchronization
import Coordinator
import ShardRuntime
import Wire
import VulkanBackend

extension Shardctl {
    struct Bench: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Measure prefill and decode speed.")
        @OptionGroup var model: ModelOption
        @Option(name: .customLong("prompt-tokens"), help: "Prompt length for the prefill measurement.")
        var promptTokens: Int = 512
        @Option(name: .customLong("gen-tokens"), help: "Tokens generated for the decode measurement.")
        var genTokens: Int = 128
        @OptionGroup var compute: ComputeOptions
        @Option(help: "Concurrent streams.")
        var concurrency: Int = 1
        @Flag(help: "One JSON object instead of a table.")
        var json = false
        @Flag(help: "Time every GPU dispatch (Vulkan) and print a per-op table at the end (to stderr with --json).")
        var profile = false
        @Option(help: ArgumentHelp("Untimed runs first, as llama-bench does, so that first-use costs are not timed.",
                                   discussion: "Each is a prompt of the same length but other tokens, with a few generated tokens (with --concurrency: as many streams at once): pipelines compile and step buffers are allocated there. 0 times a cold start."))
        var warmup: Int = 1

        /// A deterministic prompt of ordinary tokens: ids spread over the vocabulary, away from its first
        /// 500 (where special and byte tokens sit) and its end; `salt` gives another prompt. Vocabularies of
        /// 2000 tokens or fewer (tiny test models) take their middle half.
        static func prompt(length: Int, vocab: Int64, salt: Int64) -> [Int32] {
            let (low, span) = vocab > 2000 ? (Int64(500), vocab - 1000) : (vocab / 4, max(1, vocab / 2))
            return (0..<length).map { Int32((Int64($0) * 7919 + salt * 104_729 + 1000) % span + low) }
        }

        func validate() throws {
            guard promptTokens >= 1, genTokens >= 1 else { throw ValidationError("--prompt-tokens and --gen-tokens must be ≥ 1") }
            guard concurrency >= 1, concurrency <= 4096 else { throw ValidationError("--concurrency must be in 1...4096") }
            guard warmup >= 0, warmup <= 10 else { throw ValidationError("--warmup must be in 0...10") }
        }

        func run() throws {
            var options = try compute.loadOptions(singleSequence: concurrency == 1)
            options.contextLength = max(compute.ctx ?? 0, promptTokens + genTokens + 1)
            if concurrency > 1 {
                if compute.maxSequences == nil { options.kv.maxSequences = concurrency }
                try runConcurrent(options)
                return
            }
            let clock = ContinuousClock()
            let t0 = clock.now
            let m = try loadModel(model.model, options)
            let loadSeconds = (clock.now - t0).seconds
            // A deterministic prompt of ordinary tokens (ids spread over the vocabulary, no specials).
            // GPU timestamps are read from backends in this process (one shard, or --in-process).
            let vulkan = ((m.pipeline as? LocalPipeline)?.shards ?? []).compactMap { $0.backend as? VulkanBackend }
            let vocab = Int32(m.config.vocabSize)
            func ordinaryTokens(_ salt: Int64) -> [Int32] { Self.prompt(length: promptTokens, vocab: Int64(vocab), salt: salt) }
            let prompt = ordinaryTokens(0)
            var greedy = SamplingParams.greedy
            greedy.seed = 1
            // Warm-up prompts differ from the timed one, so that nothing of them can be reused there.
            for w in 0..<warmup {
                _ = try m.generator.generate(prompt: ordinaryTokens(Int64(w) + 1), maxTokens: min(genTokens, 4), sampling: greedy,
                                             isEndOfGeneration: { _ in false }, onToken: { _ in true })
            }
            if profile { for b in vulkan { b.profile = true } }
            // Prefill: the whole prompt; decode: exactly genTokens steps, no early stop. The in-process Vulkan shards'
            // host times at the first token, so that the decode steps' share can be told apart (JSON decode_host).
            var atFirstToken: (times: [VulkanBackend.HostTimes], at: ContinuousClock.Instant)?
            let result = try m.generator.generate(prompt: prompt, maxTokens: genTokens, sampling: greedy,
                                                  isEndOfGeneration: { _ in false }, onToken: { _ in
                if atFirstToken == nil { atFirstToken = (vulkan.map(\.hostTimes), clock.now) }
                return true
            })
            let decodeEnd = clock.now
            for b in vulkan where b.timesHost { Terminal.error("host time per op kind:\n" + b.opTimesReport() + "\n") }
            if profile {
                let report = vulkan.enumerated().map { "GPU profile, shard \($0.offset):\n" + $0.element.profileReport() }.joined(separator: "\n")
                if json { Terminal.error(report) } else { Terminal.write(report + "\n") }
            }
            if json {
                Terminal.write(JSON.object([
                    ("prefill_tokens_per_s", JSON.number(result.prefillTokensPerSecond)),
                    ("decode_tokens_per_s", JSON.number(result.decodeTokensPerSecond)),
                    ("prompt_tokens", "\(promptTokens)"),
                    ("gen_tokens", "\(result.generated.count)"),
                    ("backend", JSON.string(m.backendName)),
                    ("device", JSON.string(m.deviceName)),
                    ("shards", "\(m.shardCount)"),
                    ("activation_link", JSON.string((m.pipeline as? RemotePipeline)?.activationTransport?.rawValue ?? "in-process")),
                    ("concurrency", "\(concurrency)"),
                    ("warmup_runs", "\(warmup)"),
                    ("load_seconds", JSON.number(loadSeconds)),
                    ("device_memory", deviceMemoryJSON(vulkan)),
                    ("decode_host", decodeHostJSON(vulkan, from: atFirstToken, to: decodeEnd, tokens: result.generated.count - 1)),
                ]) + "\n")
            } else {
                Terminal.write("""
                model     \(model.model)
                backend   \(m.backendName) — \(m.deviceName), \(m.shardCount) shard(s)
                load      \(fixed(loadSeconds, 3)) s
                prefill   \(promptTokens) tokens: \(fixed(result.prefillTokensPerSecond, 1)) tok/s
                decode    \(result.generated.count) tokens: \(fixed(result.decodeTokensPerSecond, 1)) tok/s

                """)
                for (i, b) in vulkan.enumerated() {
                    Terminal.write("memory    shard \(i) (MiB): " + b.memoryReport().map { "\($0.0) \(fixed($0.1, 1))" }.joined(separator: ", ") + "\n")
                }
            }
        }
    }
}

/// Where a single stream's decode steps (after its first token) spent their wall time, in ms per token: the steps'
/// recording or matching and host writes, the submit and the wait for the GPU, and the read-back, summed over the
/// in-process Vulkan shards, and the rest of the token (sampling, scheduling, everything between steps). The GPU
/// works only inside `gpu_wait`, so the rest is what keeping the GPU busy between steps could save. null without
/// in-process Vulkan shards.
func decodeHostJSON(_ backends: [VulkanBackend], from first: (times: [VulkanBackend.HostTimes], at: ContinuousClock.Instant)?,
                    to end: ContinuousClock.Instant, tokens: Int) -> String {
    guard !backends.isEmpty, let first, first.times.count == backends.count, tokens > 0 else { return "null" }
    let now = backends.map(\.hostTimes)
    func sum(_ key: KeyPath<VulkanBackend.HostTimes, Double>) -> Double {
        zip(now, first.times).map { $0[keyPath: key] - $1[keyPath: key] }.reduce(0, +) * 1000 / Double(tokens)
    }
    let wall = (end - first.at).seconds * 1000 / Double(tokens)
    let (record, gpu, download) = (sum(\.record), sum(\.gpu), sum(\.download))
    let dispatches = Double(zip(now, first.times).map { $0.dispatches - $1.dispatches }.reduce(0, +)) / Double(tokens)
    return JSON.object([("ms_per_token", JSON.number(wall)), ("record", JSON.number(record)), ("gpu_wait", JSON.number(gpu)),
                        ("download", JSON.number(download)), ("rest", JSON.number(wall - record - gpu - download)),
                        // record's parts: beginStep, the ops, endStep to the submit; inside the ops, `dispatch` calls.
                        ("record_begin", JSON.number(sum(\.begin))), ("record_ops", JSON.number(sum(\.ops))),
                        ("record_end", JSON.number(sum(\.end))), ("record_dispatch", JSON.number(sum(\.dispatch))),
                        ("dispatches_per_token", JSON.number(dispatches)),
                        // Decode steps whose op calls the shards skipped (a repeated step: VulkanBackend.repeatsOps), and
                        // the repeats that a periodic check found differing from their recording (0 unless a bug).
                        ("skipped_steps", "\(zip(now, first.times).map { $0.skipped - $1.skipped }.reduce(0, +))"),
                        ("skip_mismatches", "\(backends.map(\.skipMismatches).reduce(0, +))")])
}

/// Device memory of each in-process Vulkan shard by purpose, in MiB (`VulkanBackend.memoryReport`):
/// an object for one shard, an array of objects for several, null for none.
func deviceMemoryJSON(_ backends: [VulkanBackend]) -> String {
    let objects = backends.map { JSON.object($0.memoryReport().map { ($0.0, JSON.number($0.1)) }) }
    if objects.isEmpty { return "null" }
    return objects.count == 1 ? objects[0] : "[" + objects.joined(separator: ",") + "]"
}

extension Shardctl.Bench {
    /// `--concurrency C`: C streams submitted at once to the model's engine (the HybridScheduler),
    /// each with its own prompt (no shared prefix) and exactly `--gen-tokens` tokens.
    func runConcurrent(_ options: LoadOptions) throws {
        let clock = ContinuousClock()
        let t0 = clock.now
        let m = try loadModel(model.model, options)
        let loadSeconds = (clock.now - t0).seconds
        // GPU timestamps of in-process shards (one shard, or --in-process): steps of more than one row
        // (batched decode and prefill chunks) are the profile's "prefill" phase.
        let local = (m.pipeline as? LocalPipeline)?.shards ?? []
        let vulkan = local.compactMap { $0.backend as? VulkanBackend }
        let engine = m.makeEngine()
        defer { engine.shutdown() }
        let vocab = Int64(m.config.vocabSize)
        /// `concurrency` streams submitted at once (prompts of salts `salt0 ..< salt0 + concurrency`, `tokens` each),
        /// until all have ended.
        func runStreams(salt0: Int, tokens: Int) throws -> [BenchLog.Stream] {
            let log = BenchLog(streams: concurrency)
            for i in 0..<concurrency {
                let prompt = Self.prompt(length: promptTokens, vocab: vocab, salt: Int64(salt0 + i))
                var sampling = SamplingParams.greedy
                sampling.seed = UInt64(i + 1)
                _ = try engine.submit(GenerationRequest(prompt: prompt, maxTokens: tokens, sampling: sampling, logprobs: false), events: { event in
                    log.record(stream: i, event, at: clock.now)
                })
            }
            let streams = log.waitAll()
            if let failure = streams.compactMap(\.failure).first { throw ValidationError("a stream failed: \(failure)") }
            return streams
        }
        // Untimed passes of as many streams with other prompts and a few tokens: the step shapes of the timed pass
        // (prefill chunks, decode steps of `concurrency` rows) compile their pipelines here, not inside the timing.
        for w in 0..<warmup { _ = try runStreams(salt0: (w + 1) * concurrency, tokens: min(genTokens, 8)) }
        if profile { for b in vulkan { b.profile = true } }
        // Counters from here on only (the warm-up's steps are not this run's).
        let steps0 = local.first?.counters.snapshot.steps ?? 0
        let forward0 = local.map(\.counters.snapshot.busySeconds).reduce(0, +)
        let host0 = vulkan.map(\.hostTimes)
        let recorded0 = vulkan.map(\.recordedSteps).reduce(0, +), replayed0 = vulkan.map(\.replayedSteps).reduce(0, +)
        let skipped0 = vulkan.map(\.skippedSteps).reduce(0, +)
        let start = clock.now
        let streams = try runStreams(salt0: 0, tokens: genTokens)
        if profile {
            // The engine is idle now (every stream has ended), so reading its backends here is safe.
            Terminal.error(vulkan.enumerated().map { "GPU profile, shard \($0.offset) (steps of several rows count as prefill):\n"
                + $0.element.profileReport() }.joined(separator: "\n"))
        }
        let r = BenchReport(streams: streams, start: start, promptTokens: promptTokens)
        // Where the wall time went (in-process shards): the shards' forward passes — for Vulkan shards,
        // recording a step, waiting for the GPU and reading results back — and the rest (the scheduler:
        // building steps, sampling, delivering tokens).
        let steps = (local.first?.counters.snapshot.steps ?? 0) - steps0
        let forward = local.map(\.counters.snapshot.busySeconds).reduce(0, +) - forward0
        let host = vulkan.map(\.hostTimes)
        let vkRecord = host.map(\.record).reduce(0, +) - host0.map(\.record).reduce(0, +)
        let vkGPU = host.map(\.gpu).reduce(0, +) - host0.map(\.gpu).reduce(0, +)
        let vkDownload = host.map(\.download).reduce(0, +) - host0.map(\.download).reduce(0, +)
        if json {
            Terminal.write(JSON.object([
                ("prefill_tokens_per_s", JSON.number(r.aggregatePrefill)),
                ("decode_tokens_per_s", JSON.number(r.perStreamDecode.mean)),
                ("prompt_tokens", "\(promptTokens)"),
                ("gen_tokens", "\(genTokens)"),
                ("backend", JSON.string(m.backendName)),
                ("device", JSON.string(m.deviceName)),
                ("shards", "\(m.shardCount)"),
                ("concurrency", "\(concurrency)"),
                ("warmup_runs", "\(warmup)"),
                ("load_seconds", JSON.number(loadSeconds)),
                ("device_memory", deviceMemoryJSON(vulkan)),
                ("aggregate_decode_tokens_per_s", JSON.number(r.aggregateDecode)),
                ("steady_decode_tokens_per_s", JSON.number(r.steadyDecode)),
                ("aggregate_tokens_per_s", JSON.number(r.aggregateThroughput)),
                ("per_stream_decode_tokens_per_s_min", JSON.number(r.perStreamDecode.min)),
                ("per_stream_decode_tokens_per_s_mean", JSON.number(r.perStreamDecode.mean)),
                ("per_stream_decode_tokens_per_s_max", JSON.number(r.perStreamDecode.max)),
                ("ttft_ms_p50", JSON.number(r.ttft.p50 * 1000)),
                ("ttft_ms_p90", JSON.number(r.ttft.p90 * 1000)),
                ("ttft_ms_p99", JSON.number(r.ttft.p99 * 1000)),
                ("itl_ms_p50", JSON.number(r.itl.p50 * 1000)),
                ("itl_ms_p90", JSON.number(r.itl.p90 * 1000)),
                ("itl_ms_p99", JSON.number(r.itl.p99 * 1000)),
                ("wall_seconds", JSON.number(r.wall)),
                ("generated_tokens", "\(r.generated)"),
                ("steps", "\(steps)"),
                ("shard_forward_seconds", JSON.number(forward)),
                ("vulkan_record_seconds", JSON.number(vkRecord)),
                ("vulkan_gpu_wait_seconds", JSON.number(vkGPU)),
                ("vulkan_download_seconds", JSON.number(vkDownload)),
                // Steps whose command buffer was recorded anew / replayed from the shape cache (in-process shards).
                ("vulkan_recorded_steps", "\(vulkan.map(\.recordedSteps).reduce(0, +) - recorded0)"),
                ("vulkan_replayed_steps", "\(vulkan.map(\.replayedSteps).reduce(0, +) - replayed0)"),
                // Of those, steps whose op calls were skipped (VulkanBackend.repeatsOps); checks that found a difference.
                ("vulkan_skipped_steps", "\(vulkan.map(\.skippedSteps).reduce(0, +) - skipped0)"),
                ("vulkan_skip_mismatches", "\(vulkan.map(\.skipMismatches).reduce(0, +))"),
                ("stream_token_hashes", "[" + streams.map { "\"\(String($0.tokenHash, radix: 16))\"" }.joined(separator: ",") + "]"),
            ]) + "\n")
        } else {
            func ms(_ x: Double) -> String { fixed(x * 1000, 1) }
            Terminal.write("""
            model       \(model.model)
            backend     \(m.backendName) — \(m.deviceName), \(m.shardCount) shard(s)
            load        \(fixed(loadSeconds, 3)) s
            streams     \(concurrency) × (\(promptTokens) prompt + \(genTokens) generated tokens), \(fixed(r.wall, 2)) s

                                     tok/s
            aggregate prefill     \(fixed(r.aggregatePrefill, 1).padding(10))  (all prompts until every stream has its first token)
            aggregate decode      \(fixed(r.aggregateDecode, 1).padding(10))  (tokens after every stream started decoding)
            steady decode         \(fixed(r.steadyDecode, 1).padding(10))  (while every stream decodes: until the first one ends)
            aggregate end-to-end  \(fixed(r.aggregateThroughput, 1).padding(10))  (generated tokens / wall time)
            per-stream decode     min \(fixed(r.perStreamDecode.min, 1))  mean \(fixed(r.perStreamDecode.mean, 1))  max \(fixed(r.perStreamDecode.max, 1))

                                  p50        p90        p99
            time to first token   \(ms(r.ttft.p50).padding(10)) \(ms(r.ttft.p90).padding(10)) \(ms(r.ttft.p99)) ms
            inter-token latency   \(ms(r.itl.p50).padding(10)) \(ms(r.itl.p90).padding(10)) \(ms(r.itl.p99)) ms

            """)
            if steps > 0 {
                let per = { (x: Double) in ms(x / Double(steps)) }
                Terminal.write("steps       \(steps) in process: forward \(per(forward)) ms/step"
                    + (vulkan.isEmpty ? "" : " (Vulkan record \(per(vkRecord)), GPU wait \(per(vkGPU)), read-back \(per(vkDownload)))")
                    + ", wall \(per(r.wall)) ms/step\n")
            }
        }
    }
}

/// Token arrival times per stream, filled from the engine's thread.
final class BenchLog: @unchecked Sendable {
    struct Stream {
        var tokenTimes: [ContinuousClock.Instant] = []
        /// FNV-1a of the stream's tokens (bench --json `stream_token_hashes`: batched decode's tokens can be
        /// compared with each stream's alone, `--max-sequences 1`).
        var tokenHash: UInt64 = 0xcbf2_9ce4_8422_2325
        var done = false
        var failure: String?
    }
    private let lock = Mutex<[Stream]>([])
    init(streams: Int) { lock.withLock { $0 = Array(repeating: Stream(), count: streams) } }

    func record(stream i: Int, _ event: GenerationEvent, at time: ContinuousClock.Instant) {
        lock.withLock { s in
            switch event {
            case .token(let t):
                s[i].tokenTimes.append(time)
                s[i].tokenHash = (s[i].tokenHash ^ UInt64(UInt32(bitPattern: t.token))) &* 0x100_0000_01b3
            case .finished: s[i].done = true
            case .failed(let m): s[i].done = true; s[i].failure = m
            }
        }
    }

    func waitAll() -> [Stream] {
        while true {
            let s = lock.withLock { $0 }
            if s.allSatisfy(\.done) { return s }
            usleep(2000)
        }
    }
}

/// The numbers `bench --concurrency` reports.
struct BenchReport {
    struct Percentiles { var p50 = 0.0, p90 = 0.0, p99 = 0.0 }
    struct Spread { var min = 0.0, mean = 0.0, max = 0.0 }
    var aggregatePrefill = 0.0
    var aggregateDecode = 0.0
    /// Decode while every stream decodes: the tokens after every stream had its first one, up to the first stream's
    /// last token, over that span — llama-batched-bench's decode phase (all B sequences in every step); 0 where
    /// no such span exists (a stream finished before the last one started).
    var steadyDecode = 0.0
    var aggregateThroughput = 0.0
    var perStreamDecode = Spread()
    var ttft = Percentiles()
    var itl = Percentiles()
    var wall = 0.0
    var generated = 0

    init(streams: [BenchLog.Stream], start: ContinuousClock.Instant, promptTokens: Int) {
        func secs(_ t: ContinuousClock.Instant) -> Double { (t - start).seconds }
        let firsts = streams.compactMap { $0.tokenTimes.first.map(secs) }
        let lasts = streams.compactMap { $0.tokenTimes.last.map(secs) }
        generated = streams.map(\.tokenTimes.count).reduce(0, +)
        wall = lasts.max() ?? 0
        let allStarted = firsts.max() ?? 0
        aggregatePrefill = allStarted > 0 ? Double(streams.count * promptTokens) / allStarted : 0
        // Decode: the tokens that came after every stream had its first one, over that span.
        let decodeTokens = streams.map { $0.tokenTimes.filter { secs($0) > allStarted }.count }.reduce(0, +)
        aggregateDecode = wall > allStarted ? Double(decodeTokens) / (wall - allStarted) : 0
        let firstDone = lasts.min() ?? 0
        if firstDone > allStarted {
            let steadyTokens = streams.map { $0.tokenTimes.filter { secs($0) > allStarted && secs($0) <= firstDone }.count }.reduce(0, +)
            steadyDecode = Double(steadyTokens) / (firstDone - allStarted)
        }
        aggregateThroughput = wall > 0 ? Double(generated) / wall : 0
        let rates = streams.compactMap { s -> Double? in
            guard s.tokenTimes.count > 1 else { return nil }
            return Double(s.tokenTimes.count - 1) / (s.tokenTimes.last! - s.tokenTimes.first!).seconds
        }
        if !rates.isEmpty { perStreamDecode = Spread(min: rates.min()!, mean: rates.reduce(0, +) / Double(rates.count), max: rates.max()!) }
        ttft = BenchReport.percentiles(firsts)
        let gaps = streams.flatMap { s in zip(s.tokenTimes.dropFirst(), s.tokenTimes).map { ($0 - $1).seconds } }
        itl = BenchReport.percentiles(gaps)
    }

    /// Nearest-rank percentiles.
    static func percentiles(_ values: [Double]) -> Percentiles {
        guard !values.isEmpty else { return Percentiles() }
        let v = values.sorted()
        func at(_ p: Double) -> Double { v[min(v.count - 1, max(0, Int((p * Double(v.count)).rounded(.up)) - 1))] }
        return Percentiles(p50: at(0.5), p90: at(0.9), p99: at(0.99))
    }
}
