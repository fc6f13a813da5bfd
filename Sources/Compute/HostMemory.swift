#if canImport(Glibc)
import Glibc
#endif

/// This host's memory as a new shard could use it.
public enum HostMemory {
    /// MemAvailable from /proc/meminfo (free memory plus reclaimable page cache, where mmapped weights
    /// live), in bytes; nil when unknown.
    public static func available() -> Int? {
        guard let f = fopen("/proc/meminfo", "r") else { return nil }
        defer { fclose(f) }
        var line = [CChar](repeating: 0, count: 256)
        while fgets(&line, Int32(line.count), f) != nil {
            let s = String(cString: line)
            guard s.hasPrefix("MemAvailable:") else { continue }
            return Int(s.dropFirst("MemAvailable:".count).filter(\.isNumber)).map { $0 * 1024 }
        }
        return nil
    }
}
