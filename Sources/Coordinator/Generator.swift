import ShardRuntime
import Wire

public enum StopReason: String, Sendable {
    case length, eos, stop
    /// The client cancelled the request (engines only).
    case cancelled
}

public struct GenerationResult: Sendable {
    public var promptTokens: Int
    public var generated: [Int32]
    public var prefillSeconds: Double
    public var decodeSeconds: Double
    public var stopReason: StopReason
    public var prefillTokensPerSecond: Double { prefillSeconds > 0 ? Double(promptTokens) / prefillSeconds : 0 }
    /// Tokens after the first (which comes out of the prefill) over the decode time.
    public var decodeTokensPerSecond: Double {
        decodeSeconds > 0 ? Double(max(generated.count - 1, 0)) / decodeSeconds : 0
    }
}

/// Runs one sequence through a pipeline: chunked prefill of the prompt, then sampled decode steps.
public final class Generator {
    public let pipeline: any ShardPipeline
    private var nextSequence: SequenceID = 1

    public init(pipeline: any ShardPipeline) { self.pipeline = pipeline }

    /// Generates up to `maxTokens` tokens after `prompt`. `isEndOfGeneration` ends on an EOS-like token;
    /// `onToken` sees each token as it is sampled and returns false to stop early (reason `.stop`).
    /// Greedy sampling without penalties is done by the last shard (no logits cross the wire).
    /// `stopTokens` (those of them that `isEndOfGeneration` ends on) let shard processes end a chained
    /// greedy decode on their own (`ChainingPipeline`); without them it runs a step past such a token.
    public func generate(prompt: [Int32], maxTokens: Int, sampling: SamplingParams,
                         isEndOfGeneration: (Int32) -> Bool, stopTokens: [Int32] = [],
                         onToken: (Int32) -> Bool) throws -> GenerationResult {
        try run(prompt: prompt, maxTokens: maxTokens, sampling: sampling, isEndOfGeneration: isEndOfGeneration, stopTokens: stopTokens,
                want: .greedy(logprobs: false, top: 0), onToken: { token, _, _ in onToken(token) })
    }

    /// As above; `onToken` also sees the logits the token was sampled from.
    public func generate(prompt: [Int32], maxTokens: Int, sampling: SamplingParams,
                         isEndOfGeneration: (Int32) -> Bool,
                         onToken: (Int32, [Float]) -> Bool) throws -> GenerationResult {
        try run(prompt: prompt, maxTokens: maxTokens, sampling: sampling, isEndOfGeneration: isEndOfGeneration,
                want: .logits, onToken: { token, logits, _ in onToken(token, logits) })
    }

    /// As above; `onEvent` sees each token with its log-probability and `topLogprobs` alternatives.
    public func generate(prompt: [Int32], maxTokens: Int, sampling: SamplingParams, topLogprobs: Int,
                         isEndOfGeneration: (Int32) -> Bool, stopTokens: [Int32] = [],
                         onEvent: (TokenEvent) -> Bool) throws -> GenerationResult {
        try run(prompt: prompt, maxTokens: maxTokens, sampling: sampling, isEndOfGeneration: isEndOfGeneration, stopTokens: stopTokens,
                want: .greedy(logprobs: true, top: topLogprobs), onToken: { token, logits, pick in
                    if let pick { return onEvent(TokenEvent(pick)) }
                    return onEvent(logits.withUnsafeBufferPointer { logprobs($0, token: token, top: topLogprobs) })
                })
    }

