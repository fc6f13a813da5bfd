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

final class CPUKVStorage: KVStorage {
    /// Per layer: K then V, each `pages * pageSize * kvDim` floats.
    let keys: [UnsafeMutablePointer<Float>]
    let values: [UnsafeMutablePointer<Float>]
    override init(shape: KVShape) {
        let n = shape.pages * shape.pageSize * shape.kvDim
        keys = (0..<shape.layers).map { _ in .allocate(capacity: n) }
        values = (0..<shape.layers).map { _ in .allocate(capacity: n) }
        super.init(shape: shape)
    }
    deinit {
        keys.forEach { $0.deallocate() }
        values.forEach { $0.deallocate() }
    }
    /// Start of the K (or V) vector for `position` of a sequence with page table `table`.
    @inline(__always) func slot(_ table: UnsafePointer<Int32>, _ position: Int) -> Int {
        let ps = shape.pageSize
        return (Int(table[position / ps]) * ps + position % ps) * shape.kvDim
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

    public init(threads: Int = Parallel.defaultThreads) {
        self.threads = max(1, threads)
        scratchBytes = 1 << 16
        scratch = .allocate(byteCount: scratchBytes, alignment: 64)
    }
    deinit { scratch.deallocate() }

    public func loadWeight(_ tensor: GGUFTensorInfo, of file: GGUFFile) throws -> Weight {
        CPUWeight(tensor, file: file)
    }
    public func makeActivations(rowCapacity: Int, columns: Int) throws -> Activations {
        CPUActivations(rowCapacity: rowCapacity, columns: columns)
    }
    public func makeKVStorage(_ shape: KVShape) throws -> KVStorage { CPUKVStorage(shape: shape) }

    public func beginStep(_ batch: StepBatch) throws { self.batch = batch }
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
        let w = w as! CPUWeight, x = x as! CPUActivations, o = out as! CPUActivations
        let columns = rows ?? batch.rows  // tokens
        let k = w.rowLength, m = w.rowCount
        precondition(x.columns == k && o.columns == m, "matmul \(w.name): x has \(x.columns) columns, out \(o.columns)")
        let actBytes = QuantDot.activationBytes(for: w.type, count: k)
        ensureScratch(actBytes * columns)
        let act = scratch
        Parallel.forChunks(columns, threads: threads, minimumChunk: 4) { range in
            for t in range {
                QuantDot.quantizeActivation(for: w.type, x.row(t), count: k, into: act + t * actBytes)
            }
        }
        // Split the weight rows across threads; each thread does all tokens for its rows.
        Parallel.forChunks(m, threads: threads, granularity: 16, minimumChunk: 64) { range in
            if columns == 1 {
                QuantDot.matVec(w.type, weights: w.data, rowBytes: w.rowBytes, rows: range,
                                activation: act, count: k, output: o.storage + range.lowerBound)
            } else {
                QuantDot.matMat(w.type, weights: w.data, rowBytes: w.rowBytes, rows: range,
                                activations: act, activationStride: actBytes, columns: columns, count: k,
                                output: o.storage + range.lowerBound, outputStride: m)
            }
        }
        if let bias = bias as? CPUWeight {
            for t in 0..<columns { CPUKernels.add(o.row(t), bias.floats, m) }
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
        for r in 0..<batch.rows {
            batch.pageTables[Int(batch.tableIndex[r])].withUnsafeBufferPointer { table in
                let off = s.slot(table.baseAddress!, Int(batch.positions[r]))
                (s.keys[layer] + off).update(from: k.row(r), count: kvDim)
                (s.values[layer] + off).update(from: v.row(r), count: kvDim)
            }
        }
    }

    public func attention(q: Activations, storage: KVStorage, layer: Int, params p: AttentionParams, into out: Activations) {
        let q = q as! CPUActivations, o = out as! CPUActivations, s = storage as! CPUKVStorage
        let rows = batch.rows
        let batch = self.batch
        let group = p.heads / p.kvHeads
        let keys = s.keys[layer], values = s.values[layer]
        // One task per (row, head).
        Parallel.forChunks(rows * p.heads, threads: threads, minimumChunk: 2) { range in
            var scores = [Float](repeating: 0, count: 0)
            for task in range {
                let r = task / p.heads, h = task % p.heads
                let kvHead = h / group
                let length = Int(batch.positions[r]) + 1
                if scores.count < length { scores = [Float](repeating: 0, count: length) }
                batch.pageTables[Int(batch.tableIndex[r])].withUnsafeBufferPointer { table in
                    scores.withUnsafeMutableBufferPointer { sc in
                        CPUKernels.attendHead(
                            query: q.row(r) + h * p.headDim, keys: keys, values: values, storage: s,
                            table: table.baseAddress!, length: length, kvOffset: kvHead * p.headDim,
                            headDim: p.headDim, scale: p.scale, scores: sc.baseAddress!,
                            out: o.row(r) + h * p.headDim)
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
