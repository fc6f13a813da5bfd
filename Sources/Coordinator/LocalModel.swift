#if canImport(Glibc)
import Glibc
#endif
import Compute
import GGUF
import Model
import ShardRuntime
import Tokenizer

/// How each shard sizes its KV pool.
public struct KVLoadOptions: Sendable, Equatable {
    /// Budget per shard (nil: the shard's default, see `ModelShard`).
    public var memory: KVMemory?
    public var type: KVElementType = .f16
    public var pageSize: Int = 32
    /// Most sequences at once (the scheduler's `--max-sequences`).
    public var maxSequences: Int = 16
    public init(memory: KVMemory? = nil, type: KVElementType = .f16, pageSize: Int = 32, maxSequences: Int = 16) {
        self.memory = memory
        self.type = type
        self.pageSize = pageSize
        self.maxSequences = maxSequences
    }
}

/// Options for loading a model into this process.
public struct LoadOptions {
    public var shards: Int = 1
    /// Layer counts per shard (`--split`); nil splits evenly.
    public var split: [Int]?
    public var backend: BackendKind = .cpu
    /// One backend per shard (`--backend cpu,vulkan`), repeated cyclically; nil: `backend` for all.
    public var shardBackends: [BackendKind]?
    /// GPU devices for Vulkan shards (shard i uses devices[i % count]); nil picks the best device.
    public var devices: [Int]?
    /// Context length; nil takes the model's, capped at `defaultContextCap`.
    public var contextLength: Int?
    public var maxBatchRows: Int = 512
    public var threads: Int = Parallel.defaultThreads
    /// Run the shards inside this process instead of as `shard-worker` processes (tests, one-GPU setups).
    public var inProcess = false
    /// Running workers to use (`--workers tcp://h1:5600,…`): one shard each, instead of starting local ones.
    public var workers: [String]?
    /// KV pool of each shard.
    public var kv = KVLoadOptions()
    /// How long the local shard-worker processes (and this coordinator's result receive) stay awake
    /// between steps instead of sleeping; nil: `defaultIdleSpin` (SHARD_IDLE_SPIN_MS overrides).
    public var idleSpin: Duration?
    /// Prompt tokens per scheduler step (`--prefill-chunk`).
    public var prefillChunk: Int = 256
    public static let defaultContextCap = 4096
    public init() {}

    /// How many shards these options make: one per given worker, one per `split` entry, or `shards`.
    public var shardCount: Int { workers?.count ?? split?.count ?? shards }

    /// The backend shard `i` computes on.
    public func backend(forShard i: Int) -> BackendKind { shardBackends.map { $0[i % $0.count] } ?? backend }

    /// Staying awake between steps: 20 ms when the local workers' threads (and this process) fit the
    /// host's cores with one to spare, else none (on an oversubscribed host, spinning steals the cores
    /// the other shards compute on). At batch 1 each shard idles while the others compute; waking its
    /// threads (and their idle cores) at every step cost more than the spinning on a 32-core host.
    public var defaultIdleSpin: Duration {
        if let s = getenv("SHARD_IDLE_SPIN_MS"), let ms = Int(String(cString: s)), ms >= 0 { return .milliseconds(ms) }
        return localWorkersFit ? .milliseconds(20) : .zero
    }

    /// The local workers' threads (and this process) fit the cores this process may use (its affinity
    /// mask: under taskset the cores allowed, not the host's) with one to spare.
    public var localWorkersFit: Bool {
        let workerThreads = (0..<shardCount).map { backend(forShard: $0) == .cpu ? threads : 1 }.reduce(0, +)
        return workerThreads + 2 <= ThreadPool.usableCores
    }

    /// Chained greedy decode through shard processes (`ChainingPipeline`); nil: `defaultChain`.
    public var chain: Bool?
    /// SHARD_CHAIN=0 / 1 turn it off / on; else on for running workers (`workers`, other hosts) and for
    /// local workers that fit the cores, off on an oversubscribed host. There the coordinator's and the
    /// last worker's per-token work then overlaps the first worker's forward pass and slows it more than
    /// the hop saves (16-core host pinned to 2 cores, SmolLM2's shape: 0.68× of 1 shard with the chain,
    /// 0.98× without; unpinned 1.09× / 1.04×).
    public var defaultChain: Bool {
        switch getenv("SHARD_CHAIN").map({ String(cString: $0) }) {
        case "0"?: return false
        case "1"?: return true
        default: return workers != nil || localWorkersFit
        }
    }

