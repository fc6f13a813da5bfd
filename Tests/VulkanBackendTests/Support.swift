import Compute
import Foundation
import GGUF
import Model
import Quant
import Testing
import VulkanBackend

let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

/// One Vulkan backend for the whole (serialized) suite: pipelines compile once. No device is a
/// failure, not a skip: CI installs mesa-vulkan-drivers (lavapipe).
enum Shared {
    nonisolated(unsafe) static var backend: VulkanBackend?
    nonisolated(unsafe) static var initError: String?
    nonisolated(unsafe) static let cpu = CPUBackend(threads: 2)

    static func vulkan() throws -> VulkanBackend {
        if let backend { return backend }
        if let initError {
            Issue.record(Comment(rawValue: initError))
            throw CancellationError()
        }
        do {
            let b = try VulkanBackend()
            // Every second repeated step skips its ops, every other one is walked and compared: a difference (a
            // signature or key that misses something an op reads) stops the run (brokenRepeatPromisesAreCaught turns
            // that off for its deliberate one).
            b.skipCheckInterval = 2
            b.skipMismatchIsFatal = true
            backend = b
            return b
        } catch {
            initError = "No usable Vulkan device (install mesa-vulkan-drivers for lavapipe): \(error). Devices: \(VulkanBackend.available())"
            Issue.record(Comment(rawValue: initError!))
            throw CancellationError()
        }
    }
}

/// ||a − b|| / ||b||, with ||b|| required to be non-trivial (never compare all-zero data).
func relativeError(_ a: [Float], _ b: [Float], sourceLocation: SourceLocation = #_sourceLocation) -> Double {
    #expect(a.count == b.count, sourceLocation: sourceLocation)
    var num = 0.0, den = 0.0
    for (x, y) in zip(a, b) {
        num += Double(x - y) * Double(x - y)
        den += Double(y) * Double(y)
    }
    #expect(den > 1e-6, "reference is (nearly) all zero", sourceLocation: sourceLocation)
    #expect(!a.contains { !$0.isFinite }, "non-finite values", sourceLocation: sourceLocation)
    return (num / den).squareRoot()
}

func randomFloats(_ n: Int, seed: UInt64, scale: Float = 1) -> [Float] {
    var rng = SplitMix64(seed: seed)
    return (0..<n).map { _ in (rng.unit() * 2 - 1) * scale }
}

/// A temporary GGUF file with random tensors (random valid blocks: every quant bit pattern occurs).
final class TempGGUF {
    let path: String
    let file: GGUFFile
    init(_ tensors: [(name: String, shape: [Int], type: GGMLType)], seed: UInt64 = 1) throws {
        path = FileManager.default.temporaryDirectory.appendingPathComponent("shard-vk-\(getpid())-\(UUID().uuidString).gguf").path
        let w = GGUFWriter()
        w.set("general.architecture", "test")
        for (i, t) in tensors.enumerated() {
            let s = seed &+ UInt64(i) &* 7919
            try w.addTensor(name: t.name, shape: t.shape, type: t.type) { chunk, rows in
                var rng = SplitMix64(seed: s &+ UInt64(rows.lowerBound))
                if t.shape.count == 1 {
                    SyntheticData.fillFloats(chunk, type: t.type, mean: 1, sigma: 0.3, rng: &rng)
                } else {
                    SyntheticData.fillWeights(chunk, type: t.type, sigma: 0.5, rng: &rng)
                }
            }
        }
        try w.write(to: path)
        file = try GGUFFile(path: path)
    }
    deinit { try? FileManager.default.removeItem(atPath: path) }
    func tensor(_ name: String) -> GGUFTensorInfo { file.tensor(named: name)! }

    /// Dequantized rows of a tensor, as f32 (the reference for what a shader should read).
    func dequantized(_ name: String) -> [Float] {
        let t = tensor(name)
        let data = file.data(for: t)
        var out = [Float](repeating: 0, count: t.elementCount)
        out.withUnsafeMutableBufferPointer { o in
            for r in 0..<t.rowCount {
                Dequant.row(t.type, data.baseAddress! + r * t.rowBytes, o.baseAddress! + r * t.shape[0], count: t.shape[0])
            }
        }
        return out
    }
}

/// Runs `body` on a backend inside one step and returns what it returns after `endStep`.
func step<T>(_ b: any ComputeBackend, _ batch: StepBatch, _ body: () throws -> Void, then read: () -> T) throws -> T {
    try b.beginStep(batch)
    try body()
    try b.endStep()
    return read()
}

/// Attention through a KV store, step after step: each step stores random K/V rows into `layer` and
/// attends random queries (seeds `seed + i`, `seed + 10 + i`, `seed + 20 + i` for q, k, v of step i);
/// every step's outputs, concatenated.
func storeAndAttend(_ b: any ComputeBackend, _ kv: KVStorage, layer: Int, steps: [StepBatch], params: AttentionParams,
                    seed: UInt64 = 10) throws -> [Float] {
    let qDim = params.heads * params.headDim, kvDim = params.kvHeads * params.headDim
    let capacity = steps.map(\.rows).max() ?? 1
    let q = try b.makeActivations(rowCapacity: capacity, columns: qDim), out = try b.makeActivations(rowCapacity: capacity, columns: qDim)
    let k = try b.makeActivations(rowCapacity: capacity, columns: kvDim), v = try b.makeActivations(rowCapacity: capacity, columns: kvDim)
    var all: [Float] = []
    for (i, batch) in steps.enumerated() {
        let n = batch.rows
        all += try step(b, batch, {
            b.upload(randomFloats(n * qDim, seed: seed + UInt64(i), scale: 2), to: q)
            b.upload(randomFloats(n * kvDim, seed: seed + 10 + UInt64(i), scale: 2), to: k)
            b.upload(randomFloats(n * kvDim, seed: seed + 20 + UInt64(i)), to: v)
            b.storeKV(k: k, v: v, storage: kv, layer: layer)
            b.attention(q: q, storage: kv, layer: layer, params: params, into: out)
        }, then: { b.download(out, rows: 0..<n) })
    }
    return all
}

