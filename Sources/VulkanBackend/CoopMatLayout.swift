import CVulkan
import Glibc

extension VulkanBackend {
    /// Which (row, column) of a 16 × 16 f16 cooperative matrix each of a subgroup's 32 invocations holds as its
    /// elements 0…7 (coopmat_layout.comp loads a matrix whose element (r, c) is r · 16 + c and writes back what
    /// every invocation holds); nil where the device was not created with cooperative matrices (whatever the
    /// `cooperativeMatrix` switch says: the shader would be invalid there) or an invocation does not hold 8.
    func coopMatElementMap() throws -> [[(row: Int, column: Int)]]? {
        guard cooperativeMatrix, ctx.cooperativeMatrix16, device.subgroupSize == 32 else { return nil }
        let out = try GPUBuffer(ctx, size: 257 * 4, hostVisible: false)
        let dummy = try GPUBuffer(ctx, size: 16, hostVisible: false)
        let p = try pipeline("coopmat_layout")
        let set = try descriptors.set(for: p, [out, dummy])
        try immediate { cmd in
            var s = set
            vkCmdBindPipeline(cmd, VK_PIPELINE_BIND_POINT_COMPUTE, p.pipeline)
            vkCmdBindDescriptorSets(cmd, VK_PIPELINE_BIND_POINT_COMPUTE, p.layout, 0, 1, &s, 0, nil)
            vkCmdDispatch(cmd, 1, 1, 1)
        }
        let words = readBack(out, offset: 0, count: 257, as: UInt32.self)
        guard words[256] == 8 else { return nil }
        return (0..<32).map { lane in (0..<8).map { i in (Int(words[lane * 8 + i]) / 16, Int(words[lane * 8 + i]) % 16) } }
    }

    /// matmul_cmd.comp's ALAY for an element map, or nil where the map is not the layout that kernel builds its
    /// weight fragments for: invocation l holds rows g = l / 4 and g + 8 and columns 2t, 2t + 1, 2t + 8, 2t + 9
    /// (t = l % 4), with element i at the same (row half, column slot) in every invocation. 3 bits per element:
    /// bit 0 row g + 8, bits 1–2 the column slot.
    static func directFragmentLayout(_ map: [[(row: Int, column: Int)]]) -> UInt32? {
        guard map.count == 32, map.allSatisfy({ $0.count == 8 }) else { return nil }
        var codes: [UInt32]? = nil
        for (lane, elements) in map.enumerated() {
            let g = lane / 4, t = lane % 4
            let slots = [2 * t, 2 * t + 1, 2 * t + 8, 2 * t + 9]
            var laneCodes: [UInt32] = []
            for (row, column) in elements {
                guard row == g || row == g + 8, let slot = slots.firstIndex(of: column) else { return nil }
                laneCodes.append(UInt32(row == g ? 0 : 1) | UInt32(slot) << 1)
            }
            guard Set(laneCodes).count == 8 else { return nil }
            if let c = codes { guard c == laneCodes else { return nil } } else { codes = laneCodes }
        }
        return codes!.enumerated().reduce(UInt32(0)) { $0 | $1.element << UInt32(3 * $1.offset) }
    }

    /// ALAY of this device for matmul_cmd (probed once), or nil where the kernel does not apply.
    func directLayout() -> UInt32? {
        if let known = directLayoutProbe { return known }
        var found: UInt32? = nil
        do {
            if let map = try coopMatElementMap() { found = Self.directFragmentLayout(map) }
        } catch {
            fputs("VulkanBackend: coopmat_layout probe failed (\(error)); matmul_cmd off\n", stderr)
        }
        if found == nil, cooperativeMatrix {
            fputs("VulkanBackend: this device's cooperative-matrix layout is not matmul_cmd's; batched decode keeps matmul_cm\n", stderr)
        }
        directLayoutProbe = .some(found)
        return found
    }
}
