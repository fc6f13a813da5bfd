import Compute
import Foundation
import GGUF
import Quant
import Testing
@testable import VulkanBackend

/// Every op of VulkanBackend against the CPU backend (and, for matmul/embed, against an exact f64
/// reference on the dequantized weights), on random data, on lavapipe here and in CI.
/// Serialized: one shared Vulkan backend.
@Suite(.serialized) struct VulkanBackendTests {
    static let allTypes: [GGMLType] = [.f32, .f16, .q8_0, .q4_0, .q4_1, .q5_0, .q5_1, .q4_K, .q5_K, .q6_K]

    @Test func deviceIsListedAndChosen() throws {
        let vk = try Shared.vulkan()
        let devices = VulkanBackend.available()
        #expect(!devices.isEmpty)
        #expect(devices.contains { $0.name == vk.device.name })
        #expect(vk.workgroupSize >= vk.device.subgroupSize && vk.workgroupSize <= 256)
        print("Vulkan devices: \(devices.map(\.description)); using \(vk.deviceName), workgroup \(vk.workgroupSize), attention \(vk.attentionWorkgroupSize)")
    }

    /// Shapes: rows not a multiple of the workgroup size, columns (tokens) 1, 3 and 9 (two column
    /// groups of 8), row lengths of one and of several blocks.
    @Test(arguments: allTypes)
    func matmulMatchesReferenceAndCPU(type: GGMLType) throws {
        let vk = try Shared.vulkan(), cpu = Shared.cpu
        let k1 = type.blockSize == 256 ? 256 : (type.blockSize == 32 ? 96 : 20)
        let k2 = type.blockSize == 256 ? 768 : 320
        let shapes = [(m: 67, k: k1, n: 1), (m: 130, k: k2, n: 3), (m: 33, k: k2, n: 9)]
        for (si, s) in shapes.enumerated() {
            let g = try TempGGUF([("w", [s.k, s.m], type), ("b", [s.m], .f32)], seed: UInt64(si) + 10)
            let x = randomFloats(s.n * s.k, seed: UInt64(si) + 99)
            let useBias = si == 1
            // Exact reference: f64 dot products of the dequantized weights.
            let wf = g.dequantized("w"), bias = g.dequantized("b")
            var reference = [Float](repeating: 0, count: s.n * s.m)
            for c in 0..<s.n {
                for r in 0..<s.m {
                    var acc = 0.0
                    for i in 0..<s.k { acc += Double(wf[r * s.k + i]) * Double(x[c * s.k + i]) }
                    reference[c * s.m + r] = Float(acc) + (useBias ? bias[r] : 0)
                }
            }
            var results: [[Float]] = []
            defer { vk.roundsActivations = true }
            for (i, b) in [vk as any ComputeBackend, vk, cpu].enumerated() {
                vk.roundsActivations = i == 1
                let w = try b.loadWeight(g.tensor("w"), of: g.file), bw = try b.loadWeight(g.tensor("b"), of: g.file)
                let xa = try b.makeActivations(rowCapacity: s.n + 2, columns: s.k)
                let out = try b.makeActivations(rowCapacity: s.n + 2, columns: s.m)
                let batch = sequenceBatch(rows: s.n, pageSize: 4, pages: 4)
                results.append(try step(b, batch, {
                    b.upload(x, to: xa)
                    b.matmul(w, xa, bias: useBias ? bw : nil, into: out, rows: nil)
                }, then: { b.download(out, rows: 0..<s.n) }))
            }
            // With f32 activations the GPU matches the exact product to f32 rounding; rounding them to the
            // CPU's 8-bit grid (the default, as llama.cpp does: ~0.4% from exact) it matches the CPU's
            // int8 dot products to f32 rounding.
            let exact = relativeError(results[0], reference)
            let vsCPU = relativeError(results[1], results[2])
            #expect(exact < 1e-6, "\(type) \(s): relative error vs exact \(exact)")
            #expect(vsCPU < 1e-6, "\(type) \(s): relative error vs CPU \(vsCPU)")
            if type != .f32 && type != .f16 {
                #expect(relativeError(results[1], reference) > 1e-4, "\(type): activations were not rounded")
            }
        }
    }

