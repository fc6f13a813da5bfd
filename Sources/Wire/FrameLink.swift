import CZmq
#if canImport(Glibc)
import Glibc
#endif

/// The same-host activation link (issue 4): ActivationFrames between processes on one host over a
/// Unix-domain stream socket instead of ZeroMQ. A ZeroMQ hop wakes the sender's libzmq I/O thread,
/// the receiver's I/O thread and then the receiving thread (~70–110 µs a hop on the 2-core VM); here
/// the sending thread writes into the socket and the kernel wakes the receiving thread, which polls
/// the link's descriptors together with its ZeroMQ sockets (`zmq_poll` takes raw descriptors).
///
/// - Framing: a 4-byte little-endian length, then exactly the protobuf-c `ActivationFrame` bytes that
///   ZeroMQ would carry. The receiver checks the length against `WireLimits.maxFrameBytes` before it
///   allocates; an oversized length or a connection that ends inside a frame drops that connection
///   (its framing is lost) and is reported; a frame that fails to decode is reported and the
///   connection keeps going (its framing is intact).
/// - Naming: the receiver of an absolute `ipc://PATH` data endpoint also listens on the abstract Unix
///   socket `shard-link:PATH` (no file: nothing to remove, gone with the process). Both ends check that
///   the peer runs under their own uid (SO_PEERCRED).
/// - Negotiation: the sender tries the link first; if nobody listens there (an older receiver, one
///   with the link off, another network namespace), it falls back to a ZeroMQ PUSH. tcp:// endpoints
///   (other hosts) and every control channel stay on ZeroMQ.
/// - `SHARD_LINK=zmq` (in the environment of any end: `shardctl` passes it to the workers it starts)
///   turns the link off: the A/B baseline.
public enum FrameLink {
    /// False when `SHARD_LINK=zmq` is set: activation hops use ZeroMQ only.
    public static var enabled: Bool {
        guard let v = getenv("SHARD_LINK") else { return true }
        return String(cString: v) != "zmq"
    }

    /// The abstract socket name of an ipc:// data endpoint; nil for tcp://, relative ipc paths (two
    /// processes may resolve them differently) and names over the 107 bytes an address holds.
    public static func socketName(forEndpoint endpoint: String) -> String? {
        guard endpoint.hasPrefix("ipc:///") else { return nil }
        let name = "shard-link:" + endpoint.dropFirst(6)
        return name.utf8.count <= 107 ? name : nil
    }

    /// Calls `body` with the sockaddr_un of abstract socket `name`.
    static func withAddress<R>(_ name: String, _ body: (UnsafePointer<sockaddr>, socklen_t) -> R) -> R {
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(name.utf8)
        withUnsafeMutableBytes(of: &address.sun_path) { path in
            path[0] = 0  // abstract namespace
            for (i, b) in bytes.enumerated() { path[i + 1] = b }
        }
        let length = socklen_t(MemoryLayout<sa_family_t>.size + 1 + bytes.count)
        return withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, length) } }
    }

    /// The uid of the process at the other end of a connected Unix socket (SO_PEERCRED).
    static func peerUID(_ fd: Int32) -> uid_t? {
        struct Credentials { var pid: Int32 = 0, uid: UInt32 = 0, gid: UInt32 = 0 }  // struct ucred
        var c = Credentials()
        var length = socklen_t(MemoryLayout<Credentials>.size)
        let soPeerCred: Int32 = 17  // SO_PEERCRED on Linux
        guard getsockopt(fd, SOL_SOCKET, soPeerCred, &c, &length) == 0 else { return nil }
        return c.uid
    }

    static func unixSocket() -> Int32 {
        socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    }

    /// A connected, blocking link to the listener of `endpoint`, or nil if there is none.
    static func connect(_ endpoint: String) -> Int32? {
        guard let name = socketName(forEndpoint: endpoint) else { return nil }
        let fd = unixSocket()
        guard fd >= 0 else { return nil }
        var rc: Int32
        repeat { rc = withAddress(name) { Glibc.connect(fd, $0, $1) } } while rc != 0 && errno == EINTR
        guard rc == 0, peerUID(fd) == getuid() else {
            Glibc.close(fd)
            return nil
        }
        // A Unix stream socket's data in flight counts against the sender's buffer (~208 KiB by
        // default): a larger one lets a prefill frame go in one or two writes instead of a wake-up of
        // each side every 208 KiB. The kernel caps it at net.core.wmem_max.
        var size: Int32 = 4 << 20
        _ = setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, socklen_t(MemoryLayout<Int32>.size))
        return fd
    }

    static let headerBytes = 4
}

