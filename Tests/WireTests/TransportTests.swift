import Foundation
import Testing
@testable import Wire

/// ZeroMQ exchanges inside one process, peer on a second thread, over ipc:// and tcp://127.0.0.1.
@Suite struct TransportTests {
    static let limits = WireLimits(maxRows: 64, maxColumns: 4096, maxPayloadBytes: 1 << 20)

    @Test(arguments: ["ipc", "tcp"]) func pushPullKeepsServingAfterMalformedFrames(_ transport: String) throws {
        let ctx = try ZmqContext()
        let pull = try ZmqSocket(ctx, .pull, options: .activations(Self.limits, receiveTimeout: .seconds(5)))
        let endpoint = try pull.bind(testEndpoint(transport))
        defer { removeEndpoint(endpoint) }
        let frames: [ActivationFrame] = (0..<4).map { (i: Int) -> ActivationFrame in
            let values: [Float] = (0..<(3 * 1024)).map { (j: Int) -> Float in Float(j + i) }
            let dtype: DType = i % 2 == 0 ? .f32 : .f16
            return ActivationFrame.hidden(step: UInt64(i), rows: rows(3), logitRows: [2], values: values,
                                          cols: 1024, dtype: dtype)
        }
        // Linger is 0: a socket closed with messages still queued drops them, so the sender stays open
        // until the receiver is done.
        let push = try ZmqSocket(ctx, .push, options: SocketOptions(sendTimeout: .seconds(5)))
        try push.connect(endpoint)
        let sender = TestThread {
            try push.send(frames[0])
            try push.send(ZmqMessage([0xde, 0xad, 0xbe, 0xef]))                     // garbage
            try push.send(frames[1])
            var bad = frames[2]
            bad.rows.removeLast()                                                    // rows ≠ shape
            try push.send(bad)
            try push.send(frames[2])
            try push.send(parts: [ZmqMessage(frames[3].encode()), ZmqMessage([1])]) // two parts
            try push.send(frames[3])
        }
        var received: [ActivationFrame] = []
        var rejected: [WireError] = []
        while received.count < 4 {
            do throws(WireError) {
                guard let f = try pull.receive(ActivationFrame.self, limits: Self.limits) else {
                    Issue.record("timed out after \(received.count) frames")
                    break
                }
                received.append(f)
            } catch {
                rejected.append(error)
            }
        }
        try sender.join()
        #expect(received == frames)
        #expect(rejected.count == 3)
        #expect(rejected.allSatisfy { $0.isMalformed })
    }

