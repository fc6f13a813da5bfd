/// The pre-tokenizer (word splitter) of byte-level BPE vocabularies, as llama.cpp's `unicode_regex_split`
/// runs it: a list of split rules applied one after another, each refining the previous segmentation.
/// The rules are hand-written scanners over code points (llama.cpp's `unicode_regex_split_custom_*` and the
/// few simple `std::regex` rules), never a regex engine.
public enum PreTokenizer: String, Sendable, CaseIterable {
    /// `tokenizer.ggml.pre` = default (and missing): llama.cpp's default BPE rule list.
    case `default`
    /// GPT-2: `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)`
    case gpt2
    /// `\p{N}` (each digit alone), then the GPT-2 rule (smollm, starcoder, refact, command-r, codeshell, …).
    case smollm
    /// Llama 3: `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
    case llama3
    /// Qwen 2: as Llama 3 but `\p{N}` (one digit per word).
    case qwen2

    /// The rule for a `tokenizer.ggml.pre` value, with llama.cpp's per-name flags.
    struct Config: Sendable {
        var kind: PreTokenizer
        var cleanSpaces: Bool
        var ignoreMerges: Bool
        var forceAddBOS: Bool
    }

    static func config(forPre pre: String?) -> Config? {
        guard let pre, !pre.isEmpty else { return Config(kind: .default, cleanSpaces: true, ignoreMerges: false, forceAddBOS: false) }
        switch pre {
        case "default":
            return Config(kind: .default, cleanSpaces: true, ignoreMerges: false, forceAddBOS: false)
        case "llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral", "midm-2.0", "lfm2", "jina-v5-nano":
            return Config(kind: .llama3, cleanSpaces: true, ignoreMerges: true, forceAddBOS: true)
        case "gpt-2", "phi-2", "jina-es", "jina-de", "gigachat", "jina-v2-es", "jina-v2-de", "a.x-4.0", "mellum",
             "modern-bert", "exaone4", "mpt", "olmo":
            return Config(kind: .gpt2, cleanSpaces: true, ignoreMerges: false, forceAddBOS: false)
        case "smollm", "command-r":
            return Config(kind: .smollm, cleanSpaces: false, ignoreMerges: false, forceAddBOS: false)
        case "starcoder", "refact", "codeshell", "exaone", "minerva-7b", "mellum2":
            return Config(kind: .smollm, cleanSpaces: true, ignoreMerges: false, forceAddBOS: false)
        case "qwen2", "deepseek-r1-qwen", "kormo", "f2llmv2", "hunyuan", "solar-open":
            return Config(kind: .qwen2, cleanSpaces: false, ignoreMerges: false, forceAddBOS: false)
        case "stablelm2", "megrez":
            return Config(kind: .qwen2, cleanSpaces: true, ignoreMerges: false, forceAddBOS: false)
        default:
            return nil
        }
    }

    /// Splits `text` into words (as String pieces of the input).
    public func split(_ text: String) -> [String] {
        let cpts = text.unicodeScalars.map(\.value)
        var out: [String] = []
        var start = 0
        for len in segment(cpts) {
            out.append(String(String.UnicodeScalarView(cpts[start..<start + len].map { Unicode.Scalar($0)! })))
            start += len
        }
        return out
    }

    /// Segment lengths (in code points) of `cpts`.
    func segment(_ cpts: [UInt32]) -> [Int] {
        var offsets = cpts.isEmpty ? [] : [cpts.count]
        switch self {
        case .gpt2:
            offsets = Splitters.gpt2(cpts, offsets)
        case .smollm:
            offsets = Splitters.isolate(cpts, offsets, maxRun: 1) { cp, f in f.isNumber }
            offsets = Splitters.gpt2(cpts, offsets)
        case .llama3:
            offsets = Splitters.llama3(cpts, offsets, maxDigits: 3)
        case .qwen2:
            offsets = Splitters.llama3(cpts, offsets, maxDigits: 1)
        case .default:
            // "[\p{P}\$\+<=>\^~\|]+", gpt2, "\p{N}+", "[0-9][0-9][0-9]"
            offsets = Splitters.isolate(cpts, offsets, maxRun: Int.max) { cp, f in
                if cp < 128 {
                    switch UInt8(cp) {
                    case 0x21...0x23, 0x25...0x2A, 0x2C...0x2F, 0x3A...0x3B, 0x3F...0x40, 0x5B...0x5D, 0x5F, 0x7B, 0x7D: return true
                    case UInt8(ascii: "$"), UInt8(ascii: "+"), UInt8(ascii: "<"), UInt8(ascii: "="), UInt8(ascii: ">"),
                         UInt8(ascii: "^"), UInt8(ascii: "~"), UInt8(ascii: "|"): return true
                    default: return false
                    }
                }
                return !f.isWhitespace && f.category == CodepointFlags.punctuation.rawValue
            }
            offsets = Splitters.gpt2(cpts, offsets)
            offsets = Splitters.isolate(cpts, offsets, maxRun: Int.max) { cp, f in
                cp < 128 ? (cp >= 0x30 && cp <= 0x39) : (!f.isWhitespace && f.category == CodepointFlags.number.rawValue)
            }
            offsets = Splitters.isolateExact(cpts, offsets, count: 3) { cp in cp >= 0x30 && cp <= 0x39 }
        }
        return offsets
    }
}

