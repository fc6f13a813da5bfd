import Compute
import GGUF
import Model

/// What one shard needs in memory, split by use.
public struct ShardFootprint: Sendable, Equatable {
    public var layers: Range<Int>
    /// Weights of its layers, plus the embedding (first shard) and the head (last shard).
    public var weightBytes: Int
    /// Its KV pool.
    public var kvBytes: Int
    /// Activation buffers for a full batch (and the logits buffer on the last shard).
    public var workBytes: Int
    public var total: Int { weightBytes + kvBytes + workBytes }
}

/// A worker as the planner sees it: a name for messages and the memory it reported.
public struct PlanTarget: Sendable {
    public var name: String
    public var freeBytes: Int
    public init(name: String, freeBytes: Int) {
        self.name = name
        self.freeBytes = freeBytes
    }
}

/// Cuts a model's layers into contiguous shard ranges and checks that each shard fits its worker.
/// By default the cut is even (every llama/qwen2 layer costs the same); when the workers report free
/// memory that differs by more than `unevenRatio`, layers are given in proportion to it, so that a
/// 24 GB card takes more layers than a 12 GB one. `--split` overrides both. Either way a plan that
/// does not fit is refused before any worker loads anything, naming the shard and the bytes short.
public struct SplitPlanner: Sendable {
    public let memory: LayerMemory
    public let config: ModelConfig
    public let contextLength: Int
    public let maxBatchRows: Int
    /// Positions the KV pool of each layer holds (all sequences together).
    public let kvPositions: Int
    public let kvType: KVElementType
    /// A KV budget per shard in bytes (`--kv-memory`), which replaces `kvPositions`.
    public let kvBudget: Int?
    /// Free memory that differs by less than this factor (largest / smallest) counts as equal.
    public static let unevenRatio = 1.15

    /// `kvPositions` defaults to one full context.
    public init(memory: LayerMemory, config: ModelConfig, contextLength: Int, maxBatchRows: Int,
                kvPositions: Int? = nil, kvType: KVElementType = .f16, kvBudget: Int? = nil) {
        self.memory = memory
        self.config = config
        self.contextLength = contextLength
        self.maxBatchRows = maxBatchRows
        self.kvPositions = kvPositions ?? contextLength
        self.kvType = kvType
        self.kvBudget = kvBudget
    }

    /// Memory a shard of `layers` needs.
    public func footprint(_ layers: Range<Int>) -> ShardFootprint {
        let c = config
        let first = layers.lowerBound == 0, last = layers.upperBound == c.layerCount
        var weights = memory.bytes(layers: layers)
        if first || (last && c.tiedOutput) { weights += memory.embedding }
        if last { weights += memory.output }
        let kv = kvBudget ?? layers.count * 2 * kvPositions * kvType.bytes(c.kvDim)
        // x, xn, proj (+ head input) of embeddingLength; q, attn of qDim; k, v of kvDim; gate, up of ffn.
        var columns = 3 * c.embeddingLength + 2 * c.qDim + 2 * c.kvDim + 2 * c.feedForwardLength
        if last { columns += c.embeddingLength + c.vocabSize }
        return ShardFootprint(layers: layers, weightBytes: weights, kvBytes: kv, workBytes: maxBatchRows * columns * 4)
    }

    /// The plan for `shards` shards: `split` layer counts if given, else even or in proportion to
    /// `targets`' free memory; then checked against the targets (when known).
    public func plan(shards: Int, split: [Int]? = nil, targets: [PlanTarget]? = nil) throws -> [Range<Int>] {
        let plan: [Range<Int>]
        if let split {
            plan = try LayerPlan.manual(split, layers: config.layerCount)
        } else if let targets, targets.count == shards, Self.differ(targets.map(\.freeBytes)) {
            plan = try proportional(capacities: targets.map(\.freeBytes))
        } else {
            plan = try LayerPlan.even(layers: config.layerCount, shards: shards)
        }
        if let targets { try check(plan, against: targets) }
        return plan
    }

