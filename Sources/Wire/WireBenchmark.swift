#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Per-hop latency and one-way throughput of ActivationFrames between two threads, each with its own
/// ZeroMQ context (as two processes would have). A hop is encode + send + poll + receive + decode.
public enum WireBenchmark {
    public struct Result: Sendable {
        public var transport: String
        public var payloadBytes: Int
        public var encodeSeconds: Double, decodeSeconds: Double   // in-process, no socket
        public var hopP50: Double, hopMean: Double, hopP99: Double  // seconds
        public var megabytesPerSecond: Double, framesPerSecond: Double
    }

    /// `transport`: "ipc" (ZeroMQ, a socket file in /tmp), "tcp" (ZeroMQ, 127.0.0.1, any port) or "link"
    /// (the same-host link of `FrameLink`). Sent with `ActivationSender`, received with `ActivationInbox`
    /// after `pollReadable`, as the shard pipeline does.
    public static func measure(transport: String, payloadBytes: Int, iterations: Int = 300,
                               dtype: DType = .f32) throws -> Result {
        let cols = 1024
        let rowCount = max(1, payloadBytes / (cols * dtype.byteSize))
        let frame = ActivationFrame.hidden(step: 1, rows: (0..<rowCount).map { .init(sequence: UInt64($0), position: 7) },
                                           logitRows: [UInt32(rowCount - 1)],
                                           values: [Float](repeating: 0.5, count: rowCount * cols), cols: cols, dtype: dtype)
        let limits = WireLimits(maxRows: rowCount, maxColumns: cols, maxPayloadBytes: frame.payload.count)

        // Codec alone.
        let clock = ContinuousClock()
        var encoded: [UInt8] = []
        let te = clock.measure { for _ in 0..<iterations { encoded = frame.encode() } }
        var decodeError: WireError?
        let td = clock.measure {
            for _ in 0..<iterations {
                do throws(WireError) { _ = try ActivationFrame.decode(encoded, limits: limits) } catch { decodeError = error }
            }
        }
        if let decodeError { throw decodeError }

        var files: [String] = []
        defer { files.forEach { unlink($0) } }
        func endpoint(_ name: String) -> String {
            guard transport != "tcp" else { return "tcp://127.0.0.1:*" }
            files.append("/tmp/shard-wire-bench-\(getpid())-\(name).sock")
            return "ipc://" + files.last!
        }
        // As the pipeline does it: each receiver's inbox is bound before its sender connects.
        let link = transport == "link"
        let ctx = try ZmqContext(), echoContext = try ZmqContext()
        let back = try ActivationInbox(ctx, bind: endpoint("back"), limits: limits, link: link)
        let input = try ActivationInbox(echoContext, bind: endpoint("out"), limits: limits, link: link)
        let out = try ActivationSender(ctx, endpoint: input.endpoint, limits: limits, link: link)
        let output = try ActivationSender(echoContext, endpoint: back.endpoint, limits: limits, link: link)
        guard out.transport == (link ? .link : .zmq), output.transport == out.transport else {
            throw WireError.malformed("wire-bench: \(transport) asked for, \(out.transport) connected")
        }
        func next(_ inbox: ActivationInbox) throws -> ActivationFrame {
            guard let f = try inbox.next(within: .seconds(10)) else { throw WireError.timedOut }
            return f
        }
        let warmup = 20
        let echo = try BenchThread {
            for _ in 0..<(iterations + warmup) { try output.send(try next(input)) }
            var decoded = 0
            for _ in 0..<iterations { decoded += try next(input).payload.count }
            try output.send(ActivationFrame.tokens(step: UInt64(decoded), rows: [], logitRows: [], tokens: []))
            _ = try next(input)  // main thread done: close after it
        }

        // Latency: frame out, echoed back (two hops).
        var rtts: [Double] = []
        for i in 0..<(iterations + warmup) {
            let t0 = clock.now
            try out.send(frame)
            let f = try next(back)
            let dt = clock.now - t0
            precondition(f.payload.count == frame.payload.count)
            if i >= warmup { rtts.append(dt.seconds) }
        }
        rtts.sort()
        // Throughput: stream one way; the echo thread decodes each and acknowledges the byte count.
        let t0 = clock.now
        for _ in 0..<iterations { try out.send(frame) }
        let ack = try next(back)
        let seconds = (clock.now - t0).seconds
        precondition(ack.stepID == UInt64(iterations * frame.payload.count), "echo thread lost frames")
        try out.send(frame)
        try echo.join()
        for c in [out, output] as [ActivationSender] { c.close() }
        back.close()
        input.close()
        return Result(transport: transport, payloadBytes: frame.payload.count,
                      encodeSeconds: te.seconds / Double(iterations), decodeSeconds: td.seconds / Double(iterations),
                      hopP50: rtts[rtts.count / 2] / 2, hopMean: rtts.reduce(0, +) / Double(rtts.count) / 2,
                      hopP99: rtts[rtts.count * 99 / 100] / 2,
                      megabytesPerSecond: Double(iterations * frame.payload.count) / seconds / 1e6,
                      framesPerSecond: Double(iterations) / seconds)
    }

    /// The table printed by `SHARD_WIRE_BENCH=1 swift test --filter WireTests.WireBenchmark`.
    public static func report(sizes: [Int] = [64 << 10, 1 << 20], iterations: Int = 300) throws -> String {
        var lines = ["libzmq \(ZmqContext.version); hidden-state frames, f32, 1024 columns; hop = encode + send + poll + recv + decode; link = same-host Unix socket (FrameLink)",
                     "transport  payload  encode    decode    hop p50    hop mean   hop p99    throughput"]
        for transport in ["link", "ipc", "tcp"] {
            for size in sizes {
                let r = try measure(transport: transport, payloadBytes: size, iterations: iterations)
                lines.append("\(pad(transport, 9))  \(pad("\(size >> 10) KiB", 7))  \(us(r.encodeSeconds))  \(us(r.decodeSeconds))  "
                             + "\(us(r.hopP50))  \(us(r.hopMean))  \(us(r.hopP99))  "
                             + "\(Int(r.megabytesPerSecond.rounded())) MB/s (\(Int(r.framesPerSecond.rounded())) frames/s)")
            }
        }
        return lines.joined(separator: "\n")
    }

    private static func pad(_ s: String, _ n: Int) -> String { s + String(repeating: " ", count: max(0, n - s.count)) }
    private static func us(_ s: Double) -> String {
        let tenths = Int((s * 1e7).rounded())
        return pad("\(tenths / 10).\(tenths % 10) us", 9)
    }
}

extension Duration {
    /// The duration in seconds as a Double.
    public var seconds: Double { Double(components.seconds) + Double(components.attoseconds) * 1e-18 }
}

/// A pthread running a throwing closure (no Foundation in this module).
private final class BenchThread: @unchecked Sendable {
    private var thread = pthread_t()
    private let body: () throws -> Void
    private var error: (any Error)?

    init(_ body: @escaping () throws -> Void) throws {
        self.body = body
        let me = Unmanaged.passRetained(self).toOpaque()
        let rc = pthread_create(&thread, nil, { arg in
            let t = Unmanaged<BenchThread>.fromOpaque(arg!).takeRetainedValue()
            do { try t.body() } catch { t.error = error }
            return nil
        }, me)
        if rc != 0 {
            Unmanaged<BenchThread>.fromOpaque(me).release()
            throw WireError.zmq(call: "pthread_create", errno: rc)
        }
    }

    func join() throws {
        pthread_join(thread, nil)
        if let error { throw error }
    }
}
