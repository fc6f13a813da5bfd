import Testing
@testable import Wire

/// Truncated, oversized, inconsistent and random frames: decoding throws a WireError, never traps, and
/// nothing sized by the input is allocated before the limits are checked.
@Suite struct HostileFrameTests {
    static let small = WireLimits(maxRows: 16, maxColumns: 64, maxPayloadBytes: 4096, maxStringLength: 32,
                                  maxReleaseIDs: 8, maxControlBytes: 512)

    func sample() -> ActivationFrame {
        ActivationFrame.hidden(step: 5, rows: rows(3), logitRows: [2], values: (0..<24).map { Float($0) }, cols: 8)
    }

    @Test func everyTruncationIsRejected() {
        let bytes = sample().encode()
        for n in 0..<bytes.count {
            #expect(decodeError(ActivationFrame.self, Array(bytes[..<n])) != nil, "prefix \(n) of \(bytes.count)")
        }
        for c in MessageRoundTripTests.controls {
            let b = c.encode()
            for n in 0..<b.count {
                // A prefix can be a valid shorter message only if it ends on a field boundary: then it must
                // still decode to a valid Control; otherwise it throws.
                if let e = decodeError(Control.self, Array(b[..<n])) { #expect(e.isMalformed || e.isLimit) }
            }
        }
    }

    @Test func payloadShapeMismatch() {
        let payload = [UInt8](repeating: 0, count: 96)
        // 3 × 8 × f32 = 96 bytes: correct frame decodes.
        #expect(decodeError(ActivationFrame.self, rawFrame(ids: [1, 2, 3], positions: [0, 1, 2], rows: 3, cols: 8, payload: payload)) == nil)
        for (rowsV, cols, dtype, bytes) in [(3, 8, 1, 95), (3, 8, 1, 97), (3, 8, 2, 96), (3, 7, 1, 96), (3, 8, 1, 0), (3, 0, 1, 0)] {
            let f = rawFrame(ids: [1, 2, 3], positions: [0, 1, 2], rows: UInt64(rowsV), cols: UInt64(cols), dtype: UInt64(dtype),
                             payload: [UInt8](repeating: 0, count: bytes))
            #expect(decodeError(ActivationFrame.self, f)?.isMalformed == true, "\(rowsV)×\(cols) dtype \(dtype) with \(bytes) B")
        }
    }

    @Test func rowBookkeepingMismatch() {
        let p = [UInt8](repeating: 0, count: 96)
        let cases: [[UInt8]] = [
            rawFrame(ids: [1, 2, 3], positions: [0, 1], rows: 3, cols: 8, payload: p),            // positions ≠ rows
            rawFrame(ids: [1, 2], positions: [0, 1, 2], rows: 3, cols: 8, payload: p),            // ids ≠ rows
            rawFrame(ids: [1, 2, 3], positions: [0, 1, 2], rows: 2, cols: 12, payload: p),        // shape rows ≠ rows
            rawFrame(ids: [1, 2, 3], positions: [0, 1, 2], logitRows: [3], rows: 3, cols: 8, payload: p),    // out of range
            rawFrame(ids: [1, 2, 3], positions: [0, 1, 2], logitRows: [2, 1], rows: 3, cols: 8, payload: p), // unsorted
            rawFrame(ids: [1, 2, 3], positions: [0, 1, 2], logitRows: [1, 1], rows: 3, cols: 8, payload: p), // repeated
            rawFrame(kind: 3, ids: [1, 2, 3], positions: [0, 1, 2], logitRows: [2], rows: 3, cols: 8, payload: p), // logits rows
            rawFrame(kind: 1, ids: [1, 2, 3], positions: [0, 1, 2], rows: 3, cols: 8, payload: p), // tokens as f32 × 8
            rawFrame(kind: 1, ids: [1, 2, 3], positions: [0, 1, 2], rows: 3, cols: 1, dtype: 1, payload: Array(p[..<12])),
            rawFrame(kind: 2, ids: [1, 2, 3], positions: [0, 1, 2], rows: 3, cols: 8, dtype: 3, payload: p), // hidden as i32
            rawFrame(kind: 0, ids: [1, 2, 3], positions: [0, 1, 2], rows: 3, cols: 8, payload: p), // no kind
            rawFrame(kind: 9, ids: [1, 2, 3], positions: [0, 1, 2], rows: 3, cols: 8, payload: p), // unknown kind
            rawFrame(ids: [1, 2, 3], positions: [0, 1, 2], rows: 3, cols: 8, dtype: 0, payload: p), // no dtype
            rawFrame(ids: [1, 2, 3], positions: [0, 1, 2], rows: 3, cols: 8, dtype: 77, payload: p),
        ]
        for (i, f) in cases.enumerated() {
            #expect(decodeError(ActivationFrame.self, f)?.isMalformed == true, "case \(i)")
        }
    }

    @Test func negativeAndHugeCounts() {
        let p = [UInt8](repeating: 0, count: 32)
        let minusOne = UInt64(bitPattern: -1)
        let cases: [[UInt8]] = [
            rawFrame(ids: [1], positions: [0], rows: minusOne, cols: 8, payload: p),          // -1 rows (10-byte varint)
            rawFrame(ids: [1], positions: [0], rows: 1, cols: minusOne, payload: p),          // -1 cols
            rawFrame(ids: [1], positions: [0], rows: 1, cols: UInt64(UInt32.max), payload: p),
            rawFrame(ids: [1], positions: [0], rows: 1 << 40, cols: 1 << 40, payload: p),
        ]
        for (i, f) in cases.enumerated() {
            #expect(decodeError(ActivationFrame.self, f) != nil, "case \(i)")
        }
        // A length prefix claiming far more bytes than the frame holds.
        var w = ProtoWriter()
        w.uint(1, 1)
        w.tag(9, 2)
        w.varint(1 << 62)
        w.bytes += [1, 2, 3]
        #expect(decodeError(ActivationFrame.self, w.bytes)?.isMalformed == true)
        // A packed run claiming more ids than maxRows is refused before protobuf-c allocates for it.
        let many = rawFrame(ids: (0..<17).map { UInt64($0) }, positions: (0..<17).map { UInt64($0) }, rows: 17, cols: 1,
                            payload: [UInt8](repeating: 0, count: 68))
        #expect(decodeError(ActivationFrame.self, many, Self.small)?.isLimit == true)
        // A 2-byte varint continuing past the end of a packed run.
        var t = ProtoWriter()
        t.bytes(3, [0x81])
        #expect(decodeError(ActivationFrame.self, t.bytes)?.isMalformed == true)
        // An 11-byte varint.
        #expect(decodeError(ActivationFrame.self, [0x08] + [UInt8](repeating: 0xff, count: 10) + [0x01])?.isMalformed == true)
        // Groups (wire types 3, 4) and field number 0.
        #expect(decodeError(ActivationFrame.self, [0x0b, 0x0c])?.isMalformed == true)
        #expect(decodeError(ActivationFrame.self, [0x00, 0x01])?.isMalformed == true)
    }

    @Test func limitsAreEnforced() {
        let l = Self.small
        let big = ActivationFrame.hidden(step: 1, rows: rows(2), logitRows: [], values: [Float](repeating: 1, count: 2 * 65), cols: 65)
        #expect(decodeError(ActivationFrame.self, big.encode(), l)?.isLimit == true)            // columns
        let wide = ActivationFrame.hidden(step: 1, rows: rows(16), logitRows: [], values: [Float](repeating: 1, count: 16 * 64), cols: 64)
        #expect(decodeError(ActivationFrame.self, wide.encode(), l) == nil)                      // exactly at the limits
        var l2 = l
        l2.maxPayloadBytes = 4095
        #expect(decodeError(ActivationFrame.self, wide.encode(), l2)?.isLimit == true)          // payload bytes
        #expect(throws: WireError.self) { try wide.validate(limits: l2) }

        let name = String(repeating: "x", count: 33)
        let reg = Control(.register(Register(workerID: name, backend: .cpu, deviceName: "", freeMemoryBytes: 0, host: "")))
        #expect(decodeError(Control.self, reg.encode(), l)?.isLimit == true)                    // string length
        #expect(decodeError(Register.self, Register(workerID: name, backend: .cpu, deviceName: "", freeMemoryBytes: 0,
                                                    host: "").encode(), l)?.isLimit == true)
        let rel = Control(.releaseSequence(ReleaseSequence(sequenceIDs: Array(0..<9))))
        #expect(decodeError(Control.self, rel.encode(), l)?.isLimit == true)                    // release ids
        var l3 = l
        l3.maxStringLength = 4096
        let long = Control(.error(ErrorReport(code: .internalError, message: String(repeating: "e", count: 600))))
        #expect(decodeError(Control.self, long.encode(), l3)?.isLimit == true)                  // control bytes
        let load = Control(.loadShard(LoadShard(modelPath: "m", layerStart: 0, layerEnd: 1, contextLength: 1, maxBatchRows: 17)))
        #expect(decodeError(Control.self, load.encode(), l)?.isLimit == true)                   // batch rows > maxRows
    }

    @Test func badControlMessages() {
        #expect(decodeError(Control.self, [])?.isMalformed == true)                             // no body
        var two = ProtoWriter()
        two.bytes(8, [])
        two.bytes(8, [])
        #expect(decodeError(Control.self, two.bytes)?.isMalformed == true)                      // two bodies
        var mixed = ProtoWriter()
        mixed.bytes(8, [])
        mixed.bytes(9, [])
        #expect(decodeError(Control.self, mixed.bytes)?.isMalformed == true)
        var utf = ProtoWriter()
        var err = ProtoWriter()
        err.bytes(2, [0x66, 0xff, 0xfe])
        utf.bytes(9, err.bytes)
        #expect(decodeError(Control.self, utf.bytes)?.isMalformed == true)                      // invalid UTF-8
        var backend = ProtoWriter()
        var reg = ProtoWriter()
        reg.uint(3, 9)
        backend.bytes(2, reg.bytes)
        #expect(decodeError(Control.self, backend.bytes)?.isMalformed == true)                  // unknown backend
        var range = ProtoWriter()
        var ls = ProtoWriter()
        ls.uint(3, 10)
        ls.uint(4, 2)
        range.bytes(3, ls.bytes)
        #expect(decodeError(Control.self, range.bytes)?.isMalformed == true)                    // layer 10..<2
        var nan = ProtoWriter()
        var hb = ProtoWriter()
        hb.tag(3, 5)
        hb.bytes += [0x00, 0x00, 0xc0, 0x7f]
        nan.bytes(5, hb.bytes)
        #expect(decodeError(Control.self, nan.bytes)?.isMalformed == true)                      // NaN load
        // Unknown fields from a newer peer are skipped.
        var newer = ProtoWriter()
        newer.bytes(8, [])
        newer.uint(100, 5)
        #expect(decodeError(Control.self, newer.bytes) == nil)
    }

    @Test func randomGarbageAndMutations() {
        var rng = SplitMix(2024)
        var decoded = 0
        for _ in 0..<3000 {
            let n = Int.random(in: 0...300, using: &rng)
            let junk = (0..<n).map { _ in UInt8.random(in: 0...255, using: &rng) }
            if decodeError(ActivationFrame.self, junk) == nil { decoded += 1 }
            if decodeError(Control.self, junk) == nil { decoded += 1 }
        }
        let frame = sample().encode()
        let control = MessageRoundTripTests.controls[1].encode()
        for _ in 0..<3000 {
            for base in [frame, control] {
                var m = base
                for _ in 0..<Int.random(in: 1...4, using: &rng) {
                    m[Int.random(in: 0..<m.count, using: &rng)] = UInt8.random(in: 0...255, using: &rng)
                }
                do throws(WireError) {
                    if base == frame { try ActivationFrame.decode(m).validate() } else { _ = try Control.decode(m) }
                } catch {
                    #expect(error.isMalformed || error.isLimit)
                }
            }
        }
        #expect(decoded < 100)  // almost all random bytes are rejected
    }
}

