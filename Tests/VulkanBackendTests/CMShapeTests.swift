import Compute
import GGUF
import Testing
#if canImport(Glibc)
import Glibc
#endif
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
        let savedSplit = vk.cmSplitTarget
        defer { vk.cmSplitTarget = savedSplit }
        for target in [0, 512] {
            vk.cmSplitTarget = target   // with a K split: the split decode tile (64 rows), else main's (16 rows)
            let d = target > 0 ? vk.cmDecodeSplit : vk.cmDecode
            for (n, nt) in [(2, 1), (16, 1), (17, 2), (33, 3), (64, 4)] {
                let s = vk.cmShape(w, n: n)
                #expect(s?.nt == nt && s?.rm == d.rm && s?.rs == d.rs && s?.ks == d.ks, "n=\(n): \(String(describing: s))")
            }
        }
        vk.cmSplitTarget = 0
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

    /// The packed kernel (matmul_cm_pk_*): which products read X from the int8 copy (Q4_K / Q6_K on integer
    /// dot products with rounded activations, decode products only with cmInt8X 1, none with 0 or unpacked),
    /// its pipeline names (specialization constants 1...8: shape, Q6W, XI8, SU), the unpacked kernel's names
    /// as before, and the int8 copy's column stride the shader computes (qx_stride) = int8RowWords.
    @Test func cmPackedKernelReadsInt8XWhereItAppliesAndNamesItsPipelines() throws {
        let vk = try Shared.vulkan()
        let g = try TempGGUF([("w", [512, 40], .q4_K), ("w6", [512, 24], .q6_K), ("s", [512, 8], .q5_K)], seed: 7)
        let w = try vk.loadWeight(g.tensor("w"), of: g.file) as! VulkanWeight
        let w6 = try vk.loadWeight(g.tensor("w6"), of: g.file) as! VulkanWeight
        let other = try vk.loadWeight(g.tensor("s"), of: g.file) as! VulkanWeight
        let saved = (vk.cooperativeMatrix, vk.cmEnabled, vk.dotProducts, vk.roundsActivations, vk.cmPacked, vk.cmInt8X, vk.cmStrideUnits,
                     vk.cmDecodeMax, vk.cmSplitTarget)
        defer {
            (vk.cooperativeMatrix, vk.cmEnabled, vk.dotProducts, vk.roundsActivations, vk.cmPacked, vk.cmInt8X, vk.cmStrideUnits,
             vk.cmDecodeMax, vk.cmSplitTarget) = saved
        }
        (vk.cooperativeMatrix, vk.cmEnabled, vk.dotProducts, vk.roundsActivations) = (true, true, true, true)   // the choice only
        (vk.cmPacked, vk.cmInt8X, vk.cmStrideUnits, vk.cmDecodeMax, vk.cmSplitTarget) = (true, 2, 1, 64, 256)
        #expect(vk.cmPacked && vk.cmInt8X == 2 && saved.4 && saved.5 == 2 && saved.6 == 1)   // the defaults
        for n in [2, 16, 64, 65, 512] { #expect(vk.cmReadsInt8(w, n: n) && vk.cmReadsInt8(w6, n: n), "n=\(n)") }
        #expect(!vk.cmReadsInt8(w, n: 1))        // one row: the mat-vec
        #expect(!vk.cmReadsInt8(other, n: 16))   // Q5_K: no matmul_cm variant, no int8 dot products
        vk.cmInt8X = 1
        #expect(vk.cmReadsInt8(w, n: 64) && !vk.cmReadsInt8(w, n: 65))   // decode products only
        vk.cmInt8X = 0
        #expect(!vk.cmReadsInt8(w, n: 16))
        vk.cmInt8X = 2
        vk.roundsActivations = false   // no rounded activations: no int8 copy to read
        #expect(!vk.cmReadsInt8(w, n: 16))
        vk.roundsActivations = true
        vk.cmPacked = false
        #expect(!vk.cmReadsInt8(w, n: 16))
        // Names: unpacked as before; packed with Q6W (Q6_K prefill only), XI8 and SU.
        let d = try #require(vk.cmShape(w, n: 64)), p6 = try #require(vk.cmShape(w6, n: 65))
        #expect(vk.cmPipelineName(w, shape: d, n: 64, int8X: false) == "matmul_cm_q4_K#" + d.key)
        #expect(vk.cmPipelineName(w6, shape: p6, n: 65, int8X: false) == "matmul_cm_q6_K#" + p6.key + ".1")
        vk.cmPacked = true
        #expect(vk.cmPipelineName(w, shape: d, n: 64, int8X: true) == "matmul_cm_pk_q4_K#" + d.key + ".0.1.1")
        #expect(vk.cmPipelineName(w6, shape: p6, n: 65, int8X: true) == "matmul_cm_pk_q6_K#" + p6.key + ".1.1.1")
        vk.cmStrideUnits = 0
        #expect(vk.cmPipelineName(w6, shape: d, n: 64, int8X: false) == "matmul_cm_pk_q6_K#" + d.key + ".0.0.0")
        #expect(vk.cmPipelineName(other, shape: d, n: 64, int8X: false) == nil)
        let name = try #require(vk.cmPipelineName(w, shape: d, n: 64, int8X: true))
        #expect(name.split(separator: "#")[1].split(separator: ".").count == 8)   // specialization constants 1...8
        #expect(VulkanBackend.shaders["matmul_cm_pk_q4_K"] != nil && VulkanBackend.shaders["matmul_cm_pk_q6_K"] != nil)
        // 128 k per step: only the packed kernel's arrays hold it (unpacked: 64 k instead); prefill products on
        // the unpacked kernel with cmPackPrefill off (no int8 X for them, names without the packed fields).
        let k128 = try #require(VulkanBackend.CMShape("1,0,4,1,128"))
        #expect(!k128.valid && k128.validPacked && VulkanBackend.CMShape("2,0,4,1,128") == nil)   // 128 rows × 128 k: past MAXA
        let savedTile = (vk.cmDecodeSplit, vk.cmPackPrefill)
        defer { (vk.cmDecodeSplit, vk.cmPackPrefill) = savedTile }
        vk.cmDecodeSplit = k128
        (vk.cmPacked, vk.cmStrideUnits) = (true, 1)
        #expect(vk.cmShape(w, n: 64)?.kc == 128 && vk.cmShape(w, n: 64)?.rows == 64)
        vk.cmPacked = false
        #expect(vk.cmShape(w, n: 64)?.kc == 64)
        vk.cmPacked = true
        vk.cmPackPrefill = false
        #expect(vk.cmReadsInt8(w, n: 64) && !vk.cmReadsInt8(w, n: 65))
        #expect(vk.cmPipelineName(w6, shape: p6, n: 65, int8X: false) == "matmul_cm_q6_K#" + p6.key + ".1")
        #expect(vk.cmPipelineName(w, shape: k128, n: 64, int8X: true) == "matmul_cm_pk_q4_K#" + k128.key + ".0.1.1")
        // The shader's qx_stride(K) (matmul_cm.comp's xs) against the host's layout of the copy.
        for k in [256, 768, 4096, 11008] { #expect(VulkanBackend.int8RowWords(k) == (k / 4 + k / 256 + 3) & ~3) }
    }

    /// K split over workgroups for decode products (splitk_reduce.comp adds the partial sums): the splits
    /// cover K exactly once, in whole steps of the tile, about cmSplitTarget workgroups in all, and none
    /// for prefill shapes, with the knob off, or where the grid is large enough.
    @Test func cmSplitCoversKInWholeStepsAndOnlyForDecodeProducts() throws {
        let vk = try Shared.vulkan()
        let saved = (vk.cmSplitTarget, vk.cmDecodeMax)
        defer { (vk.cmSplitTarget, vk.cmDecodeMax) = saved }
        vk.cmDecodeMax = 64
        let tile = VulkanBackend.CMShape(rm: 1, nt: 4, rs: 4, ks: 1, kc: 64)   // 64 rows × 64 columns, 64 k per step
        for target in [128, 256, 512, 1024] {
            vk.cmSplitTarget = target
            for (m, k, n) in [(4096, 4096, 64), (11008, 4096, 64), (4096, 11008, 64), (4096, 11008, 17), (1013, 768, 3), (32000, 4096, 64), (40, 512, 2)] {
                let (splits, kLen) = vk.cmSplit(tile, m: m, k: k, n: n)
                let groups = ((m + 63) / 64) * ((n + 63) / 64)
                #expect(kLen % 64 == 0 || splits == 1, "\(m)x\(k)x\(n): kLen \(kLen)")
                #expect(splits * kLen >= k && (splits - 1) * kLen < k, "\(m)x\(k)x\(n): \(splits) × \(kLen)")   // every k once, no empty split
                if groups >= target { #expect(splits == 1) }
                #expect(splits <= max(1, (target + groups - 1) / groups), "\(m)x\(k)x\(n): \(groups) × \(splits) for \(target)")
                if splits == 1 { #expect(kLen == k) }
            }
        }
        vk.cmSplitTarget = 256
        #expect(vk.cmSplit(tile, m: 4096, k: 4096, n: 64) == (4, 1024))   // 64 row tiles × 4 splits of 1024 k
        #expect(vk.cmSplit(tile, m: 11008, k: 4096, n: 64) == (2, 2048))
        vk.cmSplitTarget = 512
        #expect(vk.cmSplit(tile, m: 4096, k: 4096, n: 64) == (8, 512))
        #expect(vk.cmSplit(tile, m: 4096, k: 11008, n: 64) == (8, 1408))
        #expect(vk.cmSplit(tile, m: 11008, k: 4096, n: 64) == (3, 1408))
        #expect(vk.cmSplit(tile, m: 4096, k: 4096, n: 65) == (1, 4096))   // prefill: no split
        vk.cmSplitTarget = 0
        #expect(vk.cmSplit(tile, m: 4096, k: 4096, n: 64) == (1, 4096))   // off: main's single pass
        // Matrices of 8192+ rows take the tall split tile (128 rows), smaller ones the 64-row one.
        let g = try TempGGUF([("tall", [256, 8192], .q4_K), ("low", [256, 8191], .q4_K)], seed: 5)
        let tall = try vk.loadWeight(g.tensor("tall"), of: g.file) as! VulkanWeight
        let low = try vk.loadWeight(g.tensor("low"), of: g.file) as! VulkanWeight
        let savedCoop = (vk.cooperativeMatrix, vk.cmDecodeSplitTall, vk.cmPacked, vk.cmDecodeSplitQ4K, vk.cmDecodeSplitTallQ4K)
        defer { (vk.cooperativeMatrix, vk.cmDecodeSplitTall, vk.cmPacked, vk.cmDecodeSplitQ4K, vk.cmDecodeSplitTallQ4K) = savedCoop }
        vk.cooperativeMatrix = true   // the choice only (lavapipe has no cooperative matrices)
        vk.cmSplitTarget = 512
        // The packed kernel (default): Q4_K's own tiles, 64 rows × 128 k, 128 rows × 64 k for 8192+ rows.
        #expect(vk.cmPacked && vk.cmDecodeSplitQ4K != nil && vk.cmDecodeSplitTallQ4K != nil)
        #expect(vk.cmShape(tall, n: 40)?.rows == 128 && vk.cmShape(tall, n: 40)?.kc == 64 && vk.cmShape(tall, n: 40)?.nt == 3)
        #expect(vk.cmShape(low, n: 40)?.rows == 64 && vk.cmShape(low, n: 40)?.kc == 128)
        // The unpacked kernel (SHARD_VK_CM_PACK=0): the same settings step down to main's tiles.
        vk.cmPacked = false
        #expect(vk.cmShape(tall, n: 40)?.rows == 128 && vk.cmShape(tall, n: 40)?.kc == 32 && vk.cmShape(tall, n: 40)?.nt == 3)
        #expect(vk.cmShape(low, n: 40)?.rows == 64 && vk.cmShape(low, n: 40)?.kc == 64)
        (vk.cmDecodeSplitQ4K, vk.cmDecodeSplitTallQ4K) = (nil, nil)   // as SHARD_VK_CM_DECS(_TALL) leave them
        vk.cmPacked = true
        #expect(vk.cmShape(tall, n: 40)?.rows == 128 && vk.cmShape(tall, n: 40)?.kc == 32)
        #expect(vk.cmShape(low, n: 40)?.rows == 64 && vk.cmShape(low, n: 40)?.kc == 64)
        vk.cmDecodeSplitTall = nil
        #expect(vk.cmShape(tall, n: 40)?.rows == 64)
        vk.cmSplitTarget = 0
        #expect(vk.cmShape(tall, n: 40)?.rows == 16)   // main's decode tile
        // matvec_q8_mc takes 2...16 rows, but only 2...8 where the split tiles are there to take 9...16.
        let savedMC = (vk.dotProducts, vk.roundsActivations, vk.mcDotMax, vk.mcDotSplitMax)
        defer { (vk.dotProducts, vk.roundsActivations, vk.mcDotMax, vk.mcDotSplitMax) = savedMC }
        (vk.dotProducts, vk.roundsActivations, vk.mcDotMax, vk.mcDotSplitMax) = (true, true, 16, 8)
        #expect(vk.mcDotShape(16) != nil && vk.mcDotShape(9) != nil)   // no split: main's routing
        vk.cmSplitTarget = 512
        #expect(vk.mcDotShape(8) != nil && vk.mcDotShape(9) == nil && vk.mcDotShape(16) == nil)
        vk.cooperativeMatrix = false   // no cooperative matrices (lavapipe): matvec_q8_mc up to mcDotMax
        #expect(vk.mcDotShape(16) != nil && vk.mcDotShape(17) == nil)
    }

    /// matmul_cmd builds its weight fragments for one element layout (the mma.m16n8k16 A fragment): the host
    /// accepts a probed layout only when every invocation holds rows g, g + 8 and columns 2t, 2t + 1, 2t + 8,
    /// 2t + 9 with the same element order, and encodes that order as ALAY; any other layout (transposed,
    /// lanes disagreeing, a missing element) turns the kernel off. lavapipe has no cooperative matrices, so
    /// the probe itself (coopmat_layout.comp) answers nil here.
    @Test func directFragmentLayoutIsAcceptedOnlyForTheMMALayout() throws {
        typealias Map = [[(row: Int, column: Int)]]
        func map(_ element: (Int, Int, Int) -> (row: Int, column: Int)) -> Map {
            (0..<32).map { lane in (0..<8).map { element(lane / 4, lane % 4, $0) } }
        }
        // PTX's a0…a7: (g, 2t), (g, 2t+1), (g+8, 2t), (g+8, 2t+1), (g, 2t+8), (g, 2t+9), (g+8, 2t+8), (g+8, 2t+9).
        let mma = map { g, t, i in (g + 8 * ((i >> 1) & 1), 2 * t + (i & 1) + 8 * (i >> 2)) }
        let code = try #require(VulkanBackend.directFragmentLayout(mma))
        for i in 0..<8 {
            let sel = Int(code >> UInt32(3 * i)) & 7
            #expect(sel & 1 == (i >> 1) & 1)                      // row g + 8
            #expect([0, 1, 8, 9][sel >> 1] == (i & 1) + 8 * (i >> 2))   // column slot
        }
        // Another element order is fine (ALAY says which); the transposed layout, a lane that disagrees, a
        // repeated element are not.
        let reordered = map { g, t, i in (g + 8 * (i & 1), 2 * t + ((i >> 1) & 1) + 8 * (i >> 2)) }
        #expect(VulkanBackend.directFragmentLayout(reordered) != nil && VulkanBackend.directFragmentLayout(reordered) != code)
        let transposed = map { g, t, i in (2 * t + (i & 1) + 8 * (i >> 2), g + 8 * ((i >> 1) & 1)) }
        #expect(VulkanBackend.directFragmentLayout(transposed) == nil)
        var disagreeing = mma
        disagreeing[5] = reordered[5]
        #expect(VulkanBackend.directFragmentLayout(disagreeing) == nil)
        var repeated = mma
        repeated[0][1] = repeated[0][0]
        #expect(VulkanBackend.directFragmentLayout(repeated) == nil)
        let vk = try Shared.vulkan()
        if !vk.cooperativeMatrix { #expect(try vk.coopMatElementMap() == nil && vk.directLayout() == nil) }
    }

    /// Which products take matmul_cmd: Q4_K and Q6_K, cmDirectMin…cmDirectMax columns (Q4_K of 8192+ rows up to
    /// cmDirectTallMax), only where the probed layout is known —
    /// so never on a device created without cooperative matrices, even with the switch forced on (the probe then
    /// does not run its shader). And the pipeline statistics are off unless asked for (SHARD_VK_PIPELINE_STATS=1).
    @Test func directKernelNeedsAKnownLayoutAndStatisticsAreOptIn() throws {
        let vk = try Shared.vulkan()
        let g = try TempGGUF([("w", [512, 40], .q4_K), ("q", [512, 40], .q6_K), ("t", [256, 8192], .q4_K)], seed: 5)
        let w = try vk.loadWeight(g.tensor("w"), of: g.file) as! VulkanWeight
        let q6 = try vk.loadWeight(g.tensor("q"), of: g.file) as! VulkanWeight
        let tall = try vk.loadWeight(g.tensor("t"), of: g.file) as! VulkanWeight
        let saved = vk.cooperativeMatrix
        defer { vk.cooperativeMatrix = saved }
        if !vk.ctx.cooperativeMatrix16 {   // lavapipe (CI): never, even with the switch forced on
            for forced in [false, true] {
                vk.cooperativeMatrix = forced
                for n in [1, 7, 8, 16, 32, 33, 64] {
                    #expect(vk.takesDirect(w, n: n) == false && vk.takesDirect(q6, n: n) == false && vk.takesDirect(tall, n: n) == false)
                }
            }
        } else if vk.directLayout() != nil {   // a GPU with the mma layout: 8…64 columns, tall Q4_K 8…32
            for n in [1, 7, 8, 16, 32, 33, 64, 65] {
                #expect(vk.takesDirect(w, n: n) == (8...64).contains(n) && vk.takesDirect(q6, n: n) == (8...64).contains(n))
                #expect(vk.takesDirect(tall, n: n) == (8...32).contains(n))
            }
        }
        #expect(vk.cmDirectMin == 8 && vk.cmDirectMinQ6K == 8 && vk.cmDirectMax == 64 && vk.cmDirectTallMax == 32)
        #expect(vk.cmDirect && vk.cmDirectQ6K)
        if getenv("SHARD_VK_PIPELINE_STATS") == nil {
            #expect(try vk.pipeline("splitk_reduce").statistics().isEmpty)
        }
    }
}

extension VulkanBackendTests {
    /// splitk_reduce adds each K-split product's partial sums in split order (+ bias, + into the residual): exactly the
    /// sums in that order. Lavapipe runs no split product (they need cooperative matrices), so the reductions of a group
    /// are driven directly: four products of different heights, split counts, biases and residuals, over 3 rows.
    @Test func splitReducesAddEachProductsSplitsInOrder() throws {
        let vk = try Shared.vulkan()
        let n = 3
        let shapes: [(m: Int, splits: Int, bias: Bool, residual: Bool)] = [(40, 3, true, false), (24, 2, false, true), (56, 4, true, true), (8, 2, false, false)]
        var offsets: [Int] = [], total = 0
        for s in shapes { offsets.append(total); total += s.splits * n * s.m }
        let partials = randomFloats(total, seed: 601, scale: 2)
        let biasValues = shapes.indices.map { randomFloats(shapes[$0].m, seed: 602 + UInt64($0), scale: 1) }
        let residualValues = shapes.indices.map { randomFloats(n * shapes[$0].m, seed: 612 + UInt64($0), scale: 1) }
        let scratch = try vk.makeActivations(rowCapacity: 1, columns: total) as! VulkanActivations
        let outs = try shapes.map { try vk.makeActivations(rowCapacity: n, columns: $0.m) as! VulkanActivations }
        let biases = try shapes.map { try vk.makeActivations(rowCapacity: 1, columns: $0.m) as! VulkanActivations }
        let residuals = try shapes.map { try vk.makeActivations(rowCapacity: n, columns: $0.m) as! VulkanActivations }
        try vk.beginStep(sequenceBatch(rows: n, pageSize: 4, pages: 4))
        vk.upload(partials, to: scratch)
        for j in shapes.indices {
            vk.upload(biasValues[j], to: biases[j])
            vk.upload(residualValues[j], to: residuals[j])
        }
        vk.dispatchLog = []
        vk.emitSplitReduces(shapes.enumerated().map { j, s in
            VulkanBackend.SplitReduce(scratch: scratch.buffer, out: outs[j].buffer, bias: s.bias ? biases[j].buffer : nil,
                                      residual: s.residual ? residuals[j].buffer : nil, m: s.m, n: n, splits: s.splits,
                                      flags: (s.bias ? 1 : 0) | (s.residual ? 2 : 0), offset: offsets[j])
        })
        let log = vk.dispatchLog ?? []
        vk.dispatchLog = nil
        try vk.endStep()
        #expect(log.filter { $0.hasPrefix("splitk reduce") }.count == shapes.count, "reduce dispatches: \(log)")
        for (j, s) in shapes.enumerated() {
            // The host's f32 additions in the kernel's order.
            let count = s.m * n
            var out = [Float](repeating: 0, count: count), res = residualValues[j]
            for i in 0..<count {
                var v = partials[offsets[j] + i]
                for k in 1..<s.splits { v += partials[offsets[j] + k * count + i] }
                if s.bias { v += biasValues[j][i % s.m] }
                out[i] = v
                if s.residual { res[i] += v }
            }
            let got = vk.download(outs[j], rows: 0..<n) + vk.download(residuals[j], rows: 0..<n)
            #expect(zip(got, out + res).allSatisfy { $0.bitPattern == $1.bitPattern }, "product \(j): not the in-order sums")
        }
    }
}
