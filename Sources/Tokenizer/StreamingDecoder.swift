/// Incremental detokenization for streaming output: `append` returns only complete UTF-8, holding back
/// the bytes of a multi-byte character until its last byte arrives (emoji and CJK are often split across
/// byte tokens). Concatenating every `append` and the final `flush` equals `tokenizer.decode(allIDs)`
/// for vocabularies without the BPE `clean_spaces` pass (SmolLM2, Qwen, Gemma, Llama 2; not GPT-2/Llama 3
/// pre-tokenizers, whose cleanup looks at neighbouring tokens).
public struct StreamingDecoder: Sendable {
    public let tokenizer: Tokenizer
    private var pending: [UInt8] = []
    private var first = true

    public init(tokenizer: Tokenizer) { self.tokenizer = tokenizer }

    /// Appends one token; returns the text that is now complete (possibly empty).
    public mutating func append(_ id: Int32) -> String {
        var p = tokenizer.piece(id)
        if first {
            // llama_detokenize drops the leading space of the first piece when add_space_prefix is set
            if tokenizer.addSpacePrefix, p.first == 0x20 { p.removeFirst() }
            first = false
        }
        pending.append(contentsOf: p)
        let cut = Self.completePrefixLength(pending)
        guard cut > 0 else { return "" }
        let s = String(decoding: pending[0..<cut], as: UTF8.self)
        pending.removeFirst(cut)
        return s
    }

    /// Returns whatever is held back (an incomplete sequence decodes to U+FFFD) and resets the decoder.
    public mutating func flush() -> String {
        defer { pending.removeAll(); first = true }
        return pending.isEmpty ? "" : String(decoding: pending, as: UTF8.self)
    }

    /// Length of the longest prefix that does not end inside an incomplete (but so far valid) UTF-8 sequence.
    static func completePrefixLength(_ b: [UInt8]) -> Int {
        let n = b.count
        // look back at most 3 bytes for the start of the last sequence
        var i = n - 1
        var back = 0
        while i >= 0 && back < 4 {
            let c = b[i]
            if c & 0xC0 != 0x80 {
                // lead byte (or ASCII) at i
                let need: Int
                switch c {
                case 0xC2...0xDF: need = 2
                case 0xE0...0xEF: need = 3
                case 0xF0...0xF4: need = 4
                default: need = 1  // ASCII or invalid lead: emit as is
                }
                return n - i < need ? i : n
            }
            i -= 1
            back += 1
        }
        return n  // only continuation bytes (invalid): emit
    }
}