    static func differ(_ free: [Int]) -> Bool {
        guard let lo = free.min(), let hi = free.max(), lo > 0 else { return false }
        return Double(hi) / Double(lo) > unevenRatio
    }

    /// Contiguous ranges, each at least one layer, whose per-layer cost (weights + KV) is as close
    /// as possible to proportional to `capacities` after the fixed costs (embedding, head, buffers)
    /// of the first and last shard are taken off their capacity.
    func proportional(capacities: [Int]) throws -> [Range<Int>] {
        let n = capacities.count, layers = config.layerCount
        guard n >= 1 else { throw ModelConfigError("--shards must be at least 1") }
        guard n <= layers else { throw ModelConfigError("cannot cut \(layers) layers into \(n) shards") }
        // What each shard can spend on layers.
        var room = capacities.map(Double.init)
        let whole = footprint(0..<layers)
        let perLayer = (0..<layers).map { Double(memory.bytes(layers: $0..<($0 + 1)) + whole.kvBytes / layers) }
        let fixedFirst = Double(memory.embedding)
        let fixedLast = Double(whole.workBytes + memory.output + (config.tiedOutput ? memory.embedding : 0))
        room[0] -= fixedFirst
        room[n - 1] -= fixedLast
        room = room.map { max($0, 1) }
        let totalRoom = room.reduce(0, +), totalCost = perLayer.reduce(0, +)
        // Shard i ends where the cumulative layer cost first reaches its share of the total.
        var ranges: [Range<Int>] = []
        var start = 0, cost = 0.0, share = 0.0
        for i in 0..<n {
            share += room[i] / totalRoom * totalCost
            var end = start + 1  // at least one layer
            cost += perLayer[start]
            let mustLeave = n - i - 1  // layers the later shards need at least
            while i < n - 1, end < layers - mustLeave, cost + perLayer[end] / 2 <= share {
                cost += perLayer[end]
                end += 1
            }
            if i == n - 1 { end = layers }
            ranges.append(start..<end)
            start = end
        }
        return ranges
    }

    /// Throws if a shard needs more than its target has free, naming the shard and the bytes short.
    public func check(_ plan: [Range<Int>], against targets: [PlanTarget]) throws {
        for (i, (range, target)) in zip(plan, targets).enumerated() {
            var f = footprint(range)
            // Without --kv-memory a shard caps its default pool at half its free memory (ModelShard).
            if kvBudget == nil { f.kvBytes = min(f.kvBytes, target.freeBytes / 2) }
            guard target.freeBytes > 0, f.total > target.freeBytes else { continue }
            throw ModelConfigError(
                "shard \(i) (layers \(range.lowerBound)..<\(range.upperBound)) does not fit \(target.name): it needs "
                + "\(Self.format(f.total)) (weights \(Self.format(f.weightBytes)), KV \(Self.format(f.kvBytes)), "
                + "buffers \(Self.format(f.workBytes))) and \(Self.format(target.freeBytes)) is free: "
                + "\(Self.format(f.total - target.freeBytes)) short (\(f.total - target.freeBytes) bytes)")
        }
    }

    /// "1.50 GiB", "12.0 MiB".
    public static func format(_ bytes: Int) -> String {
        func fixed(_ x: Double, _ digits: Int) -> String {
            let scale = digits == 2 ? 100.0 : 10.0
            let v = Int((x * scale).rounded())
            let frac = "\(v % Int(scale))"
            return "\(v / Int(scale)).\(String(repeating: "0", count: digits - frac.count) + frac)"
        }
        let b = Double(bytes)
        if b >= Double(1 << 30) { return fixed(b / Double(1 << 30), 2) + " GiB" }
        if b >= Double(1 << 20) { return fixed(b / Double(1 << 20), 1) + " MiB" }
        return "\(bytes) B"
    }
}
