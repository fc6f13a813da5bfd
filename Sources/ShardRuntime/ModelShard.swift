import Compute
import GGUF
import Model

/// One row of a step: which sequence a token belongs to and its position there.
public struct StepRow: Sendable, Equatable {
    public var sequence: SequenceID
    public var position: Int
    public init(sequence: SequenceID, position: Int) {
        self.sequence = sequence
        self.position = position
    }
}

/// What a shard receives: token ids (the first shard embeds them) or hidden states from the previous shard.
public enum ShardInput {
    case tokens([Int32])
    /// rows × embeddingLength, row-major.
    case hidden([Float])
}

/// What a shard returns: hidden states for the next shard, or (last shard) logits of the requested rows.
public enum ShardOutput {
    case hidden([Float])
    /// `logitRows.count` × vocabSize, row-major, in the order of `logitRows`.
    case logits([Float])
}

public struct ShardOptions: Sendable {
    public var contextLength: Int
    /// Largest number of rows (tokens) one step may carry.
    public var maxBatchRows: Int
    public var pageSize: Int
    /// KV pages in the pool; nil sizes the pool for `maxSequences` full-context sequences.
    public var kvPages: Int?
    public var maxSequences: Int
    public init(contextLength: Int, maxBatchRows: Int = 512, pageSize: Int = 32, kvPages: Int? = nil, maxSequences: Int = 1) {
        self.contextLength = contextLength
        self.maxBatchRows = maxBatchRows
        self.pageSize = pageSize
        self.kvPages = kvPages
        self.maxSequences = maxSequences
    }
}

/// A contiguous range of a model's layers on one backend, with its own KV cache.
/// The first shard (layers starting at 0) owns the embedding; the last owns the final norm and output head.
public final class ModelShard {
    public let config: ModelConfig
    public let layers: Range<Int>
    public let backend: any ComputeBackend
    public let kv: StreamingKVCache
    public let options: ShardOptions
    public var ownsEmbedding: Bool { layers.lowerBound == 0 }
    public var ownsHead: Bool { layers.upperBound == config.layerCount }

    struct LayerWeights {
        var attnNorm, q, k, v, o, ffnNorm, gate, up, down: Weight
        var qBias, kBias, vBias: Weight?
    }
    private let layerWeights: [LayerWeights]
    private let tokenEmbedding: Weight?
    private let outputNorm: Weight?
    private let output: Weight?
    private let storage: KVStorage

    // Activation buffers, sized for maxBatchRows.
    private let x, xn, q, k, v, attn, proj, gate, up: Activations
    private let headInput: Activations?
    private let logits: Activations?

    /// Loads layers `layers` of the model in `file` onto `backend`. `progress` is called with (done, total) weights.
    public init(file: GGUFFile, config: ModelConfig, layers: Range<Int>, backend: any ComputeBackend,
                options: ShardOptions, progress: ((Int, Int) -> Void)? = nil) throws {
        precondition(!layers.isEmpty && layers.upperBound <= config.layerCount)
        self.config = config
        self.layers = layers
        self.backend = backend
        self.options = options
        let ownsEmbedding = layers.lowerBound == 0, ownsHead = layers.upperBound == config.layerCount
        var names: [String] = []
        if ownsEmbedding || (ownsHead && config.tiedOutput) { names.append(TensorNames.tokenEmbedding) }
        for l in layers { names += TensorNames.layerTensors(config, layer: l).map(\.name) }
        if ownsHead {
            names.append(TensorNames.outputNorm)
            if !config.tiedOutput { names.append(TensorNames.output) }
        }
        var loaded: [String: Weight] = [:]
        for (i, name) in names.enumerated() {
            guard let info = file.tensor(named: name) else { throw ModelConfigError("tensor \(name) is missing") }
            loaded[name] = try backend.loadWeight(info, of: file)
            progress?(i + 1, names.count)
        }
        func w(_ name: String) -> Weight { loaded[name]! }
        layerWeights = layers.map { l in
            LayerWeights(attnNorm: w(TensorNames.attnNorm(l)), q: w(TensorNames.attnQ(l)), k: w(TensorNames.attnK(l)),
                         v: w(TensorNames.attnV(l)), o: w(TensorNames.attnOutput(l)), ffnNorm: w(TensorNames.ffnNorm(l)),
                         gate: w(TensorNames.ffnGate(l)), up: w(TensorNames.ffnUp(l)), down: w(TensorNames.ffnDown(l)),
                         qBias: loaded[TensorNames.attnQBias(l)], kBias: loaded[TensorNames.attnKBias(l)],
                         vBias: loaded[TensorNames.attnVBias(l)])
        }
        tokenEmbedding = loaded[TensorNames.tokenEmbedding]
        outputNorm = ownsHead ? w(TensorNames.outputNorm) : nil
        output = ownsHead ? (config.tiedOutput ? w(TensorNames.tokenEmbedding) : w(TensorNames.output)) : nil

        let pages = options.kvPages ?? options.maxSequences * ((options.contextLength + options.pageSize - 1) / options.pageSize)
        kv = StreamingKVCache(pageSize: options.pageSize, pageCount: pages, contextLength: options.contextLength)
        storage = try backend.makeKVStorage(KVShape(layers: layers.count, pages: pages, pageSize: options.pageSize, kvDim: config.kvDim))

        let rows = options.maxBatchRows, c = config
        x = try backend.makeActivations(rowCapacity: rows, columns: c.embeddingLength)
        xn = try backend.makeActivations(rowCapacity: rows, columns: c.embeddingLength)
        q = try backend.makeActivations(rowCapacity: rows, columns: c.qDim)
        k = try backend.makeActivations(rowCapacity: rows, columns: c.kvDim)
        v = try backend.makeActivations(rowCapacity: rows, columns: c.kvDim)
        attn = try backend.makeActivations(rowCapacity: rows, columns: c.qDim)
        proj = try backend.makeActivations(rowCapacity: rows, columns: c.embeddingLength)
        gate = try backend.makeActivations(rowCapacity: rows, columns: c.feedForwardLength)
        up = try backend.makeActivations(rowCapacity: rows, columns: c.feedForwardLength)
        headInput = ownsHead ? try backend.makeActivations(rowCapacity: rows, columns: c.embeddingLength) : nil
        logits = ownsHead ? try backend.makeActivations(rowCapacity: rows, columns: c.vocabSize) : nil
    }

