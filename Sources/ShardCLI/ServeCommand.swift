import ArgumentParser
import Coordinator
import Dispatch
import Logging
import Server
#if canImport(Glibc)
import Glibc
#endif

extension Shardctl {
    struct Serve: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Serve a model over an OpenAI-compatible HTTP API (/v1/chat/completions, /v1/completions, /v1/models, /health, /metrics).",
            discussion: """
                Every option can also come from an environment variable (SHARD_ + the option's name in capitals, - as _: \
                SHARD_MODEL, SHARD_PORT, SHARD_LOG_LEVEL, …) or from a config file (--config FILE or SHARD_CONFIG: lines of \
                `key = value`, keys the option names, # comments). Flags win over the environment, which wins over the file.
                """)

        @Option(help: "Path of a GGUF model file.")
        var model: String?
        @Flag(help: "Serve the cluster `shardctl launch` started (instead of --model).")
        var cluster = false
        @Option(help: "Number of shards (shard-worker processes when more than 1). Default 1.")
        var shards: Int?
        @Option(help: "Address to listen on. Default 127.0.0.1 (0.0.0.0: every interface).")
        var host: String?
        @Option(help: "Port to listen on (0: any free port). Default 8080.")
        var port: Int?
        @Option(help: "Compute backend: cpu, vulkan or auto, or one per shard (cpu,vulkan). Default auto.")
        var backend: String?
        @Option(help: "Layers per shard by hand, e.g. 10,20.")
        var split: String?
        @Option(name: .customLong("kv-memory"), help: "KV cache budget per shard: bytes (512MiB, 2GiB) or a fraction of free memory (0.5).")
        var kvMemory: String?
        @Option(name: .customLong("kv-type"), help: "KV cache element type: f16 or q8_0. Default f16.")
        var kvType: String?
        @Option(name: .customLong("max-sequences"), help: "Most sequences the scheduler runs at once. Default 16.")
        var maxSequences: Int?
        @Option(name: .customLong("prefill-chunk"), help: "Prompt tokens per scheduler step. Default 256.")
        var prefillChunk: Int?
        @Option(help: "Context length (default: the model's, at most 4096).")
        var ctx: Int?
        @Option(help: "CPU threads per shard (default: all cores).")
        var threads: Int?
        @Option(help: "GPU devices to use, e.g. 0,1 (Vulkan backend).")
        var devices: String?
        @Option(help: "Running shard-workers to use, one shard each: tcp://h1:5600,tcp://h2:5600.")
        var workers: String?
        @Flag(name: .customLong("in-process"), help: "Run all shards inside this process instead of as shard-worker processes.")
        var inProcess = false
        @Option(name: .customLong("log-level"), help: "trace, debug, info, notice, warning, error or critical. Default info. Logs go to stderr.")
        var logLevel: String?
        @Option(name: .customLong("max-queue"), help: "Requests that may wait for the engine before new ones get 503. Default 64.")
        var maxQueue: Int?
        @Option(name: .customLong("max-body-bytes"), help: "Largest request body accepted. Default 4194304.")
        var maxBodyBytes: Int?
        @Option(name: .customLong("model-name"), help: "The model id /v1/models reports (default: the file name without .gguf).")
        var modelName: String?
        @Option(help: "A config file of `key = value` lines.")
        var config: String?

        var flagValues: [String: String] {
            var f: [String: String] = [:]
            f["model"] = model
            if cluster { f["cluster"] = "true" }
            f["shards"] = shards.map(String.init)
            f["host"] = host
            f["port"] = port.map(String.init)
            f["backend"] = backend
            f["split"] = split
            f["kv-memory"] = kvMemory
            f["kv-type"] = kvType
            f["max-sequences"] = maxSequences.map(String.init)
            f["prefill-chunk"] = prefillChunk.map(String.init)
            f["ctx"] = ctx.map(String.init)
            f["threads"] = threads.map(String.init)
            f["devices"] = devices
            f["workers"] = workers
            if inProcess { f["in-process"] = "true" }
            f["log-level"] = logLevel
            f["max-queue"] = maxQueue.map(String.init)
            f["max-body-bytes"] = maxBodyBytes.map(String.init)
            f["model-name"] = modelName
            f["config"] = config
            return f
        }

        /// Everything `run` needs, resolved from flags, environment and file.
        struct Resolved {
            var modelPath: String?
            var cluster: Bool
            var load: LoadOptions
            var server: ServerConfiguration
            var logLevel: Logger.Level
            var modelName: String?
        }

        func resolve(_ s: ServeSettings) throws -> Resolved {
            var compute = ComputeOptions()
            compute.shards = try s.int("shards", min: 1) ?? 1
            compute.backend = "auto"
            if let b = s.raw("backend") {
                compute.backend = b.value.trimmed()
                guard (try? compute.backendList) != nil else {
                    throw ValidationError("\(b.source) must be cpu, vulkan or auto, or one per shard like cpu,vulkan (got '\(b.value)')")
                }
            }
            compute.split = s.string("split")
            compute.kvMemory = s.string("kv-memory")
            compute.kvType = s.string("kv-type")?.trimmed() ?? "f16"
            compute.maxSequences = try s.int("max-sequences", min: 1)
            compute.prefillChunk = try s.int("prefill-chunk", min: 1) ?? 256
            compute.ctx = try s.int("ctx", min: 1)
            compute.threads = try s.int("threads", min: 1)
            compute.devices = s.string("devices")
            compute.workers = s.string("workers")
            compute.inProcess = try s.bool("in-process")
            try compute.validate()
            var server = ServerConfiguration()
            server.host = s.string("host")?.trimmed() ?? server.host
            if let p = try s.int("port", min: 0) {
                guard p <= 65535 else { throw ValidationError("\(s.raw("port")!.source) must be a port number 0…65535 (got \(p))") }
                server.port = p
            }
            server.maxQueue = try s.int("max-queue", min: 1) ?? server.maxQueue
            server.maxBodyBytes = try s.int("max-body-bytes", min: 1024) ?? server.maxBodyBytes
            var level = Logger.Level.info
            if let l = s.raw("log-level") {
                guard let parsed = Logger.Level(rawValue: l.value.trimmed().lowercased()) else {
                    throw ValidationError("\(l.source) must be one of trace, debug, info, notice, warning, error, critical (got '\(l.value)')")
                }
                level = parsed
            }
            let cluster = try s.bool("cluster")
            let path = s.string("model")
            if cluster && path != nil && s.raw("model")?.source == "--model" {
                throw ValidationError("--cluster serves the running cluster's model; leave out --model")
            }
            if !cluster && path == nil {
                throw ValidationError("--model is required (or --cluster to serve the cluster `shardctl launch` started)")
            }
            return Resolved(modelPath: cluster ? nil : path, cluster: cluster, load: try compute.loadOptions(), server: server,
                            logLevel: level, modelName: s.string("model-name"))
        }

        func run() throws {
            let r = try resolve(try ServeSettings(flags: flagValues))
            let level = r.logLevel
            LoggingSystem.bootstrap { label in
                var h = StreamLogHandler.standardError(label: label)
                h.logLevel = level
                return h
            }
            var logger = Logger(label: "shard.serve")
            logger.logLevel = level
            if r.cluster {
                guard let cluster = try Cluster.read() else { throw ValidationError("no cluster is running (shardctl launch starts one)") }
                try Cluster.withLock {
                    var options = r.load
                    options.workers = cluster.endpoints
                    options.split = cluster.layers.map(\.count)
                    options.backend = cluster.backend
                    options.contextLength = cluster.contextLength
                    try serve(cluster.modelPath, options, r, logger)
                }
            } else {
                try serve(r.modelPath!, r.load, r, logger)
            }
        }

        func serve(_ path: String, _ options: LoadOptions, _ r: Resolved, _ logger: Logger) throws {
            let server = APIServer(configuration: r.server, logger: logger)
            let stopped = DispatchSemaphore(value: 0)
            let host = r.server.host
            // Listen first: /health answers 503 ("loading") until the model is attached.
            Task.detached {
                do {
                    try await server.run { port in
                        Terminal.error("shardctl serve: listening on http://\(host):\(port)")
                    }
                } catch {
                    Terminal.error("error: cannot serve on \(host):\(r.server.port): \(error)")
                    Glibc.exit(1)
                }
                stopped.signal()
            }
            logger.info("loading model", metadata: ["path": "\(path)", "shards": "\(options.shardCount)", "backend": "\(options.backend.rawValue)"])
            let model: LocalModel
            do {
                model = try loadModel(path, options)
            } catch {
                server.fail("\(error)")
                throw error
            }
            let engine = model.makeEngine()
            var monitor: ShardMonitor?
            if let remote = model.pipeline as? RemotePipeline {
                let m = ShardMonitor(endpoints: remote.workers.map(\.endpoint), metrics: server.metrics)
                m.start()
                monitor = m
            }
            let id = r.modelName ?? Self.modelID(path)
            var served = ServedModel(id: id, engine: engine, tokenizer: model.tokenizer, monitor: monitor)
            if let local = model.pipeline as? LocalPipeline {
                let counters = local.shards.map(\.counters)
                served.localShards = { counters.map(\.snapshot) }
            }
            server.attach(served)
            logger.notice("ready", metadata: ["model": "\(id)", "shards": "\(model.shardCount)", "context": "\(engine.contextLength)",
                                              "device": "\(model.deviceName)", "chat_template": "\(model.tokenizer.chatRenderer.kind.rawValue)"])
            stopped.wait()
            monitor?.stop()
            engine.shutdown()
            withExtendedLifetime(model) {}
            logger.info("stopped")
        }

        /// The file name without directories and `.gguf`.
        static func modelID(_ path: String) -> String {
            var name = path.split(separator: "/").last.map(String.init) ?? path
            if name.hasSuffix(".gguf") { name.removeLast(5) }
            return name
        }
    }
}
