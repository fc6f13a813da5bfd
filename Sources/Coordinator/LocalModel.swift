import Compute
import GGUF
import Model
import ShardRuntime
import Tokenizer
import VulkanBackend

/// Options for loading a model into this process.
public struct LoadOptions {
    public var shards: Int = 1
    /// Layer counts per shard (`--split`); nil splits evenly.
    public var split: [Int]?
    public var backend: BackendKind = .cpu
    /// GPU devices for Vulkan shards (shard i uses devices[i % count]); nil picks the best device.
    public var devices: [Int]?
    /// Context length; nil takes the model's, capped at `defaultContextCap`.
    public var contextLength: Int?
    public var maxBatchRows: Int = 512
    public var threads: Int = Parallel.defaultThreads
    public static let defaultContextCap = 4096
    public init() {}
}

/// A model loaded in this process: file, hyperparameters, tokenizer and a pipeline of shards.
public final class LocalModel {
    public let file: GGUFFile
    public let config: ModelConfig
    public let tokenizer: Tokenizer
    public let pipeline: LocalPipeline
    public let generator: Generator
    public let plan: [Range<Int>]
    private let cpuPool: ThreadPool?

    /// Loads `path`. `progress(done, total)` reports weights loaded (for a progress bar).
    public init(path: String, options: LoadOptions, progress: ((Int, Int) -> Void)? = nil) throws {
        let file = try GGUFFile(path: path)
        let config = try ModelConfig(gguf: file)
        let plan = try options.split.map { try LayerPlan.manual($0, layers: config.layerCount) }
            ?? LayerPlan.even(layers: config.layerCount, shards: options.shards)
        self.file = file
        self.config = config
        self.plan = plan
        tokenizer = try Tokenizer(gguf: file)
        let ctx = options.contextLength ?? min(config.contextLength, LoadOptions.defaultContextCap)
        guard ctx > 0 else { throw ModelConfigError("--ctx must be positive") }
        let shardOptions = ShardOptions(contextLength: ctx, maxBatchRows: min(options.maxBatchRows, ctx))
        var shards: [ModelShard] = []
        let total = plan.count
        // In-process CPU shards run one after the other, so they share one pool of worker threads.
        let pool = options.backend == .cpu ? ThreadPool(threads: options.threads) : nil
        cpuPool = pool
        for (i, range) in plan.enumerated() {
            let device = options.devices.map { $0[i % $0.count] }
            let backend: any ComputeBackend = try pool.map { CPUBackend(pool: $0) }
                ?? LocalModel.makeBackend(options.backend, device: device, threads: options.threads)
            shards.append(try ModelShard(file: file, config: config, layers: range, backend: backend, options: shardOptions) { done, n in
                progress?(i * 1000 + done * 1000 / n, total * 1000)
            })
        }
        pipeline = LocalPipeline(shards: shards)
        generator = Generator(pipeline: pipeline)
    }

    deinit { cpuPool?.shutdown() }

    public static func makeBackend(_ kind: BackendKind, device: Int? = nil, threads: Int) throws -> any ComputeBackend {
        switch kind {
        case .cpu: return CPUBackend(threads: threads)
        case .vulkan:
            if let device, !VulkanBackend.available().indices.contains(device) {
                throw ComputeError("Vulkan device \(device) does not exist (\(VulkanBackend.available().count) found)")
            }
            return try VulkanBackend(deviceIndex: device)
        }
    }

    /// What `--backend auto` means here: Vulkan when a real GPU is present, else the CPU
    /// (a CPU Vulkan driver such as lavapipe is slower than the CPU backend).
    public static func autoBackend() -> BackendKind {
        VulkanBackend.available().contains { $0.usable && $0.type != "cpu" } ? .vulkan : .cpu
    }
}