    @Test(arguments: allTypes)
    func embedMatchesCPU(type: GGMLType) throws {
        let vk = try Shared.vulkan(), cpu = Shared.cpu
        let k = type.blockSize == 256 ? 512 : 64
        let g = try TempGGUF([("emb", [k, 11], type)], seed: 5)
        let tokens: [Int32] = [3, 0, 10, 3, 7]
        var results: [[Float]] = []
        for b in [vk as any ComputeBackend, cpu] {
            let w = try b.loadWeight(g.tensor("emb"), of: g.file)
            let out = try b.makeActivations(rowCapacity: 8, columns: k)
            results.append(try step(b, sequenceBatch(rows: tokens.count, pageSize: 4, pages: 2), {
                b.embed(w, tokens: tokens, into: out)
            }, then: { b.download(out, rows: 0..<tokens.count) }))
        }
        // Dequantization is exact arithmetic on both sides (up to fused multiply-adds).
        #expect(relativeError(results[0], results[1]) < 1e-6, "\(type)")
    }

    @Test func elementwiseOpsMatchCPU() throws {
        let vk = try Shared.vulkan(), cpu = Shared.cpu
        let cols = 300, rows = 5
        let g = try TempGGUF([("norm", [cols], .f32)])
        let a = randomFloats(rows * cols, seed: 1, scale: 3), c = randomFloats(rows * cols, seed: 2, scale: 2)
        var results: [[[Float]]] = []
        for b in [vk as any ComputeBackend, cpu] {
            let nw = try b.loadWeight(g.tensor("norm"), of: g.file)
            let x = try b.makeActivations(rowCapacity: 8, columns: cols), y = try b.makeActivations(rowCapacity: 8, columns: cols)
            let n1 = try b.makeActivations(rowCapacity: 8, columns: cols), s1 = try b.makeActivations(rowCapacity: 8, columns: cols)
            let copy = try b.makeActivations(rowCapacity: 8, columns: cols)
            let batch = sequenceBatch(rows: rows, pageSize: 4, pages: 2)
            results.append(try step(b, batch, {
                b.upload(a, to: x)
                b.upload(c, to: y)
                b.rmsNorm(x, weight: nw, eps: 1e-5, into: n1)
                b.swiglu(gate: x, up: y, into: s1)
                b.add(x, y)                       // x = a + c
                b.rmsNorm(y, weight: nw, eps: 1e-6, into: y)  // in place
                b.copyRows(x, from: 1, to: copy, at: 4, count: 2)
                b.copyRows(s1, from: 4, to: copy, at: 0, count: 1)
            }, then: {
                [b.download(n1, rows: 0..<rows), b.download(s1, rows: 0..<rows), b.download(x, rows: 0..<rows),
                 b.download(y, rows: 0..<rows), b.download(copy, rows: 0..<6)]
            }))
        }
        for (i, name) in ["rmsNorm", "swiglu", "add", "rmsNorm in place", "copyRows"].enumerated() {
            let e = relativeError(results[0][i], results[1][i])
            #expect(e < 1e-6, "\(name): relative error \(e)")
        }
    }

    @Test(arguments: [false, true])
    func ropeMatchesCPU(neox: Bool) throws {
        let vk = try Shared.vulkan(), cpu = Shared.cpu
        let heads = 3, headDim = 64
        let params = RopeParams(dims: 48, base: neox ? 1_000_000 : 10_000, neox: neox)  // partial rotation too
        let batch = StepBatch(positions: [0, 1, 7, 300, 4095, 2], tableIndex: [0, 0, 0, 0, 0, 1], pageTables: [[0], [1]])
        let x0 = randomFloats(batch.rows * (heads * headDim + 8), seed: 3)
        var results: [[Float]] = []
        for b in [vk as any ComputeBackend, cpu] {
            let x = try b.makeActivations(rowCapacity: 8, columns: heads * headDim + 8)
            results.append(try step(b, batch, {
                b.upload(x0, to: x)
                b.rope(x, heads: heads, headDim: headDim, params: params)
            }, then: { b.download(x, rows: 0..<batch.rows) }))
        }
        #expect(relativeError(results[0], results[1]) < 1e-6)
    }

