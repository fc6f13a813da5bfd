import Compute
import GGUF
import Testing
@testable import VulkanBackend

/// matmul_cm.comp's tile shapes and which products take it. The shader itself needs
/// VK_NV_cooperative_matrix (lavapipe has none): it is checked on the GPU by `kernel-bench --vulkan`
/// against the f32 paths (odd sizes included) and by greedy parity; here, the host's choice.
extension VulkanBackendTests {
    @Test func cmShapesCoverTheirTilesAndRespectTheShaderLimits() {
        let decode = VulkanBackend.CMShape(rm: 1, nt: 2, rs: 2, ks: 2)
        #expect(decode.cs == 1 && decode.rows == 32 && decode.columns == 32 && decode.valid)
        let prefill = VulkanBackend.CMShape(rm: 4, nt: 2, rs: 2, ks: 1)
        #expect(prefill.cs == 2 && prefill.rows == 128 && prefill.columns == 64 && prefill.valid)
        #expect(VulkanBackend.CMShape(rm: 4, nt: 4, rs: 4, ks: 1).valid == false)   // 256 rows: past Ash and the W registers
        #expect(VulkanBackend.CMShape(rm: 1, nt: 1, rs: 4, ks: 2).valid == false)   // 8 subgroups
        #expect(VulkanBackend.CMShape(rm: 1, nt: 4, rs: 1, ks: 4).valid)           // 64 columns × 128 k: Bsh's limit
        #expect(VulkanBackend.CMShape("1,0,2,2") == VulkanBackend.CMShape(rm: 1, nt: 1, rs: 2, ks: 2))
        #expect(VulkanBackend.CMShape("1,2,3") == nil && VulkanBackend.CMShape("5,1,1,1") == nil && VulkanBackend.CMShape("1,1,1,4,48") == nil)
        #expect(VulkanBackend.CMShape("1,2,1,4,64") == VulkanBackend.CMShape(rm: 1, nt: 2, rs: 1, ks: 4, kc: 64))
        #expect(VulkanBackend.CMShape(rm: 1, nt: 4, rs: 1, ks: 4, kc: 64).valid == false)   // 64 columns × 256 k: past Bsh
    }

    @Test func cmPathIsChosenByColumnCountAndOnlyWithCooperativeMatrices() throws {
        let vk = try Shared.vulkan()
        let g = try TempGGUF([("w", [512, 40], .q4_K), ("h", [24, 8], .f16), ("q", [512, 8], .q5_K)], seed: 3)
        let w = try vk.loadWeight(g.tensor("w"), of: g.file) as! VulkanWeight
        let odd = try vk.loadWeight(g.tensor("h"), of: g.file) as! VulkanWeight
        let other = try vk.loadWeight(g.tensor("q"), of: g.file) as! VulkanWeight
        let saved = (vk.cooperativeMatrix, vk.cmEnabled)
        defer { (vk.cooperativeMatrix, vk.cmEnabled) = saved }
        vk.cooperativeMatrix = false
        #expect(vk.cmShape(w, n: 16) == nil)   // no cooperative matrices (lavapipe): the other paths
        vk.cooperativeMatrix = true            // (no dispatch here: only the choice)
        #expect(vk.cmShape(w, n: 1) == nil)    // decode of one row: the mat-vec
        for (n, nt) in [(2, 1), (16, 1), (17, 2), (33, 3), (64, 4)] {
            let s = vk.cmShape(w, n: n)
            #expect(s?.nt == nt && s?.rm == vk.cmDecode.rm && s?.rs == vk.cmDecode.rs && s?.ks == vk.cmDecode.ks, "n=\(n): \(String(describing: s))")
        }
        #expect(vk.cmShape(w, n: 65) == vk.cmPrefillQ4K ?? vk.cmPrefill)   // Q4_K's own prefill tile (64 k per step)
        #expect(vk.cmShape(w, n: 65)?.kc == 64)
        // 64 k per step where the tiles fit, else 32 (the decode shape's other fields kept).
        let savedDecode = vk.cmDecode
        defer { vk.cmDecode = savedDecode }
        vk.cmDecode = VulkanBackend.CMShape(rm: 1, nt: 1, rs: 1, ks: 4, kc: 64)
        #expect(vk.cmShape(w, n: 32)?.kc == 64 && vk.cmShape(w, n: 33)?.kc == 32 && vk.cmShape(w, n: 33)?.nt == 3)
        #expect(vk.cmShape(odd, n: 16) == nil)     // F16: no variant (and K = 24 is not a multiple of 16)
        #expect(vk.cmShape(other, n: 16) == nil)   // Q5_K: no matmul_cm variant compiled
        vk.cmEnabled = false
        #expect(vk.cmShape(w, n: 16) == nil)
    }
}
