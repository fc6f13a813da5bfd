import Coordinator
import Synchronization
import Tokenizer
import Wire

/// How a generation ended, as the API reports it.
struct Outcome: Sendable {
    /// "stop" (end of turn or a stop sequence) or "length"; nil when the client went away.
    var finishReason: String?
    var text: String
    var promptTokens: Int
    var completionTokens: Int
    /// Every token's log-probabilities (when asked for).
    var logprobs: [TokenEvent]
    /// Log-probabilities of tokens whose text was held back and never sent in a text chunk.
    var trailingLogprobs: [TokenEvent]
}

/// One request submitted to the engine: its events bridged into an AsyncStream, text assembled (no
/// partial UTF-8, stop sequences cut), metrics recorded, and the request cancelled in the engine when
/// the client goes away, the handler's task is cancelled, or a stop sequence ends it early.
final class Generation: Sendable {
    let handle: RequestHandle
    private let events: AsyncStream<GenerationEvent>
    private let prepared: APIServer.Prepared
    private let server: APIServer
    private let gone = Atomic<Bool>(false)

    init(_ p: APIServer.Prepared, server: APIServer) throws {
        prepared = p
        self.server = server
        let (stream, continuation) = AsyncStream<GenerationEvent>.makeStream()
        events = stream
        let r = p.request
        var sampling = SamplingParams()
        sampling.temperature = Float(r.temperature)
        sampling.topP = Float(r.topP)
        sampling.topK = r.topK
        sampling.minP = Float(r.minP)
        sampling.repeatPenalty = Float(r.repeatPenalty)
        sampling.seed = r.seed ?? UInt64.random(in: 0...UInt64.max)
        let request = GenerationRequest(prompt: p.prompt, maxTokens: p.maxTokens, sampling: sampling,
                                        stopTokens: p.model.tokenizer.endOfGenerationIDs, topLogprobs: r.logprobs ? r.topLogprobs : 0,
                                        logprobs: r.logprobs)
        do {
            handle = try p.model.engine.submit(request) { event in
                continuation.yield(event)
                switch event {
                case .token: break
                case .finished, .failed: continuation.finish()
                }
            }
        } catch let e as GenerationError {
            throw APIError.invalid(e.description)
        }
        server.track(handle)
        server.metrics.promptTokens.increment(by: Int64(p.prompt.count))
        server.logger.debug("request queued", metadata: ["id": "\(p.id)", "prompt_tokens": "\(p.prompt.count)",
                                                        "max_tokens": "\(p.maxTokens)", "stream": "\(r.stream)"])
    }

    /// The client closed its connection: stop generating (the engine frees the sequence's KV pages).
    func clientGone() {
        gone.store(true, ordering: .relaxed)
        handle.cancel()
    }

    /// Runs the generation, calling `emit` with each piece of text that is safe to send (and the
    /// log-probabilities of the tokens consumed since the last piece).
    func forEach(_ emit: (String, [TokenEvent]) async throws -> Void) async throws -> Outcome {
        let p = prepared
        let wantLogprobs = p.request.logprobs
        var assembler = TextAssembler(tokenizer: p.model.tokenizer, stops: p.request.stop)
        var outcome = Outcome(finishReason: nil, text: "", promptTokens: p.prompt.count, completionTokens: 0,
                              logprobs: [], trailingLogprobs: [])
        var pending: [TokenEvent] = []
        var last: ContinuousClock.Instant?
        var ended = false
        defer {
            server.untrack(handle)
            if !ended { handle.cancel() }
            server.metrics.requestDuration.recordSeconds(p.started.duration(to: .now).seconds)
        }
        let metrics = server.metrics
        let handle = self.handle
        try await withTaskCancellationHandler {
            loop: for await event in events {
                switch event {
                case .token(let t):
                    let now = ContinuousClock.now
                    if let last { metrics.interTokenLatency.recordSeconds(last.duration(to: now).seconds) }
                    else { metrics.timeToFirstToken.recordSeconds(p.started.duration(to: now).seconds) }
                    last = now
                    metrics.generationTokens.increment()
                    outcome.completionTokens += 1
                    if wantLogprobs {
                        pending.append(t)
                        outcome.logprobs.append(t)
                    }
                    let text = assembler.append(t.token)
                    if !text.isEmpty {
                        outcome.text += text
                        try await emit(text, pending)
                        pending.removeAll()
                    }
                    if assembler.stopped {
                        // A stop sequence: the engine stops at its next step and frees the sequence.
                        handle.cancel()
                        outcome.finishReason = "stop"
                        ended = true
                        break loop
                    }
                case .finished(let summary):
                    ended = true
                    switch summary.reason {
                    case .length: outcome.finishReason = "length"
                    case .eos, .stop: outcome.finishReason = "stop"
                    case .cancelled: outcome.finishReason = nil
                    }
                    break loop
                case .failed(let message):
                    ended = true
                    throw APIError.server("generation failed: \(message)")
                }
            }
        } onCancel: {
            handle.cancel()
        }
        if outcome.finishReason == nil || gone.load(ordering: .relaxed) {
            metrics.cancelled.increment()
            server.logger.info("request cancelled", metadata: ["id": "\(p.id)", "completion_tokens": "\(outcome.completionTokens)"])
            outcome.finishReason = nil
            return outcome
        }
        if !assembler.stopped {
            let tail = assembler.finish()
            if !tail.isEmpty {
                outcome.text += tail
                try await emit(tail, pending)
                pending.removeAll()
            }
        }
        outcome.trailingLogprobs = pending
        server.logger.info("request done", metadata: [
            "id": "\(p.id)", "finish": "\(outcome.finishReason ?? "-")", "prompt_tokens": "\(outcome.promptTokens)",
            "completion_tokens": "\(outcome.completionTokens)", "stream": "\(p.request.stream)",
            "seconds": "\(p.started.duration(to: .now).seconds)",
        ])
        return outcome
    }

    /// Runs the generation to the end and returns the whole text.
    func collect() async throws -> Outcome {
        try await forEach { _, _ in }
    }
}