/// Where a process sends ActivationFrames to one next hop: the same-host link when the receiver offers
/// it, else a ZeroMQ PUSH. Not thread-safe (one sending thread).
public final class ActivationSender {
    public enum Transport: String, Sendable { case link, zmq }
    public let endpoint: String
    public private(set) var transport: Transport
    private var fd: Int32 = -1
    private var push: ZmqSocket?

    /// `link: false` uses ZeroMQ whatever the receiver offers.
    public init(_ context: ZmqContext, endpoint: String, limits: WireLimits, link: Bool = FrameLink.enabled) throws(WireError) {
        self.endpoint = endpoint
        if link, let fd = FrameLink.connect(endpoint) {
            self.fd = fd
            transport = .link
        } else {
            let s = try ZmqSocket(context, .push, options: .activations(limits))
            try s.connect(endpoint)
            push = s
            transport = .zmq
        }
    }

    deinit { close() }

    public func close() {
        if fd >= 0 { Glibc.close(fd) }
        fd = -1
        push?.close()
    }

    public func send<M: WireMessage>(_ message: M) throws(WireError) {
        try send(message.encodeMessage())
    }

    /// Sends one encoded frame. On the link a write blocks while the receiver's buffer is full; a
    /// receiver that has gone fails the send (EPIPE), and the next send tries to connect again.
    public func send(_ message: ZmqMessage) throws(WireError) {
        if let push { return try push.send(message) }
        if fd < 0 {
            guard let again = FrameLink.connect(endpoint) else { throw .zmq(call: "connect(\(endpoint), link)", errno: ECONNREFUSED) }
            fd = again
        }
        try message.withBytes { (body) throws(WireError) in
            guard body.count <= Int(UInt32.max) else { throw .limitExceeded("frame of \(body.count) bytes") }
            var header = UInt32(body.count).littleEndian
            try withUnsafeMutableBytes(of: &header) { (head) throws(WireError) in
                let total = FrameLink.headerBytes + body.count
                var sent = 0
                while sent < total {
                    var iov = [iovec]()
                    if sent < FrameLink.headerBytes {
                        iov.append(iovec(iov_base: head.baseAddress! + sent, iov_len: FrameLink.headerBytes - sent))
                        if body.count > 0 { iov.append(iovec(iov_base: UnsafeMutableRawPointer(mutating: body.baseAddress!), iov_len: body.count)) }
                    } else {
                        iov.append(iovec(iov_base: UnsafeMutableRawPointer(mutating: body.baseAddress! + (sent - FrameLink.headerBytes)),
                                         iov_len: total - sent))
                    }
                    let n = iov.withUnsafeMutableBufferPointer { v -> Int in
                        var m = msghdr()
                        m.msg_iov = v.baseAddress
                        m.msg_iovlen = v.count
                        return sendmsg(fd, &m, Int32(MSG_NOSIGNAL))
                    }
                    if n < 0 {
                        let e = errno
                        if e == EINTR { continue }
                        Glibc.close(fd)
                        fd = -1
                        throw .zmq(call: "send to \(endpoint) (link)", errno: e)
                    }
                    sent += n
                }
            }
        }
    }
}

/// Where a process receives ActivationFrames: a ZeroMQ PULL bound at the data endpoint and, for an
/// absolute ipc:// endpoint, the same-host link's listener and its connections. Wait with
/// `pollReadable(_:inbox:timeout:)`, then `receive()`. Not thread-safe (one receiving thread).
public final class ActivationInbox {
    /// The bound data endpoint (the port or path libzmq picked for a wildcard).
    public let endpoint: String
    private let pull: ZmqSocket
    private let limits: WireLimits
    private var listener: Int32 = -1
    private var connections: [Connection] = []
    /// What the last poll found (level-triggered: the next poll sets them again).
    fileprivate var pullReady = false, listenerReady = false

    /// At most this many link connections at once (a coordinator and a worker each send to one next
    /// hop; a new coordinator reconnects): newer ones beyond it are refused.
    public static let maxConnections = 16

