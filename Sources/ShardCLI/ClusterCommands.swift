import ArgumentParser
import Compute
import Coordinator
import ShardRuntime
import Wire
#if canImport(Glibc)
import Glibc
#endif

extension Shardctl {
    struct Launch: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Start shard workers in the background with the model loaded; returns when all are ready.")
        @OptionGroup var model: ModelOption
        @OptionGroup var compute: ComputeOptions

        func run() throws {
            mkdir(Cluster.stateFolder, 0o700)
            if let running = try Cluster.read() {
                if Cluster.status(of: running.endpoints, timeout: .milliseconds(500)).contains(where: { $0.registration != nil }) {
                    throw ValidationError("a cluster is already running (\(running.modelPath)); `shardctl stop` first")
                }
                Cluster.terminate(running.pids)
                unlink(Cluster.clusterFile)
            }
            var options = try compute.loadOptions()
            let path = absolutePath(model.model)
            var pids: [Int32] = []
            if options.workers == nil {
                let spawned = try Cluster.spawnDetachedWorkers(count: options.shardCount, arguments: options.workerArguments)
                options.workers = spawned.endpoints
                pids = spawned.pids
            }
            Terminal.error("loading \(options.shardCount) shard(s) of \(path)…")
            do {
                // Connecting loads every worker; they keep their shards when this command's pipeline closes.
                let m = try LocalModel(path: path, options: options)
                var cluster = Cluster(modelPath: path, backend: options.backend, contextLength: m.pipeline.contextLength,
                                      endpoints: options.workers!, layers: m.plan, pids: pids)
                cluster.kv = options.kv
                try cluster.write()
            } catch {
                Cluster.terminate(pids)
                throw error
            }
            Terminal.write(Status.table(try Cluster.read()!))
        }
    }

    struct Status: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show the running cluster's shards.")

        func run() throws {
            guard let cluster = try Cluster.read() else { throw ValidationError("no cluster is running (shardctl launch starts one)") }
            Terminal.write(Status.table(cluster))
        }

        /// The shards as an aligned table; `color` (default: stdout is a terminal) makes the header bold and
        /// each heartbeat green (answered) or red (no answer).
        static func table(_ c: Cluster, color: Bool = Terminal.stdoutIsTerminal) -> String {
            var out = "model   \(c.modelPath)\ncontext \(c.contextLength)\nkv      \(c.kv.type.rawValue), \(c.kv.memory.map { "\($0)" } ?? "default budget"), up to \(c.kv.maxSequences) sequences\n\n"
            let header = ["shard", "host", "backend/device", "layers", "memory", "tok/s", "last heartbeat"]
            var rows = [header]
            for (i, st) in Cluster.status(of: c.endpoints).enumerated() {
                let r = st.registration
                let tokPerS = st.stats.map { $0.busySeconds > 0 ? fixed(Double($0.tokensProcessed) / $0.busySeconds, 1) : "-" } ?? "-"
                let memory = st.stats.map { Inspect.bytes(Int($0.memoryUsedBytes)) } ?? "-"
                let heartbeat = st.roundTrip.map { "now (\(fixed($0.seconds * 1000, 2)) ms)" } ?? (st.problem ?? "no answer")
                rows.append(["\(i)", r?.host ?? "?", r.map { "\($0.backend.name)/\($0.deviceName)" } ?? "?",
                             "\(c.layers[i].lowerBound)..<\(c.layers[i].upperBound)", memory, tokPerS, heartbeat])
            }
            let widths = header.indices.map { col in rows.map { $0[col].count }.max()! }
            for (r, row) in rows.enumerated() {
                out += row.enumerated().map { col, cell in
                    let padded = cell.padding(widths[col])
                    guard color else { return padded }
                    if r == 0 { return Terminal.style(padded, .bold) }
                    if col == header.count - 1 { return Terminal.style(padded, cell.hasPrefix("now") ? .green : .red) }
                    return padded
                }.joined(separator: "  ") + "\n"
            }
            return out
        }
    }

    struct Stop: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Shut the running cluster down; no process is left behind.")

        func run() throws {
            guard let cluster = try Cluster.read() else { throw ValidationError("no cluster is running") }
            // Workers that `launch` started are shut down; workers it was given (`--workers`) are services
            // someone else runs: they stay up, keeping their loaded shard for the next coordinator.
            if cluster.pids.isEmpty {
                unlink(Cluster.clusterFile)
                Terminal.write("detached from \(cluster.endpoints.count) running worker(s) (started elsewhere, left running)\n")
                return
            }
            Cluster.shutdown(cluster.endpoints)
            Cluster.terminate(cluster.pids)
            unlink(Cluster.clusterFile)
            Terminal.write("stopped \(cluster.endpoints.count) shard(s)\n")
        }
    }
}

func absolutePath(_ path: String) -> String {
    guard let resolved = realpath(path, nil) else { return path }
    defer { free(resolved) }
    return String(cString: resolved)
}
