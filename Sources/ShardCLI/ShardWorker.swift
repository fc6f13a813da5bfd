import ArgumentParser
#if canImport(Glibc)
import Glibc
#endif

/// `shard-worker`: one process per GPU or memory region, serving a layer range over ZeroMQ.
/// The wire protocol and runtime arrive with the multi-process issue; until then it refuses to start.
public struct ShardWorker: ParsableCommand {
    public static let configuration = CommandConfiguration(commandName: "shard-worker",
                                                           abstract: "Serve a shard of a model's layers.")
    @Option(help: "Address to listen on, e.g. tcp://0.0.0.0:5600 or ipc:///tmp/shard0.")
    var listen: String
    @Option(help: "GPU device index.")
    var device: Int?
    @Option(help: "Compute backend: cpu, vulkan or auto.")
    var backend: BackendChoice = .auto
    public init() {}

    public func run() throws {
        throw ValidationError("shard-worker cannot serve yet: the ZeroMQ shard protocol is not built in this version")
    }

    public static func runMain() -> Never { runToCompletion(ShardWorker.self, nil) }
}
