#if canImport(Glibc)
import Glibc
#endif
import CShardProto

// Control-channel messages. Each is a `WireMessage` on its own; on the socket they travel inside `Control`.
// Strings are cut at an embedded NUL when encoded (protobuf-c uses C strings).

/// Worker → coordinator, first message after connecting.
public struct Register: ProtoBacked {
    public var workerID: String
    public var protocolVersion: UInt32
    public var backend: WireBackend
    public var deviceName: String
    public var freeMemoryBytes: UInt64
    public var host: String

    public init(workerID: String, protocolVersion: UInt32 = wireProtocolVersion, backend: WireBackend,
                deviceName: String, freeMemoryBytes: UInt64, host: String) {
        self.workerID = workerID
        self.protocolVersion = protocolVersion
        self.backend = backend
        self.deviceName = deviceName
        self.freeMemoryBytes = freeMemoryBytes
        self.host = host
    }

    func withCMessage<R>(_ arena: CArena, _ body: (UnsafeMutablePointer<ProtobufCMessage>) -> R) -> R {
        var c = Shard__Register()
        shard__register__init(&c)
        c.worker_id = arena.string(workerID)
        c.protocol_version = protocolVersion
        c.backend = Shard__Backend(rawValue: backend.rawValue)
        c.device_name = arena.string(deviceName)
        c.free_memory_bytes = freeMemoryBytes
        c.host = arena.string(host)
        return withUnsafeMutablePointer(to: &c) { body(base($0)) }
    }

    static func unpack(_ a: UnsafeMutablePointer<ProtobufCAllocator>, _ n: Int, _ d: UnsafePointer<UInt8>)
        -> UnsafeMutablePointer<ProtobufCMessage>? { shard__register__unpack(a, n, d).map(base) }
    static func precheck(_ b: UnsafeRawBufferPointer, limits: WireLimits) throws(WireError) -> Int {
        try controlPrecheck(b, maxField: 6, limits: limits)
    }

    init(unpacked m: UnsafePointer<ProtobufCMessage>, limits: WireLimits) throws(WireError) {
        let c = cast(m, to: Shard__Register.self).pointee
        self.init(workerID: try decodeString(c.worker_id, "Register.worker_id", limits),
                  protocolVersion: c.protocol_version,
                  backend: try decodeEnum(c.backend.rawValue, WireBackend.self, "Register.backend"),
                  deviceName: try decodeString(c.device_name, "Register.device_name", limits),
                  freeMemoryBytes: c.free_memory_bytes,
                  host: try decodeString(c.host, "Register.host", limits))
    }
}

/// Coordinator → worker: load layers `layerStart..<layerEnd` of the model.
public struct LoadShard: ProtoBacked {
    public var modelPath: String
    /// Load from the WeightChunks received for `modelDigest` instead of from `modelPath`.
    public var streamedWeights: Bool
    public var layerStart: UInt32
    public var layerEnd: UInt32
    public var contextLength: UInt32
    public var kvType: KVType
    public var maxBatchRows: UInt32
    public var backend: WireBackend
    public var deviceIndex: UInt32
    /// Where this shard pushes its output frames (the next shard's data endpoint, or the coordinator's).
    public var nextEndpoint: String
    /// The model file's size and header digest (`ModelIdentity`); 0 = unchecked.
    public var modelSize: UInt64 = 0
    public var modelDigest: UInt64 = 0
    /// KV pool budget in bytes (0: none given), else a fraction of free memory (0: none given).
    public var kvMemoryBytes: UInt64 = 0
    public var kvMemoryFraction: Float = 0
    /// Positions per KV page (0: the worker's default).
    public var kvPageSize: UInt32 = 0
    /// Most sequences at once (0: 1).
    public var maxSequences: UInt32 = 0
    /// The last shard of a pipeline that runs chained greedy decode: the first shard's data endpoint,
    /// where it also sends the picks of chained steps. Empty: none.
    public var chainEndpoint: String = ""

    public var layers: Range<Int> { Int(layerStart)..<Int(max(layerStart, layerEnd)) }

