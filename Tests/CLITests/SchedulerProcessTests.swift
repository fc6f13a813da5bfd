import Compute
import Coordinator
import Foundation
import ShardRuntime
import Synchronization
import Testing

/// The HybridScheduler over two `shard-worker` processes: several micro-batches in flight, KV page
/// operations carried in the frames, and every request's tokens and logits as when it runs alone in
/// one process. Part of the serialized `MultiProcessTests` suite: its tests count the shard-worker
/// processes on the machine, so nothing else here may start workers while they run.
extension MultiProcessTests {
    final class Log: Sendable {
        let events = Mutex<[GenerationEvent]>([])
        let done = Atomic<Bool>(false)
        var sink: @Sendable (GenerationEvent) -> Void {
            { e in
                self.events.withLock { $0.append(e) }
                switch e { case .finished, .failed: self.done.store(true, ordering: .releasing); default: break }
            }
        }
        func wait() {
            let start = ContinuousClock.now
            while !done.load(ordering: .acquiring) && ContinuousClock.now - start < .seconds(600) { usleep(1000) }
        }
        var tokens: [TokenEvent] { events.withLock { $0.compactMap { if case .token(let t) = $0 { t } else { nil } } } }
        var failure: String? { events.withLock { if case .failed(let m)? = $0.last { m } else { nil } } }
    }

    func options(shards: Int) -> LoadOptions {
        var o = LoadOptions()
        o.shards = shards
        o.backend = .cpu
        o.threads = 2
        o.contextLength = 256
        o.maxBatchRows = 64
        o.kv = KVLoadOptions(pageSize: 16, maxSequences: 8)
        o.prefillChunk = 16
        o.inProcess = shards == 1
        return o
    }

    /// GPU workers keep one step per shard in flight (their step time hardly grows with its rows, so a
    /// third micro-batch would only add a pass over the weights); mixed CPU + Vulkan shards count as GPU.
    @Test func vulkanWorkersKeepOneStepPerShardInFlight() throws {
        for backends in [[BackendKind.vulkan, .vulkan], [.cpu, .vulkan]] {
            var o = options(shards: 2)
            o.shardBackends = backends
            let model = try LocalModel(path: smol, options: o)
            #expect(model.pipeline is RemotePipeline)
            #expect(model.pipeline.maxInFlight == 2, "\(backends)")
        }
    }

    @Test func batchThroughTwoWorkerProcessesEqualsEachAloneInOneProcess() throws {
        let prompts: [[Int32]] = (0..<8).map { i in
            let length = [3, 75, 17, 40, 9, 33, 61, 5][i]
            return [1] + (0..<length - 1).map { j in Int32(500 + ((i * 7919 + j * 104729) % 40000)) }
        }
        // Reference: one process, one request at a time.
        let single = try LocalModel(path: smol, options: options(shards: 1))
        var reference: [([Int32], [[Float]])] = []
        for p in prompts {
            var logits: [[Float]] = []
            let r = try single.generator.generate(prompt: p, maxTokens: 8, sampling: .greedy, isEndOfGeneration: { _ in false },
                                                  onToken: { (_: Int32, l: [Float]) in logits.append(l); return true })
            reference.append((r.generated, logits))
        }

        let model = try LocalModel(path: smol, options: options(shards: 2))
        #expect(model.pipeline is RemotePipeline)
        #expect(model.pipeline.maxInFlight == 3, "CPU workers: one step per shard and one more")
        let engine = model.makeEngine()
        #expect(engine is HybridScheduler)
        let logs = prompts.map { _ in Log() }
        for (p, log) in zip(prompts, logs) {
            _ = try engine.submit(GenerationRequest(prompt: p, maxTokens: 8), events: log.sink)
        }
        for (i, log) in logs.enumerated() {
            log.wait()
            #expect(log.failure == nil, "\(log.failure ?? "")")
            #expect(log.tokens.map(\.token) == reference[i].0, "request \(i)")
            for (t, ref) in zip(log.tokens, reference[i].1) {
                let expected = ref.withUnsafeBufferPointer { logprobs($0, token: t.token, top: 0) }
                #expect(t.logprob == expected.logprob, "request \(i): logits differ")
            }
        }
        #expect(engine.stats().running == 0 && engine.stats().waiting == 0)
        engine.shutdown()
    }