    fileprivate final class Connection {
        let fd: Int32
        var buffer: UnsafeMutableRawPointer
        var capacity: Int
        var filled = 0
        var ready = false
        init(fd: Int32) {
            self.fd = fd
            capacity = 64 << 10
            buffer = malloc(capacity)!
        }
        deinit {
            free(buffer)
            Glibc.close(fd)
        }
        /// The length of the frame at the head of the buffer, once its prefix is in.
        var frameLength: Int? {
            guard filled >= FrameLink.headerBytes else { return nil }
            var v: UInt32 = 0
            memcpy(&v, buffer, 4)
            return Int(UInt32(littleEndian: v))
        }
        var hasFrame: Bool {
            guard let n = frameLength else { return false }
            return filled >= FrameLink.headerBytes + n
        }
    }

    /// Binds a PULL at `endpoint` and, for an absolute ipc:// path, the link's listener (first, so that
    /// a name taken by a live receiver fails this before libzmq takes over that receiver's socket file).
    /// `link: false` (or SHARD_LINK=zmq) offers no link.
    public init(_ context: ZmqContext, bind endpoint: String, limits: WireLimits, link: Bool = FrameLink.enabled) throws(WireError) {
        self.limits = limits
        if link, let name = FrameLink.socketName(forEndpoint: endpoint) {
            let fd = FrameLink.unixSocket()
            if fd >= 0 {  // else no link: ZeroMQ only
                let bound = FrameLink.withAddress(name) { bind(fd, $0, $1) }
                if bound != 0 || listen(fd, 16) != 0 || fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) != 0 {
                    let e = errno
                    Glibc.close(fd)
                    throw .zmq(call: "bind(\(name))", errno: e)
                }
                listener = fd
            }
        }
        do throws(WireError) {
            pull = try ZmqSocket(context, .pull, options: .activations(limits, receiveTimeout: .zero))
            self.endpoint = try pull.bind(endpoint)
        } catch {
            if listener >= 0 { Glibc.close(listener) }
            throw error
        }
    }

    deinit { close() }

    /// True when senders can use the same-host link.
    public var offersLink: Bool { listener >= 0 }
    /// Link connections open now.
    public var linkConnections: Int { connections.count }

    public func close() {
        if listener >= 0 { Glibc.close(listener) }
        listener = -1
        connections.removeAll()
        pull.close()
    }

    fileprivate var hasBufferedFrame: Bool { connections.contains { $0.hasFrame } }

    fileprivate func pollItems() throws(WireError) -> [zmq_pollitem_t] {
        guard let raw = pull.raw else { throw .closed }
        var items = [zmq_pollitem_t(socket: raw, fd: 0, events: Int16(ZMQ_POLLIN), revents: 0)]
        if listener >= 0 { items.append(zmq_pollitem_t(socket: nil, fd: listener, events: Int16(ZMQ_POLLIN), revents: 0)) }
        for c in connections { items.append(zmq_pollitem_t(socket: nil, fd: c.fd, events: Int16(ZMQ_POLLIN), revents: 0)) }
        return items
    }

    fileprivate func polled(_ items: ArraySlice<zmq_pollitem_t>) {
        var i = items.startIndex
        pullReady = items[i].revents != 0
        i += 1
        if listener >= 0 {
            listenerReady = items[i].revents != 0
            i += 1
        }
        for c in connections {
            c.ready = items[i].revents != 0
            i += 1
        }
    }

    /// The next frame, polling (in steps of at most 100 ms) until `timeout` has passed; nil if none came.
    /// For a thread that waits on this inbox alone (the pipeline's loops also poll control sockets).
    public func next(within timeout: Duration) throws(WireError) -> ActivationFrame? {
        let clock = ContinuousClock()
        let deadline = clock.now + timeout
        while clock.now < deadline {
            guard try pollReadable([], inbox: self, timeout: .milliseconds(100)).frames else { continue }
            if let f = try receive() { return f }
        }
        return nil
    }

    /// The next frame that has arrived, or nil if none is complete yet. A frame that does not decode
    /// throws `.malformed`/`.limitExceeded` after it has been consumed; a link connection whose framing
    /// is lost (an oversized length, or its end inside a frame) is closed and reported the same way.
    /// The sources (each link connection, then the PULL) take turns, starting after the one that gave
    /// the last frame: a sender that always has a frame ready (a chained decode's picks) cannot starve
    /// the others (the coordinator's chain stop).
    public func receive() throws(WireError) -> ActivationFrame? {
        if listenerReady {
            listenerReady = false
            acceptAll()
        }
        let sources = connections
        for k in 0...sources.count {
            let i = (turn + k) % (sources.count + 1)
            if i == sources.count {
                guard pullReady else { continue }
                pullReady = false
                turn = 0
                return try pull.receive(ActivationFrame.self, limits: limits)
            }
            let c = sources[i]
            guard connections.contains(where: { $0 === c }) else { continue }  // dropped meanwhile
            var complete = c.hasFrame
            if !complete && c.ready {
                c.ready = false
                complete = try fill(c)
            }
            if complete {
                turn = i + 1
                return try take(c)
            }
        }
        return nil
    }
    /// Where `receive` starts looking: the source after the one that gave the last frame.
    private var turn = 0

    private func acceptAll() {
        while true {
            let fd = accept(listener, nil, nil)
            if fd < 0 {
                if errno == EINTR { continue }
                return  // EAGAIN: none left (or a transient failure: the next poll retries)
            }
            guard FrameLink.peerUID(fd) == getuid(), connections.count < Self.maxConnections,
                  fcntl(fd, F_SETFD, FD_CLOEXEC) == 0, fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) == 0 else {
                Glibc.close(fd)
                continue
            }
            connections.append(Connection(fd: fd))
        }
    }

    private func drop(_ c: Connection) {
        connections.removeAll { $0 === c }
    }

    /// Reads what `c` has until a whole frame is buffered (true) or nothing more is there (false).
    private func fill(_ c: Connection) throws(WireError) -> Bool {
        while true {
            if let n = c.frameLength {
                guard n <= limits.maxFrameBytes else {
                    drop(c)
                    throw .limitExceeded("link frame of \(n) bytes, limit \(limits.maxFrameBytes); connection closed")
                }
                let need = FrameLink.headerBytes + n
                if c.filled >= need { return true }
                if c.capacity < need {
                    guard let grown = realloc(c.buffer, need) else {
                        drop(c)
                        throw .limitExceeded("no memory for a link frame of \(n) bytes; connection closed")
                    }
                    c.buffer = grown
                    c.capacity = need
                }
            }
            let got = read(c.fd, c.buffer + c.filled, c.capacity - c.filled)
            if got > 0 {
                c.filled += got
                continue
            }
            if got < 0 {
                switch errno {
                case EINTR: continue
                case EAGAIN, EWOULDBLOCK: return false
                default: break  // ECONNRESET...: as an end
                }
            }
            // The sender closed (or reset) the connection.
            let partial = c.filled
            drop(c)
            if partial > 0 { throw .malformed("link connection ended inside a frame (\(partial) bytes buffered)") }
            return false
        }
    }

    /// Decodes the frame at the head of `c`'s buffer and consumes it (also when it does not decode).
    private func take(_ c: Connection) throws(WireError) -> ActivationFrame {
        let n = c.frameLength!
        let total = FrameLink.headerBytes + n
        defer {
            c.filled -= total
            if c.filled > 0 { memmove(c.buffer, c.buffer + total, c.filled) }
        }
        return try ActivationFrame.decode(UnsafeRawBufferPointer(start: c.buffer + FrameLink.headerBytes, count: n), limits: limits)
    }
}