    public init(modelPath: String, streamedWeights: Bool = false, layerStart: UInt32, layerEnd: UInt32,
                contextLength: UInt32, kvType: KVType = .unspecified, maxBatchRows: UInt32,
                backend: WireBackend = .unspecified, deviceIndex: UInt32 = 0, nextEndpoint: String = "") {
        self.modelPath = modelPath
        self.nextEndpoint = nextEndpoint
        self.streamedWeights = streamedWeights
        self.layerStart = layerStart
        self.layerEnd = layerEnd
        self.contextLength = contextLength
        self.kvType = kvType
        self.maxBatchRows = maxBatchRows
        self.backend = backend
        self.deviceIndex = deviceIndex
    }

    func withCMessage<R>(_ arena: CArena, _ body: (UnsafeMutablePointer<ProtobufCMessage>) -> R) -> R {
        var c = Shard__LoadShard()
        shard__load_shard__init(&c)
        c.model_path = arena.string(modelPath)
        c.streamed_weights = streamedWeights ? 1 : 0
        c.layer_start = layerStart
        c.layer_end = layerEnd
        c.context_length = contextLength
        c.kv_type = Shard__KVType(rawValue: kvType.rawValue)
        c.max_batch_rows = maxBatchRows
        c.backend = Shard__Backend(rawValue: backend.rawValue)
        c.device_index = deviceIndex
        c.next_endpoint = arena.string(nextEndpoint)
        c.model_size = modelSize
        c.model_digest = modelDigest
        c.kv_memory_bytes = kvMemoryBytes
        c.kv_memory_fraction = kvMemoryFraction
        c.kv_page_size = kvPageSize
        c.max_sequences = maxSequences
        c.chain_endpoint = arena.string(chainEndpoint)
        return withUnsafeMutablePointer(to: &c) { body(base($0)) }
    }

    static func unpack(_ a: UnsafeMutablePointer<ProtobufCAllocator>, _ n: Int, _ d: UnsafePointer<UInt8>)
        -> UnsafeMutablePointer<ProtobufCMessage>? { shard__load_shard__unpack(a, n, d).map(base) }
    static func precheck(_ b: UnsafeRawBufferPointer, limits: WireLimits) throws(WireError) -> Int {
        try controlPrecheck(b, maxField: 21, limits: limits)
    }

    init(unpacked m: UnsafePointer<ProtobufCMessage>, limits: WireLimits) throws(WireError) {
        let c = cast(m, to: Shard__LoadShard.self).pointee
        guard c.kv_memory_fraction.isFinite, c.kv_memory_fraction >= 0, c.kv_memory_fraction <= 1 else {
            throw .malformed("LoadShard.kv_memory_fraction \(c.kv_memory_fraction) is not in [0, 1]")
        }
        guard c.kv_page_size <= 4096 else { throw .limitExceeded("LoadShard.kv_page_size \(c.kv_page_size) > 4096") }
        guard c.max_sequences <= 65536 else { throw .limitExceeded("LoadShard.max_sequences \(c.max_sequences) > 65536") }
        guard c.layer_start <= c.layer_end else {
            throw .malformed("LoadShard layer range \(c.layer_start)..<\(c.layer_end)")
        }
        guard c.max_batch_rows <= limits.maxRows else {
            throw .limitExceeded("LoadShard.max_batch_rows \(c.max_batch_rows) > maxRows \(limits.maxRows)")
        }
        self.init(modelPath: try decodeString(c.model_path, "LoadShard.model_path", limits),
                  streamedWeights: c.streamed_weights != 0,
                  layerStart: c.layer_start, layerEnd: c.layer_end, contextLength: c.context_length,
                  kvType: try decodeEnum(c.kv_type.rawValue, KVType.self, "LoadShard.kv_type"),
                  maxBatchRows: c.max_batch_rows,
                  backend: try decodeEnum(c.backend.rawValue, WireBackend.self, "LoadShard.backend"),
                  deviceIndex: c.device_index,
                  nextEndpoint: try decodeString(c.next_endpoint, "LoadShard.next_endpoint", limits))
        modelSize = c.model_size
        modelDigest = c.model_digest
        kvMemoryBytes = c.kv_memory_bytes
        kvMemoryFraction = c.kv_memory_fraction
        kvPageSize = c.kv_page_size
        maxSequences = c.max_sequences
        chainEndpoint = try decodeString(c.chain_endpoint, "LoadShard.chain_endpoint", limits)
    }
}

