import ArgumentParser
import Model

extension Shardctl {
    struct Synth: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Write a random-weight GGUF model of a real shape (loads in Shard and llama.cpp).")
        @Option(help: "Architecture: llama or qwen2.")
        var arch: String = "llama"
        @Option(help: "Size preset: tiny, 135m (llama: SmolLM2-135M's shape), 1b, 7b, 13b or 70b.")
        var preset: String = "tiny"
        @Option(help: "Quantization: q4_k_m, q4_0, q8_0 or f16.")
        var quant: String = "q4_k_m"
        @Option(help: "Random seed.")
        var seed: UInt64 = 0
        @Option(help: "Output path.")
        var out: String

        func validate() throws {
            guard ["llama", "qwen2"].contains(arch) else { throw ValidationError("--arch must be llama or qwen2 (gemma3 comes with its issue)") }
            guard SyntheticModel.presets.contains(preset) else {
                throw ValidationError("--preset must be \(SyntheticModel.presets.joined(separator: ", "))")
            }
            guard ["q4_k_m", "q4_0", "q8_0", "f16"].contains(quant) else { throw ValidationError("--quant must be q4_k_m, q4_0, q8_0 or f16") }
        }

        func run() throws {
            try SyntheticModel.write(arch: arch, preset: preset, quant: quant, to: out, seed: seed)
        }
    }
}