import CShardProto
#if canImport(Glibc)
import Glibc
#endif

/// The decoder's allocation budget relies on protobuf-c failing cleanly when its allocator returns NULL:
/// check that for every cut-off point of a real frame (run under --sanitize=address to see leaks/overruns).
@Test func protobufCSurvivesAllocatorFailureAtEveryPoint() {
    let frame = ActivationFrame.hidden(step: 5, rows: rows(3), logitRows: [2], values: (0..<24).map { Float($0) }, cols: 8)
    let bytes = frame.encode()
    var needed = 0
    for budget in 0..<4096 {
        let left = UnsafeMutablePointer<Int>.allocate(capacity: 1)
        left.initialize(to: budget)
        defer { left.deallocate() }
        var allocator = ProtobufCAllocator(
            alloc: { data, size in
                let left = data!.assumingMemoryBound(to: Int.self)
                guard size <= left.pointee else { return nil }
                left.pointee -= size
                return malloc(max(size, 1))
            },
            free: { _, p in free(p) },
            allocator_data: UnsafeMutableRawPointer(left))
        if let m = shard__activation_frame__unpack(&allocator, bytes.count, bytes) {
            #expect(m.pointee.payload.len == 96)
            shard__activation_frame__free_unpacked(m, &allocator)
            needed = budget
            break
        }
    }
    #expect(needed > 96)  // it failed cleanly below the real need, then succeeded
}