    /// The flags a local `shard-worker` for shard `i` is started with.
    public func workerArguments(shard i: Int) -> [String] {
        let spin = idleSpin ?? defaultIdleSpin
        var args = ["--backend", backend(forShard: i).rawValue, "--threads", "\(threads)",
                    "--idle-spin-ms", "\(spin.components.seconds * 1000 + spin.components.attoseconds / 1_000_000_000_000_000)"]
        if let d = devices { args += ["--device", "\(d[i % d.count])"] }
        return args
    }
}

/// A model served from this command: file, hyperparameters, tokenizer and the pipeline of shards —
/// in this process for one shard (or `inProcess`), else one `shard-worker` process per shard, started
/// here and stopped with this object.
public final class LocalModel {
    public let file: GGUFFile
    public let config: ModelConfig
    public let tokenizer: Tokenizer
    public let pipeline: any ShardPipeline
    public let generator: Generator
    public let plan: [Range<Int>]
    public let options: LoadOptions
    /// "cpu" / "vulkan", and the device of the first shard.
    public let backendName: String
    public let deviceName: String
    private let cpuPool: ThreadPool?
    private let workers: WorkerProcesses?

    /// Loads `path`. `progress(done, total)` reports weights loaded (for a progress bar).
    public init(path: String, options: LoadOptions, progress: ((Int, Int) -> Void)? = nil) throws {
        let file = try GGUFFile(path: path)
        let config = try ModelConfig(gguf: file)
        if let workers = options.workers, let split = options.split, workers.count != split.count {
            throw ModelConfigError("--split makes \(split.count) shards for \(workers.count) workers")
        }
        self.file = file
        self.config = config
        self.options = options
        tokenizer = try Tokenizer(gguf: file)
        let ctx = options.contextLength ?? min(config.contextLength, LoadOptions.defaultContextCap)
        guard ctx > 0 else { throw ModelConfigError("--ctx must be positive") }
        let maxRows = min(options.maxBatchRows, ctx)
        // The KV pool each shard will allocate (as ModelShard sizes it by default, or --kv-memory's bytes;
        // a fraction of free memory fits by construction).
        let kvBudget: Int?
        switch options.kv.memory {
        case .bytes(let b)?: kvBudget = b
        case .fraction?: kvBudget = 0
        case nil: kvBudget = nil
        }
        let planner = SplitPlanner(memory: file.layerMemory, config: config, contextLength: ctx, maxBatchRows: maxRows,
                                   kvPositions: max(ctx, options.kv.maxSequences * min(1024, ctx)), kvType: options.kv.type,
                                   kvBudget: kvBudget)
        let shardCount = options.shardCount
        backendName = options.backend.rawValue
        if options.workers != nil || (shardCount > 1 && !options.inProcess) {
            // Check the split before starting anything.
            _ = try planner.plan(shards: shardCount, split: options.split)
            // Given workers stay up afterwards; workers started here stop with this object.
            let started = try options.workers == nil ? WorkerProcesses(count: shardCount, arguments: options.workerArguments) : nil
            let endpoints = options.workers ?? started!.endpoints
            let remote = try RemotePipeline(
                endpoints: endpoints, model: file, plan: { registrations in
                    try planner.plan(shards: shardCount, split: options.split, targets: registrations.enumerated().map {
                        PlanTarget(name: "worker \($0.element.workerID) on \($0.element.host) (\(endpoints[$0.offset]))",
                                   freeBytes: Int(clamping: $0.element.freeMemoryBytes))
                    })
                }, embeddingLength: config.embeddingLength,
                vocabSize: config.vocabSize, contextLength: ctx, maxBatchRows: maxRows, backends: options.backend(forShard:),
                devices: options.devices, resultEndpoint: started?.socketPath("results") ?? LocalModel.resultEndpoint(for: endpoints),
                ownsWorkers: started != nil, kv: options.kv, chain: options.chain ?? options.defaultChain)
            if let started {
                remote.healthCheck = { started.allAlive ? nil : "a shard-worker process exited" }
                remote.idleSpin = options.idleSpin ?? options.defaultIdleSpin
            }
            progress?(1, 1)
            plan = remote.plan
            workers = started
            cpuPool = nil
            pipeline = remote
            deviceName = remote.workers.first?.registration.deviceName ?? options.backend.rawValue
        } else {
            let plan = try planner.plan(shards: shardCount, split: options.split)
            // Shards in this process share its memory (or one GPU's): the whole model must fit.
            let needed = plan.map { planner.footprint($0).total }.reduce(0, +)
            let device = options.devices?.first
            let free = BackendFactory.freeMemory(options.backend, device: device)
            if free > 0, needed > free, Set(options.devices ?? []).count <= 1, options.shardBackends == nil {
                let where_ = options.backend == .cpu ? "this host" : "Vulkan device \(device.map(String.init) ?? "(default)")"
                throw ModelConfigError("the model needs \(SplitPlanner.format(needed)) and \(where_) has \(SplitPlanner.format(free)) free: "
                                       + "\(SplitPlanner.format(needed - free)) short; use a shorter --ctx or more shards on other devices")
            }
            self.plan = plan
            let shardOptions = ShardOptions(contextLength: ctx, maxBatchRows: maxRows, pageSize: options.kv.pageSize,
                                            kvMemory: options.kv.memory, kvType: options.kv.type,
                                            maxSequences: options.kv.maxSequences)
            var shards: [ModelShard] = []
            let total = plan.count
            // In-process CPU shards run one after the other, so they share one pool of worker threads.
            let kinds = plan.indices.map(options.backend(forShard:))
            let pool = kinds.contains(.cpu) ? ThreadPool(threads: options.threads) : nil
            for (i, range) in plan.enumerated() {
                let device = options.devices.map { $0[i % $0.count] }
                let backend: any ComputeBackend = try kinds[i] == .cpu ? CPUBackend(pool: pool!)
                    : BackendFactory.make(kinds[i], device: device, threads: options.threads)
                shards.append(try ModelShard(file: file, config: config, layers: range, backend: backend, options: shardOptions) { done, n in
                    progress?(i * 1000 + done * 1000 / n, total * 1000)
                })
            }
            cpuPool = pool
            workers = nil
            pipeline = LocalPipeline(shards: shards)
            deviceName = shards[0].backend.deviceName
        }
        generator = Generator(pipeline: pipeline)
    }

