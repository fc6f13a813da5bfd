import GGUF

public struct TokenizerError: Error, CustomStringConvertible, Sendable, Equatable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// The vocabulary model of a GGUF file (`tokenizer.ggml.model`).
public enum VocabularyType: String, Sendable {
    /// `llama`: SentencePiece (Llama 1/2, Gemma, Mistral v1, …).
    case sentencePiece = "llama"
    /// `gpt2`: byte-level BPE (GPT-2, Llama 3, Qwen, SmolLM, …).
    case bytePairEncoding = "gpt2"
}

/// Text ↔ token ids for a GGUF model, matching llama.cpp's `llama_tokenize` / `llama_detokenize` /
/// `llama_token_to_piece` token for token (see Tests/TokenizerTests and tests/golden/tokenizer).
public final class Tokenizer: Sendable {
    public let type: VocabularyType
    /// `tokenizer.ggml.pre` (nil for SentencePiece or when absent).
    public let preTokenizerName: String?
    public let vocabSize: Int
    public let bosID: Int32?
    public let eosID: Int32?
    /// End-of-turn token (`<|im_end|>`, `<end_of_turn>`, `<|eot_id|>`, …) when the vocabulary has one.
    public let eotID: Int32?
    public let unknownID: Int32?
    public let paddingID: Int32?
    /// `tokenizer.ggml.add_bos_token` / `add_eos_token` (with llama.cpp's per-type defaults).
    public let addBOS: Bool
    public let addEOS: Bool
    /// SentencePiece: prefix a space to text that starts the input or follows a special token.
    public let addSpacePrefix: Bool
    /// Token ids that end generation (llama.cpp `llama_vocab_is_eog`).
    public let endOfGenerationIDs: Set<Int32>
    /// Attributes as llama.cpp computes them (GGUF token types plus its by-name fix-ups).
    public let attributes: [TokenAttributes]
    /// `tokenizer.chat_template`, if any.
    public let chatTemplate: String?

    let tokens: [[UInt8]]
    let tokenToID: [ByteKey: Int32]
    let special: SpecialTokenMatcher
    let spm: SentencePiece?
    let bpe: ByteLevelBPE?
    let cleanSpaces: Bool

    public convenience init(path: String) throws {
        let file: GGUFFile
        do { file = try GGUFFile(path: path) } catch { throw TokenizerError("\(path): \(error)") }
        try self.init(gguf: file)
    }