    /// Runs this shard's layers over one step. `rows` gives each input row's sequence and position
    /// (rows of one sequence consecutive, positions increasing). `logitRows` (last shard only) picks
    /// the rows whose logits are returned; other shards return hidden states.
    public func forward(_ input: ShardInput, rows: [StepRow], logitRows: [Int] = []) throws -> ShardOutput {
        let n = rows.count
        guard n > 0, n <= options.maxBatchRows else {
            throw ComputeError("a step carries \(n) rows; this shard takes 1...\(options.maxBatchRows)")
        }
        // Pages for every row's position, then the batch's page tables.
        var tableIndex: [SequenceID: Int32] = [:]
        var tables: [[Int32]] = []
        for row in rows {
            try kv.reserve(row.sequence, length: row.position + 1)
        }
        for row in rows where tableIndex[row.sequence] == nil {
            tableIndex[row.sequence] = Int32(tables.count)
            tables.append(kv.pageTable(row.sequence))
        }
        let batch = StepBatch(positions: rows.map { Int32($0.position) },
                              tableIndex: rows.map { tableIndex[$0.sequence]! }, pageTables: tables)
        try backend.beginStep(batch)
        switch input {
        case .tokens(let ids):
            guard let embedding = tokenEmbedding, ownsEmbedding else { throw ComputeError("this shard does not own the embedding") }
            guard ids.count == n else { throw ComputeError("\(ids.count) tokens for \(n) rows") }
            for id in ids where id < 0 || Int(id) >= config.vocabSize {
                throw ComputeError("token id \(id) is outside the vocabulary (0..<\(config.vocabSize))")
            }
            backend.embed(embedding, tokens: ids, into: x)
        case .hidden(let h):
            guard h.count == n * config.embeddingLength else {
                throw ComputeError("hidden state has \(h.count) values, expected \(n) × \(config.embeddingLength)")
            }
            backend.upload(h, to: x)
        }
        for (i, l) in layerWeights.enumerated() {
            runLayer(l, index: i)
        }
        if ownsHead, let outputNorm, let output, let headInput, let logits, !logitRows.isEmpty {
            for (j, r) in logitRows.enumerated() { backend.copyRows(x, from: r, to: headInput, at: j, count: 1) }
            backend.rmsNorm(headInput, weight: outputNorm, eps: config.rmsEps, into: headInput)
            backend.matmul(output, headInput, bias: nil, into: logits, rows: logitRows.count)
            try backend.endStep()
            return .logits(backend.download(logits, rows: 0..<logitRows.count))
        }
        try backend.endStep()
        return .hidden(backend.download(x, rows: 0..<n))
    }

    /// One transformer block: pre-norm attention and pre-norm SwiGLU FFN, each with a residual.
    private func runLayer(_ w: LayerWeights, index: Int) {
        let c = config
        backend.rmsNorm(x, weight: w.attnNorm, eps: c.rmsEps, into: xn)
        backend.matmuls(xn, [MatmulItem(weight: w.q, bias: w.qBias, output: q),
                             MatmulItem(weight: w.k, bias: w.kBias, output: k),
                             MatmulItem(weight: w.v, bias: w.vBias, output: v)], rows: nil)
        let rope = RopeParams(dims: c.ropeDim, base: c.ropeBase, neox: c.ropeNeox)
        backend.rope(q, heads: c.headCount, headDim: c.headDim, params: rope)
        backend.rope(k, heads: c.kvHeadCount, headDim: c.headDim, params: rope)
        backend.storeKV(k: k, v: v, storage: storage, layer: index)
        let params = AttentionParams(heads: c.headCount, kvHeads: c.kvHeadCount, headDim: c.headDim,
                                     scale: 1 / Float(c.headDim).squareRoot())
        backend.attention(q: q, storage: storage, layer: index, params: params, into: attn)
        backend.matmul(w.o, attn, bias: nil, into: proj, rows: nil)
        backend.add(x, proj)
        backend.rmsNorm(x, weight: w.ffnNorm, eps: c.rmsEps, into: xn)
        backend.matmuls(xn, [MatmulItem(weight: w.gate, output: gate), MatmulItem(weight: w.up, output: up)], rows: nil)
        backend.swiglu(gate: gate, up: up, into: gate)
        backend.matmul(w.down, gate, bias: nil, into: proj, rows: nil)
        backend.add(x, proj)
    }

    /// Frees the sequence's KV pages.
    public func release(_ sequence: SequenceID) { kv.release(sequence) }
}
