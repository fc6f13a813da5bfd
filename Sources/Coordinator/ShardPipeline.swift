import ShardRuntime

/// The model's layers as a chain of shards, seen from the coordinator: tokens in, logits out.
/// In one process it is `LocalPipeline`; across processes, a ZeroMQ pipeline implements the same calls.
public protocol ShardPipeline: AnyObject {
    var vocabSize: Int { get }
    /// Most rows one step may carry.
    var maxBatchRows: Int { get }
    var contextLength: Int { get }
    /// Runs one step through every shard; returns `logitRows.count` × vocabSize logits.
    func step(tokens: [Int32], rows: [StepRow], logitRows: [Int]) throws -> [Float]
    /// Frees the sequence's KV pages on every shard.
    func release(_ sequence: SequenceID) throws
}

/// Shards in this process, called one after the other.
public final class LocalPipeline: ShardPipeline {
    public let shards: [ModelShard]

    public init(shards: [ModelShard]) {
        precondition(!shards.isEmpty)
        self.shards = shards
    }

    public var vocabSize: Int { shards[0].config.vocabSize }
    public var maxBatchRows: Int { shards.map(\.options.maxBatchRows).min()! }
    public var contextLength: Int { shards.map(\.options.contextLength).min()! }

    public func step(tokens: [Int32], rows: [StepRow], logitRows: [Int]) throws -> [Float] {
        var input = ShardInput.tokens(tokens)
        for (i, shard) in shards.enumerated() {
            let isLast = i == shards.count - 1
            switch try shard.forward(input, rows: rows, logitRows: isLast ? logitRows : []) {
            case .hidden(let h): input = .hidden(h)
            case .logits(let l): return l
            }
        }
        return []
    }

    public func release(_ sequence: SequenceID) throws {
        for shard in shards { shard.release(sequence) }
    }
}