    public init(gguf: GGUFFile) throws {
        guard let model = gguf.string("tokenizer.ggml.model") else { throw TokenizerError("no tokenizer.ggml.model") }
        guard var texts = gguf.metadata["tokenizer.ggml.tokens"]?.arrayValue?.map({ v -> [UInt8] in
            if case .string(let s) = v { return Array(s.utf8) } else { return [] }
        }), !texts.isEmpty else { throw TokenizerError("no tokenizer.ggml.tokens") }
        for i in texts.indices where texts[i].isEmpty { texts[i] = Array("[EMPTY_\(i)]".utf8) }
        let n = texts.count
        let types = gguf.intArray("tokenizer.ggml.token_type")
        let scoreArray = gguf.floatArray("tokenizer.ggml.scores")
        chatTemplate = gguf.string("tokenizer.chat_template")

        var bos: Int32?, eos: Int32?, unk: Int32?, pad: Int32?
        var addBOS = false, addEOS = false, addSpacePrefix = false, cleanSpaces = false
        var preConfig: PreTokenizer.Config?
        switch model {
        case "llama":
            type = .sentencePiece
            bos = 1; eos = 2; unk = 0
            addSpacePrefix = true; addBOS = true
            preTokenizerName = nil
        case "gpt2":
            type = .bytePairEncoding
            bos = 11; eos = 11
            let pre = gguf.string("tokenizer.ggml.pre")
            guard let cfg = PreTokenizer.config(forPre: pre) else {
                throw TokenizerError("unsupported pre-tokenizer type '\(pre ?? "")'")
            }
            preConfig = cfg
            cleanSpaces = cfg.cleanSpaces
            if cfg.forceAddBOS { addBOS = true }
            preTokenizerName = pre
        default:
            throw TokenizerError("unsupported tokenizer model '\(model)' (supported: llama, gpt2)")
        }
        if let b = gguf.bool("tokenizer.ggml.add_space_prefix") { addSpacePrefix = b }

        // token attributes and the text → id map (last duplicate wins, as llama.cpp's token_to_id)
        var attrs = (0..<n).map { i in types.map { i < $0.count ? TokenAttributes(tokenType: $0[i]) : [] } ?? .normal }
        var t2i: [ByteKey: Int32] = [:]
        t2i.reserveCapacity(n)
        for (i, t) in texts.enumerated() { t2i[ByteKey(t)] = Int32(i) }

        func metaID(_ key: String) -> Int32?? {
            guard let v = gguf.int("tokenizer.ggml.\(key)") else { return nil }
            return v >= 0 && v < n ? .some(Int32(v)) : nil
        }
        func inRange(_ id: Int32?) -> Int32? { id.flatMap { $0 >= 0 && Int($0) < n ? $0 : nil } }
        bos = inRange(bos); eos = inRange(eos); unk = inRange(unk)
        if case .some(let v) = metaID("bos_token_id") { bos = v }
        if case .some(let v) = metaID("eos_token_id") { eos = v }
        if case .some(let v) = metaID("unknown_token_id") { unk = v }
        if case .some(let v) = metaID("padding_token_id") { pad = v }
        var eot: Int32?, eom: Int32?, fimPad: Int32?, fimRep: Int32?, fimSep: Int32?
        if case .some(let v) = metaID("eot_token_id") { eot = v }
        if case .some(let v) = metaID("eom_token_id") { eom = v }
        if case .some(let v) = metaID("fim_pad_token_id") { fimPad = v }
        if case .some(let v) = metaID("fim_rep_token_id") { fimRep = v }
        if case .some(let v) = metaID("fim_sep_token_id") { fimSep = v }
        if let b = gguf.bool("tokenizer.ggml.add_bos_token") { addBOS = b }
        if let b = gguf.bool("tokenizer.ggml.add_eos_token") { addEOS = b }

        // llama.cpp's detection of special tokens by text. (It walks an unordered map; where several texts
        // qualify for one role we take the lowest id.)
        func find(_ names: [String]) -> Int32? {
            names.compactMap { t2i[ByteKey(Array($0.utf8))] }.min()
        }
        func markControl(_ id: Int32?) { if let id { attrs[Int(id)].insert(.control) } }
        if eot == nil {
            eot = find(["<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<|end_of_text|>",
                        "<EOT>", "_<EOT>", "[EOT]", "<｜end▁of▁sentence｜>", "<end_of_utterance>"])
            markControl(eot)
        }
        if eom == nil { eom = find(["<|eom_id|>"]); markControl(eom) }
        for names in [["<|fim_prefix|>", "<fim-prefix>", "<fim_prefix>", "<｜fim▁begin｜>", "<PRE>", "▁<PRE>", "<|code_prefix|>", "<|prefix|>"],
                      ["<|fim_suffix|>", "<fim-suffix>", "<fim_suffix>", "<｜fim▁hole｜>", "<SUF>", "▁<SUF>", "<|code_suffix|>", "<|suffix|>"],
                      ["<|fim_middle|>", "<fim-middle>", "<fim_middle>", "<｜fim▁end｜>", "<MID>", "▁<MID>", "<|code_middle|>", "<|middle|>"]] {
            markControl(find(names))
        }
        if fimPad == nil { fimPad = find(["<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]"]); markControl(fimPad) }
        if fimRep == nil { fimRep = find(["<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>"]); markControl(fimRep) }
        if fimSep == nil { fimSep = find(["<|file_sep|>"]); markControl(fimSep) }
        // control tokens named "unused…" are unused
        for i in 0..<n where attrs[i].contains(.control) && !attrs[i].contains(.unused) {
            if texts[i].count >= 6, String(decoding: texts[i], as: UTF8.self).contains("unused") { attrs[i].insert(.unused) }
        }
        // end-of-generation set
        var eog = Set<Int32>([fimPad, fimRep, fimSep].compactMap { $0 })
        let eogNames = ["<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>", "<|flush|>", "<|calls|>",
                        "<end_of_turn>", "<|endoftext|>", "</s>", "<|eom_id|>", "<EOT>", "_<EOT>", "[EOT]", "[EOS]",
                        "<|end_of_text|>", "<end_of_utterance>", "<eos>", "<turn|>", "<|tool_response>",
                        "<｜end▁of▁sentence｜>", "[e~["]
        for name in eogNames {
            if let id = t2i[ByteKey(Array(name.utf8))] { eog.insert(id); attrs[Int(id)].insert(.control) }
        }
        for name in ["<|channel|>", "<|message|>", "<|start|>", "<|constrain|>"] {
            if let id = t2i[ByteKey(Array(name.utf8))] { attrs[Int(id)] = .userDefined }
        }
        for id in [eos, eot, eom].compactMap({ $0 }) { eog.insert(id) }
        func textOf(_ id: Int32) -> String { String(decoding: texts[Int(id)], as: UTF8.self) }
        // "<|end|>" is not EOG when "<|return|>"+"<|call|>" (or "<|calls|>"+"<|flush|>") are
        do {
            let eogTexts = Set(eog.map(textOf))
            let hasCall = eogTexts.contains("<|call|>") || eogTexts.contains("<|calls|>")
            if (eogTexts.contains("<|return|>") && hasCall) || (hasCall && eogTexts.contains("<|flush|>")),
               let end = eog.first(where: { textOf($0) == "<|end|>" }) {
                eog.remove(end); attrs[Int(end)] = .userDefined
            }
            if eogTexts.contains("<|tool_response>") || eogTexts.contains("<|plamo:eos|>"),
               let s = eog.first(where: { textOf($0) == "</s>" }) {
                eog.remove(s); attrs[Int(s)] = .normal
            }
        }

        self.tokens = texts
        self.tokenToID = t2i
        self.vocabSize = n
        self.bosID = bos
        self.eosID = eos
        self.eotID = eot
        self.unknownID = unk
        self.paddingID = pad
        self.addBOS = addBOS
        self.addEOS = addEOS
        self.addSpacePrefix = addSpacePrefix
        self.cleanSpaces = cleanSpaces
        self.endOfGenerationIDs = eog
        self.attributes = attrs
        self.special = SpecialTokenMatcher(tokens: texts, attrs: attrs)
        switch type {
        case .sentencePiece:
            let scores = scoreArray.map { $0.count >= n ? $0 : $0 + [Float](repeating: 0, count: n - $0.count) }
                ?? [Float](repeating: 0, count: n)
            spm = SentencePiece(tokenToID: t2i, scores: scores)
            bpe = nil
        case .bytePairEncoding:
            guard let merges = gguf.stringArray("tokenizer.ggml.merges") else { throw TokenizerError("no tokenizer.ggml.merges") }
            spm = nil
            bpe = ByteLevelBPE(tokens: texts, merges: merges, pre: preConfig!)
        }
    }

