import Model
import ShardRuntime
import Testing

@Suite struct StreamingKVCacheTests {
    @Test func reservesWholePagesAndReleasesThem() throws {
        let kv = StreamingKVCache(pageSize: 16, pageCount: 4, contextLength: 64)
        try kv.reserve(1, length: 17)
        #expect(kv.pageTable(1).count == 2)
        #expect(kv.freePageCount == 2)
        try kv.reserve(1, length: 32)  // still two pages
        #expect(kv.freePageCount == 2)
        try kv.reserve(2, length: 20)
        #expect(kv.freePageCount == 0)
        #expect(Set(kv.pageTable(1) + kv.pageTable(2)).count == 4, "no page is shared")
        kv.release(1)
        #expect(kv.freePageCount == 2)
        #expect(kv.pageTable(1).isEmpty)
    }

    @Test func fullPoolIsAnErrorAndChangesNothing() throws {
        let kv = StreamingKVCache(pageSize: 8, pageCount: 2, contextLength: 64)
        try kv.reserve(1, length: 8)
        #expect(throws: KVCacheError.full(sequence: 2, neededPages: 2, freePages: 1)) { try kv.reserve(2, length: 9) }
        #expect(kv.freePageCount == 1)
        #expect(kv.pageTable(2).isEmpty)
    }

    @Test func beyondContextIsAnError() {
        let kv = StreamingKVCache(pageSize: 8, pageCount: 100, contextLength: 64)
        #expect(throws: KVCacheError.beyondContext(sequence: 3, position: 64, contextLength: 64)) { try kv.reserve(3, length: 65) }
    }

    @Test func truncateReturnsTrailingPages() throws {
        let kv = StreamingKVCache(pageSize: 4, pageCount: 8, contextLength: 64)
        try kv.reserve(1, length: 16)
        kv.truncate(1, length: 5)
        #expect(kv.pageTable(1).count == 2)
        #expect(kv.freePageCount == 6)
    }
}

@Suite struct LayerPlanTests {
    @Test func evenSplitCoversAllLayers() throws {
        #expect(try LayerPlan.even(layers: 30, shards: 4) == [0..<8, 8..<16, 16..<23, 23..<30])
        #expect(try LayerPlan.even(layers: 30, shards: 1) == [0..<30])
        #expect(throws: (any Error).self) { try LayerPlan.even(layers: 3, shards: 4) }
    }

    @Test func manualSplitMustCoverTheModel() throws {
        #expect(try LayerPlan.manual([10, 20], layers: 30) == [0..<10, 10..<30])
        #expect(throws: (any Error).self) { try LayerPlan.manual([10, 10], layers: 30) }
        #expect(throws: (any Error).self) { try LayerPlan.manual([0, 30], layers: 30) }
    }
}
