/// Tensor bytes of a model grouped the way a pipeline splits it: per transformer layer (`blk.N.` tensors),
/// plus the tensors outside the layers (token embedding, output head and its norm, anything else).
/// Used by `shardctl inspect` to print the memory each layer (and so each shard) needs.
public struct LayerMemory: Sendable, Equatable {
    /// Bytes of the tensors named `blk.N.…`, indexed by N (0..<layerCount; a missing layer counts 0).
    public var layers: [Int]
    /// `token_embd.*` (the input embedding, needed by the first shard).
    public var embedding: Int
    /// `output.*` and `output_norm.*` (the head, needed by the last shard).
    public var output: Int
    /// Every other tensor not in a layer (e.g. `rope_freqs.weight`).
    public var other: Int

    public var layerCount: Int { layers.count }
    public var layerTotal: Int { layers.reduce(0, +) }
    public var total: Int { layerTotal + embedding + output + other }

    /// Bytes of the layers in `range` (clamped to the layers that exist).
    public func bytes(layers range: Range<Int>) -> Int {
        let r = range.clamped(to: 0 ..< layers.count)
        return layers[r].reduce(0, +)
    }

    public init(layers: [Int], embedding: Int, output: Int, other: Int) {
        self.layers = layers
        self.embedding = embedding
        self.output = output
        self.other = other
    }

    public init(tensors: [GGUFTensorInfo]) {
        var perLayer: [Int: Int] = [:]
        var maxLayer = -1
        embedding = 0
        output = 0
        other = 0
        for t in tensors {
            // A layer index can't exceed the tensor count in a real file; larger ones count as "other"
            // so that a hostile name cannot make this allocate a huge array.
            if let n = Self.layerIndex(of: t.name), n < tensors.count {
                perLayer[n, default: 0] += t.byteCount
                maxLayer = max(maxLayer, n)
            } else if t.name.hasPrefix("token_embd.") {
                embedding += t.byteCount
            } else if t.name.hasPrefix("output.") || t.name.hasPrefix("output_norm.") {
                output += t.byteCount
            } else {
                other += t.byteCount
            }
        }
        layers = (0 ..< maxLayer + 1).map { perLayer[$0] ?? 0 }
    }

    /// N of a tensor named `blk.N.…`, else nil.
    public static func layerIndex(of name: String) -> Int? {
        guard name.hasPrefix("blk.") else { return nil }
        let rest = name.utf8.dropFirst(4)
        guard let dot = rest.firstIndex(of: UInt8(ascii: ".")) else { return nil }
        let digits = rest[rest.startIndex ..< dot]
        guard !digits.isEmpty, digits.count <= 9, digits.allSatisfy({ $0 >= 48 && $0 <= 57 }) else { return nil }
        return digits.reduce(0) { $0 * 10 + Int($1 - 48) }
    }
}

extension GGUFFile {
    /// Tensor bytes per layer and outside the layers.
    public var layerMemory: LayerMemory { LayerMemory(tensors: tensors) }
}