    /// Greedy requests through worker processes: the last worker picks each token and computes its
    /// log-probability and alternatives itself (no logits cross the wire); they equal, bit for bit, what
    /// the coordinator computes from the logits of one in-process shard — through the Generator (one
    /// request) and through the HybridScheduler (a batch).
    @Test func workerSideGreedyEqualsCoordinatorSide() throws {
        let prompts: [[Int32]] = [[1, 504, 3458, 282, 4649, 314], [1] + (0..<40).map { Int32(700 + $0 * 311 % 30000) }]
        let top = 5
        let single = try LocalModel(path: smol, options: options(shards: 1))
        var reference: [[TokenEvent]] = []
        for p in prompts {
            var events: [TokenEvent] = []
            _ = try single.generator.generate(prompt: p, maxTokens: 8, sampling: .greedy, isEndOfGeneration: { _ in false },
                                              onToken: { (t: Int32, l: [Float]) in
                                                  events.append(l.withUnsafeBufferPointer { logprobs($0, token: t, top: top) })
                                                  return true })
            reference.append(events)
        }
        withExtendedLifetime(single) {}
        func same(_ a: [TokenEvent], _ b: [TokenEvent], top k: Int, _ what: String) {
            #expect(a.map(\.token) == b.map(\.token), "\(what): tokens")
            #expect(a.map(\.logprob) == b.map(\.logprob), "\(what): log-probabilities")
            #expect(a.map { $0.top.map(\.token) } == b.map { $0.top.prefix(k).map(\.token) }, "\(what): alternatives")
            #expect(a.map { $0.top.map(\.logprob) } == b.map { $0.top.prefix(k).map(\.logprob) }, "\(what): their log-probabilities")
        }

        let model = try LocalModel(path: smol, options: options(shards: 2))
        #expect(model.pipeline is RemotePipeline)
        // The last worker answers a greedy step with picks, not logits.
        let p0 = prompts[0]
        let r = try model.pipeline.run(PipelineStep(tokens: p0, rows: p0.indices.map { StepRow(sequence: 900, position: $0) },
                                                    logitRows: [p0.count - 1], sampling: .greedy(logprobs: true, top: top)))
        try model.pipeline.release(900)
        #expect(r.logits.isEmpty)
        #expect(r.picks.map { $0.map(\.token) } == [reference[0][0].token])
        #expect(r.picks?.first?.logprob == reference[0][0].logprob)

        for (i, p) in prompts.enumerated() {
            var events: [TokenEvent] = []
            _ = try model.generator.generate(prompt: p, maxTokens: 8, sampling: .greedy, topLogprobs: top,
                                             isEndOfGeneration: { _ in false }, onEvent: { events.append($0); return true })
            same(events, reference[i], top: top, "generator, prompt \(i)")
        }

        let engine = model.makeEngine()
        let logs = prompts.map { _ in Log() }
        for (i, (p, log)) in zip(prompts, logs).enumerated() {
            _ = try engine.submit(GenerationRequest(prompt: p, maxTokens: 8, topLogprobs: i + 2), events: log.sink)
        }
        for (i, log) in logs.enumerated() {
            log.wait()
            #expect(log.failure == nil, "\(log.failure ?? "")")
            same(log.tokens, reference[i], top: i + 2, "scheduler, prompt \(i)")
        }
        engine.shutdown()
    }

    /// Workers (and the coordinator) that stay awake between steps (`idleSpin`, on by default only on
    /// hosts with cores to spare) give the same tokens.
    @Test func idleSpinningWorkersGiveTheSameTokens() throws {
        let prompt: [Int32] = [1, 504, 3458, 282, 4649, 314]
        // (The model must outlive its generator: its deinit stops the CPU threads.)
        let single = try LocalModel(path: smol, options: options(shards: 1))
        let reference = try single.generator.generate(prompt: prompt, maxTokens: 8, sampling: .greedy, isEndOfGeneration: { _ in false },
                                                      onToken: { _ in true }).generated
        withExtendedLifetime(single) {}
        var o = options(shards: 2)
        o.idleSpin = .milliseconds(3)
        #expect(o.workerArguments(shard: 0).contains("--idle-spin-ms"))
        let model = try LocalModel(path: smol, options: o)
        let r = try model.generator.generate(prompt: prompt, maxTokens: 8, sampling: .greedy, isEndOfGeneration: { _ in false },
                                             onToken: { _ in true })
        #expect(r.generated == reference)
    }

