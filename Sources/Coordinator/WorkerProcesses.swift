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
        endpoints = (0..<count).map { "ipc://\(String(cString: template))/w\($0)" }
        pids = []
        for i in 0..<count {
            do {
                pids.append(try WorkerProcesses.spawn([binary, "--listen", endpoints[i], "--worker-id", "local-\(i)", "--exit-with-parent"]
                                                      + arguments(i)))
            } catch {
                stop()
                throw error
            }
        }
    }

    /// Starts `args[0]` with `args`, with no blocked signals, default SIGTERM/SIGINT handling and none
    /// of this process's descriptors above stderr. `detachedLog`: in a session of its own, stdin from
    /// /dev/null and stdout/stderr to that file (a worker that outlives this command).
    static func spawn(_ args: [String], detachedLog: String? = nil) throws -> pid_t {
        Cluster.closeOnExecInheritedDescriptors()
        var attr = posix_spawnattr_t()
        posix_spawnattr_init(&attr)
        defer { posix_spawnattr_destroy(&attr) }
        var noSignals = sigset_t()
        sigemptyset(&noSignals)
        posix_spawnattr_setsigmask(&attr, &noSignals)
        var defaults = sigset_t()
        sigemptyset(&defaults)
        sigaddset(&defaults, SIGTERM)
        sigaddset(&defaults, SIGINT)
        posix_spawnattr_setsigdefault(&attr, &defaults)
        // POSIX_SPAWN_SETSID is 0x80 in glibc (it needs _GNU_SOURCE in C, so it is not imported).
        let setsid: Int32 = detachedLog == nil ? 0 : 0x80
        posix_spawnattr_setflags(&attr, Int16(setsid | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        if let log = detachedLog {
            posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
            posix_spawn_file_actions_addopen(&actions, 1, log, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
            posix_spawn_file_actions_adddup2(&actions, 1, 2)
        }
        var pid = pid_t()
        let cArgs = args.map { strdup($0) } + [nil]
        defer { cArgs.forEach { free($0) } }
        let rc = posix_spawn(&pid, args[0], &actions, &attr, cArgs, environ)
        guard rc == 0 else { throw GenerationError("cannot start \(args[0]): \(String(cString: strerror(rc)))") }
        return pid
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
