import Compute

/// A sequence in flight, as the coordinator numbers it.
public typealias SequenceID = UInt64

public enum KVCacheError: Error, CustomStringConvertible, Equatable {
    /// The pool has no free page for this sequence right now.
    case full(sequence: SequenceID, neededPages: Int, freePages: Int)
    /// The position is beyond what this shard was loaded for.
    case beyondContext(sequence: SequenceID, position: Int, contextLength: Int)

    public var description: String {
        switch self {
        case let .full(s, needed, free):
            return "KV cache full: sequence \(s) needs \(needed) more pages, \(free) free"
        case let .beyondContext(s, p, ctx):
            return "sequence \(s) position \(p) is beyond the context length \(ctx)"
        }
    }
}

/// Page bookkeeping for a shard's paged KV store: a fixed pool of pages, a page table per sequence,
/// pages returned to the pool when a sequence is released. The K/V values themselves live in the
/// backend's `KVStorage`; this type only decides which page holds which positions.
public final class StreamingKVCache {
    public let pageSize: Int
    public let pageCount: Int
    public let contextLength: Int
    private var freePages: [Int32]
    private var tables: [SequenceID: [Int32]] = [:]

    public init(pageSize: Int, pageCount: Int, contextLength: Int) {
        precondition(pageSize > 0 && pageCount > 0)
        self.pageSize = pageSize
        self.pageCount = pageCount
        self.contextLength = contextLength
        freePages = (0..<Int32(pageCount)).reversed()
    }

    public var freePageCount: Int { freePages.count }
    public var usedPageCount: Int { pageCount - freePages.count }
    public var sequences: [SequenceID] { Array(tables.keys) }

    /// Makes sure `sequence` has pages for positions 0..<length. Either all needed pages are
    /// taken or none (an error leaves the cache unchanged).
    public func reserve(_ sequence: SequenceID, length: Int) throws(KVCacheError) {
        guard length <= contextLength else {
            throw .beyondContext(sequence: sequence, position: length - 1, contextLength: contextLength)
        }
        let have = tables[sequence]?.count ?? 0
        let need = (length + pageSize - 1) / pageSize - have
        guard need > 0 else { return }
        guard need <= freePages.count else {
            throw .full(sequence: sequence, neededPages: need, freePages: freePages.count)
        }
        var table = tables[sequence] ?? []
        for _ in 0..<need { table.append(freePages.removeLast()) }
        tables[sequence] = table
    }

    public func pageTable(_ sequence: SequenceID) -> [Int32] { tables[sequence] ?? [] }

    /// Returns the sequence's pages to the pool.
    public func release(_ sequence: SequenceID) {
        if let table = tables.removeValue(forKey: sequence) { freePages.append(contentsOf: table.reversed()) }
    }

    /// Keeps only positions 0..<length (pages past it go back to the pool).
    public func truncate(_ sequence: SequenceID, length: Int) {
        guard var table = tables[sequence] else { return }
        let keep = (length + pageSize - 1) / pageSize
        while table.count > keep { freePages.append(table.removeLast()) }
        tables[sequence] = table
    }
}
