import GGUF

/// Hyper-parameters of a synthetic model (a real model's shape with random weights).
public struct SyntheticConfig: Sendable, Equatable {
    public var arch: String
    public var preset: String
    public var embeddingLength: Int
    public var feedForwardLength: Int
    public var blockCount: Int
    public var headCount: Int
    public var headCountKV: Int
    public var headDim: Int
    public var vocabSize: Int
    public var contextLength: Int
    public var ropeFreqBase: Float
    public var rmsEpsilon: Float
    /// qwen2: q/k/v projections carry biases.
    public var qkvBias: Bool

    /// llama.cpp's LLM_TYPE_70B for this shape (it quantizes attn_v with more bits then):
    /// llama with 80 layers and grouped-query attention, qwen2 with 80 layers.
    public var isLlamaCpp70B: Bool {
        switch arch {
        case "llama": blockCount == 80 && headCount != headCountKV
        case "qwen2": blockCount == 80
        default: false
        }
    }
}

/// Weight formats of synthetic models, named as llama.cpp's quantize tool names them.
public enum SyntheticQuant: String, Sendable, CaseIterable {
    case q4_k_m, q4_0, q8_0, f16

    /// `general.file_type` (llama_ftype).
    public var fileType: UInt32 {
        switch self {
        case .f16: 1
        case .q4_0: 2
        case .q8_0: 7
        case .q4_k_m: 15
        }
    }

    /// The type most matrices get (llama.cpp's `default_type` for the ftype).
    public var defaultType: GGMLType {
        switch self {
        case .f16: .f16
        case .q4_0: .q4_0
        case .q8_0: .q8_0
        case .q4_k_m: .q4_K
        }
    }
}

/// One planned tensor of a synthetic model.
public struct SyntheticTensor: Sendable, Equatable {
    public var name: String
    /// Innermost first (ggml's ne).
    public var shape: [Int]
    public var type: GGMLType
}

/// Writes GGUF files shaped like real llama / qwen2 models (tensor names, shapes and quantization types as
/// llama.cpp produces them, full metadata and a SentencePiece-style vocabulary) filled with random but sane
/// weights: for tests, benchmarks and memory planning without downloading a model.
public enum SyntheticModel {
    public static let architectures = ["llama", "qwen2"]
    public static let presets = ["tiny", "135m", "1b", "7b", "13b", "70b"]

    public static func config(arch: String, preset: String) throws(GGUFError) -> SyntheticConfig {
        // (n_embd, n_ff, n_layer, n_head, n_head_kv, vocab, ctx)
        let p: (Int, Int, Int, Int, Int, Int, Int)
        switch (arch, preset) {
        case ("llama", "tiny"), ("qwen2", "tiny"): p = (256, 512, 2, 4, 2, 512, 512)
        case ("llama", "135m"), ("qwen2", "135m"): p = (576, 1536, 30, 9, 3, 49152, 8192)  // SmolLM2-135M
        case ("llama", "1b"): p = (2048, 5632, 22, 32, 4, 32000, 2048)        // TinyLlama-1.1B
        case ("llama", "7b"): p = (4096, 11008, 32, 32, 32, 32000, 4096)      // Llama-2-7B
        case ("llama", "13b"): p = (5120, 13824, 40, 40, 40, 32000, 4096)     // Llama-2-13B
        case ("llama", "70b"): p = (8192, 28672, 80, 64, 8, 32000, 4096)      // Llama-2-70B
        case ("qwen2", "1b"): p = (1536, 8960, 28, 12, 2, 151936, 32768)      // Qwen2-1.5B
        case ("qwen2", "7b"): p = (3584, 18944, 28, 28, 4, 152064, 32768)     // Qwen2-7B
        case ("qwen2", "13b"): p = (5120, 13824, 48, 40, 8, 152064, 32768)    // Qwen2.5-14B
        case ("qwen2", "70b"): p = (8192, 29568, 80, 64, 8, 152064, 32768)    // Qwen2-72B
        default:
            guard architectures.contains(arch) else {
                throw GGUFError("unknown synthetic architecture '\(arch)' (known: \(architectures.joined(separator: ", ")))")
            }
            throw GGUFError("unknown synthetic preset '\(preset)' (known: \(presets.joined(separator: ", ")))")
        }
        return SyntheticConfig(
            arch: arch, preset: preset, embeddingLength: p.0, feedForwardLength: p.1, blockCount: p.2,
            headCount: p.3, headCountKV: p.4, headDim: p.0 / p.3, vocabSize: p.5, contextLength: p.6,
            ropeFreqBase: arch == "qwen2" ? 1_000_000 : 10_000, rmsEpsilon: arch == "qwen2" ? 1e-6 : 1e-5,
            qkvBias: arch == "qwen2")
    }

