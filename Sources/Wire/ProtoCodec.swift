import CShardProto
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

#if _endian(big)
#error("Wire payloads are little-endian and are copied without byte swapping")
#endif

/// A message that travels as one protobuf-encoded ZeroMQ message part.
public protocol WireMessage: Sendable, Equatable {
    /// The protobuf encoding.
    func encode() -> [UInt8]
    /// The protobuf encoding in a buffer that a `ZmqMessage` owns and libzmq sends without copying.
    func encodeMessage() -> ZmqMessage
    /// Decodes and validates `bytes`. Sizes, counts, and shape × dtype against the payload are checked
    /// against `limits` before anything sized by the input is allocated; bad input throws, never traps.
    static func decode(_ bytes: UnsafeRawBufferPointer, limits: WireLimits) throws(WireError) -> Self
}

extension WireMessage {
    public static func decode(_ bytes: [UInt8], limits: WireLimits = WireLimits()) throws(WireError) -> Self {
        let r: Result<Self, WireError> = bytes.withUnsafeBytes { b in Result { () throws(WireError) in try decode(b, limits: limits) } }
        return try r.get()
    }
}

/// The bridge each message implements over its protoc-c struct.
protocol ProtoBacked: WireMessage {
    /// Builds the C message (pointers borrowed, valid only inside `body`) and passes it to `body`.
    func withCMessage<R>(_ arena: CArena, _ body: (UnsafeMutablePointer<ProtobufCMessage>) -> R) -> R
    /// protoc-c's typed unpack (`shard__x__unpack`).
    static func unpack(_ allocator: UnsafeMutablePointer<ProtobufCAllocator>, _ len: Int, _ data: UnsafePointer<UInt8>)
        -> UnsafeMutablePointer<ProtobufCMessage>?
    /// Scans the raw bytes (bounds, counts) and returns the allocation budget for unpack.
    static func precheck(_ bytes: UnsafeRawBufferPointer, limits: WireLimits) throws(WireError) -> Int
    /// Converts the unpacked C message, checking every field before allocating Swift storage for it.
    init(unpacked: UnsafePointer<ProtobufCMessage>, limits: WireLimits) throws(WireError)
}

extension ProtoBacked {
    public func encode() -> [UInt8] {
        let arena = CArena()
        return withCMessage(arena) { m in
            let size = protobuf_c_message_get_packed_size(m)
            return [UInt8](unsafeUninitializedCapacity: size) { buf, count in
                count = protobuf_c_message_pack(m, buf.baseAddress)
            }
        }
    }

    /// Encodes into a malloc'd buffer that a `ZmqMessage` adopts: libzmq sends it without copying and frees it.
    public func encodeMessage() -> ZmqMessage {
        let arena = CArena()
        return withCMessage(arena) { m in
            let size = protobuf_c_message_get_packed_size(m)
            let buf = malloc(max(size, 1))!.assumingMemoryBound(to: UInt8.self)
            let packed = protobuf_c_message_pack(m, buf)
            precondition(packed == size, "protobuf-c packed \(packed) of \(size) bytes")
            return ZmqMessage(adopting: UnsafeMutableRawPointer(buf), count: size)
        }
    }

    public static func decode(_ bytes: UnsafeRawBufferPointer, limits: WireLimits) throws(WireError) -> Self {
        let budget = try precheck(bytes, limits: limits)
        // Allocation budget: protobuf-c allocates through this allocator and gets NULL (a clean unpack
        // failure) once the message would need more than `budget` bytes.
        let remaining = UnsafeMutablePointer<Int>.allocate(capacity: 1)
        remaining.initialize(to: budget)
        defer { remaining.deallocate() }
        var allocator = ProtobufCAllocator(
            alloc: { data, size in
                let left = data!.assumingMemoryBound(to: Int.self)
                guard size <= left.pointee else { return nil }
                left.pointee -= size
                return malloc(max(size, 1))
            },
            free: { _, p in free(p) },
            allocator_data: UnsafeMutableRawPointer(remaining))
        var empty: UInt8 = 0
        let message: UnsafeMutablePointer<ProtobufCMessage>? = withUnsafeMutablePointer(to: &empty) { e in
            let data = bytes.baseAddress?.assumingMemoryBound(to: UInt8.self) ?? UnsafePointer(e)
            return unpack(&allocator, bytes.count, data)
        }
        guard let message else {
            throw .malformed("protobuf-c could not unpack \(Self.self) (\(bytes.count) bytes)")
        }
        defer { protobuf_c_message_free_unpacked(message, &allocator) }
        return try Self(unpacked: message, limits: limits)
    }
}

/// C memory for one encode: strings and small arrays the C struct points at, freed together.
final class CArena {
    private var blocks: [UnsafeMutableRawPointer] = []

    /// A NUL-terminated copy (a String with an embedded NUL is cut there).
    func string(_ s: String) -> UnsafeMutablePointer<CChar> {
        let p = strdup(s)!
        blocks.append(UnsafeMutableRawPointer(p))
        return p
    }

    func array<T>(_ values: [T]) -> UnsafeMutablePointer<T>? {
        guard !values.isEmpty else { return nil }
        let raw = malloc(values.count * MemoryLayout<T>.stride)!
        blocks.append(raw)
        let p = raw.bindMemory(to: T.self, capacity: values.count)
        p.initialize(from: values, count: values.count)
        return p
    }

    deinit { for b in blocks { free(b) } }
}

// MARK: - Field conversion helpers (decode side)

/// A C string from an unpacked message, length-checked before the Swift String is made.
func decodeString(_ p: UnsafePointer<CChar>?, _ field: String, _ limits: WireLimits) throws(WireError) -> String {
    guard let p else { return "" }
    let n = strlen(p)  // bounded: protobuf-c NUL-terminates a copy of at most the frame's bytes
    guard n <= limits.maxStringLength else {
        throw .limitExceeded("\(field) is \(n) bytes, limit \(limits.maxStringLength)")
    }
    guard let s = String(validatingCString: p) else { throw .malformed("\(field) is not valid UTF-8") }
    return s
}

func decodeEnum<E: RawRepresentable>(_ raw: UInt32, _ type: E.Type, _ field: String) throws(WireError) -> E
where E.RawValue == UInt32 {
    guard let e = E(rawValue: raw) else { throw .malformed("\(field) has unknown value \(raw)") }
    return e
}

/// Casts an unpacked `ProtobufCMessage *` to its generated struct.
@inline(__always)
func cast<T>(_ m: UnsafePointer<ProtobufCMessage>, to: T.Type) -> UnsafePointer<T> {
    UnsafeRawPointer(m).assumingMemoryBound(to: T.self)
}

@inline(__always)
func base<T>(_ p: UnsafeMutablePointer<T>) -> UnsafeMutablePointer<ProtobufCMessage> {
    UnsafeMutableRawPointer(p).assumingMemoryBound(to: ProtobufCMessage.self)
}
