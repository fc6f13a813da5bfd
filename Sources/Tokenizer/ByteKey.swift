/// A byte string used as a dictionary key. Token texts are compared as raw bytes, as llama.cpp's
/// `std::string` keys are: Swift `String` equality is canonical equivalence, which would merge
/// distinct tokens such as "é" and "e\u{301}".
struct ByteKey: Hashable, Sendable {
    var bytes: [UInt8]
    init(_ bytes: [UInt8]) { self.bytes = bytes }
    init<S: Sequence>(_ s: S) where S.Element == UInt8 { bytes = Array(s) }

    static func == (a: ByteKey, b: ByteKey) -> Bool { a.bytes == b.bytes }
    func hash(into h: inout Hasher) {
        bytes.withUnsafeBytes { h.combine(bytes: $0) }
    }
}

/// Max-heap with exactly the push/pop order of libstdc++'s `std::priority_queue` (push_heap / pop_heap
/// with __adjust_heap), so that ties pop in the same order as in llama.cpp.
struct StdPriorityQueue<T> {
    private(set) var c: [T] = []
    /// `less(a, b)`: a has lower priority than b (the std comparator).
    let less: (T, T) -> Bool

    init(less: @escaping (T, T) -> Bool) { self.less = less }

    var isEmpty: Bool { c.isEmpty }

    mutating func push(_ v: T) {
        c.append(v)
        pushHeap(hole: c.count - 1, top: 0, value: v)
    }

    mutating func pop() -> T {
        let top = c[0]
        let n = c.count
        if n > 1 {
            let value = c[n - 1]
            c[n - 1] = c[0]
            adjustHeap(hole: 0, len: n - 1, value: value)
        }
        c.removeLast()
        return top
    }

    private mutating func pushHeap(hole h: Int, top: Int, value: T) {
        var hole = h
        var parent = (hole - 1) / 2
        while hole > top && less(c[parent], value) {
            c[hole] = c[parent]
            hole = parent
            parent = (hole - 1) / 2
        }
        c[hole] = value
    }

    private mutating func adjustHeap(hole h: Int, len: Int, value: T) {
        let top = h
        var hole = h
        var second = h
        while second < (len - 1) / 2 {
            second = 2 * (second + 1)
            if less(c[second], c[second - 1]) { second -= 1 }
            c[hole] = c[second]
            hole = second
        }
        if len & 1 == 0 && second == (len - 2) / 2 {
            second = 2 * (second + 1)
            c[hole] = c[second - 1]
            hole = second - 1
        }
        pushHeap(hole: hole, top: top, value: value)
    }
}

/// Length of a UTF-8 sequence from its first byte, as llama.cpp's `unicode_len_utf8`.
@inline(__always) func utf8Length(_ b: UInt8) -> Int {
    switch b >> 4 {
    case 0xC, 0xD: 2
    case 0xE: 3
    case 0xF: 4
    default: 1
    }
}
