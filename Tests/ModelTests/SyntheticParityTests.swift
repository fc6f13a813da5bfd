import Compute
import Coordinator
import Foundation
import GGUF
import Model
import ShardRuntime
import Testing
import Tokenizer

/// Tiny random-weight models written by `shardctl synth` against llama.cpp's logits on the same files
/// (goldens from scripts/golden-model.py; the writer is deterministic for a seed).
@Suite struct SyntheticParityTests {
    @Test(arguments: ["llama", "qwen2"])
    func tinyModelMatchesLlamaCpp(arch: String) throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("shard-synth-\(getpid())-\(arch)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("tiny.gguf").path
        try SyntheticModel.write(arch: arch, preset: "tiny", quant: "q4_k_m", to: path, seed: 0)

        let golden = try ModelGolden.load("synth-\(arch)-tiny.json")
        let file = try GGUFFile(path: path)
        let config = try ModelConfig(gguf: file)
        #expect(config.hasQKVBias == (arch == "qwen2"))
        #expect(config.ropeNeox == (arch == "qwen2"))
        let tokenizer = try Tokenizer(gguf: file)
        for c in golden.cases {
            #expect(tokenizer.encode(c.prompt) == c.ids, "token ids of \(c.prompt.debugDescription)")
        }
        let shard = try ModelShard(file: file, config: config, layers: 0..<config.layerCount, backend: CPUBackend(),
                                   options: ShardOptions(contextLength: 128, maxBatchRows: 64))
        let p = LocalPipeline(shards: [shard])
        // Random weights give flat logits (all top-10 within ~1 of each other); both engines' 8-bit
        // activation rounding moves them by a few hundredths, so allow a tenth of that spread.
        let parity = LlamaCppParity(golden: golden, nearTie: 0.1, logitTolerance: 0.1, gapTolerance: 0.1)
        try parity.checkTopLogits(p, Generator(pipeline: p))
        try parity.checkGreedy(p, Generator(pipeline: p))
    }
}
