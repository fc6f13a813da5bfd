#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Writes a GGUF v3 file: metadata (every value type, nested arrays), the tensor table, and the tensor
/// data, each tensor starting at a multiple of the alignment (`general.alignment`, default 32).
///
/// Tensor data is streamed: `addTensor(...fill:)` only records how to produce the bytes, and `write(to:)`
/// calls each fill closure with one reusable buffer of whole rows at a time (at most `chunkBytes`, or one
/// row when a row is larger), so a multi-gigabyte file is written without holding it in memory.
///
///     let w = GGUFWriter()
///     w.set("general.architecture", .string("llama"))
///     try w.addTensor(name: "x", shape: [64, 2], type: .f32) { chunk, rows in /* fill chunk */ }
///     try w.write(to: "/tmp/x.gguf")
public final class GGUFWriter {
    /// Fills `chunk` (exactly `rows.count * rowBytes` bytes, zeroed) with the tensor rows `rows`
    /// (row `r` is the `r`-th run of `shape[0]` elements). Called in increasing row order, once per row.
    public typealias Fill = (_ chunk: UnsafeMutableRawBufferPointer, _ rows: Range<Int>) throws -> Void

    public static let version: UInt32 = 3

    /// Largest buffer handed to a fill closure (unless one row is larger).
    public var chunkBytes: Int = 8 << 20

    public private(set) var metadataKeys: [String] = []
    public private(set) var metadata: [String: GGUFValue] = [:]

    private struct PendingTensor {
        var name: String
        var shape: [Int]
        var type: GGMLType
        var byteCount: Int
        var fill: Fill
    }
    private var pending: [PendingTensor] = []
    private var tensorNames = Set<String>()

    /// `alignment` other than 32 is recorded as `general.alignment` (uint32); it must be a power of two.
    public init(alignment: Int = GGUFFile.defaultAlignment) {
        if alignment != GGUFFile.defaultAlignment {
            set("general.alignment", .uint32(UInt32(truncatingIfNeeded: alignment)))
        }
    }

    // MARK: metadata

    /// Sets a metadata value; a key set twice keeps its first position and takes the last value.
    public func set(_ key: String, _ value: GGUFValue) {
        if metadata.updateValue(value, forKey: key) == nil { metadataKeys.append(key) }
    }

    public func set(_ key: String, _ value: String) { set(key, .string(value)) }
    public func set(_ key: String, _ value: Bool) { set(key, .bool(value)) }
    public func set(_ key: String, uint32 value: UInt32) { set(key, .uint32(value)) }
    public func set(_ key: String, float32 value: Float) { set(key, .float32(value)) }
    public func set(_ key: String, strings: [String]) { set(key, .array(elementType: .string, strings.map(GGUFValue.string))) }
    public func set(_ key: String, float32s: [Float]) { set(key, .array(elementType: .float32, float32s.map(GGUFValue.float32))) }
    public func set(_ key: String, int32s: [Int32]) { set(key, .array(elementType: .int32, int32s.map(GGUFValue.int32))) }

    /// The alignment the file will use (from `general.alignment` when set).
    public func alignment() throws(GGUFError) -> Int {
        guard let a = metadata["general.alignment"] else { return GGUFFile.defaultAlignment }
        guard case .uint32(let v) = a else { throw GGUFError("general.alignment must be a uint32") }
        guard v > 0, v & (v - 1) == 0, v <= 1 << 20 else {
            throw GGUFError("general.alignment \(v) is not a power of two in 1...1048576")
        }
        return Int(v)
    }

    // MARK: tensors

    /// Adds a tensor whose bytes `fill` produces at write time. `shape` is innermost first (ggml's ne):
    /// `shape[0]` is the row length and must be a multiple of `type.blockSize`.
    public func addTensor(name: String, shape: [Int], type: GGMLType, fill: @escaping Fill) throws(GGUFError) {
        guard !name.isEmpty else { throw GGUFError("tensor name is empty") }
        guard !tensorNames.contains(name) else { throw GGUFError("duplicate tensor name '\(name)'") }
        guard (1...GGUFFile.maxDimensions).contains(shape.count) else {
            throw GGUFError("tensor '\(name)' has \(shape.count) dimensions (1...\(GGUFFile.maxDimensions) allowed)")
        }
        guard shape.allSatisfy({ $0 > 0 }) else { throw GGUFError("tensor '\(name)' has a dimension <= 0: \(shape)") }
        guard let rowBytes = type.rowBytes(shape[0]) else {
            throw GGUFError("tensor '\(name)' row length \(shape[0]) is not a multiple of \(type)'s block size \(type.blockSize)")
        }
        var bytes = rowBytes
        for d in shape.dropFirst() {
            let (p, o) = bytes.multipliedReportingOverflow(by: d)
            guard !o else { throw GGUFError("tensor '\(name)' is too large: \(shape)") }
            bytes = p
        }
        tensorNames.insert(name)
        pending.append(PendingTensor(name: name, shape: shape, type: type, byteCount: bytes, fill: fill))
    }

