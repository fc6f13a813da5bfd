/// llama.cpp token attributes (`llama_token_attr`).
public struct TokenAttributes: OptionSet, Sendable, Hashable {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    public static let unknown = TokenAttributes(rawValue: 1 << 0)
    public static let unused = TokenAttributes(rawValue: 1 << 1)
    public static let normal = TokenAttributes(rawValue: 1 << 2)
    public static let control = TokenAttributes(rawValue: 1 << 3)
    public static let userDefined = TokenAttributes(rawValue: 1 << 4)
    public static let byte = TokenAttributes(rawValue: 1 << 5)

    /// From GGUF `tokenizer.ggml.token_type` (1 normal, 2 unknown, 3 control, 4 user defined, 5 unused, 6 byte).
    init(tokenType: Int) {
        switch tokenType {
        case 1: self = .normal
        case 2: self = .unknown
        case 3: self = .control
        case 4: self = .userDefined
        case 5: self = .unused
        case 6: self = .byte
        default: self = []
        }
    }
}

/// A piece of the input after special-token partitioning: raw text (a byte range) or a token.
enum Fragment {
    case text(Range<Int>)
    case token(Int32)
}

/// llama.cpp's `tokenizer_st_partition`: for each special token (control, user-defined, unknown),
/// longest text first, cut every occurrence out of the remaining raw-text fragments. With
/// `parseSpecial` false, control and unknown tokens are skipped but user-defined tokens still match.
struct SpecialTokenMatcher: Sendable {
    /// Special token ids in matching order (text length descending; equal lengths by id).
    let ordered: [Int32]
    let texts: [[UInt8]]          // texts of `ordered`
    let skipUnlessParseSpecial: [Bool]
    /// Trie over all special texts, to find which of them occur in a given input at all.
    private var trieChildren: [UInt64: Int32] = [:]
    private var trieTerminal: [Int32: [Int]] = [:]   // node → indexes into `ordered`

    init(tokens: [[UInt8]], attrs: [TokenAttributes]) {
        var ids: [Int32] = []
        for i in 0..<tokens.count where !attrs[i].isDisjoint(with: [.control, .userDefined, .unknown]) {
            ids.append(Int32(i))
        }
        ids.sort { a, b in
            let la = tokens[Int(a)].count, lb = tokens[Int(b)].count
            return la != lb ? la > lb : a < b
        }
        ordered = ids
        texts = ids.map { tokens[Int($0)] }
        skipUnlessParseSpecial = ids.map { !attrs[Int($0)].isDisjoint(with: [.control, .unknown]) }
        var nodes: Int32 = 1
        for (k, t) in texts.enumerated() where !t.isEmpty {
            var node: Int32 = 0
            for b in t {
                let key = UInt64(UInt32(node)) << 8 | UInt64(b)
                if let c = trieChildren[key] { node = c } else { trieChildren[key] = nodes; node = nodes; nodes += 1 }
            }
            trieTerminal[node, default: []].append(k)
        }
    }

    func partition(_ text: [UInt8], parseSpecial: Bool) -> [Fragment] {
        guard !text.isEmpty else { return [] }
        // which special tokens occur anywhere in the text (a token absent from the whole text cannot occur in
        // any fragment of it)
        var present = Set<Int>()
        for start in 0..<text.count {
            var node: Int32 = 0
            var i = start
            while i < text.count, let c = trieChildren[UInt64(UInt32(node)) << 8 | UInt64(text[i])] {
                node = c
                if let ks = trieTerminal[node] { present.formUnion(ks) }
                i += 1
            }
        }
        var buffer: [Fragment] = [.text(0..<text.count)]
        if present.isEmpty { return buffer }
        for k in present.sorted() {
            if !parseSpecial && skipUnlessParseSpecial[k] { continue }
            let needle = texts[k]
            let id = ordered[k]
            var out: [Fragment] = []
            out.reserveCapacity(buffer.count + 4)
            for frag in buffer {
                guard case .text(let range) = frag else { out.append(frag); continue }
                var base = range.lowerBound
                let end = range.upperBound
                while true {
                    guard let m = find(needle, in: text, from: base, to: end) else {
                        if base < end { out.append(.text(base..<end)) }
                        break
                    }
                    if m > base { out.append(.text(base..<m)) }
                    out.append(.token(id))
                    base = m + needle.count
                    if base >= end { break }
                }
            }
            buffer = out
        }
        return buffer
    }

    private func find(_ needle: [UInt8], in hay: [UInt8], from: Int, to: Int) -> Int? {
        let n = needle.count
        guard n > 0, to - from >= n else { return nil }
        let first = needle[0]
        var i = from
        let last = to - n
        while i <= last {
            if hay[i] == first {
                var j = 1
                while j < n && hay[i + j] == needle[j] { j += 1 }
                if j == n { return i }
            }
            i += 1
        }
        return nil
    }
}
