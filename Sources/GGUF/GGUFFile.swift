#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A memory-mapped GGUF v2/v3 file: metadata, tensor table and tensor data.
///
/// Everything is validated against the file size while parsing: counts and lengths are bounded by
/// the bytes that remain, tensor shapes and types must be consistent, and every tensor's data must lie
/// inside the data section without overlapping another. Tensor data is never copied: `data(for:)`
/// points into the mapping, so a process touches only the pages of the tensors it uses.
public final class GGUFFile: @unchecked Sendable {
    public static let magic: UInt32 = 0x4655_4747  // "GGUF" little-endian
    public static let defaultAlignment = 32
    /// ggml's GGML_MAX_DIMS.
    public static let maxDimensions = 4

    public let path: String
    public let version: UInt32
    /// Metadata keys in file order.
    public let metadataKeys: [String]
    public let metadata: [String: GGUFValue]
    /// Tensor table in file order.
    public let tensors: [GGUFTensorInfo]
    public let alignment: Int
    /// Absolute file offset of the data section.
    public let dataOffset: Int
    public let fileSize: Int

    private let mapping: UnsafeMutableRawPointer?
    private let tensorIndex: [String: Int]

    /// Opens and validates `path`. Throws a one-line `GGUFError` on any problem.
    public init(path: String) throws(GGUFError) {
        self.path = path
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else { throw GGUFError("cannot open \(path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw GGUFError("cannot stat \(path)") }
        guard (st.st_mode & S_IFMT) == S_IFREG else { throw GGUFError("\(path) is not a regular file") }
        let size = Int(st.st_size)
        guard size >= 24 else { throw GGUFError("\(path) is too small to be a GGUF file (\(size) bytes)") }
        guard let map = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0), map != MAP_FAILED else {
            throw GGUFError("cannot mmap \(path): \(String(cString: strerror(errno)))")
        }
        self.mapping = map
        self.fileSize = size
        do {
            let parsed = try Parser.parse(base: UnsafeRawPointer(map), size: size)
            version = parsed.version
            metadataKeys = parsed.keys
            metadata = parsed.metadata
            tensors = parsed.tensors
            alignment = parsed.alignment
            dataOffset = parsed.dataOffset
            var index: [String: Int] = [:]
            for (i, t) in parsed.tensors.enumerated() { index[t.name] = i }
            tensorIndex = index
        } catch {
            munmap(map, size)
            throw GGUFError("\(path): \(error.message)")
        }
    }

    deinit {
        if let mapping { munmap(mapping, fileSize) }
    }

    public func tensor(named name: String) -> GGUFTensorInfo? {
        tensorIndex[name].map { tensors[$0] }
    }

    /// The tensor's bytes inside the mapping (valid while this object lives).
    public func data(for tensor: GGUFTensorInfo) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(start: UnsafeRawPointer(mapping!) + dataOffset + tensor.offset, count: tensor.byteCount)
    }

    /// Bytes [range) of the file (valid while this object lives); `range` must lie inside the file.
    public func bytes(_ range: Range<Int>) -> UnsafeRawBufferPointer {
        precondition(range.lowerBound >= 0 && range.upperBound <= fileSize)
        return UnsafeRawBufferPointer(start: UnsafeRawPointer(mapping!) + range.lowerBound, count: range.count)
    }

    /// Identifies the model across hosts without reading the weights: FNV-1a 64 over the header
    /// (metadata and tensor table, everything before the data section) and the file size. Two files with
    /// the same digest have the same tensors at the same offsets.
    public var digest: UInt64 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in bytes(0..<dataOffset) { h = (h ^ UInt64(b)) &* 0x100_0000_01b3 }
        for i in 0..<8 { h = (h ^ UInt64((fileSize >> (8 * i)) & 0xff)) &* 0x100_0000_01b3 }
        return h == 0 ? 1 : h
    }

    /// File byte ranges a shard of `layers` (of `layerCount`) needs: the header, its layers' tensors,
    /// the embedding (first shard, or a last shard with a tied head), the head (last shard) and any
    /// tensor outside the layers (e.g. rope factors). Sorted, not merged.
    public func byteRanges(layers: Range<Int>, layerCount: Int) -> [Range<Int>] {
        let first = layers.lowerBound == 0, last = layers.upperBound == layerCount
        let tied = tensor(named: "output.weight") == nil
        var ranges = [0..<dataOffset]
        for t in tensors {
            let needed: Bool
            if let n = LayerMemory.layerIndex(of: t.name) {
                needed = layers.contains(n)
            } else if t.name.hasPrefix("token_embd.") {
                needed = first || (last && tied)
            } else if t.name.hasPrefix("output.") || t.name.hasPrefix("output_norm.") {
                needed = last
            } else {
                needed = true
            }
            if needed { ranges.append((dataOffset + t.offset)..<(dataOffset + t.offset + t.byteCount)) }
        }
        return ranges.sorted { $0.lowerBound < $1.lowerBound }
    }

    /// Asks the kernel to read a tensor's pages ahead (used while loading a shard's weights).
    public func prefetch(_ tensor: GGUFTensorInfo) {
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let start = (dataOffset + tensor.offset) / page * page
        let end = dataOffset + tensor.offset + tensor.byteCount
        _ = madvise(mapping! + start, end - start, MADV_WILLNEED)
    }

    // MARK: typed metadata accessors

    public func string(_ key: String) -> String? { metadata[key]?.stringValue }
    public func int(_ key: String) -> Int? { metadata[key]?.intValue }
    public func double(_ key: String) -> Double? { metadata[key]?.doubleValue }
    public func float(_ key: String) -> Float? { double(key).map(Float.init) }
    public func bool(_ key: String) -> Bool? { metadata[key]?.boolValue }
    public func stringArray(_ key: String) -> [String]? {
        metadata[key]?.arrayValue?.compactMap(\.stringValue)
    }
    public func floatArray(_ key: String) -> [Float]? {
        metadata[key]?.arrayValue?.compactMap { $0.doubleValue.map(Float.init) }
    }
    public func intArray(_ key: String) -> [Int]? {
        metadata[key]?.arrayValue?.compactMap(\.intValue)
    }
    /// `general.architecture`, e.g. "llama".
    public var architecture: String? { string("general.architecture") }
}

