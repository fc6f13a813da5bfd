import Compute
import Model
import ShardRuntime
import Wire
#if canImport(Glibc)
import Glibc
#endif

/// A running cluster started by `shardctl launch`: its workers keep their shards loaded between
/// commands, and `generate`, `status` and `stop` find them through the cluster file in the state folder
/// (`$SHARD_STATE_DIR`, default /tmp/shard-UID). Each command is the coordinator while it runs; a lock on
/// the cluster file keeps two of them from driving the workers at once.
public struct Cluster: Equatable {
    public var modelPath: String
    public var backend: BackendKind
    public var contextLength: Int
    public var endpoints: [String]
    public var layers: [Range<Int>]
    /// Worker processes `launch` started (empty for `--workers`, which it only connects to).
    public var pids: [Int32]
    /// The KV settings the workers were loaded with (a later coordinator must ask for the same, or
    /// the workers reload their shards).
    public var kv = KVLoadOptions()

    public init(modelPath: String, backend: BackendKind, contextLength: Int, endpoints: [String], layers: [Range<Int>], pids: [Int32]) {
        self.modelPath = modelPath
        self.backend = backend
        self.contextLength = contextLength
        self.endpoints = endpoints
        self.layers = layers
        self.pids = pids
    }

    public static var stateFolder: String {
        if let s = getenv("SHARD_STATE_DIR") { return String(cString: s) }
        return "/tmp/shard-\(getuid())"
    }
    public static var clusterFile: String { stateFolder + "/cluster" }

    // MARK: file

    public func write() throws {
        var text = "model=\(modelPath)\nbackend=\(backend.rawValue)\nctx=\(contextLength)\n"
        switch kv.memory {
        case .bytes(let b)?: text += "kv_memory=\(b)\n"
        case .fraction(let f)?: text += "kv_memory=\(f)\n"
        case nil: break
        }
        text += "kv_type=\(kv.type.rawValue)\nkv_page_size=\(kv.pageSize)\nmax_sequences=\(kv.maxSequences)\n"
        for (i, e) in endpoints.enumerated() {
            text += "shard=\(e) \(layers[i].lowerBound) \(layers[i].upperBound) \(i < pids.count ? pids[i] : 0)\n"
        }
        let tmp = Cluster.clusterFile + ".tmp"
        guard let f = fopen(tmp, "w") else { throw GenerationError("cannot write \(tmp)") }
        fputs(text, f)
        fclose(f)
        guard rename(tmp, Cluster.clusterFile) == 0 else { throw GenerationError("cannot write \(Cluster.clusterFile)") }
    }

    /// The running cluster, or nil when there is none.
    public static func read() throws -> Cluster? {
        guard let f = fopen(clusterFile, "r") else { return nil }
        defer { fclose(f) }
        var c = Cluster(modelPath: "", backend: .cpu, contextLength: 0, endpoints: [], layers: [], pids: [])
        var line: UnsafeMutablePointer<CChar>? = nil
        var cap = 0
        defer { free(line) }
        while getline(&line, &cap, f) > 0 {
            let text = String(cString: line!).trimmingSuffix("\n")
            guard let eq = text.firstIndex(of: "=") else { continue }
            let key = text[..<eq], value = String(text[text.index(after: eq)...])
            switch key {
            case "model": c.modelPath = value
            case "backend": c.backend = BackendKind(rawValue: value) ?? .cpu
            case "ctx": c.contextLength = Int(value) ?? 0
            case "kv_memory": c.kv.memory = KVMemory(parsing: value)
            case "kv_type": c.kv.type = KVElementType(rawValue: value) ?? .f16
            case "kv_page_size": c.kv.pageSize = max(1, Int(value) ?? 32)
            case "max_sequences": c.kv.maxSequences = max(1, Int(value) ?? 16)
            case "shard":
                let parts = value.split(separator: " ")
                guard parts.count == 4, let lo = Int(parts[1]), let hi = Int(parts[2]), lo < hi, let pid = Int32(parts[3]) else {
                    throw GenerationError("\(clusterFile) is damaged: \(text)")
                }
                c.endpoints.append(String(parts[0]))
                c.layers.append(lo..<hi)
                if pid > 0 { c.pids.append(pid) }
            default: continue
            }
        }
        guard !c.modelPath.isEmpty, !c.endpoints.isEmpty, c.contextLength > 0 else {
            throw GenerationError("\(clusterFile) is damaged")
        }
        return c
    }

    /// Holds an exclusive lock on the cluster file while `body` drives the workers.
    public static func withLock<T>(_ body: () throws -> T) throws -> T {
        let fd = open(clusterFile, O_RDONLY)
        guard fd >= 0 else { throw GenerationError("no cluster is running (shardctl launch starts one)") }
        defer { close(fd) }
        guard flock(fd, LOCK_EX) == 0 else { throw GenerationError("cannot lock \(clusterFile)") }
        defer { flock(fd, LOCK_UN) }
        return try body()
    }

