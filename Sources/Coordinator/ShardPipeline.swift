import ShardRuntime

/// What comes back for a step's logit rows.
public enum LogitSampling: Sendable, Equatable {
    /// `logitRows.count` × vocabSize logits.
    case logits
    /// The argmax token of each logit row (what a greedy sampler without penalties picks) and, with
    /// `logprobs`, its log-probability and `top` alternatives. Shard processes compute it on the last
    /// shard, so no logits cross the wire.
    case greedy(logprobs: Bool, top: Int)
}

/// One step as the scheduler submits it: rows of tokens, the rows whose logits come back, and the KV
/// page operations every shard applies first (releases, then prefix forks).
public struct PipelineStep: Sendable {
    public var tokens: [Int32]
    public var rows: [StepRow]
    public var logitRows: [Int]
    public var release: [SequenceID]
    public var forks: [PrefixFork]
    public var sampling: LogitSampling
    public init(tokens: [Int32], rows: [StepRow], logitRows: [Int], release: [SequenceID] = [], forks: [PrefixFork] = [],
                sampling: LogitSampling = .logits) {
        self.tokens = tokens
        self.rows = rows
        self.logitRows = logitRows
        self.release = release
        self.forks = forks
        self.sampling = sampling
    }
}

/// A step's result: logits (`.logits` steps; a pipeline may also return them for `.greedy` steps), and
/// for `.greedy` steps one pick per logit row.
public struct StepResult: Sendable {
    public var step: UInt64
    public var logits: [Float]
    public var picks: [GreedyPick]?
    public init(step: UInt64, logits: [Float], picks: [GreedyPick]? = nil) {
        self.step = step
        self.logits = logits
        self.picks = picks
    }

    /// The picks a `.greedy` step asked for, computed from the logits if the pipeline returned those.
    static func picks(fromLogits logits: [Float], rows: Int, vocab: Int, logprobs: Bool, top: Int) throws -> [GreedyPick] {
        guard logits.count == rows * vocab else {
            throw GenerationError("the pipeline returned \(logits.count) logits for \(rows) rows of \(vocab)")
        }
        return logits.withUnsafeBufferPointer { all in
            (0..<rows).map { r in GreedyPick.pick(UnsafeBufferPointer(rebasing: all[r * vocab..<(r + 1) * vocab]), logprobs: logprobs, top: top) }
        }
    }
}

/// The model's layers as a chain of shards, seen from the coordinator: tokens in, logits out.
/// In one process it is `LocalPipeline`; across processes, a ZeroMQ pipeline implements the same calls.
///
/// Two ways to drive it: `step` (one step, wait for its logits) and `submit`/`collect` (several steps in
/// flight; results come back in submission order), which is how shard i works on one micro-batch while
/// shard i + 1 works on another. Do not mix them while steps are in flight.
public protocol ShardPipeline: AnyObject {
    var vocabSize: Int { get }
    /// Most rows one step may carry.
    var maxBatchRows: Int { get }
    var contextLength: Int { get }
    /// Runs one step through every shard; returns `logitRows.count` × vocabSize logits.
    func step(tokens: [Int32], rows: [StepRow], logitRows: [Int]) throws -> [Float]
    /// Frees the sequence's KV pages on every shard.
    func release(_ sequence: SequenceID) throws

    /// The KV pool every shard of the pipeline can honour (the smallest), for the coordinator's accounting.
    var kvPool: KVPoolInfo { get }
    /// Steps worth keeping in flight (1 when the shards run one after the other in this process).
    var maxInFlight: Int { get }
    /// Sends a step on its way; returns its id.
    func submit(_ step: PipelineStep) throws -> UInt64
    /// Waits for the oldest submitted step's result.
    func collect() throws -> StepResult
}

