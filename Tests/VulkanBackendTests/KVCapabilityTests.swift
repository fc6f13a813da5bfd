import Compute
import Foundation
import GGUF
import Model
import ShardRuntime
import Testing
import VulkanBackend

/// q8_0 KV and sliding-window layers are accepted by the Vulkan backend; what no backend supports
/// (layers with different windows) is refused by name when the shard is built.
extension VulkanBackendTests {
    @Test func kvFeaturesAreAcceptedOrRefusedClearly() throws {
        let b = try Shared.vulkan()
        #expect(b.kvCapabilities.types == [.f16, .q8_0] && b.kvCapabilities.slidingWindow)
        let dir = ProcessInfo.processInfo.environment["SHARD_MODELS_DIR"] ?? packageRoot.appendingPathComponent("models").path
        let file = try GGUFFile(path: dir + "/SmolLM2-135M-Instruct.Q4_1.gguf")
        var config = try ModelConfig(gguf: file)
        let q8 = try ModelShard(file: file, config: config, layers: 0..<2, backend: b,
                                options: ShardOptions(contextLength: 64, maxBatchRows: 8, kvType: .q8_0))
        #expect(q8.kvBytes > 0)
        config.attentionWindows = [32, 0]
        let windowed = try ModelShard(file: file, config: config, layers: 0..<2, backend: b, options: ShardOptions(contextLength: 64, maxBatchRows: 8))
        #expect(windowed.kvBytes > 0)
        config.attentionWindows = [32, 16]
        do {
            _ = try ModelShard(file: file, config: config, layers: 0..<2, backend: b, options: ShardOptions(contextLength: 64, maxBatchRows: 8))
            Issue.record("layers with two window sizes were accepted")
        } catch {
            #expect("\(error)".contains("different sliding windows"), "\(error)")
        }
    }
}
