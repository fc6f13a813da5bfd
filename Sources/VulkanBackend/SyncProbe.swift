import CVulkan

extension VulkanBackend {
    /// What a dependent step costs on this device (`kernel-bench --vulkan --sync`): per phase of a chain of
    /// phases that each stream `chunk` bytes (none, 1 MiB, one 4096 × 4096 Q4_K matrix) over G workgroups of
    /// 256 invocations, µs per phase when the phases are separate dispatches with a pipeline barrier between
    /// them (how every op of a step runs today), separate dispatches with no barrier (the launch alone), and
    /// phases of one dispatch separated by grid barriers (an atomic counter; what a persistent kernel would pay),
    /// with and without the next phase's loads issued before the barrier, and dispatches with no pipeline barrier
    /// whose workgroups wait on the previous dispatch's arrival counter (with and without early loads).
    /// sync_probe.comp says how.
    /// From the difference of two chain lengths, so the submit and the wait cancel out.
    public func syncReport(groupCounts: [Int] = [132, 264, 528], chunks: [Int] = [0, 1 << 20, 4096 * 4096 * 9 / 16]) throws -> String {
        precondition(chunks.allSatisfy { $0 % 16 == 0 }, "chunks of whole uvec4")
        let span = 32
        let src = try GPUBuffer(ctx, size: span * chunks.max()! + 64, hostVisible: false)
        precondition(groupCounts.max()! <= 4096 - 16)
        let out = try GPUBuffer(ctx, size: (4096 + 256) * 4, hostVisible: false)
        try immediate { cmd in vkCmdFillBuffer(cmd, src.buffer, 0, VkDeviceSize(VK_WHOLE_SIZE), 0x3c003c01) }
        let p = try pipeline("sync_probe")
        let set = try descriptors.set(for: p, [src, out])
        func encode(_ cmd: VkCommandBuffer?, mode: UInt32, phases: Int, first: Int, chunk: Int, groups: Int) {
            var s = set
            vkCmdBindPipeline(cmd, VK_PIPELINE_BIND_POINT_COMPUTE, p.pipeline)
            vkCmdBindDescriptorSets(cmd, VK_PIPELINE_BIND_POINT_COMPUTE, p.layout, 0, 1, &s, 0, nil)
            var push: [UInt32] = [UInt32(chunk / 16), UInt32(phases), UInt32(first), mode, UInt32(span)]
            vkCmdPushConstants(cmd, p.layout, flags(VK_SHADER_STAGE_COMPUTE_BIT), 0, UInt32(push.count * 4), &push)
            vkCmdDispatch(cmd, UInt32(groups), 1, 1)
        }
        /// Seconds for a chain of `phases` phases in `how` (0 dispatches + barriers, 1 dispatches, 2 grid barriers,
        /// 3 grid barriers + early loads, 4 dispatches chained by counters, 5 the same with early loads); nil when a
        /// spin overflowed (grid barriers: not all workgroups resident).
        func time(_ how: Int, phases: Int, chunk: Int, groups: Int) throws -> Double? {
            let t0 = DispatchTimeShim.now()
            try immediate { cmd in
                if how >= 4 {
                    encode(cmd, mode: 3, phases: 1, first: 0, chunk: 0, groups: 1)
                    computeBarrier(cmd)
                    for i in 0..<phases { encode(cmd, mode: UInt32(how), phases: 1, first: i, chunk: chunk, groups: groups) }
                } else if how >= 2 {
                    encode(cmd, mode: 3, phases: 1, first: 0, chunk: 0, groups: 1)
                    computeBarrier(cmd)
                    encode(cmd, mode: how == 2 ? 1 : 2, phases: phases, first: 0, chunk: chunk, groups: groups)
                } else {
                    for i in 0..<phases {
                        encode(cmd, mode: 0, phases: 1, first: i, chunk: chunk, groups: groups)
                        if how == 0 { computeBarrier(cmd) }
                    }
                }
            }
            let t = DispatchTimeShim.now() - t0
            if how >= 2 && readBack(out, offset: 4, count: 1, as: UInt32.self)[0] != 0 { return nil }
            return t
        }
        let names = ["dispatch + barrier", "dispatch, no barrier", "grid barrier", "grid barrier, loads first", "chained dispatches",
                     "chained, loads first"]
        var lines = ["µs per phase (best of 3; difference of 48- and 16-phase chains); 256 invocations per workgroup"]
        for groups in groupCounts {
            for chunk in chunks {
                var cells: [String] = []
                for how in 0..<names.count {
                    var best: Double? = .infinity
                    for _ in 0..<3 {
                        guard let a = try time(how, phases: 16, chunk: chunk, groups: groups),
                              let b = try time(how, phases: 48, chunk: chunk, groups: groups) else { best = nil; break }
                        best = min(best!, (b - a) / 32)
                    }
                    if let us = best.map({ $0 * 1e6 }) {
                        let gbs = chunk > 0 ? " (\(Int((Double(chunk) / us / 1e3).rounded())) GB/s)" : ""
                        cells.append("\(names[how]) \((us * 100).rounded() / 100)\(gbs)")
                    } else {
                        cells.append("\(names[how]) failed (spin overflow: not all workgroups resident)")
                    }
                }
                lines.append("G \(groups), \(chunk) B per phase: " + cells.joined(separator: "; "))
            }
        }
        return lines.joined(separator: "\n")
    }
}