    // MARK: lifecycle

    /// Starts `count` detached workers (their own session, logs in the state folder) on ipc:// endpoints.
    public static func spawnDetachedWorkers(count: Int, arguments: (Int) -> [String]) throws -> (endpoints: [String], pids: [Int32]) {
        let binary = WorkerProcesses.workerBinary()
        guard access(binary, X_OK) == 0 else { throw GenerationError("shard-worker not found next to this program (\(binary))") }
        var endpoints: [String] = [], pids: [Int32] = []
        for i in 0..<count {
            let endpoint = "ipc://\(stateFolder)/w\(i)"
            do {
                pids.append(try WorkerProcesses.spawn([binary, "--listen", endpoint, "--worker-id", "shard-\(i)"] + arguments(i),
                                                      detachedLog: "\(stateFolder)/w\(i).log"))
            } catch {
                terminate(pids)
                throw error
            }
            endpoints.append(endpoint)
        }
        return (endpoints, pids)
    }

    /// Marks every descriptor above stderr close-on-exec: a detached worker must not keep, say, the
    /// pipe our caller reads our output from (its reader would wait for the worker's exit).
    static func closeOnExecInheritedDescriptors() {
        guard let dir = opendir("/proc/self/fd") else { return }
        defer { closedir(dir) }
        var fds: [Int32] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            if let fd = Int32(name), fd > 2 { fds.append(fd) }
        }
        for fd in fds where fd != dirfd(dir) {
            let flags = fcntl(fd, F_GETFD)
            if flags >= 0 { _ = fcntl(fd, F_SETFD, flags | FD_CLOEXEC) }
        }
    }

    /// SIGTERM, then SIGKILL after `grace`, for processes this user started.
    public static func terminate(_ pids: [Int32], grace: Duration = .seconds(3)) {
        for pid in pids { kill(pid, SIGTERM) }
        let clock = ContinuousClock()
        let deadline = clock.now + grace
        var alive = pids
        while !alive.isEmpty && clock.now < deadline {
            alive = alive.filter { pid in
                var status: Int32 = 0
                if waitpid(pid, &status, WNOHANG) == pid { return false }  // our child
                return kill(pid, 0) == 0                                   // someone else's (earlier launch)
            }
            if !alive.isEmpty { usleep(20_000) }
        }
        for pid in alive { kill(pid, SIGKILL) }
    }

    /// One worker's answers to a Heartbeat (its Register) and a Stats request, or why there were none.
    public struct WorkerStatus {
        public var endpoint: String
        public var registration: Register?
        public var stats: Stats?
        public var roundTrip: Duration?
        public var problem: String?
    }

    public static func status(of endpoints: [String], timeout: Duration = .seconds(2)) -> [WorkerStatus] {
        guard let ctx = try? ZmqContext() else { return [] }
        defer { ctx.shutdown() }
        let limits = WireLimits()
        return endpoints.map { e in
            var st = WorkerStatus(endpoint: e)
            do {
                let s = try ZmqSocket(ctx, .dealer, options: .control(limits, receiveTimeout: timeout))
                defer { s.close() }
                try s.connect(e)
                let clock = ContinuousClock(), t0 = clock.now
                try s.send(Control(requestID: 1, .heartbeat(Heartbeat(workerID: "status", monotonicNanoseconds: 0, load: 0))))
                guard let hello = try s.receive(Control.self, limits: limits), case .register(let r) = hello.body else {
                    st.problem = "no answer"
                    return st
                }
                st.roundTrip = clock.now - t0
                st.registration = r
                try s.send(Control(requestID: 2, .stats(Stats(tokensProcessed: 0, stepCount: 0, busySeconds: 0, memoryUsedBytes: 0))))
                if let reply = try s.receive(Control.self, limits: limits), case .stats(let stats) = reply.body { st.stats = stats }
            } catch {
                st.problem = "\(error)"
            }
            return st
        }
    }

    /// Sends Shutdown to every worker (waiting briefly for each acknowledgement).
    public static func shutdown(_ endpoints: [String]) {
        guard let ctx = try? ZmqContext() else { return }
        defer { ctx.shutdown() }
        for e in endpoints {
            guard let s = try? ZmqSocket(ctx, .dealer, options: .control(WireLimits(), receiveTimeout: .seconds(2))) else { continue }
            try? s.connect(e)
            try? s.send(Control(requestID: 1, .shutdown(Shutdown())))
            _ = try? s.receive(Control.self, limits: WireLimits())
            s.close()
        }
    }
}

extension String {
    func trimmingSuffix(_ suffix: String) -> String { hasSuffix(suffix) ? String(dropLast(suffix.count)) : self }
}
