import Testing
@testable import Wire

/// The KV fields of the protocol: page operations carried by frames (releases, prefix forks), the KV
/// budget in LoadShard and the pool a worker reports in Ready. Every count is bounded before decoding.
@Suite struct PageOperationTests {
    @Test func framesCarryReleasesAndForks() throws {
        var f = ActivationFrame.tokens(step: 3, rows: rows(2), logitRows: [1], tokens: [5, 6])
        f.releaseIDs = [9, .max, 0]
        f.forks = [ActivationFrame.Fork(sequence: 11, source: 9, length: 64), ActivationFrame.Fork(sequence: 12, source: 9, length: 32)]
        let g = try ActivationFrame.decode(f.encode())
        #expect(g == f)
        // A frame of page operations only.
        var ops = ActivationFrame.tokens(step: 4, rows: [], logitRows: [], tokens: [])
        ops.releaseIDs = [1]
        #expect(try ActivationFrame.decode(ops.encode()) == ops)
    }

    @Test func kvFieldsOfLoadShardAndReady() throws {
        var load = LoadShard(modelPath: "m.gguf", layerStart: 0, layerEnd: 4, contextLength: 8192, kvType: .q8_0, maxBatchRows: 64)
        load.kvMemoryBytes = 3 << 30
        load.kvPageSize = 16
        load.maxSequences = 64
        #expect(try LoadShard.decode(load.encode()) == load)
        load.kvMemoryBytes = 0
        load.kvMemoryFraction = 0.9
        #expect(try Control.decode(Control(.loadShard(load)).encode()) == Control(.loadShard(load)))
        var ready = Ready(workerID: "w", layerStart: 0, layerEnd: 4, memoryUsedBytes: 10)
        ready.kvPages = 1000
        ready.kvPageSize = 32
        ready.kvWindow = 1024
        ready.kvRingPages = 34
        ready.kvWindowPages = 34 * 16
        ready.kvBytes = 1 << 30
        #expect(try Ready.decode(ready.encode()) == ready)
        #expect(KVType(name: "q8_0") == .q8_0 && KVType.q8_0.name == "q8_0")
    }

    @Test func hostilePageOperations() {
        let base = rawFrame(kind: 1, ids: [1], positions: [0], rows: 1, cols: 1, dtype: 3, payload: [0, 0, 0, 0])
        func with(_ extra: (inout ProtoWriter) -> Void) -> [UInt8] {
            var w = ProtoWriter()
            w.bytes = base
            extra(&w)
            return w.bytes
        }
        // Fork fields of different lengths.
        let uneven = with { $0.packed(11, [1, 2]); $0.packed(12, [3]); $0.packed(13, [32, 32]) }
        #expect(decodeError(ActivationFrame.self, uneven)?.isMalformed == true)
        // More release ids than the limit, more forks than rows allow: refused before unpacking.
        let limits = HostileFrameTests.small
        let releases = with { $0.packed(10, (0..<9).map { UInt64($0) }) }
        #expect(decodeError(ActivationFrame.self, releases, limits)?.isLimit == true)
        let forks = with { w in for f in 11...13 { w.packed(f, (0..<17).map { UInt64($0) }) } }
        #expect(decodeError(ActivationFrame.self, forks, limits)?.isLimit == true)
        // Within the limits they decode.
        let fine = with { $0.packed(10, [1, 2]); $0.packed(11, [5]); $0.packed(12, [1]); $0.packed(13, [16]) }
        #expect(decodeError(ActivationFrame.self, fine, limits) == nil)

        // LoadShard: a fraction outside (0, 1], an absurd page size or sequence count.
        for (field, value) in [(12, UInt64(Float(2).bitPattern)), (12, UInt64(Float.nan.bitPattern)), (13, 1 << 20), (14, 1 << 30)] {
            var w = ProtoWriter()
            w.bytes(1, Array("m".utf8))
            if field == 12 {
                w.tag(12, 5)
                let bits = UInt32(value)
                w.bytes += [UInt8(bits & 0xff), UInt8(bits >> 8 & 0xff), UInt8(bits >> 16 & 0xff), UInt8(bits >> 24)]
            } else {
                w.uint(field, value)
            }
            #expect(decodeError(LoadShard.self, w.bytes) != nil, "field \(field) = \(value)")
        }
        // Ready: a ring larger than its pool.
        var r = ProtoWriter()
        r.uint(5, 10)
        r.uint(6, 32)
        r.uint(8, 40)
        r.uint(9, 20)
        #expect(decodeError(Ready.self, r.bytes)?.isMalformed == true)
    }
}