    /// Prefill of two sequences in one batch (pages interleaved, GQA), then a decode step of each,
    /// then a long sequence (more positions than the attention workgroup).
    @Test(arguments: [(heads: 4, kvHeads: 2, headDim: 64), (heads: 6, kvHeads: 6, headDim: 32), (heads: 2, kvHeads: 1, headDim: 128)])
    func storeKVAndAttentionMatchCPU(geometry g: (heads: Int, kvHeads: Int, headDim: Int)) throws {
        let vk = try Shared.vulkan(), cpu = Shared.cpu
        let pageSize = 8, pages = 64
        let kvDim = g.kvHeads * g.headDim
        let shape = KVShape(layers: 2, pages: pages, pageSize: pageSize, kvDim: kvDim)
        let params = AttentionParams(heads: g.heads, kvHeads: g.kvHeads, headDim: g.headDim, scale: 1 / Float(g.headDim).squareRoot())
        let tableA: [Int32] = [5, 2, 9, 1], tableB: [Int32] = [3, 0, 7, 4]
        let longTable: [Int32] = (10..<50).map { Int32($0) }
        let steps: [StepBatch] = [
            StepBatch(positions: (0..<11).map { Int32($0) } + (0..<6).map { Int32($0) },
                      tableIndex: Array(repeating: 0, count: 11) + Array(repeating: 1, count: 6), pageTables: [tableA, tableB]),
            StepBatch(positions: [11, 6], tableIndex: [0, 1], pageTables: [tableA, tableB]),
            StepBatch(positions: (0..<300).map { Int32($0) }, tableIndex: Array(repeating: 0, count: 300), pageTables: [longTable]),
        ]
        let results = try [vk as any ComputeBackend, cpu].map { b in
            try storeAndAttend(b, try b.makeKVStorage(shape), layer: 1, steps: steps, params: params)
        }
        let e = relativeError(results[0], results[1])
        #expect(e < 1e-5, "attention \(g): relative error \(e)")
    }

    @Test func unsupportedWeightTypeIsRejectedAtLoad() throws {
        let vk = try Shared.vulkan()
        let g = try TempGGUF([("w", [256, 4], .q2_K)])
        #expect(throws: ComputeError.self) { try vk.loadWeight(g.tensor("w"), of: g.file) }
    }

    /// The committed SPIR-V is what glslc makes of Shaders/ today (skipped only where glslc is absent,
    /// e.g. on the GPU hosts; the development machine and CI have it).
    @Test func embeddedSPIRVIsCurrent() throws {
        let glslc = ["/usr/bin/glslc", "/usr/local/bin/glslc"].first { FileManager.default.isExecutableFile(atPath: $0) }
        guard glslc != nil else {
            print("glslc not installed: not checking Generated/Shaders.swift")
            return
        }
        let out = FileManager.default.temporaryDirectory.appendingPathComponent("shard-shaders-\(getpid()).swift").path
        defer { try? FileManager.default.removeItem(atPath: out) }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/sh")
        p.arguments = [packageRoot.appendingPathComponent("scripts/gen-shaders.sh").path, out]
        try p.run()
        p.waitUntilExit()
        #expect(p.terminationStatus == 0)
        let fresh = try String(contentsOfFile: out, encoding: .utf8)
        let committed = try String(contentsOfFile: packageRoot.appendingPathComponent("Sources/VulkanBackend/Generated/Shaders.swift").path, encoding: .utf8)
        #expect(fresh == committed, "Sources/VulkanBackend/Generated/Shaders.swift is stale: run scripts/gen-shaders.sh")
    }

