import Compute
import GGUF
import Model
import Synchronization

/// Steps a shard ran, the rows they carried and the time they took; read from other threads (metrics).
public final class ShardStepCounters: Sendable {
    private let steps = Atomic<UInt64>(0), rows = Atomic<UInt64>(0), nanoseconds = Atomic<UInt64>(0)
    public init() {}
    func record(rows n: Int, _ d: Duration) {
        steps.add(1, ordering: .relaxed)
        rows.add(UInt64(n), ordering: .relaxed)
        let c = d.components
        nanoseconds.add(UInt64(max(0, c.seconds)) * 1_000_000_000 + UInt64(max(0, c.attoseconds / 1_000_000_000)), ordering: .relaxed)
    }
    public var snapshot: (steps: UInt64, rows: UInt64, busySeconds: Double) {
        (steps.load(ordering: .relaxed), rows.load(ordering: .relaxed), Double(nanoseconds.load(ordering: .relaxed)) / 1e9)
    }
}

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

    var isTokens: Bool { if case .tokens = self { return true } else { return false } }
}

/// What a shard returns: hidden states for the next shard, or (last shard) logits of the requested rows.
public enum ShardOutput {
    case hidden([Float])
    /// `logitRows.count` × vocabSize, row-major, in the order of `logitRows`.
    case logits([Float])
    /// With `picksOnly`, where the backend offers it: each logit row's argmax token (GreedyPick.argmax's
    /// answer), in the order of `logitRows`, instead of the logits.
    case picks([Int32])
}

/// How much memory a shard's KV pool may take.
public enum KVMemory: Sendable, Equatable, CustomStringConvertible {
    case bytes(Int)
    /// A fraction (0, 1] of the backend's free memory (device memory for a GPU) at load time.
    case fraction(Double)

    /// `1073741824`, `512MiB`, `2GiB`, `1.5GB`, or a fraction `0.5`.
    public init?(parsing text: String) {
        let t = text.filter { $0 != " " }
        let units: [(String, Double)] = [("GiB", 1_073_741_824), ("MiB", 1_048_576), ("KiB", 1024), ("GB", 1e9), ("MB", 1e6), ("KB", 1e3), ("B", 1)]
        for (suffix, scale) in units where t.hasSuffix(suffix) {
            guard let v = Double(t.dropLast(suffix.count)), v > 0, v * scale < 1e18 else { return nil }
            self = .bytes(Int(v * scale))
            return
        }
        if let n = Int(t), n > 0 { self = .bytes(n); return }
        if let f = Double(t), f > 0, f <= 1 { self = .fraction(f); return }
        return nil
    }

    public var description: String {
        switch self {
        case .bytes(let b): return "\(b) bytes"
        case .fraction(let f): return "\(f) of free memory"
        }
    }
}

