import CZmq
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

func zmqErrorString(_ code: Int32) -> String { String(cString: zmq_strerror(code)) }

/// Runs a libzmq call that returns -1 + zmq_errno() on failure, retrying on EINTR (a signal such as
/// SIGCHLD arrived; note that a retried receive restarts its timeout). EAGAIN → `.timedOut`, ETERM → `.closed`.
@discardableResult
func zmqCall(_ what: @autoclosure () -> String, _ body: () -> Int32) throws(WireError) -> Int32 {
    while true {
        let rc = body()
        if rc >= 0 { return rc }
        switch zmq_errno() {
        case EINTR: continue
        case EAGAIN: throw .timedOut
        case ETERM: throw .closed
        case let e: throw .zmq(call: what(), errno: e)
        }
    }
}

/// A libzmq context: owns the I/O threads. Thread-safe. Sockets keep their context alive; the context is
/// terminated when the last reference (this object or a socket's) goes away.
public final class ZmqContext: @unchecked Sendable {
    let raw: UnsafeMutableRawPointer

    public init(ioThreads: Int32 = 1) throws(WireError) {
        guard let ctx = zmq_ctx_new() else { throw .zmq(call: "zmq_ctx_new", errno: zmq_errno()) }
        raw = ctx
        try zmqCall("ZMQ_IO_THREADS") { zmq_ctx_set(raw, ZMQ_IO_THREADS, ioThreads) }
    }

    /// Makes every blocking call on this context's sockets, in any thread, fail with `.closed` now and
    /// later. Use it to stop a receive loop from another thread; each socket must still be closed.
    public func shutdown() { _ = zmq_ctx_shutdown(raw) }

    deinit {
        // All sockets are closed by now (they retain us); linger 0 means this does not wait for peers.
        while zmq_ctx_term(raw) != 0 && zmq_errno() == EINTR {}
    }

    public static var version: String {
        var major: Int32 = 0, minor: Int32 = 0, patch: Int32 = 0
        zmq_version(&major, &minor, &patch)
        return "\(major).\(minor).\(patch)"
    }
}

/// One ZeroMQ message part. zmq_msg_t is mutated in place by libzmq, so it lives at a stable heap address.
/// Not thread-safe; `bytes` is valid until the message is sent, received into again, or deinitialized.
public final class ZmqMessage {
    let raw: UnsafeMutablePointer<zmq_msg_t>

    /// An empty message, to receive into.
    public init() {
        raw = .allocate(capacity: 1)
        zmq_msg_init(raw)
    }

    /// `size` uninitialized bytes owned by libzmq (fill them through `mutableBytes`).
    public init(size: Int) {
        raw = .allocate(capacity: 1)
        guard zmq_msg_init_size(raw, size) == 0 else {
            fatalError("zmq_msg_init_size(\(size)): \(zmqErrorString(zmq_errno()))")  // out of memory
        }
    }

    /// A copy of `bytes`.
    public convenience init(copying bytes: UnsafeRawBufferPointer) {
        self.init(size: bytes.count)
        if bytes.count > 0 { memcpy(zmq_msg_data(raw), bytes.baseAddress!, bytes.count) }
    }

    /// A copy of `bytes`.
    public convenience init(_ bytes: [UInt8]) {
        self.init(size: bytes.count)
        bytes.withUnsafeBytes { b in
            if b.count > 0 { memcpy(zmq_msg_data(raw), b.baseAddress!, b.count) }
        }
    }

    public var mutableBytes: UnsafeMutableRawBufferPointer {
        UnsafeMutableRawBufferPointer(start: zmq_msg_data(raw), count: zmq_msg_size(raw))
    }

    /// Zero-copy: adopts a buffer from `malloc`. libzmq sends it in place and calls `free` on it when
    /// done (possibly from its I/O thread); do not touch `pointer` afterwards.
    public init(adopting pointer: UnsafeMutableRawPointer, count: Int) {
        raw = .allocate(capacity: 1)
        let rc = zmq_msg_init_data(raw, pointer, count, { data, _ in free(data) }, nil)
        precondition(rc == 0, "zmq_msg_init_data: \(zmqErrorString(zmq_errno()))")
    }

    deinit {
        zmq_msg_close(raw)
        raw.deallocate()
    }

    public var count: Int { zmq_msg_size(raw) }

    /// The bytes, valid only while this object is alive: Swift may release a message right after its
    /// last use, so prefer `withBytes`, which keeps it alive for the closure.
    public var bytes: UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(start: UnsafeRawPointer(zmq_msg_data(raw)), count: zmq_msg_size(raw))
    }

    /// Calls `body` with the bytes, keeping the message (and so its buffer) alive meanwhile.
    public func withBytes<R, E: Error>(_ body: (UnsafeRawBufferPointer) throws(E) -> R) throws(E) -> R {
        defer { withExtendedLifetime(self) {} }
        return try body(bytes)
    }

    /// A copy of the bytes.
    public var array: [UInt8] { Array(bytes) }

    /// Another part of the same multipart message follows (valid after a receive).
    public var more: Bool { zmq_msg_more(raw) != 0 }
}

