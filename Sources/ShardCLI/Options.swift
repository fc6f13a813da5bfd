import ArgumentParser
import Compute
import Coordinator
import ShardRuntime

extension BackendKind: ExpressibleByArgument {}

/// `--backend cpu|vulkan|auto`.
public enum BackendChoice: String, ExpressibleByArgument, CaseIterable {
    case cpu, vulkan, auto
    /// `auto` picks Vulkan when a GPU exists, else the CPU.
    var resolved: BackendKind {
        switch self {
        case .cpu: return .cpu
        case .vulkan: return .vulkan
        case .auto: return BackendFactory.auto()
        }
    }
}

struct ModelOption: ParsableArguments {
    @Option(name: .long, help: "Path of a GGUF model file.")
    var model: String
}

struct ComputeOptions: ParsableArguments {
    @Option(help: "Number of shards the model's layers are cut into.")
    var shards: Int = 1
    @Option(help: "Compute backend: cpu, vulkan or auto; or one per shard, e.g. cpu,vulkan.")
    var backend: String = "auto"
    @Option(help: "Layers per shard by hand, e.g. 10,20 (default: even, or in proportion to the workers' memory).")
    var split: String?
    @Option(help: "GPU devices to use, e.g. 0,1 (Vulkan backend).")
    var devices: String?
    @Option(help: "Context length (default: the model's, at most 4096).")
    var ctx: Int?
    @Option(help: "CPU threads per shard (default: all cores).")
    var threads: Int?
    @Option(help: "Running shard-workers to use, one shard each: tcp://h1:5600,tcp://h2:5600.")
    var workers: String?
    @Flag(name: .customLong("in-process"), help: "Run all shards inside this process instead of as shard-worker processes.")
    var inProcess = false
    @Option(name: .customLong("kv-memory"),
            help: "KV cache budget per shard: bytes (1073741824, 512MiB, 2GiB) or a fraction of free memory (0.5). Default: room for max-sequences × 1024 positions or one full context.")
    var kvMemory: String?
    @Option(name: .customLong("kv-type"), help: "KV cache element type: f16 or q8_0 (q8_0: CPU backend).")
    var kvType: String = "f16"
    @Option(name: .customLong("max-sequences"), help: "Most sequences the scheduler runs at once (default 16; 1 for single-sequence commands).")
    var maxSequences: Int?
    @Option(name: .customLong("prefill-chunk"), help: "Prompt tokens per scheduler step, interleaved with decode steps.")
    var prefillChunk: Int = 256

    /// `--devices 0,1` as indices.
    var deviceList: [Int]? {
        get throws {
            guard let devices else { return nil }
            let list = devices.split(separator: ",").map { Int($0.filter { $0 != " " }) }
            guard !list.isEmpty, list.allSatisfy({ ($0 ?? -1) >= 0 }) else {
                throw ValidationError("--devices must be a comma-separated list of device indices, e.g. 0,1")
            }
            return list.map { $0! }
        }
    }

    /// `--backend` as one choice per shard.
    var backendList: [BackendKind] {
        get throws {
            let list = backend.split(separator: ",").map { BackendChoice(rawValue: String($0.filter { $0 != " " })) }
            guard !list.isEmpty, list.allSatisfy({ $0 != nil }) else {
                throw ValidationError("--backend must be cpu, vulkan or auto, or a comma-separated list of them (one per shard)")
            }
            return list.map { $0!.resolved }
        }
    }

    /// `--split 10,20` as layer counts.
    var splitList: [Int]? {
        get throws {
            guard let split else { return nil }
            let list = split.split(separator: ",").map { Int($0.filter { $0 != " " }) }
            guard !list.isEmpty, list.allSatisfy({ ($0 ?? 0) > 0 }) else {
                throw ValidationError("--split must be positive layer counts, e.g. 10,20")
            }
            return list.map { $0! }
        }
    }

    func validate() throws {
        guard shards >= 1 else { throw ValidationError("--shards must be at least 1") }
        _ = try backendList
        _ = try splitList
        _ = try deviceList
        if let workers {
            let list = workers.split(separator: ",")
            guard !list.isEmpty, list.allSatisfy({ $0.hasPrefix("tcp://") || $0.hasPrefix("ipc://") }) else {
                throw ValidationError("--workers must be a comma-separated list of tcp://HOST:PORT or ipc://PATH endpoints")
            }
        }
        if let ctx, ctx < 1 { throw ValidationError("--ctx must be positive") }
        if let threads, threads < 1 { throw ValidationError("--threads must be positive") }
        _ = try kvOptions
        guard prefillChunk >= 1 else { throw ValidationError("--prefill-chunk must be at least 1") }
    }

