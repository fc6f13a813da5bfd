#if canImport(Glibc)
import Glibc
#endif
import GGUF
import Quant

/// CPU weights are views into the mmapped GGUF file: loading copies nothing.
final class CPUWeight: Weight {
    let file: GGUFFile  // keeps the mapping alive
    let data: UnsafeRawPointer
    let rowBytes: Int
    init(_ t: GGUFTensorInfo, file: GGUFFile) {
        self.file = file
        self.data = file.data(for: t).baseAddress!
        self.rowBytes = t.rowBytes
        super.init(name: t.name, shape: t.shape, type: t.type)
    }
    /// f32 view; only valid for F32 tensors (norm weights, biases).
    var floats: UnsafePointer<Float> { data.assumingMemoryBound(to: Float.self) }
}

final class CPUActivations: Activations {
    let storage: UnsafeMutablePointer<Float>
    override init(rowCapacity: Int, columns: Int) {
        storage = .allocate(capacity: rowCapacity * columns)
        storage.initialize(repeating: 0, count: rowCapacity * columns)
        super.init(rowCapacity: rowCapacity, columns: columns)
    }
    deinit { storage.deallocate() }
    @inline(__always) func row(_ r: Int) -> UnsafeMutablePointer<Float> { storage + r * columns }
}

/// K and V per layer, `pages * pageSize` rows of `kvDim` values each, in f16 (as llama.cpp stores them)
/// or Q8_0 blocks. A row is `rowBytes` bytes.
final class CPUKVStorage: KVStorage {
    let keys: [UnsafeMutableRawPointer]
    let values: [UnsafeMutableRawPointer]
    let rowBytes: Int
    override init(shape: KVShape) {
        rowBytes = shape.type.bytes(shape.kvDim)
        let n = shape.pages * shape.pageSize * rowBytes
        keys = (0..<shape.layers).map { _ in .allocate(byteCount: max(n, 1), alignment: 64) }
        values = (0..<shape.layers).map { _ in .allocate(byteCount: max(n, 1), alignment: 64) }
        super.init(shape: shape)
    }
    deinit {
        keys.forEach { $0.deallocate() }
        values.forEach { $0.deallocate() }
    }
    /// Byte offset of the K (or V) row for `position` of a sequence with page table `table`.
    @inline(__always) func slot(_ table: UnsafePointer<Int32>, _ position: Int) -> Int {
        let ps = shape.pageSize
        return (Int(table[position / ps]) * ps + position % ps) * rowBytes
    }
}

/// Runs every op immediately on the calling thread plus a pool of worker threads (rows split across cores).
public final class CPUBackend: ComputeBackend {
    public let kind = BackendKind.cpu
    public let threads: Int
    public var deviceName: String { "CPU (\(threads) threads)" }

    private var batch = StepBatch(positions: [], tableIndex: [], pageTables: [])
    /// Quantized activations, reused across matmuls.
    private var scratch: UnsafeMutableRawPointer
    private var scratchBytes: Int

    private let pool: ThreadPool
    private let ownsPool: Bool

    /// `pool` lets several CPU shards of one process share their worker threads (they run one after
    /// the other; separate spinning pools would fight over the cores).
    public init(threads: Int = Parallel.defaultThreads, pool: ThreadPool? = nil) {
        self.threads = pool?.threadCount ?? max(1, threads)
        self.pool = pool ?? ThreadPool(threads: self.threads)
        ownsPool = pool == nil
        scratchBytes = 1 << 16
        scratch = .allocate(byteCount: scratchBytes, alignment: 64)
    }
    deinit {
        if ownsPool { pool.shutdown() }
        scratch.deallocate()
    }

    /// Calls `body(range)` over chunks covering 0..<count (boundaries on multiples of `granularity`),
    /// about four chunks per thread so that uneven work balances.
    @inline(__always)
    private func parallel(_ count: Int, granularity: Int = 1, minimumChunk: Int = 1, _ body: (Range<Int>) -> Void) {
        guard count > 0 else { return }
        let units = (count + granularity - 1) / granularity
        let chunks = max(1, min(threads * 4, units, count / max(minimumChunk, 1)))
        if chunks == 1 { body(0..<count); return }
        pool.run(chunks: chunks) { c in
            let lo = units * c / chunks * granularity
            let hi = min(count, units * (c + 1) / chunks * granularity)
            if lo < hi { body(lo..<hi) }
        }
    }

    public func loadWeight(_ tensor: GGUFTensorInfo, of file: GGUFFile) throws -> Weight {
        CPUWeight(tensor, file: file)
    }
    public func makeActivations(rowCapacity: Int, columns: Int) throws -> Activations {
        CPUActivations(rowCapacity: rowCapacity, columns: columns)
    }
    public func makeKVStorage(_ shape: KVShape) throws -> KVStorage {
        guard shape.type != .q8_0 || shape.kvDim % 32 == 0 else {
            throw ComputeError("q8_0 KV needs K/V rows that are a multiple of 32 values (this model's: \(shape.kvDim))")
        }
        return CPUKVStorage(shape: shape)
    }
    public var kvCapabilities: KVCapabilities { KVCapabilities(types: [.f16, .q8_0], slidingWindow: true) }
    public var freeMemoryBytes: Int? { HostMemory.available() }