/// The socket patterns Shard uses.
public enum SocketKind: Sendable {
    /// Activation pipeline: PUSH sends frames downstream, PULL receives them (fair-queued from all pushers).
    case push, pull
    /// Control: the coordinator's ROUTER addresses each worker's DEALER by its routing id.
    case router, dealer

    var raw: Int32 {
        switch self {
        case .push: return ZMQ_PUSH
        case .pull: return ZMQ_PULL
        case .router: return ZMQ_ROUTER
        case .dealer: return ZMQ_DEALER
        }
    }
}

/// Socket settings applied at creation.
public struct SocketOptions: Sendable {
    /// Receives give up after this long (`receive` returns nil); nil blocks forever.
    public var receiveTimeout: Duration?
    /// Sends give up after this long with `.timedOut` (e.g. PUSH with no connected peer); nil blocks.
    public var sendTimeout: Duration?
    /// ZMQ_MAXMSGSIZE: libzmq drops the connection of a peer that sends a larger message part, before
    /// buffering it. Use `limits.maxFrameBytes` on activation sockets, `limits.maxControlBytes` on control.
    public var maxMessageBytes: Int?
    /// Messages queued per peer before a send blocks (ZMQ_SNDHWM / ZMQ_RCVHWM): the pipeline's back-pressure.
    public var sendHighWaterMark: Int32 = 1000
    public var receiveHighWaterMark: Int32 = 1000
    /// DEALER: the identity the ROUTER sees (e.g. the worker id); nil lets libzmq pick one.
    public var routingID: [UInt8]?

    public init(receiveTimeout: Duration? = nil, sendTimeout: Duration? = nil, maxMessageBytes: Int? = nil,
                routingID: [UInt8]? = nil) {
        self.receiveTimeout = receiveTimeout
        self.sendTimeout = sendTimeout
        self.maxMessageBytes = maxMessageBytes
        self.routingID = routingID
    }

    /// Activation sockets: libzmq refuses frames over `limits.maxFrameBytes`.
    public static func activations(_ limits: WireLimits, receiveTimeout: Duration? = nil) -> SocketOptions {
        SocketOptions(receiveTimeout: receiveTimeout, maxMessageBytes: limits.maxFrameBytes)
    }

    /// Control sockets: libzmq refuses parts over `limits.maxControlBytes`.
    public static func control(_ limits: WireLimits, receiveTimeout: Duration? = nil, routingID: [UInt8]? = nil) -> SocketOptions {
        SocketOptions(receiveTimeout: receiveTimeout, maxMessageBytes: limits.maxControlBytes, routingID: routingID)
    }
}

/// A ZeroMQ socket. Not thread-safe: use it from one thread at a time (handing it to another thread
/// through a lock, queue or thread start is fine). Closed with linger 0: unsent messages are dropped, so
/// a dead peer never blocks shutdown; wait for an acknowledgement when delivery matters.
public final class ZmqSocket: @unchecked Sendable {
    public let kind: SocketKind
    let context: ZmqContext
    private(set) var raw: UnsafeMutableRawPointer?

    public init(_ context: ZmqContext, _ kind: SocketKind, options: SocketOptions = SocketOptions()) throws(WireError) {
        guard let s = zmq_socket(context.raw, kind.raw) else {
            let e = zmq_errno()
            throw e == ETERM ? .closed : .zmq(call: "zmq_socket", errno: e)
        }
        self.context = context
        self.kind = kind
        raw = s
        do throws(WireError) {
            try setInt32(ZMQ_LINGER, 0, "ZMQ_LINGER")
            try setInt32(ZMQ_SNDHWM, options.sendHighWaterMark, "ZMQ_SNDHWM")
            try setInt32(ZMQ_RCVHWM, options.receiveHighWaterMark, "ZMQ_RCVHWM")
            try setReceiveTimeout(options.receiveTimeout)
            try setInt32(ZMQ_SNDTIMEO, Self.milliseconds(options.sendTimeout), "ZMQ_SNDTIMEO")
            if let max = options.maxMessageBytes {
                var v = Int64(max)
                try zmqCall("ZMQ_MAXMSGSIZE") { zmq_setsockopt(s, ZMQ_MAXMSGSIZE, &v, MemoryLayout<Int64>.size) }
            }
            if let id = options.routingID {
                try zmqCall("ZMQ_ROUTING_ID") { id.withUnsafeBytes { zmq_setsockopt(s, ZMQ_ROUTING_ID, $0.baseAddress, $0.count) } }
            }
            if kind == .router {
                // Sending to an unknown or departed peer fails with EHOSTUNREACH instead of vanishing.
                try setInt32(ZMQ_ROUTER_MANDATORY, 1, "ZMQ_ROUTER_MANDATORY")
            }
        } catch {
            close()
            throw error
        }
    }

    deinit { close() }

    /// Closes now (idempotent). Pending outgoing messages are dropped (linger 0).
    public func close() {
        if let s = raw { zmq_close(s) }
        raw = nil
    }

    private func socket() throws(WireError) -> UnsafeMutableRawPointer {
        guard let s = raw else { throw .closed }
        return s
    }

