import Compute
import Coordinator
import Foundation
import GGUF
import Model
import ShardRuntime
import Testing
import VulkanBackend

/// A pipeline whose shards run on different backends: one CPU shard, one Vulkan shard.
extension VulkanBackendTests {
    @Test(arguments: ["llama", "qwen2"])
    func cpuShardThenVulkanShardGivesTheVulkanTokens(arch: String) throws {
        let vk = try Shared.vulkan()
        let file = try syntheticTinyModel(arch: arch, quant: "q4_k_m", seed: 5)
        let config = try ModelConfig(gguf: file)
        let plan = try LayerPlan.even(layers: config.layerCount, shards: 2)
        let options = ShardOptions(contextLength: 128, maxBatchRows: 32)
        let vulkanOnly = LocalPipeline(shards: [try ModelShard(file: file, config: config, layers: 0..<config.layerCount,
                                                                backend: vk, options: options)])
        let mixed = LocalPipeline(shards: [
            try ModelShard(file: file, config: config, layers: plan[0], backend: Shared.cpu, options: options),
            try ModelShard(file: file, config: config, layers: plan[1], backend: vk, options: options),
        ])
        for prompt: [Int32] in [[1, 17, 42, 99, 250, 3], [1, 400, 12, 12, 7]] {
            let a = try Generator(pipeline: vulkanOnly).generate(prompt: prompt, maxTokens: 16, sampling: .greedy,
                                                                 isEndOfGeneration: { _ in false }, onToken: { _ in true })
            let b = try Generator(pipeline: mixed).generate(prompt: prompt, maxTokens: 16, sampling: .greedy,
                                                            isEndOfGeneration: { _ in false }, onToken: { _ in true })
            #expect(a.generated == b.generated, "\(arch): Vulkan-only \(a.generated) vs CPU+Vulkan \(b.generated)")
        }
    }
}
