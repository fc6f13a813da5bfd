/// SentencePiece-style tokenization as llama.cpp's `llm_tokenizer_spm_session`: split into UTF-8
/// characters, repeatedly merge the adjacent pair whose concatenation is the token of highest score
/// (ties: leftmost), then emit each final symbol as its token or, failing that, as byte tokens `<0xXX>`.
/// Whitespace escaping (" " → "▁") and the optional leading space are done by the caller.
struct SentencePiece: Sendable {
    let tokenToID: [ByteKey: Int32]
    let scores: [Float]
    /// byte → token (`<0xXX>`, else the one-byte string), nil when neither exists.
    let byteTokens: [Int32?]

    init(tokenToID: [ByteKey: Int32], scores: [Float]) {
        self.tokenToID = tokenToID
        self.scores = scores
        let hex = Array("0123456789ABCDEF".utf8)
        byteTokens = (0..<256).map { b in
            let name: [UInt8] = [0x3C, 0x30, 0x78, hex[b >> 4], hex[b & 15], 0x3E]  // <0xXX>
            return tokenToID[ByteKey(name)] ?? tokenToID[ByteKey([UInt8(b)])]
        }
    }

    private struct Symbol { var start: Int; var n: Int; var prev: Int; var next: Int }
    private struct Bigram { var left: Int; var right: Int; var score: Float; var size: Int }

    func encode(_ text: [UInt8], into out: inout [Int32]) {
        var symbols: [Symbol] = []
        symbols.reserveCapacity(text.count)
        var off = 0, index = 0
        while off < text.count {
            let n = min(utf8Length(text[off]), text.count - off)
            symbols.append(Symbol(start: off, n: n, prev: index - 1, next: off + n == text.count ? -1 : index + 1))
            off += n
            index += 1
        }
        var queue = StdPriorityQueue<Bigram> { l, r in l.score < r.score || (l.score == r.score && l.left > r.left) }
        func tryAdd(_ left: Int, _ right: Int) {
            if left == -1 || right == -1 { return }
            let s = symbols[left].start
            let size = symbols[left].n + symbols[right].n
            guard let tok = tokenToID[ByteKey(text[s..<s + size])], Int(tok) < scores.count else { return }
            queue.push(Bigram(left: left, right: right, score: scores[Int(tok)], size: size))
        }
        if symbols.count > 1 { for i in 1..<symbols.count { tryAdd(i - 1, i) } }
        while !queue.isEmpty {
            let bg = queue.pop()
            let l = symbols[bg.left], r = symbols[bg.right]
            if l.n == 0 || r.n == 0 || l.n + r.n != bg.size { continue }
            symbols[bg.left].n += r.n
            symbols[bg.right].n = 0
            symbols[bg.left].next = r.next
            if r.next >= 0 { symbols[r.next].prev = bg.left }
            tryAdd(symbols[bg.left].prev, bg.left)
            tryAdd(bg.left, symbols[bg.left].next)
        }
        var i = symbols.isEmpty ? -1 : 0
        while i != -1 {
            let s = symbols[i]
            let slice = text[s.start..<s.start + s.n]
            if let t = tokenToID[ByteKey(slice)] {
                out.append(t)
            } else {
                // llama.cpp's resegment: a non-token symbol is never a merge result, so it goes out as bytes
                for b in slice { if let t = byteTokens[Int(b)] { out.append(t) } }
            }
            i = s.next
        }
    }
}