    public func beginStep(_ batch: StepBatch) throws { self.batch = batch }
    public func prepareForStep() { pool.prepare() }
    /// No step is coming soon: the worker threads sleep now (`ThreadPool.park`).
    public func parkThreads() { pool.park() }
    /// How long the worker threads stay awake between steps (see `ThreadPool.idleSpin`).
    public var idleSpin: Duration {
        get { pool.idleSpin }
        set { pool.idleSpin = newValue }
    }
    public func endStep() throws {}

    public func upload(_ values: [Float], to a: Activations) {
        let a = a as! CPUActivations
        precondition(values.count <= a.rowCapacity * a.columns)
        values.withUnsafeBufferPointer { a.storage.update(from: $0.baseAddress!, count: values.count) }
    }
    public func download(_ a: Activations, rows: Range<Int>) -> [Float] {
        let a = a as! CPUActivations
        return Array(UnsafeBufferPointer(start: a.row(rows.lowerBound), count: rows.count * a.columns))
    }

    public func embed(_ table: Weight, tokens: [Int32], into out: Activations) {
        let w = table as! CPUWeight, o = out as! CPUActivations
        for (i, t) in tokens.enumerated() {
            Dequant.row(w.type, w.data + Int(t) * w.rowBytes, o.row(i), count: w.rowLength)
        }
    }

    public func rmsNorm(_ x: Activations, weight: Weight, eps: Float, into out: Activations) {
        let x = x as! CPUActivations, o = out as! CPUActivations, w = (weight as! CPUWeight).floats
        let n = x.columns
        for r in 0..<batch.rows {
            CPUKernels.rmsNorm(x.row(r), w, o.row(r), n, eps)
        }
    }

    public func matmul(_ w: Weight, _ x: Activations, bias: Weight?, into out: Activations, rows: Int?) {
        matmuls(x, [MatmulItem(weight: w, bias: bias, output: out)], rows: rows)
    }

    /// Several weights applied to the same input: the input is quantized once per activation type
    /// and all weights' rows run in one parallel region.
    public func matmuls(_ x: Activations, _ items: [MatmulItem], rows: Int? = nil) {
        let x = x as! CPUActivations
        let columns = rows ?? batch.rows  // tokens
        let k = x.columns
        // Quantized copies of x, one per distinct activation type, in the scratch buffer.
        var slots: [GGMLType: (offset: Int, weightType: GGMLType)] = [:]
        var total = 0
        for item in items {
            let w = item.weight as! CPUWeight
            precondition(w.rowLength == k && item.output.columns == w.rowCount,
                         "matmul \(w.name): x has \(k) columns, out \(item.output.columns)")
            let t = QuantDot.activationType(for: w.type)
            if slots[t] == nil {
                slots[t] = (total, w.type)
                total += (QuantDot.activationBytes(for: w.type, count: k) * columns + 63) / 64 * 64
            }
        }
        ensureScratch(total)
        for slot in slots.values {
            let act = scratch + slot.offset, actBytes = QuantDot.activationBytes(for: slot.weightType, count: k)
            parallel(columns, minimumChunk: 4) { range in
                for c in range {
                    QuantDot.quantizeActivation(for: slot.weightType, x.row(c), count: k, into: act + c * actBytes)
                }
            }
        }
        // One region over the rows of all weights: row r of the concatenation.
        let weights = items.map { $0.weight as! CPUWeight }
        let outs = items.map { $0.output as! CPUActivations }
        let acts = weights.map { scratch + slots[QuantDot.activationType(for: $0.type)]!.offset }
        let starts = weights.reduce(into: [0]) { $0.append($0.last! + $1.rowCount) }
        parallel(starts.last!, granularity: 16, minimumChunk: 32) { range in
            var lo = range.lowerBound
            while lo < range.upperBound {
                var i = 0
                while starts[i + 1] <= lo { i += 1 }
                let hi = min(range.upperBound, starts[i + 1])
                let w = weights[i], o = outs[i], base = starts[i]
                let rows = (lo - base)..<(hi - base)
                let actBytes = QuantDot.activationBytes(for: w.type, count: k)
                if columns == 1 {
                    QuantDot.matVec(w.type, weights: w.data, rowBytes: w.rowBytes, rows: rows,
                                    activation: acts[i], count: k, output: o.storage + rows.lowerBound)
                } else {
                    QuantDot.matMat(w.type, weights: w.data, rowBytes: w.rowBytes, rows: rows,
                                    activations: acts[i], activationStride: actBytes, columns: columns, count: k,
                                    output: o.storage + rows.lowerBound, outputStride: w.rowCount)
                }
                lo = hi
            }
        }
        for item in items {
            guard let bias = item.bias as? CPUWeight else { continue }
            let o = item.output as! CPUActivations
            for t in 0..<columns { CPUKernels.add(o.row(t), bias.floats, o.columns) }
        }
    }

