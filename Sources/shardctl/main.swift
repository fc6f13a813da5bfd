import GGUF
import Model
import Compute
import ShardRuntime
import Coordinator
let f = try GGUFFile(path: CommandLine.arguments[1])
let cfg = try ModelConfig(gguf: f)
let ids = CommandLine.arguments[2].split(separator: ",").map { Int32($0)! }
let shard = try ModelShard(file: f, config: cfg, layers: 0..<cfg.layerCount, backend: CPUBackend(), options: ShardOptions(contextLength: 512, maxBatchRows: 64))
let gen = Generator(pipeline: LocalPipeline(shards: [shard]))
let logits = try gen.prefill(ids, sequence: 1)
for (id, l) in Sampler.topK(logits, 10) { print(id, l) }
try gen.pipeline.release(1)
let r = try gen.generate(prompt: ids, maxTokens: 8, sampling: .greedy, isEndOfGeneration: { _ in false }, onToken: { _ in true })
print(r.generated, r.decodeTokensPerSecond)