    @Test(arguments: ["ipc", "tcp"]) func routerDealerControlExchange(_ transport: String) throws {
        let ctx = try ZmqContext()
        let router = try ZmqSocket(ctx, .router, options: .control(Self.limits, receiveTimeout: .seconds(5)))
        let endpoint = try router.bind(testEndpoint(transport))
        defer { removeEndpoint(endpoint) }

        let worker = TestThread {
            let dealer = try ZmqSocket(ctx, .dealer, options: .control(Self.limits, receiveTimeout: .seconds(5),
                                                                       routingID: Array("worker-7".utf8)))
            try dealer.connect(endpoint)
            try dealer.send(Control(.register(Register(workerID: "worker-7", backend: .cpu, deviceName: "cpu",
                                                       freeMemoryBytes: 1 << 30, host: "localhost"))))
            guard case .loadShard(let load)? = try dealer.receive(Control.self, limits: Self.limits).map(\.body),
                  let loadID = Optional(load) else { throw WireError.malformed("expected LoadShard") }
            try dealer.send(Control(requestID: 11, .ready(Ready(workerID: "worker-7", layerStart: loadID.layerStart,
                                                                 layerEnd: loadID.layerEnd, memoryUsedBytes: 123))))
            try dealer.send(ZmqMessage([0x4a, 0x55, 0x4e, 0x4b]))  // garbage on the control channel
            guard let reply = try dealer.receive(Control.self, limits: Self.limits),
                  case .error(let e) = reply.body, e.code == .malformedFrame else { throw WireError.malformed("expected Error") }
            guard case .shutdown? = try dealer.receive(Control.self, limits: Self.limits)?.body else {
                throw WireError.malformed("expected Shutdown")
            }
        }

        // Coordinator side.
        let first = try #require(try router.receiveRouted(Control.self, limits: Self.limits))
        #expect(first.peer == PeerID(Array("worker-7".utf8)))
        guard case .register(let reg) = try first.message.get().body else { Issue.record("expected Register"); return }
        #expect(reg.workerID == "worker-7" && reg.protocolVersion == wireProtocolVersion)
        try router.send(Control(requestID: 11, .loadShard(LoadShard(modelPath: "/m.gguf", layerStart: 0, layerEnd: 12,
                                                                   contextLength: 4096, maxBatchRows: 64))), to: first.peer)
        let ready = try #require(try router.receiveRouted(Control.self, limits: Self.limits))
        #expect(try ready.message.get() == Control(requestID: 11, .ready(Ready(workerID: "worker-7", layerStart: 0,
                                                                                 layerEnd: 12, memoryUsedBytes: 123))))
        let junk = try #require(try router.receiveRouted(Control.self, limits: Self.limits))
        #expect(junk.peer == first.peer)
        guard case .failure(let why) = junk.message else { Issue.record("garbage decoded"); return }
        try router.send(Control(.error(ErrorReport(code: .malformedFrame, message: why.description))), to: junk.peer)
        try router.send(Control(.shutdown(Shutdown())), to: first.peer)
        try worker.join()
        // ROUTER_MANDATORY: an unknown peer is an error, not a silent drop.
        #expect(throws: WireError.self) { try router.send(Control(.shutdown(Shutdown())), to: PeerID([1, 2, 3])) }
    }

    @Test func receiveTimeout() throws {
        let ctx = try ZmqContext()
        let pull = try ZmqSocket(ctx, .pull, options: SocketOptions(receiveTimeout: .milliseconds(100)))
        _ = try pull.bind("tcp://127.0.0.1:*")
        let t0 = ContinuousClock.now
        #expect(try pull.receive(ActivationFrame.self, limits: Self.limits) == nil)
        let waited = ContinuousClock.now - t0
        #expect(waited >= .milliseconds(90) && waited < .seconds(2))
        try pull.setReceiveTimeout(.zero)
        #expect(try pull.receiveMultipart() == nil)
        // Send timeout: a PUSH with no peer cannot send.
        let push = try ZmqSocket(ctx, .push, options: SocketOptions(sendTimeout: .milliseconds(50)))
        #expect(throws: WireError.timedOut) { try push.send(ZmqMessage([1])) }
    }

    @Test func libzmqRefusesOversizedMessages() throws {
        let small = WireLimits(maxRows: 4, maxColumns: 64, maxPayloadBytes: 1024)
        let ctx = try ZmqContext()
        let pull = try ZmqSocket(ctx, .pull, options: .activations(small, receiveTimeout: .milliseconds(50)))
        let endpoint = try pull.bind("tcp://127.0.0.1:*")
        let push = try ZmqSocket(ctx, .push, options: SocketOptions(sendTimeout: .seconds(2)))
        try push.connect(endpoint)
        try push.send(ZmqMessage([UInt8](repeating: 7, count: 64 << 10)))  // over ZMQ_MAXMSGSIZE: connection dropped
        let ok = ActivationFrame.tokens(step: 9, rows: rows(2), logitRows: [1], tokens: [5, 6])
        // libzmq reconnects; a frame within the limit gets through and the oversized one never arrives.
        var got: ActivationFrame?
        let deadline = ContinuousClock.now + .seconds(5)
        while got == nil && ContinuousClock.now < deadline {
            try push.send(ok)
            got = try pull.receive(ActivationFrame.self, limits: small)
        }
        #expect(got == ok)
    }

    @Test func contextShutdownUnblocksReceive() throws {
        let ctx = try ZmqContext()
        let pull = try ZmqSocket(ctx, .pull)  // blocks forever
        _ = try pull.bind("tcp://127.0.0.1:*")
        let receiver = TestThread {
            #expect(throws: WireError.closed) { _ = try pull.receive(ActivationFrame.self, limits: Self.limits) }
            pull.close()
        }
        Thread.sleep(forTimeInterval: 0.05)
        ctx.shutdown()
        try receiver.join()
        #expect(throws: WireError.closed) { try pull.bind("tcp://127.0.0.1:*") }
    }

    @Test func pollReportsReadableSockets() throws {
        let ctx = try ZmqContext()
        let a = try ZmqSocket(ctx, .pull), b = try ZmqSocket(ctx, .pull)
        let ea = try a.bind("tcp://127.0.0.1:*")
        _ = try b.bind("tcp://127.0.0.1:*")
        let push = try ZmqSocket(ctx, .push)
        try push.connect(ea)
        #expect(try pollReadable([a, b], timeout: .milliseconds(10)) == [false, false])
        try push.send(ZmqMessage([1, 2, 3]))
        #expect(try pollReadable([a, b], timeout: .seconds(5)) == [true, false])
        #expect(try a.receiveMultipart()?.first?.array == [1, 2, 3])
    }

    @Test func generatedCodeIsCurrent() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let hasProtocC = (ProcessInfo.processInfo.environment["PATH"] ?? "").split(separator: ":")
            .contains { FileManager.default.isExecutableFile(atPath: "\($0)/protoc-c") }
        guard hasProtocC else { return }  // CI images without protobuf-c-compiler build from the committed code
        let p = Process()
        p.executableURL = root.appendingPathComponent("scripts/gen-proto.sh")
        p.arguments = ["--check"]
        let pipe = Pipe()
        p.standardOutput = pipe
        p.standardError = pipe
        try p.run()
        p.waitUntilExit()
        let out = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(p.terminationStatus == 0, "\(out)")
    }
}
