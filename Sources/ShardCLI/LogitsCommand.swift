import ArgumentParser
import Coordinator

extension Shardctl {
    struct Logits: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Print the K highest next-token logits as JSON.")
        @OptionGroup var model: ModelOption
        @Option(help: "The prompt text.")
        var prompt: String
        @Option(help: "How many logits to print.")
        var top: Int = 10
        @OptionGroup var compute: ComputeOptions

        func validate() throws {
            guard top >= 1 else { throw ValidationError("--top must be at least 1") }
        }

        func run() throws {
            let m = try loadModel(model.model, try compute.loadOptions(singleSequence: true))
            let ids = m.tokenizer.encode(prompt, addSpecial: true, parseSpecial: true)
            guard !ids.isEmpty else { throw ValidationError("the prompt has no tokens") }
            let logits = try m.generator.prefill(ids, sequence: 0)
            try m.pipeline.release(0)
            let top = Sampler.topK(logits, min(top, logits.count))
            Terminal.write("[" + top.map { JSON.object([("id", "\($0.id)"), ("logit", JSON.number($0.logit))]) }
                .joined(separator: ",") + "]\n")
        }
    }
}
