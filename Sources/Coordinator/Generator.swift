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
    public func generate(prompt: [Int32], maxTokens: Int, sampling: SamplingParams,
                         isEndOfGeneration: (Int32) -> Bool,
                         onToken: (Int32) -> Bool) throws -> GenerationResult {
        try generate(prompt: prompt, maxTokens: maxTokens, sampling: sampling, isEndOfGeneration: isEndOfGeneration,
                     onToken: { token, _ in onToken(token) })
    }

    /// As above; `onToken` also sees the logits the token was sampled from.
    public func generate(prompt: [Int32], maxTokens: Int, sampling: SamplingParams,
                         isEndOfGeneration: (Int32) -> Bool,
                         onToken: (Int32, [Float]) -> Bool) throws -> GenerationResult {
        guard !prompt.isEmpty else { throw GenerationError("the prompt has no tokens") }
        guard prompt.count + max(maxTokens, 0) <= pipeline.contextLength || prompt.count < pipeline.contextLength else {
            throw GenerationError("the prompt has \(prompt.count) tokens; the context holds \(pipeline.contextLength)")
        }
        let seq = nextSequence
        nextSequence += 1
        defer { try? pipeline.release(seq) }
        var sampler = Sampler(sampling)
        for t in prompt { sampler.accept(t) }

        let clock = ContinuousClock()
        let t0 = clock.now
        var logits = try prefill(prompt, sequence: seq)
        let prefillTime = clock.now - t0

        var generated: [Int32] = []
        var reason = StopReason.length
        let t1 = clock.now
        var position = prompt.count
        while generated.count < maxTokens {
            let token = logits.withUnsafeBufferPointer { sampler.sample($0) }
            sampler.accept(token)
            if isEndOfGeneration(token) { reason = .eos; break }
            generated.append(token)
            if !onToken(token, logits) { reason = .stop; break }
            if generated.count == maxTokens { break }
            if position >= pipeline.contextLength { reason = .length; break }
            logits = try pipeline.step(tokens: [token], rows: [StepRow(sequence: seq, position: position)], logitRows: [0])
            position += 1
        }
        let decodeTime = clock.now - t1
        return GenerationResult(promptTokens: prompt.count, generated: generated,
                                prefillSeconds: prefillTime.seconds, decodeSeconds: decodeTime.seconds, stopReason: reason)
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