/// The scanners. Each takes the current segmentation (lengths) and returns a finer one.
enum Splitters {
    /// A `std::regex` rule `X` or `X+` where X is a one-code-point class, as llama.cpp's stl fallback applies
    /// it: every match becomes a segment, and so does the text between matches. `maxRun` 1 = `X`, else `X+`.
    static func isolate(_ cpts: [UInt32], _ offsets: [Int], maxRun: Int,
                        _ pred: (UInt32, CodepointFlags) -> Bool) -> [Int] {
        var out: [Int] = []
        out.reserveCapacity(offsets.count * 2)
        var start = 0
        for len in offsets {
            let end = start + len
            var pos = start
            var pending = 0  // unmatched text before the next match
            while pos < end {
                let cp = cpts[pos]
                if pred(cp, UnicodeFlags.flags(cp)) {
                    if pending > 0 { out.append(pending); pending = 0 }
                    var run = 1
                    pos += 1
                    while run < maxRun, pos < end, pred(cpts[pos], UnicodeFlags.flags(cpts[pos])) { run += 1; pos += 1 }
                    out.append(run)
                } else {
                    pending += 1
                    pos += 1
                }
            }
            if pending > 0 { out.append(pending) }
            start = end
        }
        return out
    }

    /// `[0-9][0-9][0-9]`: runs of exactly `count` matching code points, left to right.
    static func isolateExact(_ cpts: [UInt32], _ offsets: [Int], count: Int, _ pred: (UInt32) -> Bool) -> [Int] {
        var out: [Int] = []
        var start = 0
        for len in offsets {
            let end = start + len
            var pos = start
            var pending = 0
            while pos < end {
                var n = 0
                while n < count, pos + n < end, pred(cpts[pos + n]) { n += 1 }
                if n == count {
                    if pending > 0 { out.append(pending); pending = 0 }
                    out.append(count)
                    pos += count
                } else {
                    pending += 1
                    pos += 1
                }
            }
            if pending > 0 { out.append(pending) }
            start = end
        }
        return out
    }

    /// llama.cpp `unicode_regex_split_custom_gpt2`.
    static func gpt2(_ cpts: [UInt32], _ offsets: [Int]) -> [Int] {
        var out: [Int] = []
        out.reserveCapacity(offsets.count + cpts.count / 4)
        let outOfRange: UInt32 = 0xFFFF_FFFF
        var start = 0
        for offset in offsets {
            let ini = start, end = start + offset
            start = end
            @inline(__always) func cpt(_ p: Int) -> UInt32 { (ini <= p && p < end) ? cpts[p] : outOfRange }
            @inline(__always) func flags(_ p: Int) -> CodepointFlags { (ini <= p && p < end) ? UnicodeFlags.flags(cpts[p]) : .outOfRange }
            var prevEnd = ini
            @inline(__always) func addToken(_ e: Int) -> Int {
                let len = e - prevEnd
                if len > 0 { out.append(len) }
                prevEnd = e
                return len
            }
            var pos = ini
            while pos < end {
                let c = cpt(pos)
                let f = flags(pos)
                // 's|'t|'re|'ve|'m|'ll|'d
                if c == 0x27, pos + 1 < end {
                    let n = cpt(pos + 1)
                    if n == 0x73 || n == 0x74 || n == 0x6D || n == 0x64 { pos += addToken(pos + 2); continue }
                    if pos + 2 < end {
                        let nn = cpt(pos + 2)
                        if (n == 0x72 && nn == 0x65) || (n == 0x76 && nn == 0x65) || (n == 0x6C && nn == 0x6C) {
                            pos += addToken(pos + 3); continue
                        }
                    }
                }
                var f2 = c == 0x20 ? flags(pos + 1) : f
                // <space>?\p{L}+
                if f2.isLetter {
                    if c == 0x20 { pos += 1 }
                    while f2.isLetter { pos += 1; f2 = flags(pos) }
                    _ = addToken(pos); continue
                }
                // <space>?\p{N}+
                if f2.isNumber {
                    if c == 0x20 { pos += 1 }
                    while f2.isNumber { pos += 1; f2 = flags(pos) }
                    _ = addToken(pos); continue
                }
                // <space>?[^\s\p{L}\p{N}]+
                if !(f2.isWhitespace || f2.isLetter || f2.isNumber) && f2.isAny {
                    if c == 0x20 { pos += 1 }
                    while !(f2.isWhitespace || f2.isLetter || f2.isNumber) && f2.isAny { pos += 1; f2 = flags(pos) }
                    _ = addToken(pos); continue
                }
                var nws = 0
                while flags(pos + nws).isWhitespace { nws += 1 }
                // \s+(?!\S)
                if nws > 1 && cpt(pos + nws) != outOfRange {
                    pos += nws - 1
                    _ = addToken(pos); continue
                }
                // \s+
                if nws > 0 {
                    pos += nws
                    _ = addToken(pos); continue
                }
                // no match
                pos += 1
                _ = addToken(pos)
            }
        }
        return out
    }

