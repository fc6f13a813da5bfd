import ShardCLI
#if canImport(Glibc)
import Glibc
#endif

// One binary can be both tools: invoked as `shard-worker` (a link to it, as the GPU bundle ships
// it), it is the worker.
let invokedAs = CommandLine.arguments.first.map { String($0.split(separator: "/").last ?? "") } ?? ""
if invokedAs == "shard-worker" { ShardWorker.runMain() }
Shardctl.runMain()