/// The parsing pass, kept apart from the file object so that every check reads top to bottom.
enum Parser {
    struct Result {
        var version: UInt32
        var keys: [String]
        var metadata: [String: GGUFValue]
        var tensors: [GGUFTensorInfo]
        var alignment: Int
        var dataOffset: Int
    }

    /// Nesting deeper than this is refused (the format allows it; no real file needs it).
    static let maxArrayDepth = 8

    static func parse(base: UnsafeRawPointer, size: Int) throws(GGUFError) -> Result {
        var r = ByteReader(base: base, count: size)
        let magic = try r.read(UInt32.self, "magic")
        guard magic == GGUFFile.magic else {
            throw GGUFError("not a GGUF file (magic 0x\(String(magic, radix: 16)), expected 0x46554747 \"GGUF\")")
        }
        let version = try r.read(UInt32.self, "version")
        guard version == 2 || version == 3 else {
            throw GGUFError("unsupported GGUF version \(version) (supported: 2, 3)")
        }
        // Each tensor-info record takes at least 8 (name length) + 4 (n_dims) + 4 (type) + 8 (offset) bytes;
        // each key-value pair at least 8 (key length) + 4 (type) + 1 bytes.
        let tensorCount = try r.readCount("tensor count", minBytesEach: 24)
        let kvCount = try r.readCount("metadata count", minBytesEach: 13)

        var keys: [String] = []
        var metadata: [String: GGUFValue] = [:]
        keys.reserveCapacity(kvCount)
        for i in 0..<kvCount {
            let key = try r.readString("key of metadata entry \(i)")
            guard !key.isEmpty else { throw GGUFError("metadata entry \(i) has an empty key") }
            guard metadata[key] == nil else { throw GGUFError("duplicate metadata key '\(key)'") }
            let rawType = try r.read(UInt32.self, "type of '\(key)'")
            guard let type = GGUFValueType(rawValue: rawType) else {
                throw GGUFError("metadata '\(key)' has unknown value type \(rawType)")
            }
            metadata[key] = try readValue(&r, type: type, key: key, depth: 0)
            keys.append(key)
        }

        var alignment = GGUFFile.defaultAlignment
        if let a = metadata["general.alignment"] {
            guard case .uint32(let v) = a else { throw GGUFError("general.alignment must be a uint32") }
            guard v > 0, v & (v - 1) == 0, v <= 1 << 20 else {
                throw GGUFError("general.alignment \(v) is not a power of two in 1...1048576")
            }
            alignment = Int(v)
        }

        var infos: [GGUFTensorInfo] = []
        infos.reserveCapacity(tensorCount)
        var names = Set<String>()
        for i in 0..<tensorCount {
            let name = try r.readString("name of tensor \(i)")
            guard !name.isEmpty else { throw GGUFError("tensor \(i) has an empty name") }
            guard names.insert(name).inserted else { throw GGUFError("duplicate tensor name '\(name)'") }
            let nDims = try r.read(UInt32.self, "dimension count of '\(name)'")
            guard (1...UInt32(GGUFFile.maxDimensions)).contains(nDims) else {
                throw GGUFError("tensor '\(name)' has \(nDims) dimensions (1...\(GGUFFile.maxDimensions) allowed)")
            }
            var shape: [Int] = []
            var elements = 1
            for d in 0..<Int(nDims) {
                let dim = try r.read(UInt64.self, "dimension \(d) of '\(name)'")
                guard dim > 0, dim <= UInt64(Int32.max) else {
                    throw GGUFError("tensor '\(name)' dimension \(d) is \(dim)")
                }
                let (product, overflow) = elements.multipliedReportingOverflow(by: Int(dim))
                guard !overflow, product <= size * 64 else {
                    throw GGUFError("tensor '\(name)' has too many elements for a \(size)-byte file")
                }
                elements = product
                shape.append(Int(dim))
            }
            let rawType = try r.read(UInt32.self, "type of '\(name)'")
            guard let type = GGMLType(rawValue: rawType) else {
                throw GGUFError("tensor '\(name)' has unsupported type \(rawType)")
            }
            guard let rowBytes = type.rowBytes(shape[0]) else {
                throw GGUFError("tensor '\(name)' row length \(shape[0]) is not a multiple of \(type)'s block size \(type.blockSize)")
            }
            let offset = try r.read(UInt64.self, "data offset of '\(name)'")
            guard offset % UInt64(alignment) == 0 else {
                throw GGUFError("tensor '\(name)' data offset \(offset) is not aligned to \(alignment)")
            }
            guard offset <= UInt64(size) else {
                throw GGUFError("tensor '\(name)' data offset \(offset) is beyond the end of the file (\(size) bytes): truncated file or wrong offset")
            }
            infos.append(GGUFTensorInfo(name: name, shape: shape, type: type, offset: Int(offset),
                                        byteCount: rowBytes * (elements / shape[0])))
        }

        let dataOffset = (r.position + alignment - 1) / alignment * alignment
        guard dataOffset <= size || tensorCount == 0 else {
            throw GGUFError("truncated file: data section would start at \(dataOffset), file is \(size) bytes")
        }
        let dataSize = size - min(dataOffset, size)
        // Every tensor inside the data section, and no two overlapping.
        for t in infos where t.offset + t.byteCount > dataSize {
            throw GGUFError("tensor '\(t.name)' data [\(t.offset), \(t.offset + t.byteCount)) runs past the end of the data section (\(dataSize) bytes): truncated file or wrong offset")
        }
        let sorted = infos.sorted { $0.offset < $1.offset }
        for (a, b) in zip(sorted, sorted.dropFirst()) where a.offset + a.byteCount > b.offset {
            throw GGUFError("tensors '\(a.name)' and '\(b.name)' overlap in the data section")
        }
        return Result(version: version, keys: keys, metadata: metadata, tensors: infos, alignment: alignment, dataOffset: dataOffset)
    }

