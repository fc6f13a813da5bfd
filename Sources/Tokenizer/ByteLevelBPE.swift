import Synchronization

/// GPT-2's reversible byte ↔ printable-code-point mapping (llama.cpp `unicode_byte_to_utf8_map`).
enum ByteUnicode {
    static let byteToScalar: [UInt32] = {
        var map = [UInt32](repeating: 0, count: 256)
        var assigned = [Bool](repeating: false, count: 256)
        for r in [0x21...0x7E, 0xA1...0xAC, 0xAE...0xFF] { for b in r { map[b] = UInt32(b); assigned[b] = true } }
        var n: UInt32 = 0
        for b in 0..<256 where !assigned[b] { map[b] = 256 + n; n += 1 }
        return map
    }()
    /// UTF-8 of each byte's code point.
    static let byteToUTF8: [[UInt8]] = byteToScalar.map { Array(String(Unicode.Scalar($0)!).utf8) }
    static let scalarToByte: [UInt32: UInt8] = {
        var m: [UInt32: UInt8] = [:]
        for (b, s) in byteToScalar.enumerated() { m[s] = UInt8(b) }
        return m
    }()
}

/// Byte-level BPE as llama.cpp's `llm_tokenizer_bpe_session`: pre-tokenize into words, map each word's
/// bytes to GPT-2 code points, merge adjacent symbols by lowest merge rank (ties: leftmost), then map
/// each final symbol to a token, or its bytes one by one when the symbol is not a token.
final class ByteLevelBPE: @unchecked Sendable {
    private let pre: PreTokenizer.Config
    /// Interned byte strings: all token texts (id = token id, last duplicate wins, as token_to_id) and
    /// every merge operand/result; ids ≥ nVocab are strings that are not tokens.
    private var intern: [ByteKey: Int32] = [:]
    private let nVocab: Int32
    /// (left id, right id) → (rank, merged id). First occurrence of a pair wins (std::map::emplace).
    private var merges: [UInt64: (rank: Int32, result: Int32)] = [:]

    /// Word → ids cache, shared by threads encoding at once.
    private let cache = Mutex<[ByteKey: [Int32]]>([:])
    private let cacheLimit = 100_000

    init(tokens: [[UInt8]], merges mergeLines: [String], pre: PreTokenizer.Config) {
        self.pre = pre
        nVocab = Int32(tokens.count)
        intern.reserveCapacity(tokens.count + mergeLines.count)
        for (i, t) in tokens.enumerated() { intern[ByteKey(t)] = Int32(i) }
        var next = nVocab
        func id(_ b: [UInt8]) -> Int32 {
            let k = ByteKey(b)
            if let v = intern[k] { return v }
            intern[k] = next
            next += 1
            return next - 1
        }
        merges.reserveCapacity(mergeLines.count)
        for (rank, line) in mergeLines.enumerated() {
            let b = Array(line.utf8)
            // word.find(' ', 1): split at the first space after position 0
            var first: [UInt8] = [], second: [UInt8] = []
            if b.count > 1, let sp = b[1...].firstIndex(of: 0x20) {
                first = Array(b[..<sp])
                second = Array(b[(sp + 1)...])
            }
            let l = id(first), r = id(second)
            let key = UInt64(UInt32(bitPattern: l)) << 32 | UInt64(UInt32(bitPattern: r))
            if merges[key] == nil { merges[key] = (Int32(rank), id(first + second)) }
        }
    }

    /// Token id of an exact byte string, if it is a token.
    @inline(__always) private func token(_ k: ByteKey) -> Int32? {
        if let v = intern[k], v < nVocab { return v }
        return nil
    }

    /// Tokenizes one raw-text fragment (no special tokens in it).
    func encode(_ text: ArraySlice<UInt8>, into out: inout [Int32]) {
        guard !text.isEmpty else { return }
        let s = String(decoding: text, as: UTF8.self)
        let cpts = s.unicodeScalars.map(\.value)
        let segs = pre.kind.segment(cpts)
        // UTF-8 byte offsets of code point boundaries
        var bytes: [UInt8] = []
        bytes.reserveCapacity(text.count)
        var cpStart = 0
        for len in segs {
            bytes.removeAll(keepingCapacity: true)
            for i in cpStart..<cpStart + len { appendUTF8(cpts[i], to: &bytes) }
            cpStart += len
            encodeWord(bytes, into: &out)
        }
    }

