/// How a model's layers are cut into shards.
public enum LayerPlan {
    /// `shards` contiguous ranges covering 0..<layers, as equal as possible (earlier shards take the
    /// extra layer; the first and last also hold the embedding and head, which are cheap per token).
    public static func even(layers: Int, shards: Int) throws -> [Range<Int>] {
        guard shards >= 1 else { throw ModelConfigError("--shards must be at least 1") }
        guard shards <= layers else { throw ModelConfigError("cannot cut \(layers) layers into \(shards) shards") }
        var ranges: [Range<Int>] = []
        var start = 0
        for s in 0..<shards {
            let size = layers / shards + (s < layers % shards ? 1 : 0)
            ranges.append(start..<(start + size))
            start += size
        }
        return ranges
    }

    /// Ranges from layer counts given by hand (`--split 10,20`): each number is a shard's layer count.
    public static func manual(_ counts: [Int], layers: Int) throws -> [Range<Int>] {
        guard counts.allSatisfy({ $0 > 0 }) else { throw ModelConfigError("--split counts must be positive") }
        guard counts.reduce(0, +) == layers else {
            throw ModelConfigError("--split \(counts.map(String.init).joined(separator: ",")) covers \(counts.reduce(0, +)) layers; the model has \(layers)")
        }
        var ranges: [Range<Int>] = []
        var start = 0
        for c in counts { ranges.append(start..<(start + c)); start += c }
        return ranges
    }
}