    /// llama.cpp `unicode_regex_split_custom_llama3` (maxDigits 3) and `_qwen2` (maxDigits 1).
    static func llama3(_ cpts: [UInt32], _ offsets: [Int], maxDigits: Int) -> [Int] {
        var out: [Int] = []
        out.reserveCapacity(offsets.count + cpts.count / 4)
        let outOfRange: UInt32 = 0xFFFF_FFFF
        var start = 0
        for offset in offsets {
            let ini = start, end = start + offset
            start = end
            @inline(__always) func cpt(_ p: Int) -> UInt32 { (ini <= p && p < end) ? cpts[p] : outOfRange }
            @inline(__always) func flags(_ p: Int) -> CodepointFlags { (ini <= p && p < end) ? UnicodeFlags.flags(cpts[p]) : .outOfRange }
            var prevEnd = ini
            @inline(__always) func addToken(_ e: Int) -> Int {
                let len = e - prevEnd
                if len > 0 { out.append(len) }
                prevEnd = e
                return len
            }
            var pos = ini
            while pos < end {
                let c = cpt(pos)
                let f = flags(pos)
                // (?i:'s|'t|'re|'ve|'m|'ll|'d)
                if c == 0x27, pos + 1 < end {
                    let n = toLower(cpt(pos + 1))
                    if n == 0x73 || n == 0x74 || n == 0x6D || n == 0x64 { pos += addToken(pos + 2); continue }
                    if pos + 2 < end {
                        let nn = toLower(cpt(pos + 2))
                        if (n == 0x72 && nn == 0x65) || (n == 0x76 && nn == 0x65) || (n == 0x6C && nn == 0x6C) {
                            pos += addToken(pos + 3); continue
                        }
                    }
                }
                // [^\r\n\p{L}\p{N}]?\p{L}+
                if !(c == 0x0D || c == 0x0A || f.isNumber) {
                    if f.isLetter || flags(pos + 1).isLetter {
                        pos += 1
                        while flags(pos).isLetter { pos += 1 }
                        _ = addToken(pos); continue
                    }
                }
                // \p{N}{1,3} (llama3) or \p{N} (qwen2)
                if f.isNumber {
                    if maxDigits == 1 {
                        pos += 1
                        _ = addToken(pos); continue
                    }
                    var i0 = pos
                    while flags(pos).isNumber {
                        pos += 1
                        if pos - i0 >= maxDigits { _ = addToken(pos); i0 = pos }
                    }
                    _ = addToken(pos); continue
                }
                // <space>?[^\s\p{L}\p{N}]+[\r\n]*
                var f2 = c == 0x20 ? flags(pos + 1) : f
                if !(f2.isWhitespace || f2.isLetter || f2.isNumber) && f.isAny {
                    if c == 0x20 { pos += 1 }
                    while !(f2.isWhitespace || f2.isLetter || f2.isNumber) && f2.isAny { pos += 1; f2 = flags(pos) }
                    var c2 = cpt(pos)
                    while c2 == 0x0D || c2 == 0x0A { pos += 1; c2 = cpt(pos) }
                    _ = addToken(pos); continue
                }
                var nws = 0
                var lastEndRN = 0
                while flags(pos + nws).isWhitespace {
                    let c2 = cpt(pos + nws)
                    if c2 == 0x0D || c2 == 0x0A { lastEndRN = pos + nws + 1 }
                    nws += 1
                }
                // \s*[\r\n]+
                if lastEndRN > 0 {
                    pos = lastEndRN
                    _ = addToken(pos); continue
                }
                // \s+(?!\S)
                if nws > 1 && cpt(pos + nws) != outOfRange {
                    pos += nws - 1
                    _ = addToken(pos); continue
                }
                // \s+
                if nws > 0 {
                    pos += nws
                    _ = addToken(pos); continue
                }
                pos += 1
                _ = addToken(pos)
            }
        }
        return out
    }

    /// llama.cpp `unicode_tolower` (simple lowercase mapping); only its result for ASCII s/t/r/v/m/l/d matters,
    /// but non-ASCII code points whose lowercase is one of those (e.g. U+212A KELVIN SIGN → k) must map too.
    static func toLower(_ cp: UInt32) -> UInt32 {
        if cp < 128 { return (cp >= 0x41 && cp <= 0x5A) ? cp + 32 : cp }
        guard let s = Unicode.Scalar(cp) else { return cp }
        let l = s.properties.lowercaseMapping.unicodeScalars
        return l.count == 1 ? l.first!.value : cp
    }
}
