import ArgumentParser
import Coordinator
import Tokenizer

extension Shardctl {
    struct Generate: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Generate text from a prompt.")

        @Option(help: "Path of a GGUF model file (without it, a running cluster is used).")
        var model: String?
        @Option(help: "The prompt text.")
        var prompt: String
        @Option(name: .customLong("max-tokens"), help: "Most tokens to generate.")
        var maxTokens: Int = 128
        @OptionGroup var sampling: SamplingOptions
        @Flag(help: "Wrap the prompt in the model's chat template.")
        var chat = false
        @OptionGroup var compute: ComputeOptions
        @Flag(help: "One JSON line per token, then a summary line.")
        var json = false

        func validate() throws {
            guard maxTokens >= 0 else { throw ValidationError("--max-tokens must be ≥ 0") }
        }

        func run() throws {
            if let path = model {
                try generate(try loadModel(path, try compute.loadOptions(singleSequence: true)))
            } else {
                // No --model: the cluster `shardctl launch` started.
                guard let cluster = try Cluster.read() else {
                    throw ValidationError("--model is required when no cluster is running (shardctl launch starts one)")
                }
                try Cluster.withLock {
                    var options = try compute.loadOptions()
                    options.workers = cluster.endpoints
                    options.split = cluster.layers.map(\.count)
                    options.backend = cluster.backend
                    options.contextLength = cluster.contextLength
                    options.kv = cluster.kv
                    try generate(try loadModel(cluster.modelPath, options))
                }
            }
        }

        func generate(_ m: LocalModel) throws {
            var text = prompt
            if chat {
                text = m.tokenizer.chatRenderer.render([ChatMessage(role: "user", content: prompt)], addGenerationPrompt: true)
            }
            let ids = m.tokenizer.encode(text, addSpecial: true, parseSpecial: true)
            var decoder = StreamingDecoder(tokenizer: m.tokenizer)
            let result = try m.generator.generate(
                prompt: ids, maxTokens: maxTokens, sampling: sampling.params,
                isEndOfGeneration: { m.tokenizer.isEndOfGeneration($0) }
            ) { token in
                let piece = decoder.append(token)
                if json {
                    Terminal.write(JSON.object([("token", "\(token)"), ("text", JSON.string(piece))]) + "\n")
                } else {
                    Terminal.write(piece)
                }
                return true
            }
            let rest = decoder.flush()
            if json {
                Terminal.write(JSON.object([
                    ("done", "true"),
                    ("prompt_tokens", "\(result.promptTokens)"),
                    ("generated_tokens", "\(result.generated.count)"),
                    ("prefill_tokens_per_s", JSON.number(result.prefillTokensPerSecond)),
                    ("decode_tokens_per_s", JSON.number(result.decodeTokensPerSecond)),
                    ("stop_reason", JSON.string(result.stopReason.rawValue)),
                ]) + "\n")
            } else {
                Terminal.write(rest + "\n")
            }
        }
    }
}