/// zmq_poll over `sockets` and an inbox: which sockets have a message, and whether the inbox may have
/// a frame (then call `inbox.receive()`). A frame already buffered in the inbox makes this not wait.
public func pollReadable(_ sockets: [ZmqSocket], inbox: ActivationInbox, timeout: Duration?) throws(WireError) -> (sockets: [Bool], frames: Bool) {
    var items = [zmq_pollitem_t]()
    items.reserveCapacity(sockets.count + 4)
    for s in sockets {
        guard let raw = s.raw else { throw .closed }
        items.append(zmq_pollitem_t(socket: raw, fd: 0, events: Int16(ZMQ_POLLIN), revents: 0))
    }
    items += try inbox.pollItems()
    let buffered = inbox.hasBufferedFrame
    let ms = buffered ? 0 : timeout.map { Int(ZmqSocket.milliseconds($0)) } ?? -1
    let n = items.count
    do throws(WireError) {
        try zmqCall("zmq_poll") { zmq_poll(&items, Int32(n), ms) }
    } catch .timedOut {
        for i in items.indices { items[i].revents = 0 }
    }
    inbox.polled(items[sockets.count...])
    let frames = buffered || items[sockets.count...].contains { $0.revents != 0 }
    return (items[..<sockets.count].map { $0.revents & Int16(ZMQ_POLLIN) != 0 }, frames)
}
