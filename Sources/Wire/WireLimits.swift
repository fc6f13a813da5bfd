/// Maxima every decoder checks before it allocates, and that sockets hand to libzmq (`ZMQ_MAXMSGSIZE`)
/// so oversized frames are refused before they are even buffered.
///
/// Set them from the model and the shard plan on both ends (`WireLimits.forModel`): a frame the sender
/// may legally build must pass the receiver's limits.
public struct WireLimits: Sendable, Equatable {
    /// Rows (tokens) of one step: sequence ids, positions and logit rows each hold at most this many.
    public var maxRows: Int
    /// Columns of a payload: embedding length for hidden states, vocabulary size for logits.
    public var maxColumns: Int
    /// Bytes of one ActivationFrame payload.
    public var maxPayloadBytes: Int
    /// UTF-8 bytes of any string (worker id, device name, host, model path, error message).
    public var maxStringLength: Int
    /// Sequence ids in one ReleaseSequence.
    public var maxReleaseIDs: Int
    /// Encoded bytes of one Control message.
    public var maxControlBytes: Int
    /// Data bytes of one WeightChunk (the coordinator sends `WeightChunk.standardSize`); with its
    /// framing it must stay under `maxControlBytes`.
    public var maxWeightChunkBytes: Int = 768 << 10
    /// Alternatives per row a frame may ask the last shard for (`ActivationFrame.topLogprobs`).
    public var maxTopLogprobs: Int = 64
    /// Stop tokens of a chained greedy decode frame (`ActivationFrame.stopTokens`).
    public var maxStopTokens: Int = 64
    /// Steps a chained greedy decode frame may let the first shard run on its own (`chainBudget`).
    public var maxChainBudget: Int = 1 << 20

    public init(maxRows: Int = 4096, maxColumns: Int = 1 << 18, maxPayloadBytes: Int = 256 << 20,
                maxStringLength: Int = 4096, maxReleaseIDs: Int = 65536, maxControlBytes: Int = 1 << 20) {
        self.maxRows = maxRows
        self.maxColumns = maxColumns
        self.maxPayloadBytes = maxPayloadBytes
        self.maxStringLength = maxStringLength
        self.maxReleaseIDs = maxReleaseIDs
        self.maxControlBytes = maxControlBytes
    }

    /// Limits that admit exactly what a model's pipeline sends: hidden rows of `embeddingLength` and logits
    /// of `vocabSize` (f32) for up to `maxBatchRows` rows.
    public static func forModel(embeddingLength: Int, vocabSize: Int, maxBatchRows: Int) -> WireLimits {
        let cols = max(embeddingLength, vocabSize)
        return WireLimits(maxRows: maxBatchRows, maxColumns: cols, maxPayloadBytes: maxBatchRows * cols * 4)
    }

    /// Encoded bytes of the largest legal ActivationFrame: payload plus per-row metadata
    /// (≤ 10 bytes per sequence id, ≤ 5 per position and per logit row) plus fixed fields.
    public var maxFrameBytes: Int { maxPayloadBytes + maxRows * 20 + 256 }
}