/// Worker → coordinator after LoadShard succeeded.
public struct Ready: ProtoBacked {
    public var workerID: String
    public var layerStart: UInt32
    public var layerEnd: UInt32
    public var memoryUsedBytes: UInt64
    /// The KV pool the shard allocated (full-attention pages, page size, window, ring pages per
    /// sequence, window pool pages, bytes).
    public var kvPages: UInt32 = 0
    public var kvPageSize: UInt32 = 0
    public var kvWindow: UInt32 = 0
    public var kvRingPages: UInt32 = 0
    public var kvWindowPages: UInt32 = 0
    public var kvBytes: UInt64 = 0
    /// The worker runs chained greedy decode (`ActivationFrame.chainBudget`).
    public var chains = false

    public init(workerID: String, layerStart: UInt32, layerEnd: UInt32, memoryUsedBytes: UInt64) {
        self.workerID = workerID
        self.layerStart = layerStart
        self.layerEnd = layerEnd
        self.memoryUsedBytes = memoryUsedBytes
    }

    func withCMessage<R>(_ arena: CArena, _ body: (UnsafeMutablePointer<ProtobufCMessage>) -> R) -> R {
        var c = Shard__Ready()
        shard__ready__init(&c)
        c.worker_id = arena.string(workerID)
        c.layer_start = layerStart
        c.layer_end = layerEnd
        c.memory_used_bytes = memoryUsedBytes
        c.kv_pages = kvPages
        c.kv_page_size = kvPageSize
        c.kv_window = kvWindow
        c.kv_ring_pages = kvRingPages
        c.kv_window_pages = kvWindowPages
        c.kv_bytes = kvBytes
        c.chains = chains ? 1 : 0
        return withUnsafeMutablePointer(to: &c) { body(base($0)) }
    }

    static func unpack(_ a: UnsafeMutablePointer<ProtobufCAllocator>, _ n: Int, _ d: UnsafePointer<UInt8>)
        -> UnsafeMutablePointer<ProtobufCMessage>? { shard__ready__unpack(a, n, d).map(base) }
    static func precheck(_ b: UnsafeRawBufferPointer, limits: WireLimits) throws(WireError) -> Int {
        try controlPrecheck(b, maxField: 11, limits: limits)
    }

    init(unpacked m: UnsafePointer<ProtobufCMessage>, limits: WireLimits) throws(WireError) {
        let c = cast(m, to: Shard__Ready.self).pointee
        guard c.layer_start <= c.layer_end else { throw .malformed("Ready layer range \(c.layer_start)..<\(c.layer_end)") }
        guard c.kv_page_size <= 4096, c.kv_ring_pages <= c.kv_window_pages, c.kv_pages <= UInt32(Int32.max),
              c.kv_window_pages <= UInt32(Int32.max) else {
            throw .malformed("Ready KV pool \(c.kv_pages) pages of \(c.kv_page_size), ring \(c.kv_ring_pages) of \(c.kv_window_pages)")
        }
        self.init(workerID: try decodeString(c.worker_id, "Ready.worker_id", limits),
                  layerStart: c.layer_start, layerEnd: c.layer_end, memoryUsedBytes: c.memory_used_bytes)
        kvPages = c.kv_pages
        kvPageSize = c.kv_page_size
        kvWindow = c.kv_window
        kvRingPages = c.kv_ring_pages
        kvWindowPages = c.kv_window_pages
        kvBytes = c.kv_bytes
        chains = c.chains != 0
    }
}

public struct Heartbeat: ProtoBacked {
    public var workerID: String
    /// Sender's monotonic clock in nanoseconds (only differences mean anything).
    public var monotonicNanoseconds: UInt64
    /// Busy fraction over the last interval, 0...1.
    public var load: Float