    private func encodeWord(_ raw: [UInt8], into out: inout [Int32]) {
        let key = ByteKey(raw)
        if let hit = cache.withLock({ $0[key] }) { out.append(contentsOf: hit); return }
        let ids = bpe(raw)
        cache.withLock { cache in
            if cache.count >= cacheLimit { cache.removeAll(keepingCapacity: true) }
            cache[key] = ids
        }
        out.append(contentsOf: ids)
    }

    private struct Symbol {
        var id: Int32      // interned id of the symbol's text, -1 if not interned
        var start: Int     // byte range in the encoded word
        var n: Int
        var prev: Int
        var next: Int
    }

    private struct Bigram {
        var left: Int, right: Int, rank: Int32, leftID: Int32, rightID: Int32, result: Int32
    }

    /// BPE of one word (raw UTF-8 bytes).
    private func bpe(_ raw: [UInt8]) -> [Int32] {
        // byte-encode
        var enc: [UInt8] = []
        enc.reserveCapacity(raw.count * 2)
        for b in raw { enc.append(contentsOf: ByteUnicode.byteToUTF8[Int(b)]) }

        var symbols: [Symbol] = []
        if pre.ignoreMerges, let t = token(ByteKey(enc)) {
            return [t]
        }
        var off = 0
        var index = 0
        while off < enc.count {
            let n = min(enc.count - off, utf8Length(enc[off]))
            let id = intern[ByteKey(enc[off..<off + n])] ?? -1
            symbols.append(Symbol(id: id, start: off, n: n, prev: index - 1, next: off + n == enc.count ? -1 : index + 1))
            off += n
            index += 1
        }

        var queue = StdPriorityQueue<Bigram> { l, r in l.rank > r.rank || (l.rank == r.rank && l.left > r.left) }
        func addBigram(_ left: Int, _ right: Int) {
            if left == -1 || right == -1 { return }
            let l = symbols[left].id, r = symbols[right].id
            if l < 0 || r < 0 { return }
            let key = UInt64(UInt32(bitPattern: l)) << 32 | UInt64(UInt32(bitPattern: r))
            guard let m = merges[key] else { return }
            queue.push(Bigram(left: left, right: right, rank: m.rank, leftID: l, rightID: r, result: m.result))
        }
        if symbols.count > 1 { for i in 1..<symbols.count { addBigram(i - 1, i) } }

        while !queue.isEmpty {
            let bg = queue.pop()
            let ls = symbols[bg.left], rs = symbols[bg.right]
            if ls.n == 0 || rs.n == 0 { continue }
            if ls.id != bg.leftID || rs.id != bg.rightID || ls.start + ls.n != rs.start { continue }  // outdated
            symbols[bg.left].n += rs.n
            symbols[bg.left].id = bg.result
            symbols[bg.right].n = 0
            symbols[bg.left].next = rs.next
            if rs.next >= 0 { symbols[rs.next].prev = bg.left }
            addBigram(symbols[bg.left].prev, bg.left)
            addBigram(bg.left, symbols[bg.left].next)
        }

        var out: [Int32] = []
        var i = symbols.isEmpty ? -1 : 0
        while i != -1 {
            let sym = symbols[i]
            if sym.n > 0 {
                if sym.id >= 0 && sym.id < nVocab {
                    out.append(sym.id)
                } else {
                    // not a token: each byte of the encoded text as a one-byte string
                    for b in enc[sym.start..<sym.start + sym.n] {
                        if let t = token(ByteKey([b])) { out.append(t) }
                    }
                }
            }
            i = sym.next
        }
        return out
    }
}

@inline(__always) func appendUTF8(_ cp: UInt32, to out: inout [UInt8]) {
    switch cp {
    case 0..<0x80: out.append(UInt8(cp))
    case 0x80..<0x800:
        out.append(0xC0 | UInt8(cp >> 6)); out.append(0x80 | UInt8(cp & 0x3F))
    case 0x800..<0x10000:
        out.append(0xE0 | UInt8(cp >> 12)); out.append(0x80 | UInt8((cp >> 6) & 0x3F)); out.append(0x80 | UInt8(cp & 0x3F))
    default:
        out.append(0xF0 | UInt8(cp >> 18)); out.append(0x80 | UInt8((cp >> 12) & 0x3F))
        out.append(0x80 | UInt8((cp >> 6) & 0x3F)); out.append(0x80 | UInt8(cp & 0x3F))
    }
}
