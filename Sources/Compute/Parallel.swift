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
}