    public init(workerID: String, monotonicNanoseconds: UInt64, load: Float) {
        self.workerID = workerID
        self.monotonicNanoseconds = monotonicNanoseconds
        self.load = load
    }

    func withCMessage<R>(_ arena: CArena, _ body: (UnsafeMutablePointer<ProtobufCMessage>) -> R) -> R {
        var c = Shard__Heartbeat()
        shard__heartbeat__init(&c)
        c.worker_id = arena.string(workerID)
        c.monotonic_ns = monotonicNanoseconds
        c.load = load
        return withUnsafeMutablePointer(to: &c) { body(base($0)) }
    }

    static func unpack(_ a: UnsafeMutablePointer<ProtobufCAllocator>, _ n: Int, _ d: UnsafePointer<UInt8>)
        -> UnsafeMutablePointer<ProtobufCMessage>? { shard__heartbeat__unpack(a, n, d).map(base) }
    static func precheck(_ b: UnsafeRawBufferPointer, limits: WireLimits) throws(WireError) -> Int {
        try controlPrecheck(b, maxField: 3, limits: limits)
    }

    init(unpacked m: UnsafePointer<ProtobufCMessage>, limits: WireLimits) throws(WireError) {
        let c = cast(m, to: Shard__Heartbeat.self).pointee
        guard c.load.isFinite else { throw .malformed("Heartbeat.load is \(c.load)") }
        self.init(workerID: try decodeString(c.worker_id, "Heartbeat.worker_id", limits),
                  monotonicNanoseconds: c.monotonic_ns, load: c.load)
    }
}

public struct Stats: ProtoBacked {
    public var tokensProcessed: UInt64
    public var stepCount: UInt64
    public var busySeconds: Double
    public var memoryUsedBytes: UInt64

    public init(tokensProcessed: UInt64, stepCount: UInt64, busySeconds: Double, memoryUsedBytes: UInt64) {
        self.tokensProcessed = tokensProcessed
        self.stepCount = stepCount
        self.busySeconds = busySeconds
        self.memoryUsedBytes = memoryUsedBytes
    }

    func withCMessage<R>(_ arena: CArena, _ body: (UnsafeMutablePointer<ProtobufCMessage>) -> R) -> R {
        var c = Shard__Stats()
        shard__stats__init(&c)
        c.tokens_processed = tokensProcessed
        c.step_count = stepCount
        c.busy_seconds = busySeconds
        c.memory_used_bytes = memoryUsedBytes
        return withUnsafeMutablePointer(to: &c) { body(base($0)) }
    }

    static func unpack(_ a: UnsafeMutablePointer<ProtobufCAllocator>, _ n: Int, _ d: UnsafePointer<UInt8>)
        -> UnsafeMutablePointer<ProtobufCMessage>? { shard__stats__unpack(a, n, d).map(base) }
    static func precheck(_ b: UnsafeRawBufferPointer, limits: WireLimits) throws(WireError) -> Int {
        try controlPrecheck(b, maxField: 4, limits: limits)
    }

    init(unpacked m: UnsafePointer<ProtobufCMessage>, limits: WireLimits) throws(WireError) {
        let c = cast(m, to: Shard__Stats.self).pointee
        guard c.busy_seconds.isFinite, c.busy_seconds >= 0 else { throw .malformed("Stats.busy_seconds is \(c.busy_seconds)") }
        self.init(tokensProcessed: c.tokens_processed, stepCount: c.step_count, busySeconds: c.busy_seconds,
                  memoryUsedBytes: c.memory_used_bytes)
    }
}

/// Coordinator → worker: free these sequences' KV pages.
public struct ReleaseSequence: ProtoBacked {
    public var sequenceIDs: [UInt64]

    public init(sequenceIDs: [UInt64]) { self.sequenceIDs = sequenceIDs }

    func withCMessage<R>(_ arena: CArena, _ body: (UnsafeMutablePointer<ProtobufCMessage>) -> R) -> R {
        var c = Shard__ReleaseSequence()
        shard__release_sequence__init(&c)
        c.n_sequence_ids = sequenceIDs.count
        c.sequence_ids = arena.array(sequenceIDs)
        return withUnsafeMutablePointer(to: &c) { body(base($0)) }
    }

