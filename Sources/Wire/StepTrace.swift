#if canImport(Glibc)
import Glibc
#endif

/// Timestamps along each step's path through the processes, for finding where a token's time goes
/// (issue 4). Off unless `SHARD_TRACE=PREFIX` is set; then each process keeps (step id, point,
/// CLOCK_MONOTONIC ns) in memory and writes them to `PREFIX.ROLE.PID` when it stops (workers at exit,
/// the coordinator at shutdown). The clock is the host's, so points of different processes on one host
/// compare; `scripts/step-trace.py PREFIX` prints the median time of each segment.
public final class StepTrace: @unchecked Sendable {
    public static let shared = StepTrace()
    /// One process traces from one thread (the serving loop, or the coordinator's pipeline thread).
    private let prefix: String?
    private var points: [(step: UInt64, point: StaticString, ns: UInt64)] = []

    init() {
        prefix = getenv("SHARD_TRACE").map { String(cString: $0) }
        if prefix != nil { points.reserveCapacity(1 << 16) }
    }

    public var enabled: Bool { prefix != nil }

    @inline(__always) public static func now() -> UInt64 {
        var t = timespec()
        clock_gettime(CLOCK_MONOTONIC, &t)
        return UInt64(t.tv_sec) * 1_000_000_000 + UInt64(t.tv_nsec)
    }

    /// Records `point` of `step`, now or at `at` (a `now()` taken earlier).
    @inline(__always) public func mark(_ step: UInt64, _ point: StaticString, at: UInt64? = nil) {
        guard prefix != nil, points.count < 1 << 22 else { return }
        points.append((step, point, at ?? Self.now()))
    }

    /// Writes what was recorded to `PREFIX.ROLE.PID` and forgets it.
    public func flush(role: String) {
        guard let prefix, !points.isEmpty, let f = fopen("\(prefix).\(role).\(getpid())", "w") else { return }
        for p in points { fputs("\(p.step) \(role).\(p.point) \(p.ns)\n", f) }
        fclose(f)
        points.removeAll()
    }
}
