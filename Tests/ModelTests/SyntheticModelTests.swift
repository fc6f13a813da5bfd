import Foundation
import GGUF
import Model
import Testing

@Suite struct SyntheticModelTests {
    static let dir: String = {
        let d = NSTemporaryDirectory() + "synth-tests-\(getpid())"
        try! FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
        return d
    }()

    static let quants = SyntheticQuant.allCases.map(\.rawValue)

    @Test(arguments: ["llama", "qwen2"], quants)
    func tinyModelLoads(arch: String, quant: String) throws {
        let path = Self.dir + "/tiny-\(arch)-\(quant).gguf"
        try SyntheticModel.write(arch: arch, preset: "tiny", quant: quant, to: path, seed: 3)
        defer { try? FileManager.default.removeItem(atPath: path) }
        let f = try GGUFFile(path: path)
        let q = try SyntheticModel.quant(quant)
        #expect(f.architecture == arch)
        #expect(f.int("general.file_type") == Int(q.fileType))
        #expect(f.int("general.quantization_version") == 2)
        #expect(f.int("\(arch).embedding_length") == 256)
        #expect(f.int("\(arch).feed_forward_length") == 512)
        #expect(f.int("\(arch).block_count") == 2)
        #expect(f.int("\(arch).attention.head_count") == 4)
        #expect(f.int("\(arch).attention.head_count_kv") == 2)
        #expect(f.int("\(arch).rope.dimension_count") == 64)
        #expect(f.int("\(arch).context_length") == 512)
        #expect(f.float("\(arch).rope.freq_base") == (arch == "qwen2" ? 1_000_000 : 10_000))
        #expect(f.float("\(arch).attention.layer_norm_rms_epsilon") != nil)
        #expect(f.string("tokenizer.ggml.model") == "llama")
        let tokens = try #require(f.stringArray("tokenizer.ggml.tokens"))
        #expect(tokens.count == 512 && Set(tokens).count == 512)
        #expect(Array(tokens[0 ..< 3]) == ["<unk>", "<s>", "</s>"])
        #expect(tokens[3] == "<0x00>" && tokens[3 + 10] == "<0x0A>" && tokens[258] == "<0xFF>")
        let types = try #require(f.intArray("tokenizer.ggml.token_type"))
        #expect(types[0] == 2 && types[1] == 3 && types[2] == 3)
        #expect(types[3 ..< 259].allSatisfy { $0 == 6 } && types[259...].allSatisfy { $0 == 1 })
        let scores = try #require(f.floatArray("tokenizer.ggml.scores"))
        #expect(scores.count == 512 && zip(scores, scores.dropFirst()).allSatisfy { $0 > $1 })
        #expect(f.int("tokenizer.ggml.bos_token_id") == 1 && f.int("tokenizer.ggml.eos_token_id") == 2)
        #expect(f.int("tokenizer.ggml.unknown_token_id") == 0 && f.bool("tokenizer.ggml.add_bos_token") == true)

        #expect(f.tensors.count == 2 + 2 * (arch == "qwen2" ? 12 : 9) + 1)
        let d = q.defaultType
        func check(_ name: String, _ shape: [Int], _ type: GGMLType) {
            let t = f.tensor(named: name)
            #expect(t?.shape == shape, "\(name)")
            #expect(t?.type == type, "\(name)")
        }
        check("token_embd.weight", [256, 512], d)
        check("output.weight", [256, 512], q == .f16 ? .f16 : q == .q8_0 ? .q8_0 : .q6_K)
        check("output_norm.weight", [256], .f32)
        for i in 0 ..< 2 {
            let b = "blk.\(i)."
            check(b + "attn_norm.weight", [256], .f32)
            check(b + "ffn_norm.weight", [256], .f32)
            check(b + "attn_q.weight", [256, 256], d)
            check(b + "attn_k.weight", [256, 128], d)
            // use_more_bits(i, 2) holds for layer 1 only (i >= 7*2/8).
            let more: GGMLType = q == .q4_k_m ? (i == 1 ? .q6_K : .q4_K) : d
            check(b + "attn_v.weight", [256, 128], more)
            check(b + "attn_output.weight", [256, 256], d)
            check(b + "ffn_gate.weight", [256, 512], d)
            check(b + "ffn_up.weight", [256, 512], d)
            check(b + "ffn_down.weight", [512, 256], more)
            if arch == "qwen2" {
                check(b + "attn_q.bias", [256], .f32)
                check(b + "attn_k.bias", [128], .f32)
                check(b + "attn_v.bias", [128], .f32)
            } else {
                #expect(f.tensor(named: b + "attn_q.bias") == nil)
            }
        }
        // Norms near 1, f16 weights finite.
        let norm = f.data(for: f.tensor(named: "blk.0.attn_norm.weight")!).bindMemory(to: Float.self)
        #expect(norm.allSatisfy { abs($0 - 1) < 0.1 })
        if q == .f16 {
            let w = f.data(for: f.tensor(named: "blk.0.attn_q.weight")!).bindMemory(to: UInt16.self)
            #expect(w.allSatisfy { $0 & 0x7C00 != 0x7C00 })
        }
    }

    @Test func sameSeedSameBytesOtherSeedOtherBytes() throws {
        let a = Self.dir + "/seed-a.gguf", b = Self.dir + "/seed-b.gguf", c = Self.dir + "/seed-c.gguf"
        try SyntheticModel.write(arch: "llama", preset: "tiny", quant: "q4_0", to: a, seed: 1)
        try SyntheticModel.write(arch: "llama", preset: "tiny", quant: "q4_0", to: b, seed: 1)
        try SyntheticModel.write(arch: "llama", preset: "tiny", quant: "q4_0", to: c, seed: 2)
        let da = try Data(contentsOf: URL(fileURLWithPath: a))
        let db = try Data(contentsOf: URL(fileURLWithPath: b))
        let dc = try Data(contentsOf: URL(fileURLWithPath: c))
        #expect(da == db)
        #expect(da.count == dc.count && da != dc)
    }

