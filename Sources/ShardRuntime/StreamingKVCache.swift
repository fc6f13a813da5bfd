import Compute

/// A sequence in flight, as the coordinator numbers it.
public typealias SequenceID = UInt64

public enum KVCacheError: Error, CustomStringConvertible, Equatable {
    /// The pool has no free page for this sequence right now.
    case full(sequence: SequenceID, neededPages: Int, freePages: Int)
    /// The position is beyond what this shard was loaded for.
    case beyondContext(sequence: SequenceID, position: Int, contextLength: Int)
    /// A prefix fork that cannot be done (unknown source, source too short, target not empty, not whole pages).
    case badFork(String)

    public var description: String {
        switch self {
        case let .full(s, needed, free):
            return "KV cache full: sequence \(s) needs \(needed) more pages, \(free) free"
        case let .beyondContext(s, p, ctx):
            return "sequence \(s) position \(p) is beyond the context length \(ctx)"
        case let .badFork(why):
            return "prefix sharing: \(why)"
        }
    }
}

/// `sequence` starts with the first `length` positions of `source`'s KV (whole pages, shared, not copied).
public struct PrefixFork: Sendable, Equatable {
    public var sequence: SequenceID
    public var source: SequenceID
    public var length: Int
    public init(sequence: SequenceID, source: SequenceID, length: Int) {
        self.sequence = sequence
        self.source = source
        self.length = length
    }
}

/// How a shard's KV pool is laid out, as the coordinator needs it to account pages itself.
public struct KVPoolInfo: Sendable, Equatable {
    public var pageSize: Int
    /// Pages of the full-attention pool.
    public var pages: Int
    /// Sliding window of the shard's window layers (0: none).
    public var window: Int
    /// Ring pages per sequence for window layers, and the window pool's size.
    public var ringPages: Int
    public var windowPages: Int
    public init(pageSize: Int, pages: Int, window: Int = 0, ringPages: Int = 0, windowPages: Int = 0) {
        self.pageSize = pageSize
        self.pages = pages
        self.window = window
        self.ringPages = ringPages
        self.windowPages = windowPages
    }

    /// The pool every shard of a pipeline can honour: the smallest of each.
    public static func common(_ pools: [KVPoolInfo]) -> KVPoolInfo? {
        guard var p = pools.first else { return nil }
        for q in pools.dropFirst() {
            guard q.pageSize == p.pageSize else { return nil }
            p.pages = min(p.pages, q.pages)
            if q.window > 0 {
                guard p.window == 0 || p.window == q.window else { return nil }
                p.window = q.window
                p.ringPages = max(p.ringPages, q.ringPages)
                p.windowPages = p.windowPages == 0 ? q.windowPages : min(p.windowPages, q.windowPages)
            }
        }
        return p
    }
}

/// Page bookkeeping for a shard's paged KV store. The K/V values live in the backend's `KVStorage`;
/// this type decides which page holds which positions.
///
/// - Full-attention layers share one pool of `pageCount` pages and a page table per sequence. Pages are
///   reference-counted: a `fork` lets a sequence start with another's first whole pages (a common
///   prompt prefix) without copying; a page returns to the pool when its last sequence lets it go.
///   Shared pages are always full and before the position either sequence writes next, so they are
///   never written again (no copy-on-write needed).
/// - Sliding-window layers (if any) use a second pool: each sequence holds a ring of at most `ringPages`
///   pages; logical page i lives in ring slot i % ringPages, so a window layer never holds more than
///   `ringPages × pageSize` positions of a sequence, however long it grows.
///
/// The coordinator keeps an identical instance (same sizes, same operations in the same order) to know
/// exactly how many pages every shard has free before it sends a step.
public final class StreamingKVCache {
    public let pageSize: Int
    public let pageCount: Int
    public let contextLength: Int
    public let window: Int
    public let ringPages: Int
    public let windowPageCount: Int

    private var freePages: [Int32]
    private var refs: [Int32]
    private var tables: [SequenceID: [Int32]] = [:]
    private var freeWindowPages: [Int32]
    private var rings: [SequenceID: (ring: [Int32], logicalPages: Int)] = [:]

    public init(pageSize: Int, pageCount: Int, contextLength: Int, window: Int = 0, ringPages: Int = 0, windowPageCount: Int = 0) {
        precondition(pageSize > 0 && pageCount > 0 && contextLength > 0)
        precondition(window == 0 || (ringPages > 0 && windowPageCount > 0))
        self.pageSize = pageSize
        self.pageCount = pageCount
        self.contextLength = contextLength
        self.window = window
        self.ringPages = ringPages
        self.windowPageCount = windowPageCount
        freePages = (0..<Int32(pageCount)).reversed()
        refs = Array(repeating: 0, count: pageCount)
        freeWindowPages = (0..<Int32(windowPageCount)).reversed()
    }

    public convenience init(_ pool: KVPoolInfo, contextLength: Int) {
        self.init(pageSize: pool.pageSize, pageCount: pool.pages, contextLength: contextLength, window: pool.window,
                  ringPages: pool.ringPages, windowPageCount: pool.windowPages)
    }

    /// Ring pages a window layer needs per sequence so that a step of up to `maxRows` rows of one
    /// sequence never overwrites a position one of its rows still attends.
    public static func ringPages(window: Int, pageSize: Int, maxRows: Int, contextLength: Int) -> Int {
        min((window - 1 + maxRows + pageSize - 1) / pageSize + 1, (contextLength + pageSize - 1) / pageSize)
    }