    // MARK: encode

    /// Tokenizes `text` as `llama_tokenize(vocab, text, …, add_special, parse_special)`.
    /// - addSpecial: add BOS/EOS as the model's metadata asks.
    /// - parseSpecial: turn control-token text (`<|im_start|>`, `<start_of_turn>`, …) into those tokens.
    ///   User-defined tokens are matched either way, as in llama.cpp.
    public func encode(_ text: String, addSpecial: Bool = true, parseSpecial: Bool = true) -> [Int32] {
        let bytes = Array(text.utf8)
        let fragments = special.partition(bytes, parseSpecial: parseSpecial)
        var out: [Int32] = []
        out.reserveCapacity(bytes.count / 3 + 2)
        switch type {
        case .sentencePiece:
            var prevSpecial = true
            if addSpecial && addBOS, let bos = bosID { out.append(bos) }
            for f in fragments {
                switch f {
                case .token(let id):
                    out.append(id)
                    prevSpecial = true
                case .text(let r):
                    var t: [UInt8] = []
                    t.reserveCapacity(r.count + 8)
                    if addSpacePrefix && prevSpecial { t.append(contentsOf: [0xE2, 0x96, 0x81]) }
                    for b in bytes[r] {
                        if b == 0x20 { t.append(contentsOf: [0xE2, 0x96, 0x81]) } else { t.append(b) }
                    }
                    spm!.encode(t, into: &out)
                    prevSpecial = false
                }
            }
            if addSpecial && addEOS, let eos = eosID { out.append(eos) }
        case .bytePairEncoding:
            if addSpecial && addBOS, let bos = bosID { out.append(bos) }
            for f in fragments {
                switch f {
                case .token(let id): out.append(id)
                case .text(let r): bpe!.encode(bytes[r], into: &out)
                }
            }
            if addSpecial && addEOS, let eos = eosID { out.append(eos) }
        }
        return out
    }

