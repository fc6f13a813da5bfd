import Foundation
import GGUF
import Testing
@testable import Tokenizer

enum TestSupport {
    /// Package root: three levels above this file (Tests/TokenizerTests/TestSupport.swift).
    static let packageRoot: URL = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    static var modelsDir: URL {
        if let env = ProcessInfo.processInfo.environment["SHARD_MODELS_DIR"], !env.isEmpty {
            return URL(fileURLWithPath: env)
        }
        return packageRoot.appendingPathComponent("models")
    }

    static let goldenDir = packageRoot.appendingPathComponent("tests/golden/tokenizer")

    struct MissingModel: Error, CustomStringConvertible {
        let path: String
        var description: String {
            "model file \(path) is missing: run scripts/fetch-models.sh or set SHARD_MODELS_DIR"
        }
    }

    /// Loads a tokenizer; a missing model file is an error (the test fails), never a skip.
    static func tokenizer(_ file: String) throws -> Tokenizer {
        let path = modelsDir.appendingPathComponent(file).path
        guard FileManager.default.fileExists(atPath: path) else { throw MissingModel(path: path) }
        return try cache.get(path)
    }

    static let smollm2 = "SmolLM2-135M-Instruct.Q4_1.gguf"
    static let gemma3 = "gemma-3-270m-q4_k_m.gguf"

    /// Tokenizers are loaded once per process (Gemma's 262k vocabulary takes a moment).
    final class Cache: @unchecked Sendable {
        private let lock = NSLock()
        private var loaded: [String: Tokenizer] = [:]
        func get(_ path: String) throws -> Tokenizer {
            lock.lock(); defer { lock.unlock() }
            if let t = loaded[path] { return t }
            let t = try Tokenizer(gguf: GGUFFile(path: path))
            loaded[path] = t
            return t
        }
    }
    static let cache = Cache()

    static func readJSON<T: Decodable>(_ type: T.Type, _ name: String) throws -> T {
        let url = goldenDir.appendingPathComponent(name)
        let data = try Data(contentsOf: url)
        return try JSONDecoder().decode(T.self, from: data)
    }
}

extension Array where Element == UInt8 {
    var hex: String { map { String(format: "%02x", $0) }.joined() }
}

func bytes(hex: String) -> [UInt8] {
    var out: [UInt8] = []
    var it = hex.utf8.makeIterator()
    func nib(_ c: UInt8) -> UInt8 { c <= 57 ? c - 48 : (c | 0x20) - 87 }
    while let a = it.next(), let b = it.next() { out.append(nib(a) << 4 | nib(b)) }
    return out
}
