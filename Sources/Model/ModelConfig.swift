import GGUF

/// Architectures Shard can run. Each is hyperparameters + tensor names; the layer math is shared.
public enum Architecture: String, Sendable, CaseIterable {
    case llama
    case qwen2
}

public struct ModelConfigError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// Hyperparameters of a decoder-only transformer, read from GGUF metadata (`{arch}.…` keys).
public struct ModelConfig: Sendable, Equatable {
    public var architecture: Architecture
    public var layerCount: Int
    public var embeddingLength: Int      // d_model
    public var feedForwardLength: Int
    public var headCount: Int
    public var kvHeadCount: Int
    public var headDim: Int
    public var ropeDim: Int
    public var ropeBase: Float
    /// NeoX rope rotates (i, i + d/2) pairs; the original (GPT-J style) rotates adjacent pairs.
    public var ropeNeox: Bool
    public var rmsEps: Float
    public var contextLength: Int
    public var vocabSize: Int
    /// q/k/v projections carry biases (qwen2).
    public var hasQKVBias: Bool
    /// No `output.weight`: the embedding matrix doubles as the output head.
    public var tiedOutput: Bool

    /// Sliding attention window per layer (0: full causal attention). Read from no GGUF key yet: the
    /// seam for models with window layers (Gemma 2/3); empty means every layer attends fully.
    public var attentionWindows: [Int] = []

    public func attentionWindow(layer: Int) -> Int { layer < attentionWindows.count ? attentionWindows[layer] : 0 }

    public var qDim: Int { headCount * headDim }
    public var kvDim: Int { kvHeadCount * headDim }

    public init(gguf: GGUFFile) throws {
        guard let archName = gguf.architecture else {
            throw ModelConfigError("general.architecture is missing")
        }
        guard let arch = Architecture(rawValue: archName) else {
            throw ModelConfigError("architecture '\(archName)' is not supported (supported: \(Architecture.allCases.map(\.rawValue).joined(separator: ", ")))")
        }
        func required(_ key: String) throws -> Int {
            guard let v = gguf.int("\(archName).\(key)"), v > 0 else {
                throw ModelConfigError("\(archName).\(key) is missing or not a positive integer")
            }
            return v
        }
        architecture = arch
        layerCount = try required("block_count")
        embeddingLength = try required("embedding_length")
        feedForwardLength = try required("feed_forward_length")
        headCount = try required("attention.head_count")
        kvHeadCount = gguf.int("\(archName).attention.head_count_kv") ?? headCount
        headDim = gguf.int("\(archName).attention.key_length") ?? embeddingLength / headCount
        ropeDim = gguf.int("\(archName).rope.dimension_count") ?? headDim
        ropeBase = gguf.float("\(archName).rope.freq_base") ?? 10000
        rmsEps = gguf.float("\(archName).attention.layer_norm_rms_epsilon") ?? 1e-5
        contextLength = gguf.int("\(archName).context_length") ?? 2048
        ropeNeox = arch == .qwen2
        hasQKVBias = gguf.tensor(named: "blk.0.attn_q.bias") != nil
        tiedOutput = gguf.tensor(named: "output.weight") == nil
        guard let embd = gguf.tensor(named: "token_embd.weight"), embd.shape.count == 2 else {
            throw ModelConfigError("token_embd.weight is missing or not a matrix")
        }
        vocabSize = embd.shape[1]
        guard embd.shape[0] == embeddingLength else {
            throw ModelConfigError("token_embd.weight rows are \(embd.shape[0]) long, embedding_length is \(embeddingLength)")
        }
        guard headCount % kvHeadCount == 0 else {
            throw ModelConfigError("head_count \(headCount) is not a multiple of head_count_kv \(kvHeadCount)")
        }
        guard ropeDim <= headDim, ropeDim % 2 == 0 else {
            throw ModelConfigError("rope.dimension_count \(ropeDim) must be even and at most the head size \(headDim)")
        }
        try TensorNames.validate(self, in: gguf)
    }
}