    public func rope(_ x: Activations, heads: Int, headDim: Int, params: RopeParams) {
        let x = x as! CPUActivations
        for r in 0..<batch.rows {
            CPUKernels.rope(x.row(r), heads: heads, headDim: headDim, position: Int(batch.positions[r]), params: params)
        }
    }

    public func storeKV(k: Activations, v: Activations, storage: KVStorage, layer: Int) {
        let k = k as! CPUActivations, v = v as! CPUActivations, s = storage as! CPUKVStorage
        let kvDim = s.shape.kvDim
        let tables = s.shape.window > 0 ? batch.windowPageTables : batch.pageTables
        for r in 0..<batch.rows {
            tables[Int(batch.tableIndex[r])].withUnsafeBufferPointer { table in
                let off = s.slot(table.baseAddress!, Int(batch.positions[r]))
                switch s.shape.type {
                case .f16:
                    HalfVector.store(k.row(r), (s.keys[layer] + off).assumingMemoryBound(to: UInt16.self), count: kvDim)
                    HalfVector.store(v.row(r), (s.values[layer] + off).assumingMemoryBound(to: UInt16.self), count: kvDim)
                case .q8_0:
                    Quantize.row(.q8_0, k.row(r), s.keys[layer] + off, count: kvDim)
                    Quantize.row(.q8_0, v.row(r), s.values[layer] + off, count: kvDim)
                }
            }
        }
    }

    public func attention(q: Activations, storage: KVStorage, layer: Int, params p: AttentionParams, into out: Activations) {
        let q = q as! CPUActivations, o = out as! CPUActivations, s = storage as! CPUKVStorage
        let rows = batch.rows
        let batch = self.batch
        let group = p.heads / p.kvHeads
        let keys = UnsafeRawPointer(s.keys[layer]), values = UnsafeRawPointer(s.values[layer])
        let window = s.shape.window
        let tables = window > 0 ? batch.windowPageTables : batch.pageTables
        // K is f16, so q·k is a f16 × f16 product, as in llama.cpp: round q to f16 first.
        if s.shape.type == .f16 { HalfVector.roundInPlace(q.storage, count: rows * q.columns) }
        // Scores for at most the longest span a row attends (its position + 1, or the window).
        let longest = window > 0 ? min(window, Int(batch.positions.max() ?? 0) + 1) : Int(batch.positions.max() ?? 0) + 1
        let layout = CPUKernels.KVLayout(type: s.shape.type, pageSize: s.shape.pageSize, rowBytes: s.rowBytes)
        // One task per (row, head).
        parallel(rows * p.heads) { range in
            withUnsafeTemporaryAllocation(of: Float.self, capacity: longest) { scores in
                for task in range {
                    let r = task / p.heads, h = task % p.heads
                    let kvHead = h / group
                    let length = Int(batch.positions[r]) + 1
                    tables[Int(batch.tableIndex[r])].withUnsafeBufferPointer { table in
                        CPUKernels.attendHead(
                            query: q.row(r) + h * p.headDim, keys: keys, values: values, table: table, layout: layout,
                            start: window > 0 ? max(0, length - window) : 0, length: length,
                            kvOffset: kvHead * p.headDim, headDim: p.headDim, scale: p.scale,
                            scores: scores.baseAddress!, out: o.row(r) + h * p.headDim)
                    }
                }
            }
        }
    }

    public func swiglu(gate: Activations, up: Activations, into out: Activations) {
        let g = gate as! CPUActivations, u = up as! CPUActivations, o = out as! CPUActivations
        for r in 0..<batch.rows { CPUKernels.swiglu(g.row(r), u.row(r), o.row(r), g.columns) }
    }

    public func add(_ x: Activations, _ y: Activations) {
        let x = x as! CPUActivations, y = y as! CPUActivations
        for r in 0..<batch.rows { CPUKernels.add(x.row(r), y.row(r), x.columns) }
    }

    public func copyRows(_ src: Activations, from srcRow: Int, to dst: Activations, at dstRow: Int, count: Int) {
        let s = src as! CPUActivations, d = dst as! CPUActivations
        precondition(s.columns == d.columns)
        d.row(dstRow).update(from: s.row(srcRow), count: count * s.columns)
    }

    private func ensureScratch(_ bytes: Int) {
        if bytes > scratchBytes {
            scratch.deallocate()
            scratchBytes = bytes
            scratch = .allocate(byteCount: bytes, alignment: 64)
        }
    }
}
