#if canImport(Glibc)
import Glibc
#endif

/// `shard-worker` processes this process started on this host (ipc:// endpoints in a private folder).
/// They are told to exit with their parent, are shut down by the coordinator, and are killed and
/// reaped here if they do not go: no worker outlives the command that started it.
public final class WorkerProcesses {
    public let endpoints: [String]
    private var pids: [pid_t]
    private let folder: String

    /// Starts `count` workers. `arguments(i)` adds per-worker flags (backend, device).
    public init(count: Int, arguments: (Int) -> [String] = { _ in [] }) throws {
        let binary = WorkerProcesses.workerBinary()
        guard access(binary, X_OK) == 0 else {
            throw GenerationError("shard-worker not found next to this program (\(binary))")
        }
        var template = Array("/tmp/shard-\(getpid())-XXXXXX".utf8CString)
        guard mkdtemp(&template) != nil else { throw GenerationError("cannot create a folder for worker sockets") }
        folder = String(cString: template)
        Cluster.closeOnExecInheritedDescriptors()
        endpoints = (0..<count).map { "ipc://\(String(cString: template))/w\($0)" }
        pids = []
        for i in 0..<count {
            let args = [binary, "--listen", endpoints[i], "--worker-id", "local-\(i)", "--exit-with-parent"] + arguments(i)
            var pid = pid_t()
            let cArgs = args.map { strdup($0) } + [nil]
            defer { cArgs.forEach { free($0) } }
            let rc = posix_spawn(&pid, binary, nil, nil, cArgs, environ)
            guard rc == 0 else {
                stop()
                throw GenerationError("cannot start shard-worker: \(String(cString: strerror(rc)))")
            }
            pids.append(pid)
        }
    }

    deinit { stop() }

    /// True while every worker process is alive.
    public var allAlive: Bool {
        pids.allSatisfy { pid in
            var status: Int32 = 0
            return waitpid(pid, &status, WNOHANG) == 0
        }
    }

    /// Waits up to `grace` for the workers to exit, then kills the rest; removes the socket folder.
    public func stop(grace: Duration = .seconds(3)) {
        let clock = ContinuousClock()
        let deadline = clock.now + grace
        var remaining = pids
        while !remaining.isEmpty && clock.now < deadline {
            remaining = remaining.filter { pid in
                var status: Int32 = 0
                return waitpid(pid, &status, WNOHANG) == 0
            }
            if !remaining.isEmpty { usleep(10_000) }
        }
        for pid in remaining {
            kill(pid, SIGKILL)
            var status: Int32 = 0
            waitpid(pid, &status, 0)
        }
        pids = []
        for e in endpoints {
            let path = String(e.dropFirst(6))
            unlink(path)
            unlink(path + ".data")
        }
        rmdir(folder + "/results")
        unlink(folder + "/results")
        rmdir(folder)
    }

    /// A path in the workers' private folder (for the coordinator's own result socket).
    public func socketPath(_ name: String) -> String { "ipc://\(folder)/\(name)" }

    /// `shard-worker` beside the running executable.
    static func workerBinary() -> String {
        var buf = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let n = readlink("/proc/self/exe", &buf, buf.count - 1)
        guard n > 0 else { return "shard-worker" }
        let path = String(cString: buf)
        let dir = path.lastIndex(of: "/").map { String(path[..<$0]) } ?? "."
        return dir + "/shard-worker"
    }
}
