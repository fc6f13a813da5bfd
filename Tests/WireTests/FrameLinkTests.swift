import Foundation
import Testing
@testable import Wire

/// The same-host activation link (`FrameLink`): frames, hostile bytes, fallback to ZeroMQ, naming.
@Suite struct FrameLinkTests {
    static let limits = WireLimits(maxRows: 64, maxColumns: 4096, maxPayloadBytes: 1 << 20)

    static func frames() -> [ActivationFrame] {
        (0..<4).map { (i: Int) -> ActivationFrame in
            let values: [Float] = (0..<(3 * 1024)).map { (j: Int) -> Float in Float(j + i) }
            return ActivationFrame.hidden(step: UInt64(i), rows: rows(3), logitRows: [2], values: values,
                                          cols: 1024, dtype: i % 2 == 0 ? .f32 : .f16)
        }
    }

    /// The next frame from `inbox`, or what it threw; nil after 5 s without one.
    static func next(_ inbox: ActivationInbox) -> Result<ActivationFrame, WireError>? {
        do throws(WireError) {
            return try inbox.next(within: .seconds(5)).map { .success($0) }
        } catch {
            return .failure(error)
        }
    }

    /// Writes raw bytes on a raw link connection.
    static func write(_ fd: Int32, _ bytes: [UInt8]) {
        let n = bytes.withUnsafeBytes { Foundation.write(fd, $0.baseAddress, $0.count) }
        #expect(n == bytes.count)
    }

    static func header(_ n: UInt32) -> [UInt8] { withUnsafeBytes(of: n.littleEndian) { Array($0) } }

    func endpoint(_ name: String) -> String { "ipc:///tmp/shard-link-test-\(getpid())-\(name)" }

    @Test func linkCarriesFramesAndSurvivesHostileBytes() throws {
        let ctx = try ZmqContext()
        let inbox = try ActivationInbox(ctx, bind: endpoint("hostile"), limits: Self.limits, link: true)
        defer { inbox.close(); unlink(String(inbox.endpoint.dropFirst(6))) }
        #expect(inbox.offersLink)
        let sender = try ActivationSender(ctx, endpoint: inbox.endpoint, limits: Self.limits, link: true)
        defer { sender.close() }
        #expect(sender.transport == .link)
        let frames = Self.frames()

        try sender.send(frames[0])
        #expect(try Self.next(inbox)?.get() == frames[0])

        // Well framed garbage: rejected, and the connection keeps its framing.
        try sender.send(ZmqMessage([0xde, 0xad, 0xbe, 0xef]))
        try sender.send(frames[1])
        guard case .failure(let garbage)? = Self.next(inbox) else { Issue.record("garbage was accepted"); return }
        #expect(garbage.isMalformed)
        #expect(try Self.next(inbox)?.get() == frames[1])
        #expect(inbox.linkConnections == 1)

        // A length over the limit: rejected before anything is allocated, and that connection closed.
        let oversized = try #require(FrameLink.connect(inbox.endpoint))
        defer { close(oversized) }
        Self.write(oversized, Self.header(UInt32(Self.limits.maxFrameBytes + 1)) + [1, 2, 3])
        guard case .failure(let big)? = Self.next(inbox) else { Issue.record("an oversized length was accepted"); return }
        #expect(big.isLimit)
        var byte: UInt8 = 0
        #expect(read(oversized, &byte, 1) == 0, "the inbox kept a connection whose framing is lost")

        // A connection that ends inside a frame: reported, connection gone.
        let truncated = try #require(FrameLink.connect(inbox.endpoint))
        let encoded = frames[2].encode()
        Self.write(truncated, Self.header(UInt32(encoded.count)) + encoded.prefix(100))
        close(truncated)
        guard case .failure(let cut)? = Self.next(inbox) else { Issue.record("a truncated frame was accepted"); return }
        #expect(cut.isMalformed)

        // A zero-length frame is an empty protobuf message: malformed (no kind), not a crash.
        let empty = try #require(FrameLink.connect(inbox.endpoint))
        defer { close(empty) }
        Self.write(empty, Self.header(0))
        guard case .failure(let none)? = Self.next(inbox) else { Issue.record("an empty frame was accepted"); return }
        #expect(none.isMalformed)

        // The first sender is still served, and so is ZeroMQ on the same inbox.
        try sender.send(frames[2])
        #expect(try Self.next(inbox)?.get() == frames[2])
        let zmq = try ActivationSender(ctx, endpoint: inbox.endpoint, limits: Self.limits, link: false)
        defer { zmq.close() }
        #expect(zmq.transport == .zmq)
        try zmq.send(frames[3])
        #expect(try Self.next(inbox)?.get() == frames[3])
        #expect(inbox.linkConnections == 2)  // the sender's and `empty`
    }