    private func setInt32(_ option: Int32, _ value: Int32, _ name: String) throws(WireError) {
        let s = try socket()
        var v = value
        try zmqCall(name) { zmq_setsockopt(s, option, &v, MemoryLayout<Int32>.size) }
    }

    static func milliseconds(_ d: Duration?) -> Int32 {
        guard let d else { return -1 }
        let (s, atto) = d.components
        let ms = max(0, s) * 1000 + atto / 1_000_000_000_000_000
        return Int32(clamping: ms)
    }

    /// nil blocks forever; `.zero` polls.
    public func setReceiveTimeout(_ timeout: Duration?) throws(WireError) {
        try setInt32(ZMQ_RCVTIMEO, Self.milliseconds(timeout), "ZMQ_RCVTIMEO")
    }

    /// Binds `endpoint` (`tcp://0.0.0.0:5600`, `tcp://127.0.0.1:*`, `ipc:///tmp/shard0`) and returns the
    /// resolved endpoint (the port picked for `*`). ipc paths must fit in 107 bytes; the socket file is
    /// removed only for `ipc://*`, so unlink explicit paths yourself when done.
    @discardableResult
    public func bind(_ endpoint: String) throws(WireError) -> String {
        let s = try socket()
        try zmqCall("zmq_bind(\(endpoint))") { zmq_bind(s, endpoint) }
        var buf = [CChar](repeating: 0, count: 512)
        var len = buf.count
        try zmqCall("ZMQ_LAST_ENDPOINT") { zmq_getsockopt(s, ZMQ_LAST_ENDPOINT, &buf, &len) }
        return buf.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
    }

    /// Connects (asynchronously: libzmq keeps reconnecting until the peer is there).
    public func connect(_ endpoint: String) throws(WireError) {
        let s = try socket()
        try zmqCall("zmq_connect(\(endpoint))") { zmq_connect(s, endpoint) }
    }

    public func disconnect(_ endpoint: String) throws(WireError) {
        let s = try socket()
        try zmqCall("zmq_disconnect(\(endpoint))") { zmq_disconnect(s, endpoint) }
    }

    // MARK: sending

    /// Sends one part without copying its bytes; on success `message` is left empty.
    public func send(_ message: ZmqMessage, more: Bool = false) throws(WireError) {
        let s = try socket()
        try zmqCall("zmq_msg_send") { zmq_msg_send(message.raw, s, more ? ZMQ_SNDMORE : 0) }
    }

    /// Sends the parts as one multipart message (delivered all or nothing).
    public func send(parts: [ZmqMessage]) throws(WireError) {
        for (i, p) in parts.enumerated() { try send(p, more: i < parts.count - 1) }
    }

    /// Sends a copy of `bytes` as one part.
    public func send(bytes: UnsafeRawBufferPointer, more: Bool = false) throws(WireError) {
        let s = try socket()
        try zmqCall("zmq_send") { zmq_send(s, bytes.baseAddress, bytes.count, more ? ZMQ_SNDMORE : 0) }
    }

    // MARK: receiving

    /// Receives one part into `message`. Returns false on timeout.
    public func receive(into message: ZmqMessage) throws(WireError) -> Bool {
        let s = try socket()
        do throws(WireError) {
            try zmqCall("zmq_msg_recv") { zmq_msg_recv(message.raw, s, 0) }
            return true
        } catch .timedOut {
            return false
        }
    }

    /// Receives a whole multipart message; nil on timeout. A message of more than `maxParts` parts is read
    /// to its end (keeping the socket in step) and reported as `.malformed`.
    public func receiveMultipart(maxParts: Int = 4) throws(WireError) -> [ZmqMessage]? {
        let first = ZmqMessage()
        guard try receive(into: first) else { return nil }
        var parts = [first]
        var extra = 0
        var last = first
        while last.more {
            let next = ZmqMessage()
            // The remaining parts of a multipart message are already here (atomic delivery).
            _ = try receive(into: next)
            if parts.count < maxParts { parts.append(next) } else { extra += 1 }
            last = next
        }
        if extra > 0 { throw .malformed("message of \(parts.count + extra) parts, at most \(maxParts) expected") }
        return parts
    }
}

/// zmq_poll over several sockets: which ones have a message ready to receive.
public func pollReadable(_ sockets: [ZmqSocket], timeout: Duration?) throws(WireError) -> [Bool] {
    var items = [zmq_pollitem_t]()
    for s in sockets {
        guard let raw = s.raw else { throw .closed }
        items.append(zmq_pollitem_t(socket: raw, fd: 0, events: Int16(ZMQ_POLLIN), revents: 0))
    }
    let ms = timeout.map { Int(ZmqSocket.milliseconds($0)) } ?? -1
    let n = items.count
    do throws(WireError) {
        try zmqCall("zmq_poll") { zmq_poll(&items, Int32(n), ms) }
    } catch .timedOut {
        return [Bool](repeating: false, count: n)
    }
    return items.map { $0.revents & Int16(ZMQ_POLLIN) != 0 }
}