    public var pool: KVPoolInfo {
        KVPoolInfo(pageSize: pageSize, pages: pageCount, window: window, ringPages: ringPages, windowPages: windowPageCount)
    }
    public var freePageCount: Int { freePages.count }
    public var usedPageCount: Int { pageCount - freePages.count }
    public var freeWindowPageCount: Int { freeWindowPages.count }
    public var usedWindowPageCount: Int { windowPageCount - freeWindowPages.count }
    public var sequences: [SequenceID] { Array(Set(tables.keys).union(rings.keys)) }
    /// Pages of `sequence`'s table that other sequences share too.
    public func sharedPageCount(_ sequence: SequenceID) -> Int { (tables[sequence] ?? []).filter { refs[Int($0)] > 1 }.count }

    private func pages(_ length: Int) -> Int { (length + pageSize - 1) / pageSize }

    /// New pages (full pool, window pool) `sequence` needs to hold positions 0..<length.
    public func pagesNeeded(_ sequence: SequenceID, length: Int) -> (full: Int, window: Int) {
        let full = max(0, pages(length) - (tables[sequence]?.count ?? 0))
        var win = 0
        if window > 0 { win = max(0, min(pages(length), ringPages) - (rings[sequence]?.ring.count ?? 0)) }
        return (full, win)
    }

    /// True when `reserve(sequence, length:)` would succeed now.
    public func canReserve(_ sequence: SequenceID, length: Int) -> Bool {
        guard length <= contextLength else { return false }
        let n = pagesNeeded(sequence, length: length)
        return n.full <= freePages.count && n.window <= freeWindowPages.count
    }

    /// Makes sure `sequence` has pages for positions 0..<length. Either all needed pages are
    /// taken or none (an error leaves the cache unchanged).
    public func reserve(_ sequence: SequenceID, length: Int) throws(KVCacheError) {
        guard length <= contextLength else {
            throw .beyondContext(sequence: sequence, position: length - 1, contextLength: contextLength)
        }
        let need = pagesNeeded(sequence, length: length)
        guard need.full <= freePages.count else {
            throw .full(sequence: sequence, neededPages: need.full, freePages: freePages.count)
        }
        guard need.window <= freeWindowPages.count else {
            throw .full(sequence: sequence, neededPages: need.window, freePages: freeWindowPages.count)
        }
        if need.full > 0 || tables[sequence] == nil {
            var table = tables[sequence] ?? []
            for _ in 0..<need.full {
                let p = freePages.removeLast()
                refs[Int(p)] = 1
                table.append(p)
            }
            tables[sequence] = table
        }
        if window > 0 {
            var r = rings[sequence] ?? ([], 0)
            for _ in 0..<need.window { r.ring.append(freeWindowPages.removeLast()) }
            r.logicalPages = max(r.logicalPages, pages(length))
            rings[sequence] = r
        }
    }

    /// Starts `fork.sequence` (which must hold no pages) with `fork.source`'s pages for positions
    /// 0..<fork.length (a multiple of the page size), shared.
    public func fork(_ fork: PrefixFork) throws(KVCacheError) {
        guard window == 0 else { throw .badFork("a shard with sliding-window layers does not share prefixes") }
        guard fork.length > 0, fork.length % pageSize == 0 else {
            throw .badFork("\(fork.length) positions is not a positive multiple of the page size \(pageSize)")
        }
        guard (tables[fork.sequence] ?? []).isEmpty else { throw .badFork("sequence \(fork.sequence) already holds pages") }
        guard let source = tables[fork.source], source.count >= fork.length / pageSize else {
            throw .badFork("sequence \(fork.source) does not hold \(fork.length) positions")
        }
        let shared = Array(source.prefix(fork.length / pageSize))
        for p in shared { refs[Int(p)] += 1 }
        tables[fork.sequence] = shared
    }

    public func pageTable(_ sequence: SequenceID) -> [Int32] { tables[sequence] ?? [] }

    /// The window layers' table of `sequence` as the backends read it: entry i is the ring page of
    /// logical page i, or −1 for pages that have left the ring.
    public func windowTable(_ sequence: SequenceID) -> [Int32] {
        guard let r = rings[sequence], !r.ring.isEmpty else { return [] }
        let n = r.logicalPages, k = r.ring.count
        return (0..<n).map { i in i >= n - k ? r.ring[i % k] : -1 }
    }

    /// Drops one reference to each of the sequence's pages; pages nobody holds go back to the pool.
    public func release(_ sequence: SequenceID) {
        if let table = tables.removeValue(forKey: sequence) {
            for p in table.reversed() {
                refs[Int(p)] -= 1
                if refs[Int(p)] == 0 { freePages.append(p) }
            }
        }
        if let r = rings.removeValue(forKey: sequence) { freeWindowPages.append(contentsOf: r.ring.reversed()) }
    }

    /// Keeps only positions 0..<length of the full-attention table (pages past it are let go).
    public func truncate(_ sequence: SequenceID, length: Int) {
        guard var table = tables[sequence] else { return }
        let keep = pages(length)
        while table.count > keep {
            let p = table.removeLast()
            refs[Int(p)] -= 1
            if refs[Int(p)] == 0 { freePages.append(p) }
        }
        tables[sequence] = table
    }
}