public struct ShardOptions: Sendable {
    public var contextLength: Int
    /// Largest number of rows (tokens) one step may carry.
    public var maxBatchRows: Int
    public var pageSize: Int
    /// KV pages in the full-attention pool; nil sizes it from `kvMemory`, or for `maxSequences`
    /// full-context sequences.
    public var kvPages: Int?
    /// Memory budget of the KV pool (both pools, if the model has sliding-window layers).
    public var kvMemory: KVMemory?
    public var kvType: KVElementType
    /// Most sequences at once (sizes the sliding-window pool and the default pool).
    public var maxSequences: Int
    public init(contextLength: Int, maxBatchRows: Int = 512, pageSize: Int = 32, kvPages: Int? = nil,
                kvMemory: KVMemory? = nil, kvType: KVElementType = .f16, maxSequences: Int = 1) {
        self.contextLength = contextLength
        self.maxBatchRows = maxBatchRows
        self.pageSize = pageSize
        self.kvPages = kvPages
        self.kvMemory = kvMemory
        self.kvType = kvType
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
    /// Steps, rows and busy time so far (in-process shards' metrics).
    public let counters = ShardStepCounters()
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
    /// K/V of the full-attention layers, and of the sliding-window layers (if any).
    private let storage: KVStorage
    private let windowStorage: KVStorage?
    /// Per layer of this shard: its index in `storage` or `windowStorage`, and whether it is a window layer.
    private let kvSlot: [(index: Int, windowed: Bool)]
    /// Bytes of the KV pool(s).
    public let kvBytes: Int

    // Activation buffers, sized for maxBatchRows.
    private let x, xn, q, k, v, attn, proj, gate, up: Activations
    private let headInput: Activations?
    private let logits: Activations?
    /// Whether the backend recorded the argmax the last time it was asked (the same answer every time).
    private var argmaxOffered = false

    /// Loads layers `layers` of the model in `file` onto `backend`. `progress` is called with (done, total) weights.
    public init(file: GGUFFile, config: ModelConfig, layers: Range<Int>, backend: any ComputeBackend,
                options: ShardOptions, progress: ((Int, Int) -> Void)? = nil) throws {
        precondition(!layers.isEmpty && layers.upperBound <= config.layerCount)
        self.config = config
        self.layers = layers
        self.backend = backend
        self.options = options
        let ownsEmbedding = layers.lowerBound == 0, ownsHead = layers.upperBound == config.layerCount
        // KV settings the backend cannot honour fail before any weight is loaded.
        _ = try ModelShard.kvLayout(config: config, layers: layers, backend: backend, options: options)
        var names: [String] = []
        if ownsEmbedding || (ownsHead && config.tiedOutput) { names.append(TensorNames.tokenEmbedding) }
        for l in layers { names += TensorNames.layerTensors(config, layer: l).map(\.name) }
        if ownsHead {
            names.append(TensorNames.outputNorm)
            if !config.tiedOutput { names.append(TensorNames.output) }
        }
        // Announce the weights' bytes so that a GPU backend allocates exactly that much for them.
        let infos = names.compactMap { file.tensor(named: $0) }
        backend.reserveMemory(bytes: infos.reduce(0) { $0 + $1.byteCount }, buffers: infos.count, for: .weights)
        var loaded: [String: Weight] = [:]
        let embeddingOnly = !(ownsHead && config.tiedOutput)   // the table is not also the output head
        for (i, name) in names.enumerated() {
            guard let info = file.tensor(named: name) else { throw ModelConfigError("tensor \(name) is missing") }
            loaded[name] = try name == TensorNames.tokenEmbedding && embeddingOnly
                ? backend.loadEmbeddingTable(info, of: file) : backend.loadWeight(info, of: file)
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

        (kv, storage, windowStorage, kvSlot) = try ModelShard.makeKV(config: config, layers: layers, backend: backend, options: options)
        kvBytes = storage.shape.bytes + (windowStorage?.shape.bytes ?? 0)

        let rows = options.maxBatchRows, c = config
        // The head's buffers hold the rows whose logits one pass computes (a decode step's sequences);
        // a step asking for more logit rows runs the head again (logits of 512 rows × a 32k vocabulary
        // would be 62.5 MiB).
        let headRows = min(rows, max(64, options.maxSequences))
        let columns = [c.embeddingLength, c.embeddingLength, c.qDim, c.kvDim, c.kvDim, c.qDim, c.embeddingLength,
                       c.feedForwardLength, c.feedForwardLength]
        let headColumns = ownsHead ? [c.embeddingLength, c.vocabSize] : []
        backend.reserveMemory(bytes: columns.reduce(0) { $0 + rows * $1 * 4 } + headColumns.reduce(0) { $0 + headRows * $1 * 4 },
                              buffers: columns.count + headColumns.count, for: .activations)
        x = try backend.makeActivations(rowCapacity: rows, columns: c.embeddingLength)
        xn = try backend.makeActivations(rowCapacity: rows, columns: c.embeddingLength)
        q = try backend.makeActivations(rowCapacity: rows, columns: c.qDim)
        k = try backend.makeActivations(rowCapacity: rows, columns: c.kvDim)
        v = try backend.makeActivations(rowCapacity: rows, columns: c.kvDim)
        attn = try backend.makeActivations(rowCapacity: rows, columns: c.qDim)
        proj = try backend.makeActivations(rowCapacity: rows, columns: c.embeddingLength)
        gate = try backend.makeActivations(rowCapacity: rows, columns: c.feedForwardLength)
        up = try backend.makeActivations(rowCapacity: rows, columns: c.feedForwardLength)
        headInput = ownsHead ? try backend.makeActivations(rowCapacity: headRows, columns: c.embeddingLength) : nil
        logits = ownsHead ? try backend.makeActivations(rowCapacity: headRows, columns: c.vocabSize) : nil
    }

    /// Runs this shard's layers over one step. `rows` gives each input row's sequence and position
    /// (rows of one sequence consecutive, positions increasing). `logitRows` (last shard only) picks
    /// the rows whose logits are returned; other shards return hidden states.
    ///
    /// Before the step, `release` lets sequences go and `forks` start sequences on shared prefix pages,
    /// in that order: the coordinator sends them with the step so that every shard applies them at the
    /// same point of the step order. A step with no rows only applies them.
    public func forward(_ input: ShardInput, rows: [StepRow], logitRows: [Int] = [], release: [SequenceID] = [],
                        forks: [PrefixFork] = [], picksOnly: Bool = false) throws -> ShardOutput {
        let n = rows.count
        let started = ContinuousClock.now
        defer { if n > 0 { counters.record(rows: n, ContinuousClock.now - started) } }
        for s in release { kv.release(s) }
        for f in forks { try kv.fork(f) }
        if n == 0 && (!release.isEmpty || !forks.isEmpty) { return .hidden([]) }
        guard n > 0, n <= options.maxBatchRows else {
            throw ComputeError("a step carries \(n) rows; this shard takes 1...\(options.maxBatchRows)")
        }
        if ownsHead, let bad = logitRows.first(where: { $0 < 0 || $0 >= n }) {
            throw ComputeError("logit row \(bad) is outside the step's \(n) rows")
        }
        // Pages for every row's position, then the batch's page tables.
        var tableIndex: [SequenceID: Int32] = [:]
        var tables: [[Int32]] = [], windowTables: [[Int32]] = []
        for row in rows {
            try kv.reserve(row.sequence, length: row.position + 1)
        }
        for row in rows where tableIndex[row.sequence] == nil {
            tableIndex[row.sequence] = Int32(tables.count)
            tables.append(kv.pageTable(row.sequence))
            if windowStorage != nil { windowTables.append(kv.windowTable(row.sequence)) }
        }
        let batch = StepBatch(positions: rows.map { Int32($0.position) },
                              tableIndex: rows.map { tableIndex[$0.sequence]! }, pageTables: tables,
                              windowPageTables: windowTables)
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
        // The rest of the step depends only on this key (and the batch, which the backend compares itself):
        // a backend that has an earlier such step's commands runs them without the op calls.
        let head = ownsHead && !logitRows.isEmpty
        if !head || logitRows.count <= (headInput?.rowCapacity ?? 0) {
            let key = [input.isTokens ? 1 : 0, n, picksOnly ? 1 : 0] + (head ? logitRows : [])
            if backend.repeatsOps(key) {
                try backend.endStep()
                guard head else { return .hidden(backend.download(x, rows: 0..<n)) }
                if picksOnly && argmaxOffered { return .picks(backend.downloadArgmax(rows: logitRows.count)) }
                return .logits(backend.download(logits!, rows: 0..<logitRows.count))
            }
        }
        for (i, l) in layerWeights.enumerated() {
            runLayer(l, index: i)
        }
        if ownsHead, let outputNorm, let output, let headInput, let logits, !logitRows.isEmpty {
            // At most `headInput.rowCapacity` rows per pass; further passes are steps of their own
            // (buffers stay on the backend between steps). Ops run over the step's n rows: a step of
            // more rows than the head's buffers hold normalizes every row into xn first.
            let normFirst = n > headInput.rowCapacity
            if normFirst { backend.rmsNorm(x, weight: outputNorm, eps: config.rmsEps, into: xn) }
            var values: [Float] = []
            var picks: [Int32] = []
            var start = 0
            while true {
                let chunk = logitRows[start..<min(start + headInput.rowCapacity, logitRows.count)]
                for (j, r) in chunk.enumerated() { backend.copyRows(normFirst ? xn : x, from: r, to: headInput, at: j, count: 1) }
                // Normalized out of place (into xn, which holds the step's n rows), so that a backend can fuse the
                // norm with the rounding of the head's input (Vulkan: rms_quant's int8 copy for the batched kernels).
                if !normFirst { backend.rmsNorm(headInput, weight: outputNorm, eps: config.rmsEps, into: xn) }
                backend.matmul(output, normFirst ? headInput : xn, bias: nil, into: logits, rows: chunk.count)
                // Every chunk alike: the backend offers the argmax for all of them or for none.
                let picked = picksOnly && backend.recordArgmax(logits, rows: chunk.count)
                if picksOnly { argmaxOffered = picked }
                if !picked { backend.prepareDownload(logits, rows: 0..<chunk.count) }
                try backend.endStep()
                if picked { picks += backend.downloadArgmax(rows: chunk.count) } else { values += backend.download(logits, rows: 0..<chunk.count) }
                start += chunk.count
                if start == logitRows.count { return picked ? .picks(picks) : .logits(values) }
                try backend.beginStep(batch)
            }
        }
        backend.prepareDownload(x, rows: 0..<n)
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
        let slot = kvSlot[index]
        let store = slot.windowed ? windowStorage! : storage
        backend.storeKV(k: k, v: v, storage: store, layer: slot.index)
        let params = AttentionParams(heads: c.headCount, kvHeads: c.kvHeadCount, headDim: c.headDim,
                                     scale: 1 / Float(c.headDim).squareRoot())
        backend.attention(q: q, storage: store, layer: slot.index, params: params, into: attn)
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

    /// Each layer's attention window and the shard's one window size, after checking that the backend
    /// supports the KV type and (if any layer has a window) sliding-window layers.
    static func kvLayout(config: ModelConfig, layers: Range<Int>, backend: any ComputeBackend, options o: ShardOptions) throws
        -> (windows: [Int], window: Int) {
        let caps = backend.kvCapabilities
        guard caps.types.contains(o.kvType) else {
            throw ComputeError("the \(backend.kind.rawValue) backend does not support \(o.kvType.rawValue) KV "
                               + "(supported: \(caps.types.map(\.rawValue).sorted().joined(separator: ", ")))")
        }
        let windows = layers.map { config.attentionWindow(layer: $0) }
        let windowSizes = Set(windows.filter { $0 > 0 })
        guard windowSizes.count <= 1 else { throw ComputeError("layers with different sliding windows (\(windowSizes.sorted())) are not supported") }
        let window = windowSizes.first ?? 0
        if window > 0 && !caps.slidingWindow {
            throw ComputeError("the \(backend.kind.rawValue) backend does not support sliding-window attention layers")
        }
        return (windows, window)
    }

    /// The page bookkeeping and backend storage of a shard's KV: a full-attention pool sized from the
    /// options (explicit page count, memory budget, or `maxSequences` full contexts) and, when some of
    /// the layers have a sliding window, a ring pool of `maxSequences` rings for them.
    static func makeKV(config: ModelConfig, layers: Range<Int>, backend: any ComputeBackend, options o: ShardOptions) throws
        -> (StreamingKVCache, KVStorage, KVStorage?, [(index: Int, windowed: Bool)]) {
        guard o.pageSize > 0, o.maxSequences > 0, o.contextLength > 0 else {
            throw ComputeError("page size, context length and max sequences must be positive")
        }
        let (windows, window) = try kvLayout(config: config, layers: layers, backend: backend, options: o)
        var slots: [(index: Int, windowed: Bool)] = []
        var fullLayers = 0, windowLayers = 0
        for w in windows {
            if w > 0 { slots.append((windowLayers, true)); windowLayers += 1 } else { slots.append((fullLayers, false)); fullLayers += 1 }
        }
        let ps = o.pageSize
        let contextPages = (o.contextLength + ps - 1) / ps
        let ring = window > 0 ? StreamingKVCache.ringPages(window: window, pageSize: ps, maxRows: o.maxBatchRows, contextLength: o.contextLength) : 0
        let windowPages = window > 0 ? o.maxSequences * ring : 0
        let fullPageBytes = KVShape(layers: fullLayers, pages: 1, pageSize: ps, kvDim: config.kvDim, type: o.kvType).bytes
        let windowPageBytes = KVShape(layers: windowLayers, pages: 1, pageSize: ps, kvDim: config.kvDim, type: o.kvType).bytes
        var pages: Int
        if let p = o.kvPages {
            pages = p
        } else if let memory = o.kvMemory {
            let budget: Int
            switch memory {
            case .bytes(let b): budget = b
            case .fraction(let f):
                guard let free = backend.freeMemoryBytes else {
                    throw ComputeError("the \(backend.kind.rawValue) backend does not report its free memory; give --kv-memory in bytes")
                }
                budget = Int(Double(free) * f)
            }
            let rest = budget - windowPages * windowPageBytes
            guard rest > 0 else {
                throw ComputeError("--kv-memory \(memory) does not hold the sliding-window rings of \(o.maxSequences) sequences "
                                   + "(\(windowPages * windowPageBytes) bytes)")
            }
            pages = fullLayers == 0 ? o.maxSequences * contextPages : rest / max(fullPageBytes, 1)
            guard pages >= 1 else {
                throw ComputeError("--kv-memory \(memory) holds no KV page (one page of \(ps) positions takes \(fullPageBytes) bytes on this shard)")
            }
        } else {
            // Default: one full context, or `maxSequences` × 1024 positions if more (sequences rarely
            // all reach the full context; the scheduler preempts when they do), at most half the
            // backend's free memory when it reports it.
            pages = max(contextPages, o.maxSequences * ((min(1024, o.contextLength) + ps - 1) / ps))
            if let free = backend.freeMemoryBytes, fullPageBytes > 0 {
                pages = max(1, min(pages, (free / 2 - windowPages * windowPageBytes) / fullPageBytes))
            }
        }
        pages = min(pages, Int(Int32.max))
        let cache = StreamingKVCache(pageSize: ps, pageCount: pages, contextLength: o.contextLength, window: window,
                                     ringPages: ring, windowPageCount: windowPages)
        let storage = try backend.makeKVStorage(KVShape(layers: fullLayers, pages: fullLayers == 0 ? 1 : pages, pageSize: ps,
                                                        kvDim: config.kvDim, type: o.kvType))
        let windowStorage = window > 0
            ? try backend.makeKVStorage(KVShape(layers: windowLayers, pages: windowPages, pageSize: ps, kvDim: config.kvDim,
                                                type: o.kvType, window: window))
            : nil
        return (cache, storage, windowStorage, slots)
    }
}
