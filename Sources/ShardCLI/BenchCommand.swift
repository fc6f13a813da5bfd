import ArgumentParser
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

        func validate() throws {
            guard promptTokens >= 1, genTokens >= 1 else { throw ValidationError("--prompt-tokens and --gen-tokens must be ≥ 1") }
            guard concurrency == 1 else {
                throw ValidationError("--concurrency above 1 needs the HybridScheduler, which is not built yet")
            }
        }

        func run() throws {
            var options = try compute.loadOptions()
            options.contextLength = max(compute.ctx ?? 0, promptTokens + genTokens + 1)
            let clock = ContinuousClock()
            let t0 = clock.now
            let m = try loadModel(model.model, options)
            let loadSeconds = (clock.now - t0).seconds
            // A deterministic prompt of ordinary tokens (ids spread over the vocabulary, no specials).
            // GPU timestamps are read from backends in this process (one shard, or --in-process).
            let vulkan = ((m.pipeline as? LocalPipeline)?.shards ?? []).compactMap { $0.backend as? VulkanBackend }
            if profile { for b in vulkan { b.profile = true } }
            let vocab = Int32(m.config.vocabSize)
            let prompt = (0..<promptTokens).map { Int32((Int64($0) * 7919 + 1000) % Int64(vocab - 1000)) + 500 }
            var greedy = SamplingParams.greedy
            greedy.seed = 1
            // Prefill: the whole prompt; decode: exactly genTokens steps, no early stop.
            let result = try m.generator.generate(prompt: prompt, maxTokens: genTokens, sampling: greedy,
                                                  isEndOfGeneration: { _ in false }, onToken: { _ in true })
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
                    ("concurrency", "\(concurrency)"),
                    ("load_seconds", JSON.number(loadSeconds)),
                ]) + "\n")
            } else {
                Terminal.write("""
                model     \(model.model)
                backend   \(m.backendName) — \(m.deviceName), \(m.shardCount) shard(s)
                load      \(fixed(loadSeconds, 3)) s
                prefill   \(promptTokens) tokens: \(fixed(result.prefillTokensPerSecond, 1)) tok/s
                decode    \(result.generated.count) tokens: \(fixed(result.decodeTokensPerSecond, 1)) tok/s

                """)
            }
        }
    }
}