    /// Adds a tensor from bytes in memory (`data.count` must equal the tensor's byte size).
    public func addTensor(name: String, shape: [Int], type: GGMLType, data: [UInt8]) throws(GGUFError) {
        try addTensor(name: name, shape: shape, type: type) { chunk, rows in
            let rowBytes = chunk.count / max(rows.count, 1)
            data.withUnsafeBytes { src in
                chunk.copyMemory(from: UnsafeRawBufferPointer(rebasing: src[rows.lowerBound * rowBytes ..< rows.upperBound * rowBytes]))
            }
        }
        guard data.count == pending.last!.byteCount else {
            let expected = pending.removeLast().byteCount
            tensorNames.remove(name)
            throw GGUFError("tensor '\(name)' needs \(expected) bytes, got \(data.count)")
        }
    }

    /// The tensor table as it will be written (offsets relative to the data section).
    public func tensorInfos() throws(GGUFError) -> [GGUFTensorInfo] {
        let align = try alignment()
        var offset = 0
        var infos: [GGUFTensorInfo] = []
        infos.reserveCapacity(pending.count)
        for t in pending {
            infos.append(GGUFTensorInfo(name: t.name, shape: t.shape, type: t.type, offset: offset, byteCount: t.byteCount))
            offset = Self.padded(offset + t.byteCount, align)
        }
        return infos
    }

    /// Size of the data section (every tensor padded to the alignment).
    public func dataSectionSize() throws(GGUFError) -> Int {
        let align = try alignment()
        return pending.reduce(0) { Self.padded($0 + $1.byteCount, align) }
    }

    /// Total size of the file `write(to:)` would produce, computed without producing tensor data.
    public func fileSize() throws(GGUFError) -> Int {
        Self.padded(try header().count, try alignment()) + (try dataSectionSize())
    }

    // MARK: writing