    /// Frames larger than the socket buffers arrive whole, several at once arrive in order.
    @Test func largeFramesAndBursts() throws {
        let limits = WireLimits(maxRows: 64, maxColumns: 1 << 16, maxPayloadBytes: 8 << 20)
        let ctx = try ZmqContext()
        let inbox = try ActivationInbox(ctx, bind: endpoint("large"), limits: limits, link: true)
        defer { inbox.close(); unlink(String(inbox.endpoint.dropFirst(6))) }
        let sender = try ActivationSender(ctx, endpoint: inbox.endpoint, limits: limits, link: true)
        #expect(sender.transport == .link)
        let big = ActivationFrame.hidden(step: 9, rows: rows(32), logitRows: [31], values: (0..<(32 * 65536)).map { Float($0 % 977) },
                                         cols: 65536, dtype: .f32)
        let small = Self.frames()
        let thread = TestThread {
            for f in small { try sender.send(f) }
            try sender.send(big)
            for f in small { try sender.send(f) }
        }
        var got: [ActivationFrame] = []
        while got.count < 9, let r = Self.next(inbox) { got.append(try r.get()) }
        try thread.join()
        sender.close()
        #expect(got == small + [big] + small)
    }

    @Test func fallsBackToZeroMQ() throws {
        let ctx = try ZmqContext()
        // A receiver without the link (an older worker, or SHARD_LINK=zmq there): the sender uses ZeroMQ.
        let plain = try ActivationInbox(ctx, bind: endpoint("plain"), limits: Self.limits, link: false)
        defer { plain.close(); unlink(String(plain.endpoint.dropFirst(6))) }
        #expect(!plain.offersLink)
        let s1 = try ActivationSender(ctx, endpoint: plain.endpoint, limits: Self.limits, link: true)
        defer { s1.close() }
        #expect(s1.transport == .zmq)
        try s1.send(Self.frames()[0])
        #expect(try Self.next(plain)?.get() == Self.frames()[0])
        // tcp:// never uses the link.
        let tcp = try ActivationInbox(ctx, bind: "tcp://127.0.0.1:*", limits: Self.limits, link: true)
        defer { tcp.close() }
        #expect(!tcp.offersLink)
        let s2 = try ActivationSender(ctx, endpoint: tcp.endpoint, limits: Self.limits, link: true)
        defer { s2.close() }
        #expect(s2.transport == .zmq)
        try s2.send(Self.frames()[1])
        #expect(try Self.next(tcp)?.get() == Self.frames()[1])
        #expect(FrameLink.socketName(forEndpoint: "ipc://relative/path") == nil)
        #expect(FrameLink.socketName(forEndpoint: "ipc:///" + String(repeating: "x", count: 120)) == nil)
    }

    /// The link's name lives as long as its inbox: a second live receiver is refused, a dead one's name
    /// is free at once (no file to remove), and a sender to a receiver that went fails instead of hanging.
    @Test func nameFollowsTheReceiverAndADeadReceiverFailsTheSend() throws {
        let ctx = try ZmqContext()
        let e = endpoint("name")
        defer { unlink(String(e.dropFirst(6))) }
        let first = try ActivationInbox(ctx, bind: e, limits: Self.limits, link: true)
        #expect(throws: WireError.self) { _ = try ActivationInbox(ctx, bind: e, limits: Self.limits, link: true) }
        let sender = try ActivationSender(ctx, endpoint: e, limits: Self.limits, link: true)
        defer { sender.close() }
        #expect(sender.transport == .link)
        try sender.send(Self.frames()[0])
        #expect(try Self.next(first)?.get() == Self.frames()[0])
        first.close()
        #expect(throws: WireError.self) { try sender.send(Self.frames()[1]) }
        let second = try ActivationInbox(ctx, bind: e, limits: Self.limits, link: true)
        defer { second.close() }
        // The sender reconnects on its next send.
        try sender.send(Self.frames()[2])
        #expect(try Self.next(second)?.get() == Self.frames()[2])
    }
}
