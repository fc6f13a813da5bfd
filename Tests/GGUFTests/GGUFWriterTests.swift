import Foundation
import Testing
@testable import GGUF

@Suite struct GGUFWriterTests {
    @Test func roundTripEveryValueTypeAndTensor() throws {
        let (w, data) = try makeSampleWriter()
        let path = TestFiles.path("roundtrip.gguf")
        try w.write(to: path)
        let f = try GGUFFile(path: path)
        #expect(f.version == 3)
        #expect(f.alignment == 32)
        #expect(f.metadataKeys == w.metadataKeys)
        #expect(f.metadata == w.metadata)
        for (k, v) in allValueTypes { #expect(f.metadata[k] == v, "\(k)") }
        #expect(f.tensors == (try w.tensorInfos()))
        #expect(f.fileSize == (try w.fileSize()))
        #expect(f.dataOffset % 32 == 0)
        for t in f.tensors {
            #expect(t.offset % 32 == 0)
            #expect(Array(f.data(for: t)) == data[t.name]!, "\(t.name)")
        }
        // The in-memory form is the same file.
        let onDisk = try [UInt8](Data(contentsOf: URL(fileURLWithPath: path)))
        #expect(onDisk == (try w.bytes()))
        // No temporary file of this write left behind (other tests write into the same folder concurrently).
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: TestFiles.dir).filter { $0.hasPrefix("roundtrip.gguf.tmp-") }
        #expect(leftovers.isEmpty)
    }

    @Test(arguments: [1, 8, 64, 4096])
    func alignmentIsHonored(alignment: Int) throws {
        let (w, data) = try makeSampleWriter(alignment: alignment)
        let path = TestFiles.path("align\(alignment).gguf")
        try w.write(to: path)
        let f = try GGUFFile(path: path)
        #expect(f.alignment == alignment)
        #expect(f.metadata["general.alignment"] == (alignment == 32 ? nil : .uint32(UInt32(alignment))))
        #expect(f.dataOffset % alignment == 0)
        #expect(f.fileSize % alignment == 0)
        for t in f.tensors {
            #expect(t.offset % alignment == 0)
            #expect(Array(f.data(for: t)) == data[t.name]!)
        }
    }

    @Test func emptyFileRoundTrips() throws {
        let w = GGUFWriter()
        let path = TestFiles.path("empty.gguf")
        try w.write(to: path)
        let f = try GGUFFile(path: path)
        #expect(f.tensors.isEmpty && f.metadata.isEmpty)
        #expect(f.fileSize == 32)
    }

