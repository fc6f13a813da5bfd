import Compute
import Testing
import VulkanBackend

/// attn_prefill.comp (tiled prefill attention, online softmax) against the CPU's attention: chunked prefill
/// of one sequence (chunks at offsets 0, 37, 50: odd sizes, query tiles cut short, KV tiles crossing chunk
/// and page boundaries, pages reversed), then a decode step (attn_decode), GQA and head dims of 36...128.
extension VulkanBackendTests {   // the serialized suite: one shared backend
    @Test(arguments: [(heads: 4, kvHeads: 2, headDim: 64), (heads: 2, kvHeads: 1, headDim: 128), (heads: 3, kvHeads: 3, headDim: 36),
                      (heads: 8, kvHeads: 2, headDim: 32)])
    func prefillAttentionMatchesCPU(geometry g: (heads: Int, kvHeads: Int, headDim: Int)) throws {
        let vk = try Shared.vulkan(), cpu = Shared.cpu
        let saved = vk.flashMinRows
        vk.flashMinRows = 2
        defer { vk.flashMinRows = saved }
        let pageSize = 8, pages = 16
        let shape = KVShape(layers: 2, pages: pages, pageSize: pageSize, kvDim: g.kvHeads * g.headDim)
        let params = AttentionParams(heads: g.heads, kvHeads: g.kvHeads, headDim: g.headDim, scale: 1 / Float(g.headDim).squareRoot())
        let steps = [sequenceBatch(rows: 37, pageSize: pageSize, pages: pages),
                     sequenceBatch(rows: 13, start: 37, pageSize: pageSize, pages: pages),
                     sequenceBatch(rows: 33, start: 50, pageSize: pageSize, pages: pages),
                     sequenceBatch(rows: 1, start: 83, pageSize: pageSize, pages: pages)]
        let before = vk.flashDispatches
        let gpu = try storeAndAttend(vk, try vk.makeKVStorage(shape), layer: 1, steps: steps, params: params)
        #expect(vk.flashDispatches - before == 3, "attn_prefill ran for the three prefill chunks")
        let ref = try storeAndAttend(cpu, try cpu.makeKVStorage(shape), layer: 1, steps: steps, params: params)
        let e = relativeError(gpu, ref)
        #expect(e < 1e-5, "prefill attention \(g): relative error \(e)")
        // Every row, including the last one of each chunk and of each query tile, on its own.
        var worst = 0.0
        let qDim = g.heads * g.headDim
        for r in 0..<(gpu.count / qDim) {
            let a = Array(gpu[r * qDim..<(r + 1) * qDim]), b = Array(ref[r * qDim..<(r + 1) * qDim])
            worst = max(worst, relativeError(a, b))
        }
        #expect(worst < 1e-4, "worst row: relative error \(worst)")
    }
}