    /// The fused paths (rms_quant, rope_store, attn_decode + attention_merge_quant, matvec/matmul with a
    /// residual, swiglu_quant) against the same ops recorded one by one, on a layer-shaped sequence of
    /// ops, decode (1 row, replayed over several positions) and prefill (11 rows); Q4_K and Q8_0 weights
    /// (both rounding grids), 4 heads of 64.
    @Test(arguments: [GGMLType.q4_K, .q8_0])
    func fusedOpsMatchUnfused(type: GGMLType) throws {
        let vk = try Shared.vulkan()
        let heads = 4, headDim = 64, dim = heads * headDim, ff = 512
        let g = try TempGGUF([("norm", [dim], .f32), ("wq", [dim, dim], type), ("wk", [dim, dim], type), ("wv", [dim, dim], type),
                              ("wo", [dim, dim], type), ("wg", [dim, ff], type), ("wu", [dim, ff], type), ("wd", [ff, dim], type)], seed: 77)
        let params = AttentionParams(heads: heads, kvHeads: heads, headDim: headDim, scale: 0.125)
        let rope = RopeParams(dims: headDim, base: 10000, neox: false)
        defer { vk.fuses = true }
        var results: [[Float]] = []
        for fused in [true, false] {
            vk.fuses = fused
            let w = try ["norm", "wq", "wk", "wv", "wo", "wg", "wu", "wd"].map { try vk.loadWeight(g.tensor($0), of: g.file) }
            let kv = try vk.makeKVStorage(KVShape(layers: 1, pages: 8, pageSize: 8, kvDim: dim))
            func acts(_ c: Int) throws -> Activations { try vk.makeActivations(rowCapacity: 16, columns: c) }
            let x = try acts(dim), xn = try acts(dim), q = try acts(dim), k = try acts(dim), v = try acts(dim)
            let attn = try acts(dim), proj = try acts(dim), gate = try acts(ff), up = try acts(ff)
            var out: [Float] = []
            let steps = [sequenceBatch(rows: 11, pageSize: 8, pages: 8)] + (11..<15).map { sequenceBatch(rows: 1, start: $0, pageSize: 8, pages: 8) }
            for (i, batch) in steps.enumerated() {
                out += try step(vk, batch, {
                    vk.upload(randomFloats(batch.rows * dim, seed: UInt64(i) + 5, scale: 2), to: x)
                    vk.rmsNorm(x, weight: w[0], eps: 1e-5, into: xn)
                    vk.matmuls(xn, [MatmulItem(weight: w[1], output: q), MatmulItem(weight: w[2], output: k), MatmulItem(weight: w[3], output: v)], rows: nil)
                    vk.rope(q, heads: heads, headDim: headDim, params: rope)
                    vk.rope(k, heads: heads, headDim: headDim, params: rope)
                    vk.storeKV(k: k, v: v, storage: kv, layer: 0)
                    vk.attention(q: q, storage: kv, layer: 0, params: params, into: attn)
                    vk.matmul(w[4], attn, bias: nil, into: proj, rows: nil)
                    vk.add(x, proj)
                    vk.rmsNorm(x, weight: w[0], eps: 1e-5, into: xn)
                    vk.matmuls(xn, [MatmulItem(weight: w[5], output: gate), MatmulItem(weight: w[6], output: up)], rows: nil)
                    vk.swiglu(gate: gate, up: up, into: gate)
                    vk.matmul(w[7], gate, bias: nil, into: proj, rows: nil)
                    vk.add(x, proj)
                }, then: { vk.download(x, rows: 0..<batch.rows) + vk.download(k, rows: 0..<batch.rows) + vk.download(q, rows: 0..<batch.rows) })
            }
            results.append(out)
        }
        // rms_quant sums squares in another order than rms_norm: a last-bit difference in a norm's scale
        // can flip an 8-bit rounding now and then, so the bound is that of one flipped quant, not 1e-7.
        let e = relativeError(results[0], results[1])
        #expect(e < 1e-3, "\(type): fused vs unfused relative error \(e)")
        print("fused vs unfused (\(type)): relative error \(e)")
    }

    /// A buffer that outlives its backend holds the device's last reference: releasing it must free its
    /// memory block before the device goes (this crashed at process exit once).
    @Test func buffersOutlivingTheirBackendTearDownCleanly() throws {
        _ = try Shared.vulkan()   // a device exists (else the suite has already failed)
        var backend: VulkanBackend? = try VulkanBackend()
        var acts: Activations? = try backend!.makeActivations(rowCapacity: 2, columns: 8)
        backend = nil
        #expect(acts != nil)
        acts = nil
        #expect(acts == nil)
    }
}
