import GGUF

/// Which kind of backend computes a shard's layers.
public enum BackendKind: String, Sendable, CaseIterable {
    case cpu
    case vulkan
}

public struct ComputeError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// A weight tensor resident on a backend (CPU: a view into the mmapped file; GPU: device memory).
open class Weight {
    public let name: String
    /// Innermost first, as in GGUF: `shape[0]` is the row length.
    public let shape: [Int]
    public let type: GGMLType
    public init(name: String, shape: [Int], type: GGMLType) {
        self.name = name
        self.shape = shape
        self.type = type
    }
    public var rowLength: Int { shape[0] }
    public var rowCount: Int { shape.dropFirst().reduce(1, *) }
}

/// A row-major f32 matrix of activations, `rowCapacity` × `columns`, on a backend.
/// A step uses its first `rows` rows (one per token in the batch).
open class Activations {
    public let rowCapacity: Int
    public let columns: Int
    public init(rowCapacity: Int, columns: Int) {
        self.rowCapacity = rowCapacity
        self.columns = columns
    }
}

/// Element type of a KV store.
public enum KVElementType: String, Sendable, CaseIterable {
    /// IEEE half, as llama.cpp stores K and V by default.
    case f16
    /// ggml's Q8_0 blocks (32 int8 values and an f16 scale, 34 bytes): half the memory of f16.
    case q8_0

    /// Bytes of `count` values (`count` a multiple of 32 for q8_0).
    public func bytes(_ count: Int) -> Int {
        switch self {
        case .f16: return 2 * count
        case .q8_0: return (count + 31) / 32 * 34
        }
    }
}

/// Shape of a paged KV store: for each layer, K and V pages of `pageSize` positions × `kvDim` values.
public struct KVShape: Sendable, Equatable {
    public var layers: Int
    public var pages: Int
    public var pageSize: Int
    public var kvDim: Int
    public var type: KVElementType
    /// 0: full causal attention, page tables from `StepBatch.pageTables`. Above 0: sliding-window layers —
    /// a row at position p attends positions max(0, p − window + 1)...p, and page tables come from
    /// `StepBatch.windowPageTables` (a ring of pages, so evicted entries may be −1).
    public var window: Int
    public init(layers: Int, pages: Int, pageSize: Int, kvDim: Int, type: KVElementType = .f16, window: Int = 0) {
        self.layers = layers
        self.pages = pages
        self.pageSize = pageSize
        self.kvDim = kvDim
        self.type = type
        self.window = window
    }
    /// Bytes of the whole store at `elementSize` bytes per value (2 for f16).
    public func bytes(elementSize: Int) -> Int { layers * 2 * pages * pageSize * kvDim * elementSize }
    /// Bytes of the whole store in its element type.
    public var bytes: Int { layers * 2 * pages * type.bytes(pageSize * kvDim) }
    /// Bytes of one page (K and V of every layer).
    public var pageBytes: Int { layers * 2 * type.bytes(pageSize * kvDim) }
}

/// What a backend's KV cache can do; `ModelShard` refuses a configuration outside it with a clear error.
public struct KVCapabilities: Sendable, Equatable {
    public var types: Set<KVElementType>
    /// Sliding-window layers (`KVShape.window` > 0, ring page tables).
    public var slidingWindow: Bool
    public init(types: Set<KVElementType>, slidingWindow: Bool) {
        self.types = types
        self.slidingWindow = slidingWindow
    }
}

/// KV storage on a backend; which page holds which positions is the cache manager's business.
open class KVStorage {
    public let shape: KVShape
    public init(shape: KVShape) { self.shape = shape }
}

/// What one step computes over: one row per token, each with its sequence's page table and position.
/// Rows of one sequence are consecutive and in position order (a prefill chunk or one decode token).
public struct StepBatch: Sendable {
    /// Position of each row's token in its sequence.
    public var positions: [Int32]
    /// Index into `pageTables` for each row.
    public var tableIndex: [Int32]
    /// Page tables of the sequences in the batch: page i holds positions [i·pageSize, (i+1)·pageSize).
    public var pageTables: [[Int32]]
    /// The same for sliding-window layers (same `tableIndex`): entry i is the ring page that holds
    /// positions [i·pageSize, (i+1)·pageSize), −1 where that page has left the window. Empty when the
    /// shard has no window layers.
    public var windowPageTables: [[Int32]]

    public init(positions: [Int32], tableIndex: [Int32], pageTables: [[Int32]], windowPageTables: [[Int32]] = []) {
        self.positions = positions
        self.tableIndex = tableIndex
        self.pageTables = pageTables
        self.windowPageTables = windowPageTables
    }
    public var rows: Int { positions.count }
}

/// One weight of a `matmuls` group.
public struct MatmulItem {
    public var weight: Weight
    public var bias: Weight?
    public var output: Activations
    public init(weight: Weight, bias: Weight? = nil, output: Activations) {
        self.weight = weight
        self.bias = bias
        self.output = output
    }
}

/// Rotary position embedding parameters.
public struct RopeParams: Sendable, Equatable {
    public var dims: Int
    public var base: Float
    public var neox: Bool
    public init(dims: Int, base: Float, neox: Bool) {
        self.dims = dims
        self.base = base
        self.neox = neox
    }
}

/// Attention geometry.
public struct AttentionParams: Sendable, Equatable {
    public var heads: Int
    public var kvHeads: Int
    public var headDim: Int
    public var scale: Float
    public init(heads: Int, kvHeads: Int, headDim: Int, scale: Float) {
        self.heads = heads
        self.kvHeads = kvHeads
        self.headDim = headDim
        self.scale = scale
    }
}