    /// Where the last of these workers should push logits: a socket in the state folder when they are
    /// all on this host (ipc://), else a tcp port on every interface.
    public static func resultEndpoint(for workers: [String]) -> String {
        workers.allSatisfy { $0.hasPrefix("ipc://") } ? "ipc://\(Cluster.stateFolder)/results-\(getpid())" : "tcp://0.0.0.0:*"
    }

    /// The engine that serves many requests on this model (`serve`, `bench --concurrency`). It owns
    /// the pipeline from now on: use either the engine or `generator`, not both at once.
    public func makeEngine() -> any InferenceEngine {
        HybridScheduler(pipeline: pipeline, options: schedulerOptions)
    }

    /// The scheduler settings these load options ask for.
    public var schedulerOptions: SchedulerOptions {
        var s = SchedulerOptions()
        s.maxSequences = options.kv.maxSequences
        s.prefillChunk = options.prefillChunk
        // Measurement knob: steps in flight through worker processes (default: shards + 1).
        if let v = getenv("SHARD_MAX_IN_FLIGHT").flatMap({ Int(String(cString: $0)) }), v >= 1 { s.maxInFlight = v }
        return s
    }

    /// The number of shards the model is cut into.
    public var shardCount: Int { plan.count }

    deinit {
        (pipeline as? RemotePipeline)?.shutdown()
        workers?.stop()
        cpuPool?.shutdown()
    }


}