/// A batch of `rows` rows of one sequence at positions start..<start+rows, pages 0, 1, 2, … reversed
/// (so that page lookups matter).
func sequenceBatch(rows: Int, start: Int = 0, pageSize: Int, pages: Int) -> StepBatch {
    StepBatch(positions: (0..<rows).map { Int32(start + $0) }, tableIndex: Array(repeating: 0, count: rows),
              pageTables: [(0..<pages).map { Int32(pages - 1 - $0) }])
}

/// int8ProducerLayer's weight file (dim 768, ff 1280, written with `seed`) and its weights loaded onto a backend in the
/// layer's order (wo last, only with `floatTail`). wo is the file's last tensor: the others' values do not depend on it.
struct Int8ProducerLayerFile {
    static let dim = 768, ff = 1280
    let g: TempGGUF
    init(seed: UInt64) throws {
        let (dim, ff) = (Self.dim, Self.ff)
        g = try TempGGUF([("norm", [dim], .f32), ("wa", [dim, 45], .q4_K), ("wb", [dim, 29], .q6_K), ("bias", [45], .f32),
                          ("wg", [dim, ff], .q4_K), ("wu", [dim, ff], .q4_K), ("wd", [ff, dim], .q6_K), ("wd4", [ff, dim], .q4_K),
                          ("wo", [dim, dim], .q4_K)], seed: seed)
    }
    func weights(on b: any ComputeBackend, floatTail: Bool) throws -> [Weight] {
        try (["norm", "wa", "wb", "bias", "wg", "wu", "wd", "wd4"] + (floatTail ? ["wo"] : [])).map { try b.loadWeight(g.tensor($0), of: g.file) }
    }
}

/// The layer the int8-producer tests run (DotMatvecTests: one row, DotMatvecMCTests: n rows) on weights
/// [norm, wa (Q4_K), wb (Q6_K), bias, wg, wu (Q4_K), wd (Q6_K), wd4 (Q4_K)] (+ wo with `floatTail`):
/// rmsNorm → wa + bias, wb; rmsNorm → gate, up → swiglu → Q6_K down added into x; swiglu(up, up) → Q4_K
/// down (d2); with `floatTail`, wo on d2 (no int8 producer: a float mat-vec) added into x. Returns the
/// rows of wa's and wb's outputs, x and d2.
func int8ProducerLayer(_ b: any ComputeBackend, weights w: [Weight], x: [Float], dim: Int, ff: Int,
                       batch: StepBatch, floatTail: Bool = false) throws -> [Float] {
    let n = batch.rows
    func acts(_ c: Int) throws -> Activations { try b.makeActivations(rowCapacity: n, columns: c) }
    let xa = try acts(dim), xn = try acts(dim), ya = try acts(w[1].shape[1]), yb = try acts(w[2].shape[1])
    let gate = try acts(ff), up = try acts(ff), d1 = try acts(dim), d2 = try acts(dim), o = try acts(dim)
    return try step(b, batch, {
        b.upload(x, to: xa)
        b.rmsNorm(xa, weight: w[0], eps: 1e-5, into: xn)
        b.matmuls(xn, [MatmulItem(weight: w[1], bias: w[3], output: ya), MatmulItem(weight: w[2], output: yb)], rows: nil)
        b.rmsNorm(xa, weight: w[0], eps: 1e-5, into: xn)
        b.matmuls(xn, [MatmulItem(weight: w[4], output: gate), MatmulItem(weight: w[5], output: up)], rows: nil)
        b.swiglu(gate: gate, up: up, into: gate)
        b.matmul(w[6], gate, bias: nil, into: d1, rows: nil)   // Q6_K down, residual add fused
        b.add(xa, d1)
        b.swiglu(gate: up, up: up, into: up)
        b.matmul(w[7], up, bias: nil, into: d2, rows: nil)     // Q4_K down
        if floatTail {
            b.matmul(w[8], d2, bias: nil, into: o, rows: nil)  // no int8 producer: float mat-vec
            b.add(xa, o)
        }
    }, then: { b.download(ya, rows: 0..<n) + b.download(yb, rows: 0..<n) + b.download(xa, rows: 0..<n) + b.download(d2, rows: 0..<n) })
}

/// A tiny random-weight model (`SyntheticModel`, preset "tiny"), written to a temporary file that is gone
/// again once the returned file has mapped it.
func syntheticTinyModel(arch: String, quant: String, seed: UInt64) throws -> GGUFFile {
    let path = FileManager.default.temporaryDirectory.appendingPathComponent("shard-vk-tiny-\(getpid())-\(UUID().uuidString).gguf").path
    defer { try? FileManager.default.removeItem(atPath: path) }
    try SyntheticModel.write(arch: arch, preset: "tiny", quant: quant, to: path, seed: seed)
    return try GGUFFile(path: path)
}