    static func readValue(_ r: inout ByteReader, type: GGUFValueType, key: String, depth: Int) throws(GGUFError) -> GGUFValue {
        switch type {
        case .uint8: return .uint8(try r.read(UInt8.self, "value of '\(key)'"))
        case .int8: return .int8(try r.read(Int8.self, "value of '\(key)'"))
        case .uint16: return .uint16(try r.read(UInt16.self, "value of '\(key)'"))
        case .int16: return .int16(try r.read(Int16.self, "value of '\(key)'"))
        case .uint32: return .uint32(try r.read(UInt32.self, "value of '\(key)'"))
        case .int32: return .int32(try r.read(Int32.self, "value of '\(key)'"))
        case .uint64: return .uint64(try r.read(UInt64.self, "value of '\(key)'"))
        case .int64: return .int64(try r.read(Int64.self, "value of '\(key)'"))
        case .float32: return .float32(try r.readFloat("value of '\(key)'"))
        case .float64: return .float64(try r.readDouble("value of '\(key)'"))
        case .bool:
            let b = try r.read(UInt8.self, "value of '\(key)'")
            guard b <= 1 else { throw GGUFError("metadata '\(key)' has bool value \(b)") }
            return .bool(b == 1)
        case .string: return .string(try r.readString("value of '\(key)'"))
        case .array:
            guard depth < maxArrayDepth else { throw GGUFError("metadata '\(key)' nests arrays deeper than \(maxArrayDepth)") }
            let rawType = try r.read(UInt32.self, "element type of '\(key)'")
            guard let elementType = GGUFValueType(rawValue: rawType) else {
                throw GGUFError("metadata '\(key)' is an array of unknown type \(rawType)")
            }
            let count = try r.readCount("element count of '\(key)'", minBytesEach: minimumBytes(of: elementType))
            var values: [GGUFValue] = []
            values.reserveCapacity(count)
            for _ in 0..<count {
                values.append(try readValue(&r, type: elementType, key: key, depth: depth + 1))
            }
            return .array(elementType: elementType, values)
        }
    }

    /// The fewest bytes one value of `type` can take: bounds array counts by what the file can hold.
    static func minimumBytes(of type: GGUFValueType) -> Int {
        switch type {
        case .uint8, .int8, .bool: 1
        case .uint16, .int16: 2
        case .uint32, .int32, .float32: 4
        case .uint64, .int64, .float64, .string: 8
        case .array: 12
        }
    }
}
