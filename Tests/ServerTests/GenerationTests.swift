import Foundation
import Logging
import Synchronization
import Testing
@testable import Coordinator
@testable import Server
import Tokenizer

/// The server's request path without HTTP or a model: a scripted engine emits chosen tokens, so the
/// chat template wiring, UTF-8 safety of every piece, stop sequences and cancellation are checked exactly.
@Suite struct GenerationTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static func tokenizer(_ name: String) throws -> Tokenizer {
        let dir = ProcessInfo.processInfo.environment["SHARD_MODELS_DIR"] ?? root.appendingPathComponent("models").path
        return try Tokenizer(path: dir + "/" + name)
    }

    /// Emits `script` (up to max_tokens) on a thread of its own, as an engine does; stops when cancelled.
    final class ScriptedEngine: InferenceEngine, @unchecked Sendable {
        let script: [Int32]
        let contextLength = 2048
        let submitted = Mutex<[GenerationRequest]>([])
        let handles = Mutex<[RequestHandle]>([])
        init(_ script: [Int32]) { self.script = script }

        func submit(_ request: GenerationRequest, events: @escaping @Sendable (GenerationEvent) -> Void) throws -> RequestHandle {
            try validate(request)
            let handle = RequestHandle(id: UInt64(submitted.withLock { $0.count }) + 1)
            submitted.withLock { $0.append(request) }
            handles.withLock { $0.append(handle) }
            let script = self.script
            let thread = Thread {
                var n = 0
                for t in script.prefix(request.maxTokens) {
                    if handle.isCancelled { break }
                    events(.token(TokenEvent(token: t, logprob: -0.25, top: [])))
                    n += 1
                    usleep(200)
                }
                let reason: StopReason = handle.isCancelled ? .cancelled : (n == request.maxTokens ? .length : .eos)
                events(.finished(GenerationSummary(reason: reason, promptTokens: request.prompt.count, generatedTokens: n,
                                                   timeToFirstToken: 0, totalSeconds: 0)))
            }
            thread.start()
            return handle
        }
        func stats() -> EngineStats { EngineStats() }
        func shutdown() {}
    }

    func run(_ tokenizer: Tokenizer, script: [Int32], body: String, kind: CompletionRequest.Kind = .completion)
        async throws -> (pieces: [String], outcome: Outcome, engine: ScriptedEngine) {
        let engine = ScriptedEngine(script)
        let server = APIServer(configuration: ServerConfiguration(), logger: Logger(label: "test"))
        let model = ServedModel(id: "m", engine: engine, tokenizer: tokenizer)
        server.attach(model)
        let request = try CompletionRequest(kind: kind, body: try JSONValue.parse(body))
        let prepared = try server.prepare(request, model: model, started: .now)
        let generation = try Generation(prepared, server: server)
        let pieces = Mutex<[String]>([])
        let outcome = try await generation.forEach { text, _ in pieces.withLock { $0.append(text) } }
        return (pieces.withLock { $0 }, outcome, engine)
    }

    @Test func chatMessagesUseTheModelsTemplate() async throws {
        let smol = try Self.tokenizer("SmolLM2-135M-Instruct.Q4_1.gguf")
        let gemma = try Self.tokenizer("gemma-3-270m-q4_k_m.gguf")
        let body = #"{"messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"Hi"}],"max_tokens":1}"#
        for (tok, expected) in [
            (smol, "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"),
            (gemma, "<start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n<start_of_turn>model\n"),
        ] {
            let (_, _, engine) = try await run(tok, script: [1], body: body, kind: .chat)
            let prompt = try #require(engine.submitted.withLock { $0.first }).prompt
            let text = tok.decode(prompt)
            #expect(text.hasSuffix(expected), "\(text)")
            #expect(prompt == tok.encode(tok.chatRenderer.render([.init(role: "system", content: "Be brief."), .init(role: "user", content: "Hi")]),
                                         addSpecial: true, parseSpecial: true))
        }
    }

    @Test func piecesAreWholeUTF8() async throws {
        let tok = try Self.tokenizer("SmolLM2-135M-Instruct.Q4_1.gguf")
        let text = "Earth 🌍, rocket 🚀, café, 你好世界, ﷽"
        let ids = tok.encode(text, addSpecial: false, parseSpecial: false)
        // the byte-level vocabulary splits some of these characters across tokens
        #expect(ids.contains { String(validating: tok.piece($0), as: UTF8.self) == nil })
        let (pieces, outcome, _) = try await run(tok, script: ids, body: #"{"prompt":"x","max_tokens":500}"#)
        #expect(pieces.joined() == text)
        #expect(pieces.allSatisfy { !$0.unicodeScalars.contains("\u{FFFD}") })
        #expect(outcome.finishReason == "stop" && outcome.completionTokens == ids.count)
    }

    @Test func stopSequenceAcrossTokensCancelsTheEngine() async throws {
        let tok = try Self.tokenizer("SmolLM2-135M-Instruct.Q4_1.gguf")
        let text = "The answer is forty-two. Next question please, and more text after it."
        let ids = tok.encode(text, addSpecial: false, parseSpecial: false)
        let (pieces, outcome, engine) = try await run(tok, script: ids, body: #"{"prompt":"x","max_tokens":500,"stop":["o. Next q","zzz"]}"#)
        #expect(pieces.joined() == "The answer is forty-tw")
        #expect(!pieces.contains { $0.contains("o. N") })
        #expect(outcome.finishReason == "stop" && outcome.text == "The answer is forty-tw")
        #expect(outcome.completionTokens < ids.count)
        #expect(engine.handles.withLock { $0.allSatisfy(\.isCancelled) }, "the engine is told to stop")
    }

    @Test func lengthAndContextChecks() async throws {
        let tok = try Self.tokenizer("SmolLM2-135M-Instruct.Q4_1.gguf")
        let (_, outcome, _) = try await run(tok, script: Array(repeating: 28, count: 10), body: #"{"prompt":"x","max_tokens":4}"#)
        #expect(outcome.finishReason == "length" && outcome.completionTokens == 4)
        let server = APIServer(configuration: ServerConfiguration(), logger: Logger(label: "test"))
        let model = ServedModel(id: "m", engine: ScriptedEngine([]), tokenizer: tok)
        let long = try CompletionRequest(kind: .completion, body: .object([("prompt", .array(Array(repeating: 28, count: 2048)))]))
        #expect(throws: APIError.self) { try server.prepare(long, model: model, started: .now) }
        let tooMuch = try CompletionRequest(kind: .completion, body: try JSONValue.parse(#"{"prompt":"hello","max_tokens":2048}"#))
        do {
            _ = try server.prepare(tooMuch, model: model, started: .now)
            Issue.record("prompt + max_tokens over the context was accepted")
        } catch let e as APIError {
            #expect(e.code == "context_length_exceeded" && e.message.contains("2048") && e.param == "max_tokens", "\(e)")
        }
    }
}