/// The ops a transformer layer needs, for a batch of rows. Model code is written only against this
/// protocol. A backend may record ops between `beginStep` and `endStep` and run them at `endStep`
/// (one submit per step on a GPU); the CPU backend runs each op as it is called. Reads of results
/// (`download`) happen after `endStep`.
public protocol ComputeBackend: AnyObject {
    var kind: BackendKind { get }
    /// Human-readable device name ("CPU (2 threads)", "NVIDIA H100 …").
    var deviceName: String { get }

    func loadWeight(_ tensor: GGUFTensorInfo, of file: GGUFFile) throws -> Weight
    /// The token-embedding table when only `embed` reads it (not also the output head): a GPU backend
    /// may leave it in host memory and fetch the step's rows there. Default: `loadWeight`.
    func loadEmbeddingTable(_ tensor: GGUFTensorInfo, of file: GGUFFile) throws -> Weight
    func makeActivations(rowCapacity: Int, columns: Int) throws -> Activations
    func makeKVStorage(_ shape: KVShape) throws -> KVStorage

    /// Starts a step over `batch`; every op until `endStep` works on `batch.rows` rows.
    func beginStep(_ batch: StepBatch) throws
    func endStep() throws

    func upload(_ values: [Float], to a: Activations)
    func download(_ a: Activations, rows: Range<Int>) -> [Float]
    /// Records, inside the step, each of the first `rows` rows' argmax (GreedyPick.argmax's answer:
    /// the first index of the largest value) for `downloadArgmax` after `endStep`; false: not offered
    /// (the caller downloads the rows and picks on the host). Default: false.
    func recordArgmax(_ logits: Activations, rows: Int) -> Bool
    /// The ids `recordArgmax` recorded, after `endStep`.
    func downloadArgmax(rows: Int) -> [Int32]
    /// Inside a step, after the ops that write `a`: the caller will `download(a, rows:)` these rows after
    /// `endStep`; a backend may copy them out within the step (a GPU: no read-back submit of its own). Default: nothing.
    func prepareDownload(_ a: Activations, rows: Range<Int>)

    /// out[i] = dequantized row `tokens[i]` of `table`.
    func embed(_ table: Weight, tokens: [Int32], into out: Activations)
    /// out = x / rms(x) * weight, per row.
    func rmsNorm(_ x: Activations, weight: Weight, eps: Float, into out: Activations)
    /// out[i] = W · x[i] (+ bias). `rows` overrides the step's row count (e.g. logits for chosen rows).
    func matmul(_ w: Weight, _ x: Activations, bias: Weight?, into out: Activations, rows: Int?)
    /// Several weights applied to one input (q/k/v; gate/up): lets a backend share the input's
    /// preparation and run them as one pass.
    func matmuls(_ x: Activations, _ items: [MatmulItem], rows: Int?)
    /// Rotates each head of each row in place by its row's position.
    func rope(_ x: Activations, heads: Int, headDim: Int, params: RopeParams)
    /// Writes the rows' K and V into layer `layer` of `storage` at their positions.
    func storeKV(k: Activations, v: Activations, storage: KVStorage, layer: Int)
    /// Causal attention of each row's query over its sequence's cached K/V up to its position.
    func attention(q: Activations, storage: KVStorage, layer: Int, params: AttentionParams, into out: Activations)
    /// What this backend's KV storage supports (default: f16, no sliding window).
    var kvCapabilities: KVCapabilities { get }
    /// Memory this backend can still allocate (device memory for a GPU), if known: sizes the KV pool
    /// when `--kv-memory` is a fraction.
    var freeMemoryBytes: Int? { get }
    /// A hint before a shard loads its weights (or makes its activation buffers): `buffers` of `bytes`
    /// in all follow. A GPU backend places them in memory of exactly that size. Optional.
    func reserveMemory(bytes: Int, buffers: Int, for use: ReservedMemory)

    /// out = silu(gate) * up.
    func swiglu(gate: Activations, up: Activations, into out: Activations)
    /// x += y.
    func add(_ x: Activations, _ y: Activations)
    /// Copies `count` rows of `src` starting at `srcRow` to `dst` starting at `dstRow`.
    func copyRows(_ src: Activations, from srcRow: Int, to dst: Activations, at dstRow: Int, count: Int)
    /// A step is about to start (its frame has arrived): a backend may get ready meanwhile (the CPU
    /// backend wakes its worker threads). Default: nothing.
    func prepareForStep()
    /// Inside a step: the caller's op calls from here to `endStep` repeat, call for call and argument for
    /// argument, those of an earlier step in which it passed the same `key` here. True: the backend has the
    /// rest of that step already (the caller makes no more op calls and goes to `endStep`); false: the caller
    /// makes them. Default: false (the CPU backend runs each op as it is called).
    func repeatsOps(_ key: [Int]) -> Bool
}

/// What a `reserveMemory` hint announces.
public enum ReservedMemory: Sendable {
    case weights
    case activations
}

extension ComputeBackend {
    public func recordArgmax(_ logits: Activations, rows: Int) -> Bool { false }
    public func downloadArgmax(rows: Int) -> [Int32] { [] }
    public func prepareDownload(_ a: Activations, rows: Range<Int>) {}
    public var kvCapabilities: KVCapabilities { KVCapabilities(types: [.f16], slidingWindow: false) }
    public var freeMemoryBytes: Int? { nil }
    public func reserveMemory(bytes: Int, buffers: Int, for use: ReservedMemory) {}
    public func loadEmbeddingTable(_ tensor: GGUFTensorInfo, of file: GGUFFile) throws -> Weight {
        try loadWeight(tensor, of: file)
    }
    public func prepareForStep() {}
    public func repeatsOps(_ key: [Int]) -> Bool { false }
}