    static func unpack(_ a: UnsafeMutablePointer<ProtobufCAllocator>, _ n: Int, _ d: UnsafePointer<UInt8>)
        -> UnsafeMutablePointer<ProtobufCMessage>? { shard__release_sequence__unpack(a, n, d).map(base) }
    static func precheck(_ b: UnsafeRawBufferPointer, limits: WireLimits) throws(WireError) -> Int {
        try controlPrecheck(b, maxField: 1, limits: limits, releaseIDsField: 1)
    }

    init(unpacked m: UnsafePointer<ProtobufCMessage>, limits: WireLimits) throws(WireError) {
        let c = cast(m, to: Shard__ReleaseSequence.self).pointee
        guard c.n_sequence_ids <= limits.maxReleaseIDs else {
            throw .limitExceeded("ReleaseSequence has \(c.n_sequence_ids) ids, limit \(limits.maxReleaseIDs)")
        }
        guard c.n_sequence_ids == 0 || c.sequence_ids != nil else { throw .malformed("ReleaseSequence ids missing") }
        self.init(sequenceIDs: Array(UnsafeBufferPointer(start: c.sequence_ids, count: c.n_sequence_ids)))
    }
}

public struct Shutdown: ProtoBacked {
    public init() {}

    func withCMessage<R>(_ arena: CArena, _ body: (UnsafeMutablePointer<ProtobufCMessage>) -> R) -> R {
        var c = Shard__Shutdown()
        shard__shutdown__init(&c)
        return withUnsafeMutablePointer(to: &c) { body(base($0)) }
    }

    static func unpack(_ a: UnsafeMutablePointer<ProtobufCAllocator>, _ n: Int, _ d: UnsafePointer<UInt8>)
        -> UnsafeMutablePointer<ProtobufCMessage>? { shard__shutdown__unpack(a, n, d).map(base) }
    static func precheck(_ b: UnsafeRawBufferPointer, limits: WireLimits) throws(WireError) -> Int {
        try controlPrecheck(b, maxField: 0, limits: limits)
    }

    init(unpacked m: UnsafePointer<ProtobufCMessage>, limits: WireLimits) throws(WireError) {}
}

/// The `Error` message of shard.proto (named so it does not shadow Swift's `Error`).
public struct ErrorReport: ProtoBacked {
    public var code: ErrorCode
    public var message: String

    public init(code: ErrorCode, message: String) {
        self.code = code
        self.message = message
    }

    func withCMessage<R>(_ arena: CArena, _ body: (UnsafeMutablePointer<ProtobufCMessage>) -> R) -> R {
        var c = Shard__Error()
        shard__error__init(&c)
        c.code = Shard__ErrorCode(rawValue: code.rawValue)
        c.message = arena.string(message)
        return withUnsafeMutablePointer(to: &c) { body(base($0)) }
    }

    static func unpack(_ a: UnsafeMutablePointer<ProtobufCAllocator>, _ n: Int, _ d: UnsafePointer<UInt8>)
        -> UnsafeMutablePointer<ProtobufCMessage>? { shard__error__unpack(a, n, d).map(base) }
    static func precheck(_ b: UnsafeRawBufferPointer, limits: WireLimits) throws(WireError) -> Int {
        try controlPrecheck(b, maxField: 2, limits: limits)
    }

    init(unpacked m: UnsafePointer<ProtobufCMessage>, limits: WireLimits) throws(WireError) {
        let c = cast(m, to: Shard__Error.self).pointee
        self.init(code: ErrorCode(rawValue: c.code.rawValue), message: try decodeString(c.message, "Error.message", limits))
    }
}