    /// A worker dies mid-generation: the running requests end with a `.failed` event naming the
    /// shard-worker (not a hang), and the engine shuts down cleanly.
    @Test func deadWorkerFailsRunningRequestsCleanly() throws {
        let model = try LocalModel(path: smol, options: options(shards: 2))
        let engine = model.makeEngine()
        let logs = (0..<2).map { _ in Log() }
        for (i, log) in logs.enumerated() {
            _ = try engine.submit(GenerationRequest(prompt: [1, Int32(400 + i), 500], maxTokens: 200), events: log.sink)
        }
        while logs.contains(where: { $0.tokens.count < 2 }) { usleep(1000) }
        let pids = try Self.pgrep(["-P", "\(getpid())", "shard-worker"])
        try #require(pids.count == 2, "workers: \(pids)")
        kill(pid_t(pids[1])!, SIGKILL)
        for log in logs {
            log.wait()
            #expect(log.failure?.contains("shard-worker") == true, "\(log.failure ?? "no failure")")
        }
        engine.shutdown()
    }

    @Test func benchConcurrencyReportsAggregateAndLatencies() throws {
        let r = try CLI.run(["bench", "--model", smol, "--backend", "cpu", "--concurrency", "3", "--prompt-tokens", "20",
                             "--gen-tokens", "6", "--json", "--shards", "2"])
        #expect(r.status == 0, "\(r.stderr)")
        let object = try #require(try CLI.json(r.lines.last ?? "") as? [String: Any])
        for key in ["aggregate_decode_tokens_per_s", "aggregate_tokens_per_s", "ttft_ms_p50", "ttft_ms_p99", "itl_ms_p50",
                    "itl_ms_p99", "per_stream_decode_tokens_per_s_mean"] {
            #expect(object[key] is Double, "\(key) missing: \(r.stdout)")
        }
        #expect(object["concurrency"] as? Int == 3 && object["generated_tokens"] as? Int == 18 && object["shards"] as? Int == 2)
        // One FNV-1a hash of the generated tokens per stream (for batched-vs-alone parity checks on a GPU).
        let hashes = object["stream_token_hashes"] as? [String] ?? []
        #expect(hashes.count == 3 && hashes.allSatisfy { UInt64($0, radix: 16) != nil }, "stream_token_hashes: \(r.stdout)")
        let bad = try CLI.run(["bench", "--model", smol, "--kv-memory", "lots"])
        #expect(bad.status != 0 && bad.stderr.contains("--kv-memory"))
        let badType = try CLI.run(["bench", "--model", smol, "--kv-type", "q4"])
        #expect(badType.status != 0 && badType.stderr.contains("--kv-type"))
    }

    /// `--warmup N` runs N untimed passes of as many streams first (pipelines of the run's step shapes compile
    /// there); the report counts the timed pass only.
    @Test func benchConcurrencyCountsOnlyTheTimedPass() throws {
        let r = try CLI.run(["bench", "--model", smol, "--backend", "cpu", "--concurrency", "3", "--prompt-tokens", "20",
                             "--gen-tokens", "6", "--json", "--warmup", "2"])
        #expect(r.status == 0, "\(r.stderr)")
        let object = try #require(try CLI.json(r.lines.last ?? "") as? [String: Any])
        #expect(object["warmup_runs"] as? Int == 2 && object["generated_tokens"] as? Int == 18, "\(r.stdout)")
        // At least a prefill and 5 decode steps; at most a prefill per stream and 6 decode steps, with room for a
        // late joiner (three passes counted together would take 20 or more).
        let steps = try #require(object["steps"] as? Int)
        #expect(steps >= 6 && steps <= 12, "steps \(steps): warm-up steps counted?")
    }

    /// A budget too small for a request's prompt: a clear error, not a hang or a truncation.
    @Test func tooSmallKVBudgetIsAClearError() throws {
        let r = try CLI.run(["bench", "--model", smol, "--backend", "cpu", "--concurrency", "2", "--prompt-tokens", "200",
                             "--gen-tokens", "8", "--kv-memory", "2MiB"])
        #expect(r.status != 0)
        #expect(r.stderr.contains("KV pool holds"), "\(r.stderr)")
        #expect(r.stderr.split(separator: "\n").count == 1)
    }
}