/// A pipeline that can run chained greedy decode of one sequence (shard processes): the first shard
/// starts each step on the last shard's pick of the step before without waiting for the coordinator,
/// which still collects every step's result in order (issue 4: two hops per token instead of three
/// plus the coordinator's turnaround). `SHARD_CHAIN=0` turns it off.
public protocol ChainingPipeline: ShardPipeline {
    /// Whether steps with this sampling can be chained now.
    func chains(_ sampling: LogitSampling) -> Bool
    /// Submits a one-row greedy step (one logit row) whose first shard then runs up to `budget` more
    /// steps of that sequence, each on the previous pick at the next position, until a pick is one of
    /// `stopTokens`. `collect` returns the results of the steps one by one. Returns the first step's id.
    func submitChain(_ step: PipelineStep, budget: Int, stopTokens: [Int32]) throws -> UInt64
    /// Ends the chain: tells the first shard to stop and forgets its steps not collected yet (their
    /// results are dropped when they arrive). The steps the shards ran past the end wrote KV beyond the
    /// sequence's last position: release the sequence afterwards.
    func endChain() throws
}

extension ShardPipeline {
    /// Submits one step and waits for its result (nothing else may be in flight).
    public func run(_ step: PipelineStep) throws -> StepResult {
        let id = try submit(step)
        while true {
            let r = try collect()
            if r.step == id { return r }
        }
    }
}

/// Shards in this process, called one after the other.
///
/// `submit` computes the step at once (in-process CPU shards share one thread pool, so there is
/// nothing to overlap; for in-process GPU shards a thread per shard would be the next step) and
/// `collect` hands the results back in order.
public final class LocalPipeline: ShardPipeline {
    public let shards: [ModelShard]
    private var results: [StepResult] = []
    private var nextStep: UInt64 = 1

    public init(shards: [ModelShard]) {
        precondition(!shards.isEmpty)
        self.shards = shards
    }

    public var vocabSize: Int { shards[0].config.vocabSize }
    public var maxBatchRows: Int { shards.map(\.options.maxBatchRows).min()! }
    public var contextLength: Int { shards.map(\.options.contextLength).min()! }
    public var kvPool: KVPoolInfo { KVPoolInfo.common(shards.map(\.kv.pool))! }
    public var maxInFlight: Int { 1 }

    public func step(tokens: [Int32], rows: [StepRow], logitRows: [Int]) throws -> [Float] {
        guard case .logits(let l) = try compute(PipelineStep(tokens: tokens, rows: rows, logitRows: logitRows)) else { return [] }
        return l
    }

    /// The last shard's output: logits, or with `picksOnly` the argmax ids where its backend offers them.
    private func compute(_ step: PipelineStep, picksOnly: Bool = false) throws -> ShardOutput {
        var input = ShardInput.tokens(step.tokens)
        for (i, shard) in shards.enumerated() {
            let isLast = i == shards.count - 1
            let out = try shard.forward(input, rows: step.rows, logitRows: isLast ? step.logitRows : [],
                                        release: step.release, forks: step.forks, picksOnly: isLast && picksOnly)
            guard case .hidden(let h) = out else { return out }
            input = .hidden(h)
        }
        return .logits([])
    }

    public func submit(_ step: PipelineStep) throws -> UInt64 {
        let id = nextStep
        nextStep += 1
        // A greedy step that wants no log-probabilities needs only each row's argmax.
        let picksOnly = step.sampling == .greedy(logprobs: false, top: 0)
        let output = try compute(step, picksOnly: picksOnly)
        if case .picks(let ids) = output {
            results.append(StepResult(step: id, logits: [], picks: ids.map { GreedyPick(token: $0, logprob: 0, top: []) }))
            return id
        }
        // `compute` gives logits otherwise (none for a step without logit rows).
        let logits: [Float]
        if case .logits(let l) = output { logits = l } else { logits = [] }
        var result = StepResult(step: id, logits: logits)
        if case .greedy(let logprobs, let top) = step.sampling {
            result.picks = try StepResult.picks(fromLogits: logits, rows: step.logitRows.count, vocab: vocabSize,
                                                logprobs: logprobs, top: top)
        }
        results.append(result)
        return id
    }

    public func collect() throws -> StepResult {
        guard !results.isEmpty else { throw GenerationError("collect without a submitted step") }
        return results.removeFirst()
    }

    public func release(_ sequence: SequenceID) throws {
        for shard in shards { shard.release(sequence) }
    }
}
