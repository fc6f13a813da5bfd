import Compute
import Foundation
import GGUF
import Testing
@testable import VulkanBackend

/// The persistent VkPipelineCache (VulkanContext's MARK: pipeline cache): a step that creates pipelines
/// writes the file, a new backend loads it, and a corrupt file or one of another device (its header's
/// pipelineCacheUUID) is ignored — the backend starts with an empty cache, works, and replaces the file.
extension VulkanBackendTests {
    @Test func pipelineCacheFileIsReusedAndForeignOrCorruptOnesIgnored() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("shard-pcache-\(getpid())-\(UUID().uuidString)").path
        setenv("SHARD_CACHE_DIR", dir, 1)
        defer { unsetenv("SHARD_CACHE_DIR"); try? FileManager.default.removeItem(atPath: dir) }
        let x = randomFloats(64, seed: 3), y = randomFloats(64, seed: 4)
        /// A step with an add (its pipeline created through the cache); the sum.
        func run(_ b: VulkanBackend) throws -> [Float] {
            let xa = try b.makeActivations(rowCapacity: 1, columns: 64), ya = try b.makeActivations(rowCapacity: 1, columns: 64)
            return try step(b, sequenceBatch(rows: 1, pageSize: 4, pages: 1), {
                b.upload(x, to: xa)
                b.upload(y, to: ya)
                b.add(xa, ya)
            }, then: { b.download(xa, rows: 0..<1) })
        }
        let expected = zip(x, y).map { $0 + $1 }
        func file(_ b: VulkanBackend) throws -> [UInt8] { [UInt8](try Data(contentsOf: URL(fileURLWithPath: b.ctx.pipelineCachePath!))) }

        let first = try VulkanBackend()
        #expect(first.ctx.pipelineCachePath?.hasPrefix(dir + "/") == true)
        #expect(!first.ctx.pipelineCacheLoaded, "no file yet")
        #expect(try run(first) == expected)
        let saved = try file(first)
        #expect(VulkanContext.pipelineCacheMatches(saved, first.ctx.physical), "the file written after the step")

        let second = try VulkanBackend()
        #expect(second.ctx.pipelineCacheLoaded, "the file of the same device is loaded")
        #expect(try run(second) == expected)

        // Corrupt: random bytes.
        var rng = SplitMix64(seed: 9)
        try Data((0..<4096).map { _ in UInt8(truncatingIfNeeded: rng.next()) }).write(to: URL(fileURLWithPath: first.ctx.pipelineCachePath!))
        let corrupt = try VulkanBackend()
        #expect(!corrupt.ctx.pipelineCacheLoaded, "a corrupt file is ignored")
        #expect(try run(corrupt) == expected)
        #expect(VulkanContext.pipelineCacheMatches(try file(corrupt), corrupt.ctx.physical), "the corrupt file was replaced")

        // Foreign: a valid file of another device or driver (another pipelineCacheUUID), and a truncated header.
        var foreign = saved
        foreign[16] ^= 0xFF
        #expect(!VulkanContext.pipelineCacheMatches(foreign, first.ctx.physical))
        #expect(!VulkanContext.pipelineCacheMatches(Array(saved.prefix(20)), first.ctx.physical))
        try Data(foreign).write(to: URL(fileURLWithPath: first.ctx.pipelineCachePath!))
        let other = try VulkanBackend()
        #expect(!other.ctx.pipelineCacheLoaded, "another device's file is ignored")
        #expect(try run(other) == expected)

        // Off: no file.
        setenv("SHARD_VK_NO_PIPELINE_CACHE", "1", 1)
        defer { unsetenv("SHARD_VK_NO_PIPELINE_CACHE") }
        let off = try VulkanBackend()
        #expect(off.ctx.pipelineCachePath == nil && !off.ctx.pipelineCacheLoaded)
        #expect(try run(off) == expected)
    }
}