    public static func quant(_ name: String) throws(GGUFError) -> SyntheticQuant {
        guard let q = SyntheticQuant(rawValue: name.lowercased()) else {
            throw GGUFError("unknown synthetic quantization '\(name)' (known: \(SyntheticQuant.allCases.map(\.rawValue).joined(separator: ", ")))")
        }
        return q
    }

    // MARK: tensor types, as llama.cpp's llama_tensor_get_type assigns them

    /// llama.cpp's `use_more_bits`: the layers Q4_K_M gives Q6_K attn_v / ffn_down.
    public static func useMoreBits(layer i: Int, of n: Int) -> Bool {
        i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2
    }

    /// The type llama.cpp's quantize gives tensor `name` (of row length `rowLength`) for `quant`.
    /// One-dimensional tensors (norms, biases) stay F32.
    public static func tensorType(name: String, shape: [Int], layer: Int?, config: SyntheticConfig,
                                  quant: SyntheticQuant) -> GGMLType {
        if shape.count < 2 { return .f32 }
        var t = quant.defaultType
        guard quant != .f16 else { return .f16 }  // not a quantized ftype: llama_tensor_get_type isn't called
        let nx = shape[0]
        if name == "output.weight" {
            if nx % 256 != 0 { t = .q8_0 } else if t != .q8_0 { t = .q6_K }
            return t
        }
        if name == "token_embd.weight" {
            // Q4_K_M / Q4_0 / Q8_0 keep the default type.
        } else if name.hasSuffix("attn_v.weight") {
            if quant == .q4_k_m, let i = layer, useMoreBits(layer: i, of: config.blockCount) { t = .q6_K }
            if config.isLlamaCpp70B, t == .q3_K || t == .q4_K { t = .q5_K }
        } else if name.hasSuffix("ffn_down.weight") {
            if quant == .q4_k_m, let i = layer, useMoreBits(layer: i, of: config.blockCount) { t = .q6_K }
        }
        // Rows that are not whole blocks fall back as llama.cpp does.
        if nx % t.blockSize != 0 {
            switch t {
            case .q4_K: t = .q5_0
            case .q5_K: t = .q5_1
            case .q6_K: t = .q8_0
            default: break
            }
            if nx % t.blockSize != 0 { t = .f16 }
        }
        return t
    }

