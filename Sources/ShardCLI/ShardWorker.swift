import ArgumentParser
import Compute
import ShardRuntime
#if canImport(Glibc)
import Glibc
#endif

/// `shard-worker`: one process per GPU or memory region, serving a layer range over ZeroMQ.
/// The coordinator tells it which layers to load; see `ShardServer` for the protocol.
public struct ShardWorker: ParsableCommand {
    public static let configuration = CommandConfiguration(commandName: "shard-worker",
                                                           abstract: "Serve a shard of a model's layers.")
    @Option(help: "Control endpoint to listen on, e.g. tcp://0.0.0.0:5600 or ipc:///tmp/shard0 (data uses port + 1).")
    var listen: String
    @Option(help: "GPU device index (Vulkan backend).")
    var device: Int?
    @Option(help: "Compute backend: cpu, vulkan or auto.")
    var backend: BackendChoice = .auto
    @Option(help: "CPU threads (default: all cores).")
    var threads: Int?
    @Option(name: .customLong("worker-id"), help: "Name reported to the coordinator (default: host-pid).")
    var workerID: String?
    @Option(help: "Memory this worker offers, e.g. 12GiB or 512MiB (default: the device's, or the host's available memory). The coordinator plans the split against it.")
    var memory: ByteSize?
    @Option(name: .customLong("model-dir"), help: "A folder whose models this worker may open (repeatable; default: any path). Models elsewhere, missing here, or different from the coordinator's are streamed from the coordinator.")
    var modelDirs: [String] = []
    @Option(name: .customLong("idle-spin-ms"), help: "Stay awake this long between steps (CPU worker threads, and the frame receive loop) instead of sleeping: for hosts with cores to spare; shardctl sets it for the workers it starts when they fit the cores (default 0).")
    var idleSpinMs: Int = 0
    @Flag(name: .customLong("exit-with-parent"), help: .hidden)
    var exitWithParent = false
    public init() {}

    public func validate() throws {
        guard listen.hasPrefix("tcp://") || listen.hasPrefix("ipc://") else {
            throw ValidationError("--listen must be tcp://HOST:PORT or ipc://PATH")
        }
        if let threads, threads < 1 { throw ValidationError("--threads must be positive") }
        guard idleSpinMs >= 0, idleSpinMs <= 10_000 else { throw ValidationError("--idle-spin-ms must be in 0...10000") }
    }

    public func run() throws {
        var host = [CChar](repeating: 0, count: 256)
        gethostname(&host, host.count - 1)
        var options = ShardServer.Options(listen: listen, workerID: workerID ?? "\(String(cString: host))-\(getpid())",
                                          backend: backend.resolved, device: device)
        if let threads { options.threads = threads }
        options.exitWithParent = exitWithParent
        options.idleSpin = .milliseconds(idleSpinMs)
        options.memoryLimit = memory?.bytes
        options.modelDirectories = modelDirs.isEmpty ? nil : modelDirs
        try ShardServer(options).run()
    }

    public static func runMain() -> Never { runToCompletion(ShardWorker.self, nil) }
}