    @Test func unknownNamesAreRejected() {
        let x = Self.dir + "/x.gguf"
        #expect(throws: GGUFError.self) { try SyntheticModel.write(arch: "gpt2", preset: "tiny", quant: "q4_0", to: x) }
        #expect(throws: GGUFError.self) { try SyntheticModel.write(arch: "llama", preset: "3b", quant: "q4_0", to: x) }
        #expect(throws: GGUFError.self) { try SyntheticModel.write(arch: "llama", preset: "tiny", quant: "q3_k", to: x) }
    }

    static func typeCounts(_ tensors: [SyntheticTensor], suffix: String) -> [GGMLType: Int] {
        tensors.filter { $0.name.hasSuffix(suffix) }.reduce(into: [:]) { $0[$1.type, default: 0] += 1 }
    }

    /// Llama-2-7B Q4_K_M as llama.cpp makes it: 4,081,004,224 bytes (3.80 GiB) for the real file.
    @Test func llama7bQ4KMMatchesTheRealFile() throws {
        let c = try SyntheticModel.config(arch: "llama", preset: "7b")
        let tensors = SyntheticModel.tensors(config: c, quant: .q4_k_m)
        #expect(tensors.count == 291)
        let moreBits = (0 ..< 32).filter { SyntheticModel.useMoreBits(layer: $0, of: 32) }
        #expect(moreBits == [0, 1, 2, 3, 6, 9, 12, 15, 18, 21, 24, 27, 28, 29, 30, 31])
        for t in tensors {
            let layer = LayerMemory.layerIndex(of: t.name)
            let expected: GGMLType
            if t.shape.count == 1 {
                expected = .f32
            } else if t.name == "output.weight" {
                expected = .q6_K
            } else if t.name.hasSuffix("attn_v.weight") || t.name.hasSuffix("ffn_down.weight") {
                expected = moreBits.contains(layer!) ? .q6_K : .q4_K
            } else {
                expected = .q4_K
            }
            #expect(t.type == expected, "\(t.name)")
        }
        #expect(Self.typeCounts(tensors, suffix: "") == [.f32: 65, .q4_K: 193, .q6_K: 33])
        let w = try SyntheticModel.writer(config: c, quant: .q4_k_m)
        let size = try w.fileSize()
        let data = try w.dataSectionSize()
        print("llama 7b q4_k_m: file \(size) bytes, data section \(data) bytes")
        #expect(abs(size - 4_081_004_224) < 2_000_000, "size \(size)")
        #expect(abs(Double(size) / Double(1 << 30) - 3.80) < 0.005)
    }

    @Test func seventyBUsesQ5KForAttnV() throws {
        let c = try SyntheticModel.config(arch: "llama", preset: "70b")
        #expect(c.isLlamaCpp70B)
        let v = Self.typeCounts(SyntheticModel.tensors(config: c, quant: .q4_k_m), suffix: "attn_v.weight")
        let more = (0 ..< 80).filter { SyntheticModel.useMoreBits(layer: $0, of: 80) }.count
        #expect(v == [.q6_K: more, .q5_K: 80 - more])
        let size = try SyntheticModel.fileSize(arch: "llama", preset: "70b", quant: "q4_k_m")
        print("llama 70b q4_k_m: file \(size) bytes")
        // Llama-2-70B Q4_K_M is about 41.4 GB.
        #expect(abs(Double(size) / 1e9 - 41.4) < 0.2, "size \(size)")
    }

    @Test func qwen2FallsBackWhereRowsAreNotWholeSuperBlocks() throws {
        let c = try SyntheticModel.config(arch: "qwen2", preset: "70b")  // n_ff 29568 = 115.5 × 256
        let t = SyntheticModel.tensors(config: c, quant: .q4_k_m)
        let down = Self.typeCounts(t, suffix: "ffn_down.weight")
        let more = (0 ..< 80).filter { SyntheticModel.useMoreBits(layer: $0, of: 80) }.count
        #expect(down == [.q8_0: more, .q5_0: 80 - more])
        #expect(Self.typeCounts(t, suffix: "ffn_up.weight") == [.q4_K: 80])
        #expect(Self.typeCounts(t, suffix: "attn_v.weight") == [.q6_K: more, .q5_K: 80 - more])
        #expect(Self.typeCounts(t, suffix: "attn_q.bias") == [.f32: 80])
    }

    @Test(arguments: SyntheticModel.architectures, SyntheticModel.presets)
    func everyPresetPlans(arch: String, preset: String) throws {
        let c = try SyntheticModel.config(arch: arch, preset: preset)
        #expect(c.headDim * c.headCount == c.embeddingLength)
        for q in SyntheticQuant.allCases {
            let infos = try SyntheticModel.writer(config: c, quant: q).tensorInfos()
            #expect(infos.count == 3 + c.blockCount * (c.qkvBias ? 12 : 9))
            let m = LayerMemory(tensors: infos)
            #expect(m.layerCount == c.blockCount && m.embedding > 0 && m.output > 0 && m.other == 0)
        }
    }

    @Test func vocabularyIsDistinctAtEverySize() {
        for size in [300, 512, 32000, 152064] {
            let v = SyntheticModel.vocabulary(size: size)
            #expect(v.tokens.count == size && v.scores.count == size && v.types.count == size)
            #expect(Set(v.tokens).count == size)
            #expect(v.tokens.allSatisfy { !$0.isEmpty })
        }
    }

}