    @Test func fillIsStreamedInWholeRowChunks() throws {
        let w = GGUFWriter()
        w.chunkBytes = 1000  // 34-byte Q8_0 rows of 32 elements: 29 rows per chunk
        var calls: [Range<Int>] = []
        var maxChunk = 0
        try w.addTensor(name: "big", shape: [32, 10, 10], type: .q8_0) { chunk, rows in
            calls.append(rows)
            maxChunk = max(maxChunk, chunk.count)
            #expect(chunk.count == rows.count * 34)
            #expect(chunk.allSatisfy { $0 == 0 })  // handed over zeroed
            for r in rows {
                for i in 0..<34 { chunk[(r - rows.lowerBound) * 34 + i] = UInt8(truncatingIfNeeded: r &* 7 &+ i) }
            }
        }
        let path = TestFiles.path("stream.gguf")
        try w.write(to: path)
        #expect(maxChunk <= 1000)
        #expect(calls.first?.lowerBound == 0 && calls.last?.upperBound == 100)
        for (a, b) in zip(calls, calls.dropFirst()) { #expect(a.upperBound == b.lowerBound) }
        let f = try GGUFFile(path: path)
        let d = f.data(for: f.tensors[0])
        for r in 0..<100 { for i in 0..<34 { #expect(d[r * 34 + i] == UInt8(truncatingIfNeeded: r &* 7 &+ i)) } }
    }

    @Test func aRowLargerThanTheChunkIsHandedOverWhole() throws {
        let w = GGUFWriter()
        w.chunkBytes = 16
        var sizes: [Int] = []
        try w.addTensor(name: "wide", shape: [1024, 3], type: .f32) { chunk, _ in sizes.append(chunk.count) }
        _ = try w.bytes()
        #expect(sizes == [4096, 4096, 4096])
    }

    @Test func writerRejectsWhatTheFormatCannotHold() throws {
        let w = GGUFWriter()
        try w.addTensor(name: "a", shape: [32], type: .f32, data: [UInt8](repeating: 0, count: 128))
        #expect(throws: GGUFError.self) { try w.addTensor(name: "a", shape: [32], type: .f32) { _, _ in } }
        #expect(throws: GGUFError.self) { try w.addTensor(name: "", shape: [32], type: .f32) { _, _ in } }
        #expect(throws: GGUFError.self) { try w.addTensor(name: "b", shape: [], type: .f32) { _, _ in } }
        #expect(throws: GGUFError.self) { try w.addTensor(name: "b", shape: [1, 1, 1, 1, 1], type: .f32) { _, _ in } }
        #expect(throws: GGUFError.self) { try w.addTensor(name: "b", shape: [32, 0], type: .f32) { _, _ in } }
        #expect(throws: GGUFError.self) { try w.addTensor(name: "b", shape: [48], type: .q4_0) { _, _ in } }
        #expect(throws: GGUFError.self) { try w.addTensor(name: "b", shape: [32], type: .f32, data: [1, 2, 3]) }
        // The failed data add did not leave a half-registered tensor behind.
        try w.addTensor(name: "b", shape: [32], type: .f32, data: [UInt8](repeating: 1, count: 128))
        #expect((try w.tensorInfos()).map(\.name) == ["a", "b"])

        w.set("mixed", .array(elementType: .int32, [.int32(1), .string("x")]))
        #expect(throws: GGUFError.self) { try w.header() }
        w.set("mixed", .int32(1))
        w.set("general.alignment", .uint32(48))
        #expect(throws: GGUFError.self) { try w.write(to: TestFiles.path("never.gguf")) }
        w.set("general.alignment", .int32(32))
        #expect(throws: GGUFError.self) { try w.fileSize() }
        #expect(!FileManager.default.fileExists(atPath: TestFiles.path("never.gguf")))
    }

    @Test func fillErrorsAbortTheWriteAndLeaveNoFile() throws {
        struct Boom: Error {}
        let w = GGUFWriter()
        try w.addTensor(name: "x", shape: [32], type: .f32) { _, _ in throw Boom() }
        let path = TestFiles.path("boom.gguf")
        #expect(throws: GGUFError.self) { try w.write(to: path) }
        #expect(!FileManager.default.fileExists(atPath: path))
        #expect((try FileManager.default.contentsOfDirectory(atPath: TestFiles.dir)).allSatisfy { !$0.hasPrefix("boom") })
    }

    @Test func setKeepsFirstPositionAndLastValue() throws {
        let w = GGUFWriter()
        w.set("a", .int32(1))
        w.set("b", .int32(2))
        w.set("a", .int32(3))
        #expect(w.metadataKeys == ["a", "b"])
        let f = try GGUFFile(path: TestFiles.write(try w.bytes(), "set.gguf"))
        #expect(f.int("a") == 3 && f.metadataKeys == ["a", "b"])
    }

    /// A real model rewritten by the writer reads back identical, and matches the original byte for byte
    /// (llama.cpp writes the same layout: header, padding, tensors each padded to the alignment).
    @Test func rewritingARealModelReproducesIt() throws {
        let src = "/work/main/models/SmolLM2-135M-Instruct.Q4_1.gguf"
        guard FileManager.default.fileExists(atPath: src) else {
            print("note: \(src) missing; skipping the real-model rewrite")
            return
        }
        let f = try GGUFFile(path: src)
        let w = GGUFWriter(alignment: f.alignment)
        for k in f.metadataKeys { w.set(k, f.metadata[k]!) }
        for t in f.tensors {
            try w.addTensor(name: t.name, shape: t.shape, type: t.type) { chunk, rows in
                let rb = t.rowBytes
                chunk.copyMemory(from: UnsafeRawBufferPointer(rebasing: f.data(for: t)[rows.lowerBound * rb ..< rows.upperBound * rb]))
            }
        }
        let out = TestFiles.path("smol-rewrite.gguf")
        try w.write(to: out)
        defer { try? FileManager.default.removeItem(atPath: out) }
        let g = try GGUFFile(path: out)
        #expect(g.metadataKeys == f.metadataKeys)
        #expect(g.metadata == f.metadata)
        #expect(g.tensors == f.tensors)
        #expect(g.dataOffset == f.dataOffset)
        for t in f.tensors { #expect(f.data(for: t).elementsEqual(g.data(for: t)), "\(t.name)") }
        let a = try Data(contentsOf: URL(fileURLWithPath: src)), b = try Data(contentsOf: URL(fileURLWithPath: out))
        #expect(a.count == b.count)
        #expect(a == b)
    }

    @Test func layerMemorySumsPerLayer() throws {
        let (w, _) = try makeSampleWriter()
        let f = try GGUFFile(path: TestFiles.write(try w.bytes(), "layers.gguf"))
        let m = f.layerMemory
        let byName = Dictionary(uniqueKeysWithValues: f.tensors.map { ($0.name, $0.byteCount) })
        #expect(m.layerCount == 2)
        #expect(m.layers[0] == byName["blk.0.attn_norm.weight"]! + byName["blk.0.attn_q.weight"]! + byName["blk.0.ffn_down.weight"]!)
        #expect(m.layers[1] == byName["blk.1.x.weight"]!)
        #expect(m.embedding == byName["token_embd.weight"]!)
        #expect(m.output == byName["output.weight"]!)
        #expect(m.other == byName["odd.weight"]!)
        #expect(m.total == f.tensors.reduce(0) { $0 + $1.byteCount })
        #expect(m.bytes(layers: 0 ..< 5) == m.layerTotal)
        #expect(LayerMemory.layerIndex(of: "blk.12.attn_q.weight") == 12)
        for bad in ["blk..x", "blk.1x.y", "blk.12", "xblk.1.a", "blk.9999999999.a", "blk.-1.a"] {
            #expect(LayerMemory.layerIndex(of: bad) == nil, "\(bad)")
        }
        // A hostile layer number doesn't allocate: it counts as "other".
        let h = LayerMemory(tensors: [GGUFTensorInfo(name: "blk.999999999.w", shape: [1], type: .f32, offset: 0, byteCount: 4)])
        #expect(h.layers.isEmpty && h.other == 4)
    }

    @Test func realModelsLayerMemory() throws {
        for name in ["SmolLM2-135M-Instruct.Q4_1.gguf", "gemma-3-270m-q4_k_m.gguf"] {
            let path = "/work/main/models/" + name
            guard FileManager.default.fileExists(atPath: path) else { continue }
            let f = try GGUFFile(path: path)
            let m = f.layerMemory
            #expect(m.layerCount == f.int("\(f.architecture!).block_count"))
            #expect(m.total == f.tensors.reduce(0) { $0 + $1.byteCount })
            #expect(m.embedding > 0 && m.layers.allSatisfy { $0 > 0 })
        }
    }

    @Test func halfPrecisionConversionMatchesFloat16() {
        #if arch(x86_64) && os(Linux)
        var rng = SplitMix64(seed: 7)
        var values: [Float] = [0, -0, 1, -1, 65504, -65504, 70000, 6.1e-5, 5.96e-8, 2.98e-8, 1e-9, 0.1, 1.0009765625, 1.00048828125, 1.00146484375]
        for _ in 0..<20000 { values.append(Float(bitPattern: UInt32(truncatingIfNeeded: rng.next()) & 0x47FF_FFFF)) }
        for v in values where abs(v) <= 65504 {
            #expect(SyntheticData.f16Bits(v) == Float16(v).bitPattern, "\(v)")
        }
        #expect(SyntheticData.f16Bits(.infinity) == Float16(65504).bitPattern)
        #expect(SyntheticData.f16Bits(.nan) == 0)
        #endif
    }

    @Test func syntheticWeightsAreFiniteAndScaled() throws {
        var rng = SplitMix64(seed: 1)
        for type in [GGMLType.q4_0, .q8_0, .q4_K, .q5_K, .q6_K, .q5_0, .f16, .f32] {
            let buf = UnsafeMutableRawBufferPointer.allocate(byteCount: type.rowBytes(256)! * 8, alignment: 16)
            defer { buf.deallocate() }
            SyntheticData.fillWeights(buf, type: type, sigma: 0.05, rng: &rng)
            // Every f16 scale field is finite and small.
            let scaleOffsets: [Int] = switch type {
            case .q4_0, .q8_0, .q5_0: [0]
            case .q4_K, .q5_K: [0, 2]
            case .q6_K: [208]
            default: []
            }
            for b in 0 ..< buf.count / type.blockBytes {
                for o in scaleOffsets {
                    let bits = buf.load(fromByteOffset: b * type.blockBytes + o, as: UInt16.self)
                    #expect(bits & 0x7C00 != 0x7C00)
                    let v = abs(Float(Float16(bitPattern: bits)))
                    #expect(v < 0.05)
                }
            }
            if type == .f32 {
                let v = Array(buf.bindMemory(to: Float.self))
                let rms = (v.reduce(0) { $0 + $1 * $1 } / Float(v.count)).squareRoot()
                #expect(v.allSatisfy(\.isFinite) && abs(rms - 0.05) < 0.005)
            }
        }
    }
}