    /// The generation loop. `want` says what `onToken` needs besides the token: `.logits`, or (a
    /// `.greedy` value) the pick, which greedy requests get from the last shard; other requests sample
    /// from logits here and `onToken` gets no pick.
    private func run(prompt: [Int32], maxTokens: Int, sampling: SamplingParams, isEndOfGeneration: (Int32) -> Bool,
                     stopTokens: [Int32] = [], want: LogitSampling, onToken: (Int32, [Float], GreedyPick?) -> Bool) throws -> GenerationResult {
        guard !prompt.isEmpty else { throw GenerationError("the prompt has no tokens") }
        guard prompt.count + max(maxTokens, 0) <= pipeline.contextLength || prompt.count < pipeline.contextLength else {
            throw GenerationError("the prompt has \(prompt.count) tokens; the context holds \(pipeline.contextLength)")
        }
        let seq = nextSequence
        nextSequence += 1
        defer { try? pipeline.release(seq) }
        var sampler = Sampler(sampling)
        for t in prompt { sampler.accept(t) }
        let stepSampling: LogitSampling = sampler.isPlainGreedy ? want : .logits
        // Chained greedy decode: after the first decode step the first shard goes on by itself; the
        // chain ends (before the sequence is released) however the loop ends.
        let chaining = (pipeline as? any ChainingPipeline).flatMap { $0.chains(stepSampling) ? $0 : nil }
        var chained = false
        defer { if chained { try? chaining?.endChain() } }

        let clock = ContinuousClock()
        let t0 = clock.now
        var result = try prefill(prompt, sequence: seq, sampling: stepSampling)
        let prefillTime = clock.now - t0

        var generated: [Int32] = []
        var reason = StopReason.length
        let t1 = clock.now
        var position = prompt.count
        while generated.count < maxTokens {
            let pick = result.picks?.first
            let token = pick?.token ?? result.logits.withUnsafeBufferPointer { sampler.sample($0) }
            sampler.accept(token)
            if isEndOfGeneration(token) { reason = .eos; break }
            generated.append(token)
            if !onToken(token, result.logits, pick) { reason = .stop; break }
            if generated.count == maxTokens { break }
            if position >= pipeline.contextLength { reason = .length; break }
            let step = PipelineStep(tokens: [token], rows: [StepRow(sequence: seq, position: position)], logitRows: [0],
                                    sampling: stepSampling)
            if let chaining {
                if !chained {
                    // Steps this loop may still run: one per token up to maxTokens, positions below the context.
                    let steps = min(maxTokens - generated.count, pipeline.contextLength - position)
                    let stops = Array(stopTokens.filter(isEndOfGeneration).prefix(64))
                    _ = try chaining.submitChain(step, budget: steps - 1, stopTokens: stops)
                    chained = true
                }
                result = try pipeline.collect()
            } else {
                result = try pipeline.run(step)
            }
            position += 1
        }
        let decodeTime = clock.now - t1
        return GenerationResult(promptTokens: prompt.count, generated: generated,
                                prefillSeconds: prefillTime.seconds, decodeSeconds: decodeTime.seconds, stopReason: reason)
    }

    /// Feeds `tokens` in chunks of the pipeline's batch size; the last chunk's result carries the last
    /// token's logits (or pick).
    func prefill(_ tokens: [Int32], sequence: SequenceID, startPosition: Int = 0, sampling: LogitSampling) throws -> StepResult {
        var result = StepResult(step: 0, logits: [])
        var start = 0
        while start < tokens.count {
            let end = min(tokens.count, start + pipeline.maxBatchRows)
            let rows = (start..<end).map { StepRow(sequence: sequence, position: startPosition + $0) }
            let isLast = end == tokens.count
            result = try pipeline.run(PipelineStep(tokens: Array(tokens[start..<end]), rows: rows,
                                                   logitRows: isLast ? [end - start - 1] : [], sampling: sampling))
            start = end
        }
        return result
    }

    /// Feeds `tokens` in chunks of the pipeline's batch size; returns the last token's logits.
    public func prefill(_ tokens: [Int32], sequence: SequenceID, startPosition: Int = 0) throws -> [Float] {
        var logits: [Float] = []
        var start = 0
        while start < tokens.count {
            let end = min(tokens.count, start + pipeline.maxBatchRows)
            let rows = (start..<end).map { StepRow(sequence: sequence, position: startPosition + $0) }
            let isLast = end == tokens.count
            logits = try pipeline.step(tokens: Array(tokens[start..<end]), rows: rows, logitRows: isLast ? [end - start - 1] : [])
            start = end
        }
        return logits
    }

    /// Logits at every position of `tokens` (one fresh sequence), `tokens.count` × vocab.
    public func allLogits(_ tokens: [Int32]) throws -> [Float] {
        let seq = nextSequence
        nextSequence += 1
        defer { try? pipeline.release(seq) }
        var out: [Float] = []
        out.reserveCapacity(tokens.count * pipeline.vocabSize)
        var start = 0
        while start < tokens.count {
            let end = min(tokens.count, start + pipeline.maxBatchRows)
            let rows = (start..<end).map { StepRow(sequence: seq, position: $0) }
            out += try pipeline.step(tokens: Array(tokens[start..<end]), rows: rows, logitRows: Array(0..<(end - start)))
            start = end
        }
        return out
    }
}

public struct GenerationError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}
