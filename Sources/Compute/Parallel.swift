import Dispatch
#if canImport(Glibc)
import Glibc
#endif

/// Splits work across the CPU's cores.
public enum Parallel {
    /// Threads used by default: the cores this process may run on (SHARD_THREADS overrides).
    public static let defaultThreads: Int = {
        if let s = getenv("SHARD_THREADS"), let n = Int(String(cString: s)), n > 0 { return n }
        return max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))))
    }()

    /// Calls `body(range)` for contiguous chunks covering 0..<count, on up to `threads` threads.
    /// `granularity` keeps chunk boundaries on multiples of it (e.g. 4 rows at a time).
    @inline(__always)
    public static func forChunks(_ count: Int, threads: Int, granularity: Int = 1, minimumChunk: Int = 1,
                                 _ body: (Range<Int>) -> Void) {
        guard count > 0 else { return }
        let units = (count + granularity - 1) / granularity
        let maxChunks = max(1, min(threads, count / max(minimumChunk, 1), units))
        if maxChunks == 1 { body(0..<count); return }
        DispatchQueue.concurrentPerform(iterations: maxChunks) { c in
            let lo = units * c / maxChunks * granularity
            let hi = min(count, units * (c + 1) / maxChunks * granularity)
            if lo < hi { body(lo..<hi) }
        }
    }
}