    // MARK: decode

    /// Raw bytes of one token as `llama_token_to_piece(…, lstrip: 0, special: true)`: control, unknown and
    /// user-defined tokens give their text; normal tokens their decoded text; byte tokens their byte;
    /// anything else (unused, undefined, out of range) nothing.
    public func piece(_ id: Int32) -> [UInt8] {
        guard id >= 0, Int(id) < vocabSize else { return [] }
        let a = attributes[Int(id)]
        let text = tokens[Int(id)]
        if !a.isDisjoint(with: [.unknown, .control, .userDefined]) { return text }
        if a.contains(.normal) {
            switch type {
            case .sentencePiece: return Self.unescapeWhitespace(text)
            case .bytePairEncoding: return Self.decodeByteLevel(text)
            }
        }
        if a.contains(.byte) {
            // "<0xXX>" (substr(3, 2) parsed as hex)
            if text.count >= 5, let v = UInt8(String(decoding: text[3..<5], as: UTF8.self), radix: 16) { return [v] }
            return [0]
        }
        return []
    }

    /// Decodes token ids to text as `llama_detokenize(…, remove_special: false, unparse_special: true)`.
    /// Invalid UTF-8 (e.g. a cut multi-byte character) is replaced by U+FFFD; use `decodeBytes` for the raw bytes.
    public func decode(_ ids: [Int32]) -> String {
        String(decoding: decodeBytes(ids), as: UTF8.self)
    }

    /// The bytes of `decode`.
    public func decodeBytes(_ ids: [Int32]) -> [UInt8] {
        var text: [UInt8] = []
        var removeSpace = addSpacePrefix
        for id in ids {
            var p = piece(id)
            if removeSpace, p.first == 0x20 { p.removeFirst() }
            removeSpace = false
            text.append(contentsOf: p)
        }
        if cleanSpaces { text = Self.cleanUpSpaces(text) }
        return text
    }

    /// The token's text as stored in the vocabulary (GPT-2 byte-encoded for BPE, "▁" for spaces in SPM).
    public func tokenText(_ id: Int32) -> String {
        guard id >= 0, Int(id) < vocabSize else { return "" }
        return String(decoding: tokens[Int(id)], as: UTF8.self)
    }

    /// Id of the token whose text is exactly `text`, if any.
    public func tokenID(_ text: String) -> Int32? { tokenToID[ByteKey(Array(text.utf8))] }

