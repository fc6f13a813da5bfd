import Foundation
@testable import Wire

/// Seeded generator so failures reproduce.
struct SplitMix: RandomNumberGenerator {
    var state: UInt64
    init(_ seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// Hand-written protobuf, for frames our encoder would never produce.
struct ProtoWriter {
    var bytes: [UInt8] = []
    mutating func varint(_ v: UInt64) {
        var v = v
        while v >= 0x80 { bytes.append(UInt8(v & 0x7f) | 0x80); v >>= 7 }
        bytes.append(UInt8(v))
    }
    mutating func tag(_ field: Int, _ wireType: Int) { varint(UInt64(field << 3 | wireType)) }
    mutating func uint(_ field: Int, _ v: UInt64) { tag(field, 0); varint(v) }
    mutating func int(_ field: Int, _ v: Int64) { uint(field, UInt64(bitPattern: v)) }
    mutating func bytes(_ field: Int, _ b: [UInt8]) { tag(field, 2); varint(UInt64(b.count)); bytes += b }
    mutating func packed(_ field: Int, _ vs: [UInt64]) {
        var inner = ProtoWriter()
        for v in vs { inner.varint(v) }
        bytes(field, inner.bytes)
    }
}

/// A frame's raw fields (ActivationFrame numbering in shard.proto).
func rawFrame(step: UInt64 = 1, kind: UInt64 = 2, ids: [UInt64], positions: [UInt64], logitRows: [UInt64] = [],
              rows: UInt64, cols: UInt64, dtype: UInt64 = 1, payload: [UInt8]) -> [UInt8] {
    var w = ProtoWriter()
    w.uint(1, step)
    w.uint(2, kind)
    if !ids.isEmpty { w.packed(3, ids) }
    if !positions.isEmpty { w.packed(4, positions) }
    if !logitRows.isEmpty { w.packed(5, logitRows) }
    w.uint(6, rows)
    w.uint(7, cols)
    w.uint(8, dtype)
    w.bytes(9, payload)
    return w.bytes
}

func rows(_ n: Int, firstSequence: UInt64 = 7) -> [ActivationFrame.Row] {
    (0..<n).map { ActivationFrame.Row(sequence: firstSequence + UInt64($0 % 3), position: UInt32(100 + $0)) }
}

/// Decodes and returns the error, or nil if it decoded.
func decodeError<M: WireMessage>(_ type: M.Type, _ bytes: [UInt8], _ limits: WireLimits = WireLimits()) -> WireError? {
    do throws(WireError) {
        _ = try M.decode(bytes, limits: limits)
        return nil
    } catch {
        return error
    }
}

extension WireError {
    var isLimit: Bool { if case .limitExceeded = self { return true } else { return false } }
    var isMalformed: Bool { if case .malformed = self { return true } else { return false } }
}

/// A thread running `body`; `join()` waits and rethrows what it threw.
final class TestThread: @unchecked Sendable {
    private let done = DispatchSemaphore(value: 0)
    private var error: (any Error)?

    init(_ body: @escaping @Sendable () throws -> Void) {
        let t = Thread { [self] in
            do { try body() } catch {
                print("TestThread error: \(error)")
                self.error = error
            }
            done.signal()
        }
        t.start()
    }

    func join() throws {
        done.wait()
        if let error { throw error }
    }
}

private let endpointCounter = NSLock()
nonisolated(unsafe) private var endpointNumber = 0

/// A fresh endpoint: `ipc://` in /tmp (unique per process and call) or `tcp://127.0.0.1:*`.
func testEndpoint(_ transport: String) -> String {
    guard transport == "ipc" else { return "tcp://127.0.0.1:*" }
    endpointCounter.lock()
    endpointNumber += 1
    let n = endpointNumber
    endpointCounter.unlock()
    let path = "/tmp/shard-wire-\(getpid())-\(n).sock"
    unlink(path)
    return "ipc://" + path
}

func removeEndpoint(_ endpoint: String) {
    if endpoint.hasPrefix("ipc://") { unlink(String(endpoint.dropFirst(6))) }
}