    /// The header bytes: magic, version, counts, metadata and tensor table (without the padding after it).
    public func header() throws(GGUFError) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(4096)
        put(&out, GGUFFile.magic)
        put(&out, Self.version)
        put(&out, UInt64(pending.count))
        put(&out, UInt64(metadataKeys.count))
        for key in metadataKeys {
            let value = metadata[key]!
            guard !key.isEmpty else { throw GGUFError("metadata key is empty") }
            putString(&out, key)
            put(&out, value.type.rawValue)
            try putValue(&out, value, key: key)
        }
        for t in try tensorInfos() {
            putString(&out, t.name)
            put(&out, UInt32(t.shape.count))
            for d in t.shape { put(&out, UInt64(d)) }
            put(&out, t.type.rawValue)
            put(&out, UInt64(t.offset))
        }
        return out
    }

    /// The whole file in memory (for tests and small files; big files go through `write(to:)`).
    public func bytes() throws -> [UInt8] {
        var out = try header()
        let align = try alignment()
        out.append(contentsOf: repeatElement(0, count: Self.padded(out.count, align) - out.count))
        try produceData { chunk in out.append(contentsOf: chunk) }
        return out
    }

    /// Writes the file, streaming tensor data through one reusable buffer. The file is written under a
    /// temporary name next to `path` and renamed into place when complete.
    public func write(to path: String) throws {
        let header = try header()
        let align = try alignment()
        let tmp = path + ".tmp-\(getpid())"
        let fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        guard fd >= 0 else { throw GGUFError("cannot create \(tmp): \(String(cString: strerror(errno)))") }
        var ok = false
        defer {
            if !ok { close(fd); unlink(tmp) }
        }
        var written = 0
        func emit(_ bytes: UnsafeRawBufferPointer) throws {
            var p = bytes.baseAddress
            var left = bytes.count
            while left > 0 {
                let n = posixWrite(fd, p!, left)
                if n < 0 {
                    if errno == EINTR { continue }
                    throw GGUFError("cannot write \(tmp): \(String(cString: strerror(errno)))")
                }
                p = p! + n
                left -= n
                written += n
            }
        }
        var head = header
        head.append(contentsOf: repeatElement(0, count: Self.padded(head.count, align) - head.count))
        try head.withUnsafeBytes { buf in try emit(buf) }
        try produceData(emit)
        guard close(fd) == 0 else {
            ok = true  // fd is closed; only the temporary file remains to remove
            unlink(tmp)
            throw GGUFError("cannot close \(tmp): \(String(cString: strerror(errno)))")
        }
        ok = true
        guard rename(tmp, path) == 0 else {
            unlink(tmp)
            throw GGUFError("cannot rename \(tmp) to \(path): \(String(cString: strerror(errno)))")
        }
    }

    /// Runs every fill closure in order, handing `sink` the data section piece by piece (padding included).
    private func produceData(_ sink: (UnsafeRawBufferPointer) throws -> Void) throws {
        let align = try alignment()
        let maxRowBytes = pending.map { $0.byteCount / Self.rows($0.shape) }.max() ?? 0
        let capacity = max(chunkBytes, maxRowBytes, align)
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: capacity, alignment: 64)
        defer { buffer.deallocate() }
        var position = 0
        for t in pending {
            let rowCount = Self.rows(t.shape)
            let rowBytes = t.byteCount / rowCount
            let rowsPerChunk = max(1, capacity / rowBytes)
            var row = 0
            while row < rowCount {
                let rows = row ..< min(rowCount, row + rowsPerChunk)
                let chunk = UnsafeMutableRawBufferPointer(rebasing: buffer[0 ..< rows.count * rowBytes])
                chunk.initializeMemory(as: UInt8.self, repeating: 0)
                do {
                    try t.fill(chunk, rows)
                } catch let e as GGUFError {
                    throw e
                } catch {
                    throw GGUFError("filling tensor '\(t.name)' failed: \(error)")
                }
                try sink(UnsafeRawBufferPointer(chunk))
                row = rows.upperBound
            }
            position += t.byteCount
            let pad = Self.padded(position, align) - position
            if pad > 0 {
                let zeros = UnsafeMutableRawBufferPointer(rebasing: buffer[0 ..< pad])
                zeros.initializeMemory(as: UInt8.self, repeating: 0)
                try sink(UnsafeRawBufferPointer(zeros))
                position += pad
            }
        }
    }

    // MARK: encoding

    static func padded(_ n: Int, _ align: Int) -> Int { (n + align - 1) / align * align }
    static func rows(_ shape: [Int]) -> Int { shape.dropFirst().reduce(1, *) }

    private func put<T: FixedWidthInteger>(_ out: inout [UInt8], _ v: T) {
        withUnsafeBytes(of: v.littleEndian) { out.append(contentsOf: $0) }
    }

    private func putString(_ out: inout [UInt8], _ s: String) {
        var s = s
        s.withUTF8 { utf8 in
            put(&out, UInt64(utf8.count))
            out.append(contentsOf: utf8)
        }
    }

    private func putValue(_ out: inout [UInt8], _ value: GGUFValue, key: String) throws(GGUFError) {
        switch value {
        case .uint8(let v): put(&out, v)
        case .int8(let v): put(&out, v)
        case .uint16(let v): put(&out, v)
        case .int16(let v): put(&out, v)
        case .uint32(let v): put(&out, v)
        case .int32(let v): put(&out, v)
        case .uint64(let v): put(&out, v)
        case .int64(let v): put(&out, v)
        case .float32(let v): put(&out, v.bitPattern)
        case .float64(let v): put(&out, v.bitPattern)
        case .bool(let v): put(&out, UInt8(v ? 1 : 0))
        case .string(let s): putString(&out, s)
        case .array(let elementType, let values):
            put(&out, elementType.rawValue)
            put(&out, UInt64(values.count))
            for v in values {
                guard v.type == elementType else {
                    throw GGUFError("metadata '\(key)': array of \(elementType) holds a \(v.type) value")
                }
                try putValue(&out, v, key: key)
            }
        }
    }
}

/// POSIX write(2), named apart from `GGUFWriter.write(to:)`.
private func posixWrite(_ fd: Int32, _ p: UnsafeRawPointer, _ n: Int) -> Int {
    write(fd, p, n)
}