    /// --kv-memory, --kv-type and --max-sequences as the shards' KV settings.
    var kvOptions: KVLoadOptions {
        get throws {
            var kv = KVLoadOptions()
            if let kvMemory {
                guard let m = KVMemory(parsing: kvMemory) else {
                    throw ValidationError("--kv-memory must be a byte count (e.g. 1073741824, 512MiB, 2GiB) or a fraction of free memory in (0, 1]")
                }
                kv.memory = m
            }
            guard let t = KVElementType(rawValue: kvType) else { throw ValidationError("--kv-type must be f16 or q8_0") }
            kv.type = t
            if let maxSequences {
                guard maxSequences >= 1, maxSequences <= 65536 else { throw ValidationError("--max-sequences must be in 1...65536") }
                kv.maxSequences = maxSequences
            }
            return kv
        }
    }

    /// The load options these flags ask for. `singleSequence`: the command runs one sequence at a time
    /// (generate, logits, perplexity, bench without --concurrency), so unless --max-sequences says
    /// otherwise the KV pool is sized for one.
    func loadOptions(singleSequence: Bool = false) throws -> LoadOptions {
        var o = LoadOptions()
        o.shards = shards
        let backends = try backendList
        o.backend = backends[0]
        o.shardBackends = backends.count > 1 ? backends : nil
        o.split = try splitList
        o.devices = try deviceList
        o.workers = workers.map { $0.split(separator: ",").map(String.init) }
        o.inProcess = inProcess
        o.contextLength = ctx
        if let threads { o.threads = threads }
        o.kv = try kvOptions
        if singleSequence && maxSequences == nil { o.kv.maxSequences = 1 }
        o.prefillChunk = prefillChunk
        return o
    }
}

struct SamplingOptions: ParsableArguments {
    @Option(help: "Sampling temperature; 0 is greedy.")
    var temperature: Float = 0.8
    @Option(name: .customLong("top-k"), help: "Keep the K most likely tokens (0: all).")
    var topK: Int = 40
    @Option(name: .customLong("top-p"), help: "Nucleus sampling threshold (1: off).")
    var topP: Float = 0.95
    @Option(name: .customLong("min-p"), help: "Drop tokens below P × the top probability (0: off).")
    var minP: Float = 0.05
    @Option(name: .customLong("repeat-penalty"), help: "Repetition penalty over the last 64 tokens (1: off).")
    var repeatPenalty: Float = 1.0
    @Option(help: "Random seed (default: random).")
    var seed: UInt64?

    func validate() throws {
        guard temperature >= 0, temperature.isFinite else { throw ValidationError("--temperature must be ≥ 0") }
        guard topK >= 0 else { throw ValidationError("--top-k must be ≥ 0") }
        guard topP > 0, topP <= 1 else { throw ValidationError("--top-p must be in (0, 1]") }
        guard minP >= 0, minP <= 1 else { throw ValidationError("--min-p must be in [0, 1]") }
        guard repeatPenalty > 0, repeatPenalty.isFinite else { throw ValidationError("--repeat-penalty must be > 0") }
    }

    var params: SamplingParams {
        var p = SamplingParams()
        p.temperature = temperature
        p.topK = topK
        p.topP = topP
        p.minP = minP
        p.repeatPenalty = repeatPenalty
        p.seed = seed ?? UInt64.random(in: 0...UInt64.max)
        return p
    }
}

/// Loads a model with a progress bar when stdout is a terminal.
func loadModel(_ path: String, _ options: LoadOptions) throws -> LocalModel {
    let bar = Terminal.ProgressBar("loading")
    return try LocalModel(path: path, options: options) { done, total in bar.update(done, total) }
}

/// A byte count on the command line: `123456`, `512MiB`, `12GiB`, `1.5GB` (the same grammar as
/// `--kv-memory`'s byte form: KiB/MiB/GiB binary, KB/MB/GB decimal).
struct ByteSize: ExpressibleByArgument, Equatable {
    let bytes: Int
    init(bytes: Int) { self.bytes = bytes }
    init?(argument: String) {
        guard case .bytes(let b)? = KVMemory(parsing: argument) else { return nil }
        bytes = b
    }
}
