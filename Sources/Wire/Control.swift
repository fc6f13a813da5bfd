import CShardProto

/// The only message on the control channel (ROUTER ↔ DEALER): a request id and one body.
public struct Control: ProtoBacked {
    public enum Body: Sendable, Equatable {
        case register(Register)
        case loadShard(LoadShard)
        case ready(Ready)
        case heartbeat(Heartbeat)
        case stats(Stats)
        case releaseSequence(ReleaseSequence)
        case shutdown(Shutdown)
        case error(ErrorReport)
        case weightChunk(WeightChunk)
    }

    /// A reply (Ready, Error, Stats) echoes its request's id; 0 = unsolicited.
    public var requestID: UInt64
    public var body: Body

    public init(requestID: UInt64 = 0, _ body: Body) {
        self.requestID = requestID
        self.body = body
    }

    func withCMessage<R>(_ arena: CArena, _ body: (UnsafeMutablePointer<ProtobufCMessage>) -> R) -> R {
        var c = Shard__Control()
        shard__control__init(&c)
        c.request_id = requestID
        func with<M: ProtoBacked>(_ m: M, _ bodyCase: Shard__Control__BodyCase,
                                  _ set: (inout Shard__Control, UnsafeMutableRawPointer) -> Void) -> R {
            m.withCMessage(arena) { sub in
                c.body_case = bodyCase
                set(&c, UnsafeMutableRawPointer(sub))
                return withUnsafeMutablePointer(to: &c) { body(base($0)) }
            }
        }
        switch self.body {
        case .register(let m):
            return with(m, SHARD__CONTROL__BODY_REGISTER) { $0.register_ = $1.assumingMemoryBound(to: Shard__Register.self) }
        case .loadShard(let m):
            return with(m, SHARD__CONTROL__BODY_LOAD_SHARD) { $0.load_shard = $1.assumingMemoryBound(to: Shard__LoadShard.self) }
        case .ready(let m):
            return with(m, SHARD__CONTROL__BODY_READY) { $0.ready = $1.assumingMemoryBound(to: Shard__Ready.self) }
        case .heartbeat(let m):
            return with(m, SHARD__CONTROL__BODY_HEARTBEAT) { $0.heartbeat = $1.assumingMemoryBound(to: Shard__Heartbeat.self) }
        case .stats(let m):
            return with(m, SHARD__CONTROL__BODY_STATS) { $0.stats = $1.assumingMemoryBound(to: Shard__Stats.self) }
        case .releaseSequence(let m):
            return with(m, SHARD__CONTROL__BODY_RELEASE_SEQUENCE) {
                $0.release_sequence = $1.assumingMemoryBound(to: Shard__ReleaseSequence.self)
            }
        case .shutdown(let m):
            return with(m, SHARD__CONTROL__BODY_SHUTDOWN) { $0.shutdown = $1.assumingMemoryBound(to: Shard__Shutdown.self) }
        case .error(let m):
            return with(m, SHARD__CONTROL__BODY_ERROR) { $0.error = $1.assumingMemoryBound(to: Shard__Error.self) }
        case .weightChunk(let m):
            return with(m, SHARD__CONTROL__BODY_WEIGHT_CHUNK) { $0.weight_chunk = $1.assumingMemoryBound(to: Shard__WeightChunk.self) }
        }
    }

    static func unpack(_ a: UnsafeMutablePointer<ProtobufCAllocator>, _ n: Int, _ d: UnsafePointer<UInt8>)
        -> UnsafeMutablePointer<ProtobufCMessage>? { shard__control__unpack(a, n, d).map(base) }

    /// Field numbers of the oneof bodies (shard.proto) and each body's own precheck.
    static let bodies: [(field: Int, precheck: (UnsafeRawBufferPointer, WireLimits) throws(WireError) -> Int)] = [
        (2, { (b, l) throws(WireError) in try Register.precheck(b, limits: l) }),
        (3, { (b, l) throws(WireError) in try LoadShard.precheck(b, limits: l) }),
        (4, { (b, l) throws(WireError) in try Ready.precheck(b, limits: l) }),
        (5, { (b, l) throws(WireError) in try Heartbeat.precheck(b, limits: l) }),
        (6, { (b, l) throws(WireError) in try Stats.precheck(b, limits: l) }),
        (7, { (b, l) throws(WireError) in try ReleaseSequence.precheck(b, limits: l) }),
        (8, { (b, l) throws(WireError) in try Shutdown.precheck(b, limits: l) }),
        (9, { (b, l) throws(WireError) in try ErrorReport.precheck(b, limits: l) }),
        (20, { (b, l) throws(WireError) in try WeightChunk.precheck(b, limits: l) }),
    ]

    static func precheck(_ b: UnsafeRawBufferPointer, limits: WireLimits) throws(WireError) -> Int {
        guard b.count <= limits.maxControlBytes else {
            throw .limitExceeded("control message of \(b.count) bytes, limit \(limits.maxControlBytes)")
        }
        let scan = try ProtoScan(b, maxField: 20)
        var budget = 2 * b.count + 64 * scan.unknown + 4096
        var present = 0
        for (field, check) in bodies where scan[field].occurrences > 0 {
            present += scan[field].occurrences
            budget += try check(UnsafeRawBufferPointer(rebasing: b[scan[field].lastRange]), limits)
        }
        guard present == 1 else { throw .malformed("Control has \(present) bodies, expected exactly one") }
        return budget
    }

    init(unpacked m: UnsafePointer<ProtobufCMessage>, limits: WireLimits) throws(WireError) {
        let c = cast(m, to: Shard__Control.self).pointee
        func sub<M: ProtoBacked>(_ p: UnsafeMutableRawPointer?, _ type: M.Type) throws(WireError) -> M {
            guard let p else { throw .malformed("Control body \(M.self) missing") }
            return try M(unpacked: UnsafePointer(p.assumingMemoryBound(to: ProtobufCMessage.self)), limits: limits)
        }
        let body: Body
        switch c.body_case {
        case SHARD__CONTROL__BODY_REGISTER: body = .register(try sub(c.register_, Register.self))
        case SHARD__CONTROL__BODY_LOAD_SHARD: body = .loadShard(try sub(c.load_shard, LoadShard.self))
        case SHARD__CONTROL__BODY_READY: body = .ready(try sub(c.ready, Ready.self))
        case SHARD__CONTROL__BODY_HEARTBEAT: body = .heartbeat(try sub(c.heartbeat, Heartbeat.self))
        case SHARD__CONTROL__BODY_STATS: body = .stats(try sub(c.stats, Stats.self))
        case SHARD__CONTROL__BODY_RELEASE_SEQUENCE: body = .releaseSequence(try sub(c.release_sequence, ReleaseSequence.self))
        case SHARD__CONTROL__BODY_SHUTDOWN: body = .shutdown(try sub(c.shutdown, Shutdown.self))
        case SHARD__CONTROL__BODY_ERROR: body = .error(try sub(c.error, ErrorReport.self))
        case SHARD__CONTROL__BODY_WEIGHT_CHUNK: body = .weightChunk(try sub(c.weight_chunk, WeightChunk.self))
        default: throw .malformed("Control has no body")
        }
        self.init(requestID: c.request_id, body)
    }
}
