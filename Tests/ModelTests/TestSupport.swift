import Foundation
import Testing

/// Package root, from this file's path.
let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

/// A real test model; CI always fetches them (scripts/fetch-models.sh), so a missing file is a failure.
func modelPath(_ name: String) throws -> String {
    let dir = ProcessInfo.processInfo.environment["SHARD_MODELS_DIR"] ?? packageRoot.appendingPathComponent("models").path
    let path = dir + "/" + name
    guard FileManager.default.fileExists(atPath: path) else {
        Issue.record("model \(path) is missing: run scripts/fetch-models.sh")
        throw CancellationError()
    }
    return path
}

let smolLM2 = "SmolLM2-135M-Instruct.Q4_1.gguf"

/// Golden produced by scripts/golden-model.py from llama.cpp.
struct ModelGolden: Decodable {
    struct Top: Decodable { let id: Int32; let logit: Float }
    struct Case: Decodable {
        let prompt: String
        let ids: [Int32]
        let top10: [Top]
        let greedy: [Int32]
        let margins: [Float]
    }
    struct PPL: Decodable { let ctx: Int; let tokens: Int; let ppl: Double; let scored: Int; let ids: [Int32] }
    let cases: [Case]
    let perplexity: PPL?

    static func load(_ name: String) throws -> ModelGolden {
        let url = packageRoot.appendingPathComponent("tests/golden/model/\(name)")
        return try JSONDecoder().decode(ModelGolden.self, from: Data(contentsOf: url))
    }
}