    /// Whether `id` ends generation (llama.cpp `llama_vocab_is_eog`): EOS, EOT, `<|im_end|>`, `<end_of_turn>`, …
    public func isEndOfGeneration(_ id: Int32) -> Bool { endOfGenerationIDs.contains(id) }

    /// Whether the token is a control token (rendered only when special tokens are shown).
    public func isControl(_ id: Int32) -> Bool {
        id >= 0 && Int(id) < vocabSize && attributes[Int(id)].contains(.control)
    }

    // MARK: helpers

    static func unescapeWhitespace(_ t: [UInt8]) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(t.count)
        var i = 0
        while i < t.count {
            if i + 2 < t.count, t[i] == 0xE2, t[i + 1] == 0x96, t[i + 2] == 0x81 { out.append(0x20); i += 3; continue }
            out.append(t[i]); i += 1
        }
        return out
    }

    /// llama.cpp `llama_decode_text`: GPT-2 code points back to bytes.
    static func decodeByteLevel(_ t: [UInt8]) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(t.count)
        for s in String(decoding: t, as: UTF8.self).unicodeScalars {
            if let b = ByteUnicode.scalarToByte[s.value] {
                out.append(b)
            } else {
                var utf8: [UInt8] = []
                appendUTF8(s.value, to: &utf8)
                out.append(contentsOf: Array("[UNK_BYTE_0x".utf8))
                for c in utf8 { out.append(contentsOf: Array(String(format2: c).utf8)) }
                out.append(contentsOf: t)
                out.append(0x5D)
            }
        }
        return out
    }

    /// llama.cpp's `clean_spaces` pass of `llama_detokenize` (clean_up_tokenization_spaces).
    static func cleanUpSpaces(_ input: [UInt8]) -> [UInt8] {
        var text = input
        let sp = UInt8(ascii: " "), ap = UInt8(ascii: "'")
        // 1: " ?", " !", " .", " ,"
        var total = text.isEmpty ? 0 : 1
        if text.count > 1 {
            for i in 1..<text.count {
                let x = text[i]
                if text[i - 1] == sp && (x == UInt8(ascii: "?") || x == UInt8(ascii: "!") || x == UInt8(ascii: ".") || x == UInt8(ascii: ",")) {
                    total -= 1
                }
                text[total] = x; total += 1
            }
        }
        // 2: " ' " → "'"
        let total2 = total
        total = total2 == 0 ? 0 : 1
        var i = 1
        while i < total2 {
            let x = text[i]
            if x == ap && i + 1 < total2 && text[i - 1] == sp && text[i + 1] == sp {
                total -= 1
                i += 1
                text[i] = 0
            }
            text[total] = x; total += 1
            i += 1
        }
        // 3: " 's", " 'm", " 're", " 've" lose the space
        let total3 = total
        total = total3 == 0 ? 0 : 1
        if total3 > 1 {
            for i in 1..<total3 {
                let x = text[i]
                if text[i - 1] == sp && x == ap && i + 1 < total3 {
                    let x1 = text[i + 1]
                    if x1 == UInt8(ascii: "s") || x1 == UInt8(ascii: "m") {
                        total -= 1
                    } else if i + 2 < total3 {
                        let x2 = text[i + 2]
                        if (x1 == UInt8(ascii: "r") && x2 == UInt8(ascii: "e")) || (x1 == UInt8(ascii: "v") && x2 == UInt8(ascii: "e")) {
                            total -= 1
                        }
                    }
                }
                text[total] = x; total += 1
            }
        }
        return Array(text[0..<total])
    }
}

extension String {
    /// Two lowercase hex digits.
    init(format2 b: UInt8) {
        let hex = Array("0123456789abcdef".utf8)
        self = String(decoding: [hex[Int(b >> 4)], hex[Int(b & 15)]], as: UTF8.self)
    }
}