    /// Every tensor of the model in file order, with llama.cpp's names, shapes and types.
    public static func tensors(config c: SyntheticConfig, quant: SyntheticQuant) -> [SyntheticTensor] {
        let qDim = c.headCount * c.headDim, kvDim = c.headCountKV * c.headDim
        var out: [SyntheticTensor] = []
        func add(_ name: String, _ shape: [Int], layer: Int?) {
            out.append(SyntheticTensor(name: name, shape: shape,
                                       type: tensorType(name: name, shape: shape, layer: layer, config: c, quant: quant)))
        }
        add("token_embd.weight", [c.embeddingLength, c.vocabSize], layer: nil)
        for i in 0 ..< c.blockCount {
            let b = "blk.\(i)."
            add(b + "attn_norm.weight", [c.embeddingLength], layer: i)
            add(b + "attn_q.weight", [c.embeddingLength, qDim], layer: i)
            if c.qkvBias { add(b + "attn_q.bias", [qDim], layer: i) }
            add(b + "attn_k.weight", [c.embeddingLength, kvDim], layer: i)
            if c.qkvBias { add(b + "attn_k.bias", [kvDim], layer: i) }
            add(b + "attn_v.weight", [c.embeddingLength, kvDim], layer: i)
            if c.qkvBias { add(b + "attn_v.bias", [kvDim], layer: i) }
            add(b + "attn_output.weight", [qDim, c.embeddingLength], layer: i)
            add(b + "ffn_norm.weight", [c.embeddingLength], layer: i)
            add(b + "ffn_gate.weight", [c.embeddingLength, c.feedForwardLength], layer: i)
            add(b + "ffn_up.weight", [c.embeddingLength, c.feedForwardLength], layer: i)
            add(b + "ffn_down.weight", [c.feedForwardLength, c.embeddingLength], layer: i)
        }
        add("output_norm.weight", [c.embeddingLength], layer: nil)
        add("output.weight", [c.embeddingLength, c.vocabSize], layer: nil)
        return out
    }

    // MARK: vocabulary

    /// A valid SentencePiece-style ("llama") vocabulary of `size` tokens: `<unk>`, `<s>`, `</s>`, the 256 byte
    /// tokens `<0x00>`…`<0xFF>`, then distinct printable pieces. Scores decrease with the id; token types are
    /// 1 normal, 2 unknown, 3 control, 6 byte.
    public static func vocabulary(size: Int) -> (tokens: [String], scores: [Float], types: [Int32]) {
        var tokens = ["<unk>", "<s>", "</s>"]
        var types: [Int32] = [2, 3, 3]
        for b in 0 ..< 256 {
            let hex = String(b, radix: 16, uppercase: true)
            tokens.append("<0x" + (hex.count == 1 ? "0" + hex : hex) + ">")
            types.append(6)
        }
        var seen = Set(tokens)
        func add(_ piece: String) {
            guard tokens.count < size, seen.insert(piece).inserted else { return }
            tokens.append(piece)
            types.append(1)
        }
        let lower = "abcdefghijklmnopqrstuvwxyz".map(String.init)
        let common = ["▁the", "▁a", "▁and", "▁of", "▁to", "▁in", "▁is", "▁it", "▁that", "▁for", "▁you", "▁was",
                      "▁on", "▁with", "▁as", "▁I", "▁be", "▁at", "ing", "ed", "er", "es", "ly", "ion", "▁Hello",
                      "▁world", "▁The", "▁once", "▁upon", "▁time", "."]
        add("▁")
        common.forEach(add)
        lower.forEach { add("▁" + $0) }
        (lower + lower.map { $0.uppercased() } + "0123456789".map(String.init)).forEach(add)
        ".,!?;:'\"-()[]{}/\\@#$%^&*+=<>_~`|".map(String.init).forEach(add)
        // Then every lower-case string of length 2, 3, 4, … with and without the word-start marker.
        var length = 2
        while tokens.count < size {
            var index = [Int](repeating: 0, count: length)
            outer: while tokens.count < size {
                let s = index.map { lower[$0] }.joined()
                add("▁" + s)
                add(s)
                var k = length - 1
                while true {
                    index[k] += 1
                    if index[k] < 26 { break }
                    index[k] = 0
                    k -= 1
                    if k < 0 { break outer }
                }
            }
            length += 1
        }
        tokens.removeLast(max(0, tokens.count - size))
        types.removeLast(max(0, types.count - size))
        let scores = (0 ..< tokens.count).map { -Float($0) }
        return (tokens, scores, types)
    }

    // MARK: writing