/// Pre-unpack checks shared by the control messages: total size, well-formed wire format, every
/// length-delimited field (all strings, except the release id run) within `maxStringLength`.
/// Returns the allocation budget for protobuf-c.
func controlPrecheck(_ b: UnsafeRawBufferPointer, maxField: Int, limits: WireLimits,
                     releaseIDsField: Int? = nil, chunkField: Int? = nil) throws(WireError) -> Int {
    guard b.count <= limits.maxControlBytes else {
        throw .limitExceeded("control message of \(b.count) bytes, limit \(limits.maxControlBytes)")
    }
    let scan = try ProtoScan(b, maxField: maxField, packedVarints: releaseIDsField.map { 1 << UInt64($0) } ?? 0)
    var ids = 0
    for n in scan.fields.indices.dropFirst() {
        if n == releaseIDsField {
            ids = scan[n].elements
            guard ids <= limits.maxReleaseIDs else {
                throw .limitExceeded("ReleaseSequence has \(ids) ids, limit \(limits.maxReleaseIDs)")
            }
        } else if n == chunkField {
            guard scan[n].maxLength <= limits.maxWeightChunkBytes else {
                throw .limitExceeded("WeightChunk of \(scan[n].maxLength) bytes, limit \(limits.maxWeightChunkBytes)")
            }
        } else if scan[n].maxLength > limits.maxStringLength {
            throw .limitExceeded("field \(n) is \(scan[n].maxLength) bytes, string limit \(limits.maxStringLength)")
        }
    }
    return 2 * b.count + 8 * ids + 64 * scan.unknown + 4096
}

/// Coordinator → worker: a piece of the model file, for a worker whose host lacks it. The worker
/// acknowledges each with a WeightChunk of the same request id and no data.
public struct WeightChunk: ProtoBacked {
    /// Data bytes per chunk the coordinator sends.
    public static let standardSize = 512 << 10
    public var modelDigest: UInt64
    public var fileSize: UInt64
    public var offset: UInt64
    public var data: [UInt8]

    public init(modelDigest: UInt64, fileSize: UInt64, offset: UInt64, data: [UInt8] = []) {
        self.modelDigest = modelDigest
        self.fileSize = fileSize
        self.offset = offset
        self.data = data
    }

    func withCMessage<R>(_ arena: CArena, _ body: (UnsafeMutablePointer<ProtobufCMessage>) -> R) -> R {
        var c = Shard__WeightChunk()
        shard__weight_chunk__init(&c)
        c.model_digest = modelDigest
        c.file_size = fileSize
        c.offset = offset
        return data.withUnsafeBufferPointer { d in
            c.data = ProtobufCBinaryData(len: d.count, data: UnsafeMutablePointer(mutating: d.baseAddress))
            return withUnsafeMutablePointer(to: &c) { body(base($0)) }
        }
    }

    static func unpack(_ a: UnsafeMutablePointer<ProtobufCAllocator>, _ n: Int, _ d: UnsafePointer<UInt8>)
        -> UnsafeMutablePointer<ProtobufCMessage>? { shard__weight_chunk__unpack(a, n, d).map(base) }
    static func precheck(_ b: UnsafeRawBufferPointer, limits: WireLimits) throws(WireError) -> Int {
        try controlPrecheck(b, maxField: 4, limits: limits, chunkField: 4)
    }

    init(unpacked m: UnsafePointer<ProtobufCMessage>, limits: WireLimits) throws(WireError) {
        let c = cast(m, to: Shard__WeightChunk.self).pointee
        guard c.data.len <= limits.maxWeightChunkBytes else {
            throw .limitExceeded("WeightChunk of \(c.data.len) bytes, limit \(limits.maxWeightChunkBytes)")
        }
        guard c.offset <= c.file_size, UInt64(c.data.len) <= c.file_size - c.offset else {
            throw .malformed("WeightChunk [\(c.offset), +\(c.data.len)) lies outside a \(c.file_size)-byte file")
        }
        guard c.data.len == 0 || c.data.data != nil else { throw .malformed("WeightChunk data missing") }
        self.init(modelDigest: c.model_digest, fileSize: c.file_size, offset: c.offset, data: copyBytes(c.data))
    }
}

/// A protobuf-c `bytes` field as a Swift array (one copy; the unpacked message is freed after decoding).
func copyBytes(_ b: ProtobufCBinaryData) -> [UInt8] {
    [UInt8](unsafeUninitializedCapacity: b.len) { dst, count in
        if b.len > 0 { memcpy(dst.baseAddress!, b.data, b.len) }
        count = b.len
    }
}
