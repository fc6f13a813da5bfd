/// Bounds-checked little-endian reader over a memory-mapped region. Every read checks the
/// remaining length first, so a truncated or hostile file gives an error, never a fault.
struct ByteReader {
    let base: UnsafeRawPointer
    let count: Int
    private(set) var position: Int = 0

    init(base: UnsafeRawPointer, count: Int) {
        self.base = base
        self.count = count
    }

    var remaining: Int { count - position }

    mutating func need(_ n: Int, _ what: @autoclosure () -> String) throws(GGUFError) {
        if n < 0 || n > remaining {
            throw GGUFError("truncated file: \(what()) needs \(n) bytes at offset \(position), only \(remaining) left")
        }
    }

    mutating func read<T: FixedWidthInteger>(_: T.Type, _ what: @autoclosure () -> String) throws(GGUFError) -> T {
        try need(MemoryLayout<T>.size, what())
        let v = base.loadUnaligned(fromByteOffset: position, as: T.self)
        position += MemoryLayout<T>.size
        return T(littleEndian: v)
    }

    mutating func readFloat(_ what: @autoclosure () -> String) throws(GGUFError) -> Float {
        Float(bitPattern: try read(UInt32.self, what()))
    }

    mutating func readDouble(_ what: @autoclosure () -> String) throws(GGUFError) -> Double {
        Double(bitPattern: try read(UInt64.self, what()))
    }

    /// A count or length field; rejected when it exceeds what the rest of the file could hold
    /// at `minBytesEach` bytes per item (this bounds every allocation by the file size).
    mutating func readCount(_ what: @autoclosure () -> String, minBytesEach: Int) throws(GGUFError) -> Int {
        let raw = try read(UInt64.self, what())
        let limit = UInt64(remaining / max(minBytesEach, 1))
        if raw > limit {
            throw GGUFError("\(what()) is \(raw), more than the \(remaining) bytes left in the file can hold (at offset \(position - 8))")
        }
        return Int(raw)
    }

    mutating func readString(_ what: @autoclosure () -> String) throws(GGUFError) -> String {
        let length = try readCount("length of \(what())", minBytesEach: 1)
        let bytes = UnsafeRawBufferPointer(start: base + position, count: length)
        guard let s = String(validating: bytes, as: UTF8.self) else {
            throw GGUFError("\(what()) is not valid UTF-8 (at offset \(position))")
        }
        position += length
        return s
    }
}
