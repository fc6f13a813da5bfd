import Compute
import Glibc
import Coordinator
import GGUF
import Model
import ShardRuntime
import Synchronization
import Testing

/// The one-request-at-a-time engine: same tokens as the Generator, events in order, cancellation.
@Suite(.serialized) struct SerialEngineTests {
    func engine() throws -> (SerialEngine, Generator) {
        let file = try GGUFFile(path: try modelPath(smolLM2))
        let config = try ModelConfig(gguf: file)
        let shard = try ModelShard(file: file, config: config, layers: 0..<config.layerCount, backend: CPUBackend(),
                                   options: ShardOptions(contextLength: 256, maxBatchRows: 64))
        let gen = Generator(pipeline: LocalPipeline(shards: [shard]))
        return (SerialEngine(generator: gen), gen)
    }

    @Test func requestsRunInOrderWithTheGeneratorsTokens() throws {
        let (e, _) = try engine()
        defer { e.shutdown() }
        let prompts: [[Int32]] = [[1, 504, 3458, 282], [1, 33, 44, 55, 66, 77]]
        let collectors = prompts.map { _ in EventLog() }
        for (p, c) in zip(prompts, collectors) {
            _ = try e.submit(GenerationRequest(prompt: p, maxTokens: 6, topLogprobs: 3), events: c.sink)
        }
        let results = collectors.map { $0.wait() }
        // The reference: the same requests through a fresh generator, one after the other.
        let (_, gen) = try engine()
        for (p, events) in zip(prompts, results) {
            let ref = try gen.generate(prompt: p, maxTokens: 6, sampling: .greedy, isEndOfGeneration: { _ in false }, onToken: { _ in true })
            let tokens = events.compactMap { if case .token(let t) = $0 { t } else { nil } }
            #expect(tokens.map(\.token) == ref.generated)
            for t in tokens {
                #expect(t.top.count == 3 && t.top[0].token == t.token, "greedy picks the most likely token")
                #expect(t.logprob <= 0 && abs(t.logprob - t.top[0].logprob) < 1e-5)
            }
            guard case .finished(let s) = events.last else { Issue.record("no finished event"); continue }
            #expect(s.reason == .length && s.generatedTokens == 6 && s.promptTokens == p.count)
        }
    }

    @Test func cancelStopsARequestAndTooLongPromptsAreRefused() throws {
        let (e, _) = try engine()
        defer { e.shutdown() }
        let c = EventLog()
        let handle = try e.submit(GenerationRequest(prompt: [1, 2, 3], maxTokens: 200), events: c.sink)
        while c.tokens.count < 2 { usleep(1000) }
        handle.cancel()
        let events = c.wait()
        guard case .finished(let s) = events.last else { Issue.record("no finished event"); return }
        #expect(s.reason == .cancelled && s.generatedTokens < 200)
        #expect(throws: GenerationError.self) {
            try e.submit(GenerationRequest(prompt: Array(repeating: 5, count: 300), maxTokens: 1), events: { _ in })
        }
    }
}