    /// A writer holding the whole model: call `write(to:)` to produce it, or `fileSize()` / `tensorInfos()`
    /// to plan memory without producing any tensor data.
    public static func writer(config c: SyntheticConfig, quant: SyntheticQuant, seed: UInt64 = 0) throws(GGUFError) -> GGUFWriter {
        let w = GGUFWriter()
        let a = c.arch
        w.set("general.architecture", a)
        w.set("general.name", "Synthetic \(a) \(c.preset) \(quant.rawValue)")
        w.set("general.file_type", uint32: quant.fileType)
        w.set("general.quantization_version", uint32: 2)
        w.set("\(a).context_length", uint32: UInt32(c.contextLength))
        w.set("\(a).embedding_length", uint32: UInt32(c.embeddingLength))
        w.set("\(a).block_count", uint32: UInt32(c.blockCount))
        w.set("\(a).feed_forward_length", uint32: UInt32(c.feedForwardLength))
        w.set("\(a).rope.dimension_count", uint32: UInt32(c.headDim))
        w.set("\(a).attention.head_count", uint32: UInt32(c.headCount))
        w.set("\(a).attention.head_count_kv", uint32: UInt32(c.headCountKV))
        w.set("\(a).attention.layer_norm_rms_epsilon", float32: c.rmsEpsilon)
        w.set("\(a).rope.freq_base", float32: c.ropeFreqBase)
        let vocab = vocabulary(size: c.vocabSize)
        w.set("tokenizer.ggml.model", "llama")
        w.set("tokenizer.ggml.tokens", strings: vocab.tokens)
        w.set("tokenizer.ggml.scores", float32s: vocab.scores)
        w.set("tokenizer.ggml.token_type", int32s: vocab.types)
        w.set("tokenizer.ggml.bos_token_id", uint32: 1)
        w.set("tokenizer.ggml.eos_token_id", uint32: 2)
        w.set("tokenizer.ggml.unknown_token_id", uint32: 0)
        w.set("tokenizer.ggml.add_bos_token", true)
        w.set("tokenizer.ggml.add_eos_token", false)
        w.set("shard.synthetic.seed", .uint64(seed))

        for (index, t) in tensors(config: c, quant: quant).enumerated() {
            // Each tensor has its own stream, so its bytes don't depend on chunking or on other tensors.
            var rng = SplitMix64(seed: seed &* 0x9E37_79B9_7F4A_7C15 &+ UInt64(index) &* 0xD1B5_4A32_D192_ED03 &+ 1)
            let isNorm = t.name.hasSuffix("_norm.weight")
            let isBias = t.name.hasSuffix(".bias")
            let sigma = 1 / Float(t.shape[0]).squareRoot()
            let type = t.type
            try w.addTensor(name: t.name, shape: t.shape, type: type) { chunk, _ in
                if isNorm {
                    SyntheticData.fillFloats(chunk, type: type, mean: 1, sigma: 0.02, rng: &rng)
                } else if isBias {
                    SyntheticData.fillFloats(chunk, type: type, mean: 0, sigma: 0.02, rng: &rng)
                } else {
                    SyntheticData.fillWeights(chunk, type: type, sigma: sigma, rng: &rng)
                }
            }
        }
        return w
    }

    /// Writes a synthetic model. `arch`: llama | qwen2; `preset`: tiny | 1b | 7b | 13b | 70b;
    /// `quant`: q4_k_m | q4_0 | q8_0 | f16. Tensor data is streamed: a 4 GB file never sits in memory.
    public static func write(arch: String, preset: String, quant: String, to path: String, seed: UInt64 = 0) throws {
        try writer(config: config(arch: arch, preset: preset), quant: self.quant(quant), seed: seed).write(to: path)
    }

    /// The file size `write` would produce, computed from the tensor table alone.
    public static func fileSize(arch: String, preset: String, quant: String) throws -> Int {
        try writer(config: config(arch: arch, preset: preset), quant: self.quant(quant)).fileSize()
    }
}
