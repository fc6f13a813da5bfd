// VulkanBackend: Shard's compute backend on any Vulkan 1.1+ device with subgroup arithmetic
// (NVIDIA/AMD/Intel GPUs; Mesa's lavapipe on CPUs, which the tests and CI use).
//
// Design
// - One submit per step, recorded once per step shape. Every op between `beginStep` and `endStep`
//   appends commands (dispatches, small copies, barriers) to the step; a barrier goes before any
//   command that follows a write (compute-only between two dispatches; the q/k/v and gate/up matmuls of
//   one `matmuls` call run without barriers between them). The commands are kept with their command
//   buffer: a later step that produces the same commands (same pipelines, descriptor sets, push
//   constants, grids, copies; up to 8 shapes cached) does not record anything but resubmits that
//   buffer, with only its per-step host data rewritten (positions, page tables, token ids, rope
//   tables, at the same staging offsets). Decode steps therefore cost the host a few microseconds:
//   nothing in a decode step's commands depends on the KV length (decode attention uses a fixed split
//   count; page tables are padded to powers of two). Matching still walks the step's ops on the host
//   (~0.6 ms for a 7B's ~355 dispatches); a caller whose remaining ops repeat an earlier step's says so with
//   `repeatsOps(key)` and the backend then takes the rest of the matched buffer as it is (see "repeated
//   steps" below). `endStep` submits and waits on a fence. Rows announced with `prepareDownload`, and greedy
//   ids (argmax.comp writes them into host-visible memory), are copied out inside the step, so `download` /
//   `downloadArgmax` read them directly; any other `download` is a second, tiny submit into a host-visible
//   readback buffer.
//   `replays = false` (env SHARD_VK_NO_REPLAY=1) records every step. Plain greedy steps (ModelShard's
//   `picksOnly`) end with argmax.comp and read back one id per logit row instead of the logits
//   (env SHARD_VK_NO_ARGMAX=1: the logits, picked on the host).
// - Fusion: ops are recorded one call late where the next call may fuse with them (see "fusion"
//   below): a decode layer is 11 dispatches (8 barriers) instead of 20: rms_quant | q, k, v mat-vecs
//   (rope and KV store in their epilogues) | attn_decode_merge | o mat-vec + residual |
//   rms_quant | gate, up | swiglu_quant | down + residual.
// - Memory. Weights, activations and the KV cache are device-local buffers bound into memory blocks
//   (padded by 16 bytes so shaders may read a word past the end), one kind of buffer per block. A
//   shard announces its weights' and activations' total size first (`reserveMemory`), and a KV store
//   knows its own: their blocks are sized to exactly that (up to the device's largest allocation), so
//   nothing is left over; unannounced buffers go into 64 MiB blocks. `memoryAccount` / `memoryReport`
//   account every allocation by purpose (bench --json prints it as device_memory). Weights keep the
//   tensor's raw GGUF bytes (quantized blocks as in the file), uploaded through two 64 MiB staging
//   slots (filled by several threads, copied asynchronously; freed when the first step runs). Per-step data is written into host-visible
//   staging chunks while recording and copied on the GPU into device-local arena chunks at its place
//   in the command buffer; shaders only read device memory. KV: per layer one buffer, K pages then V
//   pages, f16 (`pageSize` positions × kvDim per page) or Q8_0 blocks (`--kv-type q8_0`: the CPU's
//   rounding, slots padded to whole words; store_kv_q8 and attn_decode_q8, no rope fusion), indexed
//   through the step's page tables, like the CPU backend. Sliding-window layers have a store of their
//   own, indexed through the step's ring tables (`windowPageTables`, uploaded after the full tables);
//   attn_decode starts a row's positions at max(0, p − window + 1), below which ring entries are evicted.
// - Kernels. Decode: Q4_K / Q6_K mat-vecs on integer dot products where the device has
//   VK_KHR_shader_integer_dot_product (matvec_q8.comp -DQX: x as packed int8 + Q8_K block scales, written
//   by the rms_quant / swiglu_quant / attention_merge_quant that round it anyway; 4 × int8 OpSDot instead
//   of nibble-to-float conversions), other mat-vecs (and inputs without such a producer) on
//   matvec.comp (4 rows per workgroup, every row's loads issued first;
//   batched decode steps of 2...64 rows: its multi-column variant, matvec.comp -DMC, 2 rows × 8 columns
//   per workgroup, each weight row decoded once per 8 columns; env SHARD_VK_MULTICOL_MAX=0 or 1: off),
//   batched decode steps of 2...16 rows (mcDotMax; 2...8, mcDotSplitMax, where matmul_cm's K-split decode
//   tiles are available) on integer dot products too where their producer
//   rounds x (matvec_q8_mc.comp: rms_quant / swiglu_quant / attention_merge_quant write all n rows as
//   int8, row r at word r · int8RowWords(K); 2 weight rows × up to 8 columns per workgroup, each weight
//   unit loaded and its scales decoded once for all its columns; it goes before matmul_cm, which wins
//   from ~32 rows; env SHARD_VK_MC8_MAX=0: off, matmul_cm as before; SHARD_VK_MC8_COLS / _ROWS / _PRE:
//   its shape),
//   attention split over positions (attn_decode.comp: subgroups walk positions with lanes over the
//   head's dims) then merged (by default by the last workgroup of each group of heads: attn_decode_merge);
//   decode steps (one row too since session 6; f16 KV, head dim a multiple of 8) take attn_decode_vec.comp instead: K and V
//   rows as 16-byte loads by headDim / 8 lanes, several positions per subgroup load and NPV loads in flight per
//   lane group, splits from the step's rows × heads (about attentionVecWorkgroups workgroups) bounded by its
//   longest context, merged by its last workgroups at up to 64 rows (env SHARD_VK_ATTN_VEC=0: attn_decode). Prefill attention (17+ rows of one sequence at consecutive positions, f16 KV,
//   no sliding window, head dim ≤ 128): with cooperative matrices attn_prefill_cm.comp (64 query rows ×
//   32 KV positions, f16 q/K/V/P, f32 accumulation), else attn_prefill.comp, tiles of 32 query rows × 32
//   KV positions (16: attn_prefill_small, where shared memory is 32 KiB) with an online softmax in shared
//   memory and registers, f32; other steps take attn_decode. Prefill: mat-mats on cooperative matrices where the device has
//   VK_NV_cooperative_matrix with a 16×16×16 f16 shape (queried at run time), else shared-memory
//   tiles (matmul_tiled.comp, 64 × 64, f32; lavapipe runs these). With cooperative matrices, every other
//   product of 2 or more rows (batched decode and prefill) takes matmul_cm.comp, whose tile shape the
//   host picks per column count (`cmShape`: for ≤ 64 rows 64 weight rows × up to 64 columns with K also
//   split over workgroups — about cmSplitTarget (256) of them; each writes partial sums that
//   splitk_reduce.comp adds in a fixed order after the group's barrier; env SHARD_VK_CM_SPLIT=0: main's
//   16 weight rows with K split over 4 subgroups only, SHARD_VK_CM_DECS: the split tile —, 64 × 128
//   above, Q4_K with 64 k per step; Q4_K and Q6_K weights; Q6_K
//   prefill tiles load their bytes as aligned 16-byte pairs, Q6W). Its packed variant (matmul_cm_pk_*, the
//   default; env SHARD_VK_CM_PACK=0: the unpacked kernel) writes the shared tiles with 16-byte stores of f16
//   pairs and reads X from the n-row int8 copy (Q8_K blocks, exactly the f32 copy's values) that the fused
//   producers then also write for its products (env SHARD_VK_CM_I8X=0: f32 X, 1: decode products only;
//   SHARD_VK_CM_SU=0: coopMatLoadNV strides in f16s instead of uvec4s; SHARD_VK_CM_PACK_PRE=0: prefill
//   products on the unpacked kernel); it holds up to 128 k per step, which Q4_K's split decode tiles use
//   (64 rows × 128 k, 128 rows × 64 k for 8192+ rows; SHARD_VK_CM_DECS_Q4K / _DECS_TALL_Q4K); the multi-column
//   mat-vec and matmul_coop.comp remain for the other formats and with env SHARD_VK_CM=0. Q4_K and Q6_K decode
//   products of 8…64 columns (cmDirectMin…cmDirectMax; Q4_K of 8192+ rows up to cmDirectTallMax, 32) take
//   matmul_cmd.comp instead: the weight operands built in registers from
//   each lane's own weight bytes (no shared weight tiles; one barrier per 128 k, for X), which needs the
//   device's cooperative-matrix element layout to be the mma one — coopmat_layout.comp probes it once
//   (CoopMatLayout.swift) and the kernel is not used where it differs (env SHARD_VK_CMD=0: off;
//   SHARD_VK_CMD_SPLIT / _SPLIT_WIDE: its K-split workgroup target, 512 / 256 above 32 columns; _MIN / _MAX: fewest / most columns;
//   SHARD_VK_CMD_Q6=0: Q4_K only; _CMD_MIN_Q6: fewest columns of a Q6_K product; _CMD_TALL_MAX).
// - Pipelines are created lazily, one per shader (per weight format for matmul/embed), through a
//   VkPipelineCache kept in a file ($SHARD_CACHE_DIR or ~/.cache/shard; written after a step that
//   created pipelines; a file of another device or driver is ignored; env SHARD_VK_NO_PIPELINE_CACHE=1:
//   none), so that a fresh process does not compile them again while recording its first steps, with
//   specialization constant 0 = workgroup size, chosen from the device's subgroup size (4 subgroups,
//   64...256 invocations; the attention tile is also bounded by the shared-memory limit). Sizes and
//   offsets go in push constants. Descriptor sets are cached per (pipeline, buffers) and reused
//   across steps (a model binds the same buffers every step).
// - Shaders: GLSL 450 in `Shaders/*.comp` (one op per file; `dequant.glsl` holds every format's
//   block decoding, `common.glsl` the reductions and the round-to-nearest-even f16 conversion,
//   `quant.glsl` the activation rounding that fused shaders share).
//   `scripts/gen-shaders.sh` compiles them with glslc to SPIR-V, embedded as `[UInt32]` arrays in
//   `Generated/Shaders.swift`, which is committed: the GPU hosts have no glslc, and SwiftPM needs no
//   build-time tool. A test recompiles with glslc (where installed) and fails if the file is stale.
// - Numerics follow the CPU backend: weights dequantized with Dequant.row's arithmetic, f32
//   accumulation, K/V stored as f16 (round to nearest even), q rounded to f16 before q·k, rope
//   angles computed on the host exactly as CPUKernels.rope does. Before a quantized matmul the input
//   is rounded (quantize_act.comp, or fused into the op that produces it) to the same 8-bit grid the
//   CPU's int8 dot products use (Q8_0/Q8_1 blocks of 32, Q8_K blocks of 256, as llama.cpp), so one
//   matmul matches the CPU to f32 rounding; `roundsActivations = false` (or env SHARD_VK_F32_ACT=1)
//   keeps plain f32 activations instead. Remaining differences: summation order and attention's online
//   softmax (~1e-6 relative), which the 8-bit rounding occasionally amplifies (a flipped quant) to ~1%
//   of logits on small models; and, on cooperative matrices, f16 operands in prefill mat-mats (~3e-4
//   relative to the f32 tiles; env SHARD_VK_NO_COOPMAT=1 keeps f32).
// - Workgroup size: 4 subgroups on GPUs (128 on NVIDIA); one subgroup on CPU devices (lavapipe),
//   where every barrier is a coroutine switch. Not thread-safe: one thread drives a backend.
// - Ops' errors (e.g. a pipeline that fails to build) are kept and thrown by `endStep`.
// - Tuning knobs for measurements (env): SHARD_VK_NO_FUSE, SHARD_VK_NO_TILED, SHARD_VK_FULL_BARRIERS,
//   SHARD_VK_MATVEC_ROWS / _WG / _UNITS / _XSH, SHARD_VK_MULTICOL_MAX / _ROWS, SHARD_VK_ATTN_SPLITS / _POS, SHARD_VK_COOP_TILE,
//   SHARD_VK_PREFILL_ATTN_OLD, SHARD_VK_NO_FLASH (prefill attention on attn_decode), SHARD_VK_FLASH_MIN, SHARD_VK_FLASH_CM,
//   SHARD_VK_CM / _CM_MIN / _CM_DECODE_MAX / _CM_DEC / _CM_PRE / _CM_PRE_Q4K / _CM_Q6W / _CM_SPLIT / _CM_DECS / _CM_DECS_TALL /
//   _CM_DECS_Q4K / _CM_DECS_TALL_Q4K / _CM_PACK / _CM_PACK_PRE / _CM_I8X / _CM_SU, SHARD_VK_NO_DP (no
//   integer-dot mat-vecs: the device is created without the extension), SHARD_VK_DP_ROWS, SHARD_VK_DP_ROUNDX
//   (matvec_q8 rounds x per workgroup; with it the RMSNorm and SwiGLU fusions into the mat-vecs,
//   SHARD_VK_NO_NORM_FUSE / SHARD_VK_NO_SWIGLU_FUSE), SHARD_VK_NO_O_DP, SHARD_VK_NO_ROPE_FUSE (decode q/k/v
//   mat-vecs without the rope + KV store epilogue: rope_store as before), SHARD_VK_MERGE_BATCH (splits
//   attention_merge_quant loads together; 1: one at a time, as before), SHARD_VK_ATTN_FUSED_MERGE (=0: the
//   merge as its own dispatch), SHARD_VK_ATTN_PREFETCH, SHARD_VK_ATTN_VEC (=0: batched decode attention on
//   attn_decode as before) / _VEC_POS / _VEC_WGS / _VEC_MINPOS / _VEC_FUSED_MAX (attn_decode_vec's shape, splits, merge) /
//   _VEC_MIN_ROWS (fewest rows on attn_decode_vec; default 1, 2: one-row decode on attn_decode_merge as before),
//   SHARD_VK_ATTN_WG (attn_decode / attn_decode_vec workgroup size, e.g. 4 subgroups on lavapipe as on GPUs), SHARD_VK_DP_SG (=0: off) / SHARD_VK_DP_UPL, SHARD_VK_DP_SG_ROPE,
//   SHARD_VK_MC8_MAX / _SPLIT_MAX / _COLS / _ROWS / _PRE (see the properties they set), SHARD_VK_CMD / _CMD_SPLIT /
//   _CMD_MIN / _CMD_MAX / _CMD_H2 / _CMD_ABL / _CMD_Q6 / _CMD_MIN_Q6 / _CMD_TALL_MAX / _CMD_SPLIT_WIDE (matmul_cmd; _ABL: timing ablations
//   with wrong results, kernel-bench only), SHARD_VK_QK_I8=0 (quantize_k writes no int8 copy).
// - Shard-process knobs listed with these (not Vulkan): SHARD_CHAIN=0 / 1 (chained greedy decode off /
//   on; default: on where the local workers' threads fit the cores, LoadOptions.defaultChain),
//   SHARD_POOL_PARK=0 (an idle CPU worker's pool threads spin after a step instead of sleeping at once),
//   SHARD_LINK=zmq, SHARD_WORKER_SAMPLING=0, SHARD_PIN_THREADS=1 (a CPU pool's threads on one core each).
import CVulkan
import Compute
import Dispatch
import GGUF
import Quant
#if canImport(Glibc)
import Glibc
#endif

final class VulkanWeight: Weight {
    let buffer: GPUBuffer
    let rowBytes: Int
    init(_ t: GGUFTensorInfo, buffer: GPUBuffer) {
        self.buffer = buffer
        rowBytes = t.rowBytes
        super.init(name: t.name, shape: t.shape, type: t.type)
    }
}

/// A token-embedding table left in the memory-mapped file (`loadEmbeddingTable`): `embed` dequantizes
/// the step's rows on the host (as the CPU backend does) and uploads them with the step's data.
final class VulkanHostWeight: Weight {
    let file: GGUFFile
    let data: UnsafeRawBufferPointer
    let rowBytes: Int
    init(_ t: GGUFTensorInfo, file: GGUFFile) {
        self.file = file
        data = file.data(for: t)
        rowBytes = t.rowBytes
        super.init(name: t.name, shape: t.shape, type: t.type)
    }
}

final class VulkanActivations: Activations {
    let buffer: GPUBuffer
    init(rowCapacity: Int, columns: Int, buffer: GPUBuffer) {
        self.buffer = buffer
        super.init(rowCapacity: rowCapacity, columns: columns)
    }
}

final class VulkanKVStorage: KVStorage {
    /// Per layer: K pages, then V pages.
    let layers: [GPUBuffer]
    /// Where V starts in each layer's buffer, in 32-bit words.
    let vOffsetWords: Int
    init(shape: KVShape, layers: [GPUBuffer]) {
        self.layers = layers
        vOffsetWords = shape.pages * shape.pageSize * Self.slotWords(shape)
        super.init(shape: shape)
    }
    /// 32-bit words of one position's K (or V): f16 pairs, or Q8_0 blocks of 17 halfwords padded to a
    /// whole word (store_kv.comp writes each word from one invocation).
    static func slotWords(_ shape: KVShape) -> Int {
        switch shape.type {
        case .f16: shape.kvDim / 2
        case .q8_0: (17 * (shape.kvDim / 32) + 1) / 2
        }
    }
    /// Bytes of one layer's buffer (K and V of every page).
    static func layerBytes(_ shape: KVShape) -> Int { 2 * shape.pages * shape.pageSize * slotWords(shape) * 4 }
}

public final class VulkanBackend: ComputeBackend {
    public let kind = BackendKind.vulkan
    public let device: VulkanDeviceInfo
    public var deviceName: String { "\(device.name) (Vulkan \(device.apiVersion))" }

    /// Weight formats the matmul and embedding shaders read.
    public static let supportedTypes: Set<GGMLType> = [.f32, .f16, .q4_0, .q4_1, .q5_0, .q5_1, .q8_0, .q4_K, .q5_K, .q6_K]

    let ctx: VulkanContext
    let descriptors: DescriptorCache
    private var pipelines: [String: Pipeline] = [:]
    /// Workgroup size of every shader but attention, and attention's (its tile of positions).
    let workgroupSize: Int
    let attentionWorkgroupSize: Int
    /// attn_decode.comp's workgroup (a few subgroups, each walking its own positions).
    let decodeAttentionWorkgroupSize: Int
    /// Record each step shape's command buffer once and replay it (env SHARD_VK_NO_REPLAY=1: off).
    public var replays = true { didSet { invalidateSkips() } }

    private var cmd: VkCommandBuffer?
    private var oneShot: VkCommandBuffer?
    private var recording = false
    private var pendingBarrier = false
    /// A copy was recorded since the last barrier (the next barrier must cover the transfer stage).
    private var pendingTransfer = false
    /// Every barrier covers compute and transfer stages (env SHARD_VK_FULL_BARRIERS=1).
    public var fullBarriers = false { didSet { invalidateSkips() } }
    private var deferredError: Error?
    private var batch = StepBatch(positions: [], tableIndex: [], pageTables: [])

    /// Per-step host-visible staging chunks and device-local arena chunks (bump allocators reset by beginStep).
    private var staging = ChunkedAllocator(hostVisible: true, use: .staging)
    private var arena = ChunkedAllocator(hostVisible: false, use: .arena)
    /// This step's positions / table indices / page tables in the arena (word offsets in `stepBuffer`).
    private var stepBuffer: GPUBuffer?
    private var stepPositions = 0, stepTableIndex = 0, stepTableStart = 0, stepWindowTableStart = 0
    /// Where a store's page tables start in the step buffer: sliding-window stores use the ring tables.
    private func tableStart(_ s: VulkanKVStorage) -> Int { s.shape.window > 0 ? stepWindowTableStart : stepTableStart }
    private var ropeTables: [RopeKey: (buffer: GPUBuffer, offset: Int)] = [:]
    /// This step's attention partials (attn_decode → merge), reused by every layer.
    private var stepPart: (buffer: GPUBuffer, offset: Int, bytes: Int)?
    private struct RopeKey: Hashable { let dims: Int; let base: UInt32 }

    private let dummy: GPUBuffer
    /// Activations rounded to the 8-bit grids (index: quantize_act mode), reused by every matmul.
    private var rounded: [GPUBuffer?] = [nil, nil]

    /// Round activations to the 8-bit grid of the weight's int8 dot product before quantized
    /// matmuls, as the CPU backend and llama.cpp do (default). Off: plain f32 activations, which is
    /// closer to exact math but gives different logits (and greedy tokens on near-ties) than the CPU.
    public var roundsActivations = true { didSet { invalidateSkips() } }
    private var readback: GPUBuffer?

    // MARK: profiling
    /// Per-dispatch GPU timestamps (a query pool around each dispatch), summed per op kind and phase
    /// (decode: steps of one row; prefill: more). Read with `profileReport()`. Costs a little per dispatch.
    public var profile = false { didSet { invalidateSkips() } }
    private var queryPool: VkQueryPool?
    private static let maxQueries: UInt32 = 8192
    private var queryNames: [String] = []
    private var stepQuery = false
    /// (phase + op kind) → (dispatches, total ns); phase → (steps, ns from first to last timestamp).
    private var opStats: [String: (count: Int, ns: Double)] = [:]
    private var stepStats: [String: (count: Int, ns: Double)] = [:]

    private func profileBegin(_ cmd: VkCommandBuffer?) {
        guard profile, ctx.timestampValidBits > 0 else { return }
        if queryPool == nil {
            var qci = VkQueryPoolCreateInfo()
            qci.sType = VK_STRUCTURE_TYPE_QUERY_POOL_CREATE_INFO
            qci.queryType = VK_QUERY_TYPE_TIMESTAMP
            qci.queryCount = Self.maxQueries
            if vkCreateQueryPool(ctx.device, &qci, nil, &queryPool) != VK_SUCCESS { queryPool = nil; return }
        }
        vkCmdResetQueryPool(cmd, queryPool, 0, Self.maxQueries)
        queryNames.removeAll(keepingCapacity: true)
    }

    /// Records a timestamp pair around `body` under `name` (if profiling and queries remain).
    private func timed(_ name: String, _ cmd: VkCommandBuffer?, _ body: () -> Void) {
        guard profile, let pool = queryPool, recording, UInt32(queryNames.count * 2 + 2) <= Self.maxQueries else { return body() }
        let q = UInt32(queryNames.count * 2)
        vkCmdWriteTimestamp(cmd, VK_PIPELINE_STAGE_TOP_OF_PIPE_BIT, pool, q)
        body()
        vkCmdWriteTimestamp(cmd, VK_PIPELINE_STAGE_BOTTOM_OF_PIPE_BIT, pool, q + 1)
        queryNames.append(name)
    }

    private func profileCollect() {
        guard profile, let pool = queryPool, !queryNames.isEmpty else { return }
        let n = queryNames.count * 2
        var ts = [UInt64](repeating: 0, count: n)
        let r = ts.withUnsafeMutableBytes { raw in
            vkGetQueryPoolResults(ctx.device, pool, 0, UInt32(n), raw.count, raw.baseAddress, 8,
                                  flags(VK_QUERY_RESULT_64_BIT, VK_QUERY_RESULT_WAIT_BIT))
        }
        guard r == VK_SUCCESS else { return }
        let period = Double(ctx.physical.limits.timestampPeriod)
        let mask: UInt64 = ctx.timestampValidBits >= 64 ? .max : (1 << UInt64(ctx.timestampValidBits)) - 1
        let phase = batch.rows == 1 ? "decode" : "prefill"
        for (i, name) in queryNames.enumerated() {
            let dt = Double((ts[2 * i + 1] &- ts[2 * i]) & mask) * period
            let key = phase + " " + name
            let old = opStats[key] ?? (0, 0)
            opStats[key] = (old.count + 1, old.ns + dt)
        }
        let total = Double((ts[n - 1] &- ts[0]) & mask) * period
        let old = stepStats[phase] ?? (0, 0)
        stepStats[phase] = (old.count + 1, old.ns + total)
    }

    /// "pipeline NAME: statistic=value, …" for every pipeline created so far, by name, where the device captures
    /// the driver's statistics (register count, shared memory, …; env SHARD_VK_PIPELINE_STATS=1); [] elsewhere.
    func pipelineStatisticsLines() -> [String] {
        pipelines.sorted(by: { $0.key < $1.key }).compactMap { name, p in
            let stats = p.statistics()
            return stats.isEmpty ? nil : "pipeline \(name): " + stats.joined(separator: ", ")
        }
    }

    /// A table of GPU time per op kind (per phase), and the GPU span of the steps.
    public func profileReport() -> String {
        var lines: [String] = []
        for phase in ["prefill", "decode"] {
            guard let step = stepStats[phase] else { continue }
            let ops = opStats.filter { $0.key.hasPrefix(phase + " ") }.sorted { $0.value.ns > $1.value.ns }
            let sum = ops.reduce(0) { $0 + $1.value.ns }
            lines.append("\(phase): \(step.count) steps, GPU span \(fmt(step.ns / Double(step.count) / 1e3)) us/step, "
                + "dispatches \(fmt(sum / Double(step.count) / 1e3)) us/step")
            lines.append("  op                      calls/step     us/step   us/call    share")
            for (key, v) in ops {
                let name = String(key.dropFirst(phase.count + 1))
                lines.append("  " + (name + String(repeating: " ", count: max(0, 22 - name.count)))
                    + pad(fmt(Double(v.count) / Double(step.count)), 12) + pad(fmt(v.ns / Double(step.count) / 1e3), 12)
                    + pad(fmt(v.ns / Double(v.count) / 1e3), 10) + pad(fmt(100 * v.ns / max(sum, 1)) + "%", 9))
            }
        }
        if let f = firstStepHost {
            lines.append("host: first step record \(fmt(f.record * 1e3)) ms, submit + wait \(fmt(f.gpu * 1e3)) ms; pipelines created "
                + "\(pipelineCreation.count) in \(fmt(pipelineCreation.seconds * 1e3)) ms; all \(hostTimes.steps) steps: record "
                + "\(fmt(hostTimes.record * 1e3)) ms, submit + wait \(fmt(hostTimes.gpu * 1e3)) ms, read-back \(fmt(hostTimes.download * 1e3)) ms")
        }
        lines += pipelineStatisticsLines()
        return lines.joined(separator: "\n")
    }

    private func fmt(_ x: Double) -> String {
        let r = (x * 10).rounded() / 10
        return "\(r)"
    }
    private func pad(_ s: String, _ n: Int) -> String { String(repeating: " ", count: max(0, n - s.count)) + s }

    /// Every physical device the Vulkan loader reports (empty if there is no driver).
    public static func available() -> [VulkanDeviceInfo] {
        guard let instance = try? VulkanContext.createInstance() else { return [] }
        defer { vkDestroyInstance(instance, nil) }
        return ((try? VulkanContext.physicalDevices(instance)) ?? []).map(\.info)
    }

    /// `deviceIndex` picks a device of `available()`; nil prefers a discrete GPU, then integrated,
    /// virtual, CPU. Throws a ComputeError when no usable Vulkan device exists.
    public init(deviceIndex: Int? = nil) throws {
        ctx = try VulkanContext(deviceIndex: deviceIndex)
        device = ctx.physical.info
        descriptors = DescriptorCache(ctx)
        let sg = device.subgroupSize
        // GPUs: 4 subgroups per workgroup. CPU implementations (lavapipe) run a workgroup's subgroups
        // as coroutines and pay for every barrier: one subgroup per workgroup there.
        workgroupSize = device.type == "cpu" ? min(256, sg) : min(256, max(64, sg * 4))
        // attention: P[WG] + SL[WG] + q (256 floats) + reduction slots must fit in shared memory.
        var awg = device.type == "cpu" ? min(256, max(32, sg)) : min(256, max(64, sg * 4))
        while awg > 32 && 8 * awg + 1024 + 256 > device.maxSharedMemory { awg /= 2 }
        attentionWorkgroupSize = awg
        decodeAttentionWorkgroupSize = getenv("SHARD_VK_ATTN_WG").flatMap { Int(String(cString: $0)) }.flatMap { $0 >= sg && $0 <= 256 && $0 % sg == 0 ? $0 : nil }
            ?? (device.type == "cpu" ? sg : min(256, max(64, sg * 4)))
        attentionSplits = device.type == "cpu" ? 3 : 16
        cooperativeMatrix = ctx.cooperativeMatrix16 && device.subgroupSize == 32
        func env(_ name: String) -> Int? { getenv(name).flatMap { Int(String(cString: $0)) } }
        if let v = env("SHARD_VK_ATTN_SPLITS"), v > 0, v <= 1024 { attentionSplits = v }
        if let v = env("SHARD_VK_MATVEC_ROWS"), v > 0, v <= 16 { matvecRows = v }
        if let v = env("SHARD_VK_MATVEC_WG"), v >= sg, v <= 1024 { matvecWorkgroupSize = v }
        if let v = env("SHARD_VK_MATVEC_UNITS"), v > 0, v <= 8 { matvecUnits = v }
        if let v = env("SHARD_VK_ATTN_POS"), v > 0, v <= 8 { attentionPositions = v }
        if env("SHARD_VK_MATVEC_XSH") == 1 { matvecSharedX = true }
        if let v = env("SHARD_VK_MULTICOL_MAX"), v >= 0 { multiColumnMax = v }
        if let v = env("SHARD_VK_MULTICOL_ROWS"), v > 0, v <= 4 { multiColumnRows = v }
        if env("SHARD_VK_PREFILL_ATTN_OLD") == 1 { prefillAttentionPerPosition = true }
        if let v = env("SHARD_VK_ATTN_FUSED_MERGE") { attentionFusedMerge = v == 1 }
        if let v = env("SHARD_VK_MERGE_BATCH"), v >= 1, v <= 32 { mergeBatch = v }
        if env("SHARD_VK_NO_ROPE_FUSE") == 1 { ropeStoreFusion = false }
        if env("SHARD_VK_ATTN_PREFETCH") == 1 { attentionPrefetchPages = true }
        if env("SHARD_VK_ATTN_VEC") == 0 { attentionVec = false }
        if let v = env("SHARD_VK_ATTN_VEC_MIN_ROWS"), v >= 1 { attentionVecMinRows = v }
        if let v = env("SHARD_VK_ATTN_VEC_POS"), v >= 1, v <= 8 { attentionVecPositions = v }
        if let v = env("SHARD_VK_ATTN_VEC_WGS"), v >= 1 { attentionVecWorkgroups = v }
        if let v = env("SHARD_VK_ATTN_VEC_MINPOS"), v >= 0 { attentionVecMinPositions = v }
        if let v = env("SHARD_VK_ATTN_VEC_FUSED_MAX"), v >= 0 { attentionVecFusedMaxRows = v }
        if let v = env("SHARD_VK_DP_SG") { dotSubgroupRows = v == 1 }
        if env("SHARD_VK_DP_SG_ROPE") == 1 { dotRopeSubgroupRows = true }
        if let v = env("SHARD_VK_DP_UPL"), v >= 1, v <= 16 { dotUnitsPerLane = v }
        if env("SHARD_VK_NO_FLASH") == 1 { prefillFlash = false }
        if let v = env("SHARD_VK_FLASH_MIN"), v >= 2 { flashMinRows = v }
        if env("SHARD_VK_FLASH_CM") == 0 { flashCoopMatrix = false }
        if let v = env("SHARD_VK_COOP_TILE"), v == 1 || v == 2 { coopTile = v }
        if env("SHARD_VK_CM") == 0 { cmEnabled = false }
        if let v = env("SHARD_VK_CM_MIN"), v >= 2 { cmMinColumns = v }
        if let v = env("SHARD_VK_CM_DECODE_MAX"), v >= 1 { cmDecodeMax = v }
        func shape(_ name: String) -> CMShape? { getenv(name).flatMap { CMShape(String(cString: $0)) } }
        if let v = shape("SHARD_VK_CM_DEC") { cmDecode = v }
        if let v = shape("SHARD_VK_CM_DECS") { cmDecodeSplit = v; cmDecodeSplitQ4K = nil }
        if let v = getenv("SHARD_VK_CM_DECS_TALL") {
            cmDecodeSplitTall = String(cString: v) == "0" ? nil : CMShape(String(cString: v)) ?? cmDecodeSplitTall
            cmDecodeSplitTallQ4K = nil
        }
        if let v = getenv("SHARD_VK_CM_DECS_Q4K") { cmDecodeSplitQ4K = String(cString: v) == "0" ? nil : CMShape(String(cString: v)) ?? cmDecodeSplitQ4K }
        if let v = getenv("SHARD_VK_CM_DECS_TALL_Q4K") {
            cmDecodeSplitTallQ4K = String(cString: v) == "0" ? nil : CMShape(String(cString: v)) ?? cmDecodeSplitTallQ4K
        }
        if let v = env("SHARD_VK_CM_SPLIT"), v >= 0 { cmSplitTarget = v }
        if let v = shape("SHARD_VK_CM_PRE") { cmPrefill = v; cmPrefillQ4K = nil }
        if let v = shape("SHARD_VK_CM_PRE_Q4K") { cmPrefillQ4K = v }
        if env("SHARD_VK_CM_Q6W") == 0 { cmQ6Wide = false }
        if env("SHARD_VK_CM_PACK") == 0 { cmPacked = false }
        if env("SHARD_VK_CMD") == 0 { cmDirect = false }
        if let v = env("SHARD_VK_CMD_SPLIT"), v >= 0 { cmDirectSplitTarget = v }
        if let v = env("SHARD_VK_CMD_SPLIT_WIDE"), v >= 0 { cmDirectSplitTargetWide = v }
        if let v = env("SHARD_VK_CMD_MAX"), v >= 0 { cmDirectMax = v }
        if let v = env("SHARD_VK_CMD_MIN"), v >= 0 { cmDirectMin = v }
        if let v = env("SHARD_VK_CMD_MIN_Q6"), v >= 0 { cmDirectMinQ6K = v }
        if env("SHARD_VK_CMD_Q6") == 0 { cmDirectQ6K = false }
        if env("SHARD_VK_QK_I8") == 0 { quantizeWritesInt8 = false }
        if let v = env("SHARD_VK_CMD_TALL_MAX"), v >= 0 { cmDirectTallMax = v }
        if let v = env("SHARD_VK_CMD_ABL"), v >= 0 { cmDirectAblation = v }
        if env("SHARD_VK_CMD_H2") == 0 { cmDirectHalf2 = false }
        if env("SHARD_VK_CM_PACK_PRE") == 0 { cmPackPrefill = false }
        if let v = env("SHARD_VK_CM_I8X"), (0...2).contains(v) { cmInt8X = v }
        if let v = env("SHARD_VK_CM_SU"), (0...1).contains(v) { cmStrideUnits = v }
        if env("SHARD_VK_NO_REPLAY") == 1 { replays = false }
        if env("SHARD_VK_NO_SKIP") == 1 { skipsRepeatedOps = false }
        // A GPU's steps end with the host polling the fence for up to 20 ms before it sleeps: on an H200 +3% at batch 1,
        // +7% with two shard processes on one GPU, +2–3% at 16 streams (BENCHMARKS.md, session 10). Not on a CPU device
        // (lavapipe), whose threads need the cores.
        ctx.fenceSpinSeconds = getenv("SHARD_VK_FENCE_SPIN_MS").flatMap { Double(String(cString: $0)) }.map { max(0, $0) / 1000 }
            ?? (device.type == "cpu" ? 0 : 0.02)
        if let v = env("SHARD_VK_SKIP_CHECK"), v >= 0 { skipCheckInterval = v }
        if env("SHARD_VK_SKIP_STRICT") == 1 { skipMismatchIsFatal = true }
        if env("SHARD_VK_NO_ARGMAX") == 1 { argmaxOnDevice = false }
        if env("SHARD_VK_EMBED_ON_DEVICE") == 1 { embedOnDevice = true }
        if env("SHARD_VK_NO_FUSE") == 1 { fuses = false }
        dotProducts = ctx.integerDot   // env SHARD_VK_NO_DP=1: the device is created without it
        if let v = env("SHARD_VK_DP_ROWS"), v > 0, v <= 16 { dotRows = v }
        if env("SHARD_VK_NO_NORM_FUSE") == 1 { normFusion = false }
        if env("SHARD_VK_NO_SWIGLU_FUSE") == 1 { swigluFusion = false }
        if env("SHARD_VK_NO_O_DP") == 1 { mergePacksInt8 = false }
        if let v = env("SHARD_VK_MC8_MAX"), v >= 0 { mcDotMax = v }
        if let v = env("SHARD_VK_MC8_SPLIT_MAX"), v >= 0 { mcDotSplitMax = v }
        if let v = env("SHARD_VK_MC8_COLS"), [1, 2, 4, 8, 16, 32].contains(v) { mcDotColumns = v }
        if let v = env("SHARD_VK_MC8_ROWS"), v > 0, v <= 8 { mcDotRows = v }
        if let v = env("SHARD_VK_MC8_PRE"), v == 0 || v == 1 { mcDotPreload = v == 1 }
        if env("SHARD_VK_DP_ROUNDX") == 1 { dotRoundsX = true }
        if env("SHARD_VK_NO_TILED") == 1 { tiles = false }
        if env("SHARD_VK_FULL_BARRIERS") == 1 { fullBarriers = true }
        dummy = try GPUBuffer(ctx, size: 16, hostVisible: false, use: .scratch)
        if let v = getenv("SHARD_VK_F32_ACT"), String(cString: v) == "1" { roundsActivations = false }
        cmd = try ctx.allocateCommandBuffer()
        oneShot = try ctx.allocateCommandBuffer()
    }

    deinit {
        if let device = ctx.device {
            vkDeviceWaitIdle(device)
            if queryPool != nil { vkDestroyQueryPool(device, queryPool, nil) }
            for slot in uploadSlots { vkDestroyFence(device, slot.fence, nil) }
        }
    }

    // MARK: resources

    public func loadWeight(_ tensor: GGUFTensorInfo, of file: GGUFFile) throws -> Weight {
        if tensor.shape.count >= 2 && !Self.supportedTypes.contains(tensor.type) {
            throw ComputeError("VulkanBackend: \(tensor.name) is \(tensor.type), which has no Vulkan kernel (supported: \(Self.supportedTypes.map { "\($0)" }.sorted()))")
        }
        let data = file.data(for: tensor)
        let buffer = try GPUBuffer(ctx, size: data.count + 16, hostVisible: false, pooled: true, use: .weights)
        try uploadAsync(data, to: buffer)
        return VulkanWeight(tensor, buffer: buffer)
    }

    /// Keeps the table on the host (a 7B's is ~70 MiB of device memory; a decode step uploads one 16 KiB row).
    /// Env SHARD_VK_EMBED_ON_DEVICE=1: on the device, as any weight.
    public func loadEmbeddingTable(_ tensor: GGUFTensorInfo, of file: GGUFFile) throws -> Weight {
        if embedOnDevice || tensor.shape.count != 2 { return try loadWeight(tensor, of: file) }
        // It was announced with the weights (reserveMemory): take it out of the exact-size reservation.
        if let left = ctx.reserved[.weights], left > 0 { ctx.reserved[.weights] = max(0, left - tensor.byteCount - 16 - 256) }
        return VulkanHostWeight(tensor, file: file)
    }
    public var embedOnDevice = false { didSet { invalidateSkips() } }

    // Weight upload: two persistent 64 MiB staging slots, each with its own command buffer and fence.
    // A chunk is copied into a free slot (by several threads: page-cache reads are the bottleneck)
    // and its GPU copy submitted without waiting, so reading the next chunk overlaps the transfer.
    // Everything that later uses the queue's results (a step, an immediate command) first waits for
    // the uploads in flight (`finishUploads`).
    /// `target`: the buffer being copied into, kept alive until the copy is done (a shard that fails
    /// after loading its weights drops them while their copies may be in flight).
    private struct UploadSlot { let stage: GPUBuffer; let cmd: VkCommandBuffer?; let fence: VkFence?; var busy: Bool; var target: GPUBuffer? }
    private var uploadSlots: [UploadSlot] = []
    private var nextSlot = 0
    private static let uploadChunk = 64 << 20

    private func uploadAsync(_ data: UnsafeRawBufferPointer, to buffer: GPUBuffer) throws {
        if uploadSlots.isEmpty {
            for _ in 0..<2 {
                uploadSlots.append(UploadSlot(stage: try GPUBuffer(ctx, size: Self.uploadChunk, hostVisible: true, use: .upload),
                                              cmd: try ctx.allocateCommandBuffer(), fence: try ctx.makeFence(), busy: false, target: nil))
            }
        }
        var done = 0
        while done < data.count {
            let n = min(Self.uploadChunk, data.count - done)
            let i = nextSlot
            nextSlot = (nextSlot + 1) % uploadSlots.count
            if uploadSlots[i].busy { try ctx.wait(uploadSlots[i].fence); uploadSlots[i].busy = false; uploadSlots[i].target = nil }
            let dst = uploadSlots[i].stage.mapped!, src = data.baseAddress! + done
            let parts = n >= 8 << 20 ? 8 : 1, per = (n + parts - 1) / parts
            if parts == 1 {
                dst.copyMemory(from: src, byteCount: n)
            } else {
                nonisolated(unsafe) let d = dst, s = src
                DispatchQueue.concurrentPerform(iterations: parts) { p in
                    let lo = p * per, hi = min(n, lo + per)
                    if hi > lo { (d + lo).copyMemory(from: s + lo, byteCount: hi - lo) }
                }
            }
            let cmd = uploadSlots[i].cmd
            try ctx.begin(cmd)
            var region = VkBufferCopy(srcOffset: 0, dstOffset: VkDeviceSize(done), size: VkDeviceSize(n))
            vkCmdCopyBuffer(cmd, uploadSlots[i].stage.buffer, buffer.buffer, 1, &region)
            try ctx.submit(cmd, fence: uploadSlots[i].fence)
            uploadSlots[i].busy = true
            uploadSlots[i].target = buffer
            done += n
        }
    }

    /// Waits for the weight uploads in flight.
    private func finishUploads() throws {
        for i in uploadSlots.indices where uploadSlots[i].busy {
            try ctx.wait(uploadSlots[i].fence)
            uploadSlots[i].busy = false
            uploadSlots[i].target = nil
        }
    }

    /// Frees the upload staging slots (2 × 64 MiB of host-visible memory) once a step runs: weights are
    /// loaded before the first step; a later load makes new slots.
    private func releaseUploadSlots() throws {
        guard !uploadSlots.isEmpty else { return }
        try finishUploads()
        for slot in uploadSlots {
            vkDestroyFence(ctx.device, slot.fence, nil)
            var cmd = slot.cmd
            vkFreeCommandBuffers(ctx.device, ctx.commandPool, 1, &cmd)
        }
        uploadSlots.removeAll()
        nextSlot = 0
    }

    public func reserveMemory(bytes: Int, buffers: Int, for use: ReservedMemory) {
        // Each buffer is padded by 16 bytes and placed at a 256-byte boundary.
        let u: MemoryUse = use == .weights ? .weights : .activations
        ctx.reserved[u, default: 0] += bytes + buffers * (16 + 256)
    }

    /// Free device-local memory (VK_EXT_memory_budget: heap budget − heap usage), nil without the extension.
    public var freeMemoryBytes: Int? { ctx.physical.freeLocalMemory() }

    /// Free device-local memory of device `deviceIndex` (nil: the device `init` would pick), or nil where
    /// the device does not offer VK_EXT_memory_budget (or does not exist).
    public static func freeMemory(deviceIndex: Int?) -> Int? {
        guard let instance = try? VulkanContext.createInstance() else { return nil }
        defer { vkDestroyInstance(instance, nil) }
        let all = (try? VulkanContext.physicalDevices(instance)) ?? []
        if let i = deviceIndex { return all.indices.contains(i) ? all[i].freeLocalMemory() : nil }
        return all.filter(\.info.usable).min { ($0.info.rank, $0.info.index) < ($1.info.rank, $1.info.index) }?.freeLocalMemory()
    }

    /// Device memory this backend holds, by purpose (see MemoryAccount).
    public var memoryAccount: MemoryAccount { ctx.account }

    /// The account as "purpose MiB" lines: buffers by purpose, block slack, allocated totals.
    public func memoryReport() -> [(String, Double)] {
        let a = ctx.account
        let mib = { (b: Int) in Double(b) / 1_048_576 }
        var rows: [(String, Double)] = []
        for u in MemoryUse.allCases { if let b = a.buffers[u], b != 0 { rows.append((u.rawValue, mib(b))) } }
        rows.append(("block_slack", mib(a.blockBytes - a.blockBound)))
        rows.append(("device_allocated", mib(a.deviceAllocated)))
        rows.append(("device_peak", mib(a.devicePeak)))
        rows.append(("host_allocated", mib(a.hostAllocated)))
        if let free = freeMemoryBytes { rows.append(("device_free", mib(free))) }
        return rows
    }

    public func makeActivations(rowCapacity: Int, columns: Int) throws -> Activations {
        let buffer = try GPUBuffer(ctx, size: rowCapacity * columns * 4 + 16, hostVisible: false, pooled: true, use: .activations)
        try immediate { cmd in vkCmdFillBuffer(cmd, buffer.buffer, 0, VkDeviceSize(VK_WHOLE_SIZE), 0) }
        return VulkanActivations(rowCapacity: rowCapacity, columns: columns, buffer: buffer)
    }

    public var kvCapabilities: KVCapabilities { KVCapabilities(types: [.f16, .q8_0], slidingWindow: true) }

    public func makeKVStorage(_ shape: KVShape) throws -> KVStorage {
        guard shape.kvDim % 2 == 0 else { throw ComputeError("VulkanBackend: kvDim \(shape.kvDim) must be even") }
        if shape.type == .q8_0 {
            guard shape.kvDim % 32 == 0, shape.kvDim <= 8192 else {
                throw ComputeError("q8_0 KV needs K/V rows that are a multiple of 32 values, at most 8192 on Vulkan (this model's: \(shape.kvDim))")
            }
        }
        let bytes = VulkanKVStorage.layerBytes(shape)
        // Blocks of exactly the store's size (a layer's buffer is half a 64 MiB block or more at long
        // contexts: 64 MiB blocks would leave nearly as much slack as they hold), in whole layers where
        // the store is larger than the device's largest allocation.
        let perLayer = bytes + 16 + 256
        let layersPerBlock = max(1, min(shape.layers, ctx.physical.maxAllocation / perLayer))
        let layers = try (0..<shape.layers).map { l in
            if l % layersPerBlock == 0 { ctx.reserved[.kv, default: 0] += min(layersPerBlock, shape.layers - l) * perLayer }
            return try GPUBuffer(ctx, size: bytes + 16, hostVisible: false, pooled: true, use: .kv)
        }
        try immediate { cmd in
            for l in layers { vkCmdFillBuffer(cmd, l.buffer, 0, VkDeviceSize(VK_WHOLE_SIZE), 0) }
        }
        return VulkanKVStorage(shape: shape, layers: layers)
    }

    /// Copies `data` into the device-local `buffer` through a staging buffer (≤ 64 MiB at a time).
    private func uploadNow(_ data: UnsafeRawBufferPointer, to buffer: GPUBuffer, offset: Int = 0) throws {
        let chunk = min(max(data.count, 1), 64 << 20)
        let stage = try GPUBuffer(ctx, size: chunk, hostVisible: true, use: .upload)
        var done = 0
        while done < data.count {
            let n = min(chunk, data.count - done)
            stage.mapped!.copyMemory(from: data.baseAddress! + done, byteCount: n)
            try immediate { cmd in
                var region = VkBufferCopy(srcOffset: 0, dstOffset: VkDeviceSize(offset + done), size: VkDeviceSize(n))
                vkCmdCopyBuffer(cmd, stage.buffer, buffer.buffer, 1, &region)
            }
            done += n
        }
    }

    /// Device-to-device copy bandwidth in GB/s (bytes read plus bytes written per second): `repeats`
    /// copies of `bytes` between two device-local buffers by a compute shader (copy.comp: 16-byte
    /// loads and stores), in one submit, timed on the host. (vkCmdCopyBuffer may run on a copy engine
    /// at a fraction of the bandwidth shaders see.)
    public func copyBandwidth(bytes: Int = 1 << 30, repeats: Int = 10) throws -> Double {
        let a = try GPUBuffer(ctx, size: bytes, hostVisible: false), b = try GPUBuffer(ctx, size: bytes, hostVisible: false)
        try immediate { cmd in
            vkCmdFillBuffer(cmd, a.buffer, 0, VkDeviceSize(VK_WHOLE_SIZE), 0x3c003c00)
        }
        let p = try pipeline("copy")
        let setAB = try descriptors.set(for: p, [a, b]), setBA = try descriptors.set(for: p, [b, a])
        func run(_ n: Int) throws -> Double {
            let t0 = DispatchTimeShim.now()
            try immediate { cmd in
                for i in 0..<n {
                    var set = i % 2 == 0 ? setAB : setBA
                    vkCmdBindPipeline(cmd, VK_PIPELINE_BIND_POINT_COMPUTE, p.pipeline)
                    vkCmdBindDescriptorSets(cmd, VK_PIPELINE_BIND_POINT_COMPUTE, p.layout, 0, 1, &set, 0, nil)
                    var count = UInt32(bytes / 16)
                    vkCmdPushConstants(cmd, p.layout, flags(VK_SHADER_STAGE_COMPUTE_BIT), 0, 4, &count)
                    vkCmdDispatch(cmd, UInt32(min(65535, 8 * 132 * 16)), 1, 1)
                    barrier(cmd)
                }
            }
            return DispatchTimeShim.now() - t0
        }
        _ = try run(2)
        let t = try run(repeats)
        return Double(2 * bytes * repeats) / t / 1e9
    }

    /// Times the mat-mat paths on random weights (M × K of each type, N columns) and checks them against
    /// f32 paths: prefill (the f32 tiles, the 64 × 64 cooperative-matrix tiles, matmul_cm's shapes) and,
    /// with `decode`, batched decode (2…64 columns: the multi-column mat-vec / matmul_coop default of
    /// before matmul_cm, and matmul_cm's decode shapes), plus a check on odd sizes. The weights are
    /// `copies` tensors used in turn, so that decode-size products are not served from L2.
    /// A developer tool (`shardctl kernel-bench --vulkan`).
    public func matmulReport(types: [GGMLType] = [.q4_K, .q6_K], m: Int = 4096, k: Int = 4096, n: Int = 512, reps: Int = 10,
                             decode: Bool = true) throws -> String {
        let path = "/tmp/shard-matmul-bench-\(getpid()).gguf"
        let copies = 8, oddM = 1013, oddK = 768
        let writer = GGUFWriter()
        writer.set("general.architecture", "bench")
        for t in types {
            for c in 0..<copies {
                try writer.addTensor(name: "w_\(t)_\(c)", shape: [k, m], type: t) { chunk, rows in
                    var rng = SplitMix64(seed: 17 &+ UInt64(rows.lowerBound) &+ UInt64(c) << 32)
                    SyntheticData.fillWeights(chunk, type: t, sigma: 0.05, rng: &rng)
                }
            }
            try writer.addTensor(name: "odd_\(t)", shape: [oddK, oddM], type: t) { chunk, rows in
                var rng = SplitMix64(seed: 99 &+ UInt64(rows.lowerBound))
                SyntheticData.fillWeights(chunk, type: t, sigma: 0.05, rng: &rng)
            }
        }
        try writer.write(to: path)
        defer { unlink(path) }
        let file = try GGUFFile(path: path)
        let maxN = max(n, 64)
        var rng = SplitMix64(seed: 5)
        let xs = (0..<(maxN * k)).map { _ in Float(rng.next() >> 40) / Float(1 << 24) * 2 - 1 }
        let x = try makeActivations(rowCapacity: maxN, columns: k), y = try makeActivations(rowCapacity: maxN, columns: m)
        let xo = try makeActivations(rowCapacity: maxN, columns: oddK), yo = try makeActivations(rowCapacity: maxN, columns: oddM)
        let saved = (cooperativeMatrix, roundsActivations, replays, coopTile, cmEnabled, cmMinColumns, cmDecode, cmPrefill, multiColumnMax, cmDecodeMax)
        defer { (cooperativeMatrix, roundsActivations, replays, coopTile, cmEnabled, cmMinColumns, cmDecode, cmPrefill, multiColumnMax, cmDecodeMax) = saved }
        let hasCoop = cooperativeMatrix
        roundsActivations = false
        replays = false
        /// A path: how the backend is set for it.
        struct Path { let name: String; let set: (VulkanBackend) -> Void }
        let reference = Path(name: "f32 (tiles; matmul.comp up to 8 columns)") { b in
            b.cooperativeMatrix = false; b.cmEnabled = false; b.multiColumnMax = 0
        }
        func relative(_ got: [Float], _ ref: [Float]) -> Double {
            var num = 0.0, den = 0.0
            for (a, b) in zip(got, ref) { num += Double(a - b) * Double(a - b); den += Double(b) * Double(b) }
            return (num / max(den, 1e-30)).squareRoot()
        }
        func run(_ path: Path, _ w: [Weight], _ x: Activations, _ xs: [Float], _ y: Activations, columns: Int, reps: Int) throws -> (Double, [Float]) {
            (cooperativeMatrix, cmEnabled, multiColumnMax, coopTile) = (hasCoop, true, saved.8, 1)
            path.set(self)
            let batch = StepBatch(positions: (0..<columns).map { Int32($0) }, tableIndex: Array(repeating: 0, count: columns), pageTables: [[0]])
            // One step of an upload and `count` mat-muls (each after a barrier); the difference of two
            // counts is the mat-mul's GPU time without the upload.
            func timed(_ count: Int) throws -> Double {
                let t0 = DispatchTimeShim.now()
                try beginStep(batch)
                upload(Array(xs[0..<(columns * x.columns)]), to: x)
                for i in 0..<count { matmul(w[i % w.count], x, bias: nil, into: y, rows: columns) }
                try endStep()
                return DispatchTimeShim.now() - t0
            }
            _ = try timed(1)
            let dt = reps > 0 ? try Self.perCall(reps: reps, timed) : 0
            // The output of w[0] (the last product of timed(1)).
            _ = try timed(1)
            return (dt, download(y, rows: 0..<columns))
        }
        let savedQ = (cmPrefillQ4K, cmQ6Wide, cmPacked)
        defer { (cmPrefillQ4K, cmQ6Wide, cmPacked) = savedQ }
        func cm(_ shape: CMShape, decode: Bool) -> Path {
            Path(name: "matmul_cm \(decode ? "decode rm,rs,ks,kc \(shape.rm),\(shape.rs),\(shape.ks),\(shape.kc)" : "\(shape.rows)x\(shape.columns) (\(shape.key))")") { b in
                b.cmMinColumns = 2
                b.cmQ6Wide = true
                b.cmPacked = savedQ.2
                if decode { b.cmDecode = shape; b.cmDecodeMax = 64 } else { b.cmPrefill = shape; b.cmPrefillQ4K = nil; b.cmDecodeMax = 0 }
            }
        }
        let prefillShapes = [CMShape(rm: 4, nt: 2, rs: 2, ks: 1), CMShape(rm: 2, nt: 4, rs: 2, ks: 1), CMShape(rm: 4, nt: 2, rs: 2, ks: 1, kc: 64),
                             CMShape(rm: 2, nt: 4, rs: 2, ks: 1, kc: 64), CMShape(rm: 4, nt: 4, rs: 2, ks: 1)]
        let decodeShapes = [CMShape(rm: 1, nt: 1, rs: 1, ks: 4), CMShape(rm: 1, nt: 1, rs: 1, ks: 4, kc: 64), CMShape(rm: 1, nt: 1, rs: 2, ks: 2),
                            CMShape(rm: 1, nt: 1, rs: 2, ks: 2, kc: 64), CMShape(rm: 2, nt: 1, rs: 1, ks: 4, kc: 64), CMShape(rm: 1, nt: 1, rs: 4, ks: 1, kc: 64)]
        var lines: [String] = []
        for t in types {
            let ws = try (0..<copies).map { try loadWeight(file.tensor(named: "w_\(t)_\($0)")!, of: file) }
            let wo = try loadWeight(file.tensor(named: "odd_\(t)")!, of: file)
            let flops = { (cols: Int, dt: Double) in 2.0 * Double(m) * Double(k) * Double(cols) / dt / 1e12 }
            // Prefill.
            var paths = [reference, Path(name: "coopmat f16 64x64 (matmul_coop)") { b in b.cmEnabled = false }]
            if hasCoop {
                paths += prefillShapes.filter(\.valid).map { cm($0, decode: false) }
                // The unpacked kernel (SHARD_VK_CM_PACK=0) on the default shapes.
                for shape in [CMShape(rm: 2, nt: 4, rs: 2, ks: 1), CMShape(rm: 2, nt: 4, rs: 2, ks: 1, kc: 64)] {
                    let c = cm(shape, decode: false)
                    paths.append(Path(name: c.name + " unpacked") { b in c.set(b); b.cmPacked = false })
                }
                if t == .q6_K {   // the word loads of Q6_K (Q6W = 0), default and 64-k shapes
                    for shape in [CMShape(rm: 2, nt: 4, rs: 2, ks: 1), CMShape(rm: 2, nt: 4, rs: 2, ks: 1, kc: 64)] {
                        let c = cm(shape, decode: false)
                        paths.append(Path(name: c.name + " Q6_K word loads") { b in c.set(b); b.cmQ6Wide = false })
                    }
                }
            } else { paths.removeLast() }
            var ref: [Float] = []
            for path in paths {
                let (dt, out) = try run(path, ws, x, xs, y, columns: n, reps: reps)
                if ref.isEmpty { ref = out }
                var line = "matmul \(t) \(m)x\(k) x \(n) columns, \(path.name): \((dt * 1e6).rounded()) us/call, \((flops(n, dt) * 10).rounded() / 10) TFLOP/s"
                if path.name != reference.name { line += ", relative difference from f32 \(relative(out, ref))" }
                lines.append(line)
            }
            guard decode, hasCoop else { continue }
            // Decode batches: GPU µs per call (weights rotated over `copies` tensors).
            let old = Path(name: "before matmul_cm (multi-column mat-vec <= 16, matmul_coop above)") { b in b.cmEnabled = false }
            for cols in [16, 64] {
                var ref: [Float] = []
                var cells: [String] = []
                for path in [reference, old] + decodeShapes.map({ cm($0, decode: true) }) {
                    let (dt, out) = try run(path, ws, x, xs, y, columns: cols, reps: reps * 4)
                    if ref.isEmpty { ref = out; continue }
                    cells.append("\(path.name): \((dt * 1e6 * 10).rounded() / 10) us (rel \(Self.short(relative(out, ref))))")
                }
                lines.append("decode \(t) \(m)x\(k) x \(cols): " + cells.joined(separator: "; "))
            }
            // Odd sizes (M = 1013, K = 768), every shape, against f32.
            var worst = 0.0, worstCase = ""
            for cols in [2, 3, 16, 17, 64, 77] {
                let (_, ref) = try run(reference, [wo], xo, xs, yo, columns: cols, reps: 0)
                for path in decodeShapes.map({ cm($0, decode: true) }) + prefillShapes.map({ cm($0, decode: false) }) {
                    let (_, out) = try run(path, [wo], xo, xs, yo, columns: cols, reps: 0)
                    let r = relative(out, ref)
                    if !(r <= worst) { worst = r; worstCase = "\(cols) columns, \(path.name)" }
                }
            }
            lines.append("odd sizes \(t) \(oddM)x\(oddK) x 2,3,16,17,64,77 columns, every matmul_cm shape: worst relative difference from f32 \(worst) (\(worstCase))")
        }
        return lines.joined(separator: "\n")
    }

    /// Times batched-decode products (8...64 columns) on random weights of the 7B's shapes, each call after
    /// a barrier as in a step, x written by an rms_quant once per step (its int8 copy too, for matvec_q8_mc):
    /// matvec_q8_mc, matmul_cm's decode tile without a K split (as main), and K-split variants (`variants`:
    /// name, split tile, workgroup target). GPU µs per call (difference of two step lengths), weight GB/s,
    /// TFLOP/s and the relative difference from the f32 tiles. A developer tool (`kernel-bench --vulkan --decode`).
    public func decodeReport(columns: [Int] = [8, 16, 32, 64, 77], reps: Int = 40,
                             variants: [(String, CMShape, CMShape?, Int)] = [
                                ("64x kc64, tall 128x kc32 (main's tiles, packed)", CMShape(rm: 1, nt: 1, rs: 4, ks: 1, kc: 64), CMShape(rm: 2, nt: 1, rs: 4, ks: 1, kc: 32), 256),
                                ("64x kc128, tall 128x kc64 for all", CMShape(rm: 1, nt: 1, rs: 4, ks: 1, kc: 128), CMShape(rm: 2, nt: 1, rs: 4, ks: 1, kc: 64), 256)]) throws -> String {
        let shapes: [(GGMLType, Int, Int)] = [(.q4_K, 4096, 4096), (.q4_K, 11008, 4096), (.q4_K, 4096, 11008),
                                              (.q6_K, 4096, 4096), (.q6_K, 4096, 11008)]
        let copies = 6
        let file = try Self.benchWeights(shapes, copies: copies, name: "decode")
        let saved = (cooperativeMatrix, replays, cmEnabled, multiColumnMax, mcDotMax, cmSplitTarget, cmDecodeSplit, cmDecodeMax, cmMinColumns)
        defer { (cooperativeMatrix, replays, cmEnabled, multiColumnMax, mcDotMax, cmSplitTarget, cmDecodeSplit, cmDecodeMax, cmMinColumns) = saved }
        let savedTall = cmDecodeSplitTall
        defer { cmDecodeSplitTall = savedTall }
        let savedQ4K = (cmDecodeSplitQ4K, cmDecodeSplitTallQ4K)
        defer { (cmDecodeSplitQ4K, cmDecodeSplitTallQ4K) = savedQ4K }
        let savedPack = (cmPacked, cmInt8X, cmStrideUnits, cmPackPrefill)
        defer { (cmPacked, cmInt8X, cmStrideUnits, cmPackPrefill) = savedPack }
        let savedDirect = (cmDirect, cmDirectSplitTarget, cmDirectMax, cmDirectAblation, cmDirectHalf2)
        defer { (cmDirect, cmDirectSplitTarget, cmDirectMax, cmDirectAblation, cmDirectHalf2) = savedDirect }
        let savedWide = cmDirectSplitTargetWide
        defer { cmDirectSplitTargetWide = savedWide }
        replays = false
        struct Path { let name: String; let set: (VulkanBackend) -> Void }
        var paths = [Path(name: "f32 tiles") { b in b.cooperativeMatrix = false; b.cmEnabled = false; b.multiColumnMax = 0; b.mcDotMax = 0 },
                     Path(name: "matvec_q8_mc") { b in b.mcDotMax = 64 },
                     Path(name: "matmul_cm split, unpacked f32 X (main; SHARD_VK_CM_PACK=0)") { b in b.mcDotMax = 0; b.cmPacked = false },
                     Path(name: "matmul_cm split, packed f32 X (SHARD_VK_CM_I8X=0)") { b in b.mcDotMax = 0; b.cmInt8X = 0 },
                     Path(name: "matmul_cm split, defaults (packed, int8 X)") { b in b.mcDotMax = 0 },
                     Path(name: "matmul_cm split, packed int8 X decode, unpacked prefill (SHARD_VK_CM_PACK_PRE=0)") { b in b.mcDotMax = 0; b.cmPackPrefill = false },
                     Path(name: "matmul_cmd (direct weight fragments; Q4_K and Q6_K)") { b in b.mcDotMax = 0; b.cmDirect = true }]
        for target in [256, 1024] {   // around the default 512
            paths.append(Path(name: "matmul_cmd target \(target)") { b in
                b.mcDotMax = 0; b.cmDirect = true; b.cmDirectSplitTarget = target; b.cmDirectSplitTargetWide = target
            })
        }
        paths.append(Path(name: "matmul_cmd, f32 weight values (SHARD_VK_CMD_H2=0)") { b in b.mcDotMax = 0; b.cmDirect = true; b.cmDirectHalf2 = false })
        // Timing ablations (wrong results): what the weight scales, the X staging and the barrier cost.
        for abl in [1, 7] {
            paths.append(Path(name: "matmul_cmd ablation \(abl)") { b in b.mcDotMax = 0; b.cmDirect = true; b.cmDirectAblation = abl })
        }
        for (name, shape, tall, target) in variants {
            paths.append(Path(name: "matmul_cm split \(name)") { b in
                b.mcDotMax = 0; b.cmSplitTarget = target; b.cmDecodeSplit = shape; b.cmDecodeSplitTall = tall
                b.cmDecodeSplitQ4K = nil; b.cmDecodeSplitTallQ4K = nil
            })
        }
        func relative(_ got: [Float], _ ref: [Float]) -> Double {
            var num = 0.0, den = 0.0
            for (a, b) in zip(got, ref) { num += Double(a - b) * Double(a - b); den += Double(b) * Double(b) }
            return (num / max(den, 1e-30)).squareRoot()
        }
        var lines = ["\(deviceName): decode products, GPU us per call (GB/s of weights, TFLOP/s, relative difference from f32)"]
        if let map = try coopMatElementMap() {
            lines.append("cooperative-matrix 16x16 f16 elements (row, column) of invocations 0, 1, 5: \(map[0]) \(map[1]) \(map[5]); matmul_cmd layout: \(Self.directFragmentLayout(map).map { String($0, radix: 8) } ?? "none")")
        }
        for (i, (t, m, k)) in shapes.enumerated() {
            let ws = try (0..<copies).map { try loadWeight(file.tensor(named: "w\(i)_\($0)")!, of: file) }
            let bytes = Double(file.tensor(named: "w\(i)_0")!.byteCount)
            let nw = try loadWeight(file.tensor(named: "n\(i)")!, of: file)
            let maxN = columns.max() ?? 64
            var rng = SplitMix64(seed: 9 &+ UInt64(i))
            let xs = (0..<(maxN * k)).map { _ in Float(rng.next() >> 40) / Float(1 << 24) * 2 - 1 }
            let x = try makeActivations(rowCapacity: maxN, columns: k), xn = try makeActivations(rowCapacity: maxN, columns: k)
            let y = try makeActivations(rowCapacity: maxN, columns: m)
            for n in columns {
                let batch = StepBatch(positions: (0..<n).map { Int32($0) }, tableIndex: Array(repeating: 0, count: n), pageTables: [[0]])
                var ref: [Float] = [], main: [Float] = []
                var cells: [String] = []
                for path in paths {
                    (cooperativeMatrix, cmEnabled, multiColumnMax, mcDotMax, cmSplitTarget, cmDecodeSplit, cmDecodeMax, cmMinColumns) =
                        (saved.0, true, saved.3, saved.4, saved.5, saved.6, 64, 2)
                    (cmPacked, cmInt8X, cmStrideUnits, cmPackPrefill, cmDecodeSplitTall) = (savedPack.0, savedPack.1, savedPack.2, savedPack.3, savedTall)
                    (cmDecodeSplitQ4K, cmDecodeSplitTallQ4K) = savedQ4K
                    (cmDirect, cmDirectSplitTarget, cmDirectMax, cmDirectAblation, cmDirectHalf2) = (false, savedDirect.1, 64, 0, savedDirect.4)
                    cmDirectSplitTargetWide = savedWide
                    path.set(self)
                    if path.name == "matvec_q8_mc" && (mcDotShape(n) == nil || !usesDot(ws[0] as! VulkanWeight)) { continue }
                    if path.name.hasPrefix("matmul_cm") && !cooperativeMatrix { continue }
                    var label = ""
                    func timed(_ count: Int) throws -> Double {
                        let t0 = DispatchTimeShim.now()
                        try beginStep(batch)
                        upload(Array(xs[0..<(n * k)]), to: x)
                        rmsNorm(x, weight: nw, eps: 1e-5, into: xn)
                        matmul(ws[0], xn, bias: nil, into: y, rows: nil)
                        if case let .matmul(job) = pending {
                            flushPending()
                            for c in 1..<count {
                                var j = MatJob(w: ws[c % ws.count] as! VulkanWeight, input: job.input, bias: nil, out: job.out, n: job.n, k: job.k)
                                j.qx = job.qx
                                emitMatmul(j, residual: nil, barrierAfter: true)
                            }
                        } else { flushPending() }
                        try endStep()
                        return DispatchTimeShim.now() - t0
                    }
                    dispatchLog = []
                    _ = try timed(1)
                    label = dispatchLog?.last(where: { !$0.hasPrefix("splitk") && !$0.hasPrefix("rms") }) ?? ""
                    dispatchLog = nil
                    let dt = try Self.perCall(reps: reps, timed)
                    _ = try timed(1)
                    let out = download(y, rows: 0..<n)
                    if ref.isEmpty { ref = out; continue }
                    if path.name.contains("(main;") { main = out }
                    let tf = 2.0 * Double(m) * Double(k) * Double(n) / dt / 1e12
                    // Bit-identical to main's kernel (the packed kernel's operands are the same f16 values), or how far.
                    let vsMain = main.isEmpty || main.count != out.count ? "" : zip(out, main).allSatisfy({ $0.bitPattern == $1.bitPattern }) ? ", = main" : ", vs main \(Self.short(relative(out, main)))"
                    cells.append("\(path.name) [\(label)]: \((dt * 1e7).rounded() / 10) us (\((bytes / dt / 1e9).rounded()) GB/s, \((tf * 10).rounded() / 10) TF, rel \(Self.short(relative(out, ref)))\(vsMain))")
                }
                lines.append("decode \(t) \(m)x\(k) x \(n):\n    " + cells.joined(separator: "\n    "))
            }
        }
        lines += pipelineStatisticsLines()
        return lines.joined(separator: "\n")
    }

    /// Times decode attention (each call followed by its merge, mode 2) on the 7B's geometry: 32 heads of 128 over
    /// f16 KV in pages of 32, `rows` rows per step, row i at its own position over its own pages (contexts spread
    /// evenly over each range), layers rotated over 4 KV layers (1 GiB: L2 holds none), under each of `variants`
    /// (name, settings; the first is the reference). GPU µs per call (difference of two step lengths, wall
    /// clock; the steps are replayed, so host recording is mostly out of it), KV TB/s
    /// read, the relative difference from the first variant. A developer tool (`kernel-bench --vulkan --attention`).
    public func attentionReport(rowsList: [Int] = [1, 2, 8, 16, 32, 64], ranges: [(Int, Int)] = [(16, 112), (128, 256)], reps: Int = 20,
                                variants: [(String, (VulkanBackend) -> Void)]? = nil) throws -> String {
        let heads = 32, headDim = 128, kvDim = heads * headDim, pageSize = 32, layers = 4
        let maxRows = rowsList.max() ?? 64, maxCtx = ranges.map(\.1).max() ?? 256
        let pagesPerRow = (maxCtx + pageSize - 1) / pageSize
        let shape = KVShape(layers: layers, pages: maxRows * pagesPerRow, pageSize: pageSize, kvDim: kvDim)
        let kv = try makeKVStorage(shape) as! VulkanKVStorage
        var rng = SplitMix64(seed: 77)
        // Random f16 values of magnitude 2^-5...1 (bits: sign, exponent 10...14, mantissa), one 64 MiB block repeated.
        let block = (0..<(32 << 20)).map { _ -> UInt16 in
            let r = rng.next()
            return UInt16(truncatingIfNeeded: (r & 0x8000) | ((10 + (r >> 16) % 5) << 10) | ((r >> 32) & 0x3FF))
        }
        for buffer in kv.layers {
            var at = 0
            while at < buffer.size {
                let n = min(block.count * 2, buffer.size - at)
                try block.withUnsafeBytes { try uploadNow(UnsafeRawBufferPointer(rebasing: $0[0..<n]), to: buffer, offset: at) }
                at += n
            }
        }
        let q = try makeActivations(rowCapacity: maxRows, columns: kvDim), out = try makeActivations(rowCapacity: maxRows, columns: kvDim)
        let qs = (0..<(maxRows * kvDim)).map { _ in Float(rng.next() >> 40) / Float(1 << 24) * 2 - 1 }
        let params = AttentionParams(heads: heads, kvHeads: heads, headDim: headDim, scale: 1 / Float(headDim).squareRoot())
        let saved = (replays, attentionVec, attentionVecPositions, attentionVecWorkgroups, attentionVecMinPositions, attentionVecFusedMaxRows,
                     attentionFusedMerge, attentionSplits, attentionVecMinRows)
        func restore() {
            (replays, attentionVec, attentionVecPositions, attentionVecWorkgroups, attentionVecMinPositions, attentionVecFusedMaxRows,
             attentionFusedMerge, attentionSplits, attentionVecMinRows) = saved
        }
        defer { restore() }
        let paths = variants ?? [("attn_decode (SHARD_VK_ATTN_VEC=0)", { $0.attentionVec = false }),
                                 ("attn_decode_vec (default)", { _ in }),
                                 ("vec NPV 2", { $0.attentionVecPositions = 2 }),
                                 ("vec NPV 8", { $0.attentionVecPositions = 8 }),
                                 ("vec WGS 1024", { $0.attentionVecWorkgroups = 1024 }),
                                 ("vec WGS 4096", { $0.attentionVecWorkgroups = 4096 }),
                                 ("vec WGS 8192", { $0.attentionVecWorkgroups = 8192 }),
                                 ("vec MINPOS 16", { $0.attentionVecMinPositions = 16 }),
                                 ("vec MINPOS 64", { $0.attentionVecMinPositions = 64 }),
                                 ("vec, merge dispatched", { $0.attentionVecFusedMaxRows = 0 }),
                                 ("vec for one row too (SHARD_VK_ATTN_VEC_MIN_ROWS=1)", { $0.attentionVecMinRows = 1 })]
        // Warm-up (clocks up, pipelines built): ~0.5 s of attention calls on 64 rows.
        do {
            let n = min(64, maxRows)
            let batch = StepBatch(positions: (0..<n).map { _ in Int32(maxCtx - 1) }, tableIndex: (0..<n).map { Int32($0) },
                                  pageTables: (0..<n).map { r in (0..<pagesPerRow).map { Int32(r * pagesPerRow + $0) } })
            let t0 = DispatchTimeShim.now()
            while DispatchTimeShim.now() - t0 < 0.5 {
                try beginStep(batch)
                upload(Array(qs[0..<(n * kvDim)]), to: q)
                for c in 0..<50 { attention(q: q, storage: kv, layer: c % layers, params: params, into: out); flushPending() }
                try endStep()
            }
        }
        var lines = ["\(deviceName): decode attention, 32 heads x 128, f16 KV, GPU us per call incl. merge (KV TB/s, relative difference from the first)"]
        for (lo, hi) in ranges {
            for n in rowsList {
                let lens = (0..<n).map { n == 1 ? hi : lo + (hi - lo) * $0 / (n - 1) }
                let batch = StepBatch(positions: lens.map { Int32($0 - 1) }, tableIndex: (0..<n).map { Int32($0) },
                                      pageTables: (0..<n).map { r in (0..<pagesPerRow).map { Int32(r * pagesPerRow + $0) } })
                let bytes = Double(lens.reduce(0, +) * kvDim * 2 * 2)
                var ref: [Float] = []
                var cells: [String] = []
                for (name, set) in paths {
                    restore()
                    set(self)
                    var label = ""
                    func timed(_ count: Int) throws -> Double {
                        let t0 = DispatchTimeShim.now()
                        try beginStep(batch)
                        upload(Array(qs[0..<(n * kvDim)]), to: q)
                        for c in 0..<count {
                            attention(q: q, storage: kv, layer: c % layers, params: params, into: out)
                            flushPending()
                        }
                        try endStep()
                        return DispatchTimeShim.now() - t0
                    }
                    dispatchLog = []
                    _ = try timed(1)
                    label = (dispatchLog ?? []).filter { $0.hasPrefix("att") }.joined(separator: "+")
                    dispatchLog = nil
                    let dt = try Self.perCall(reps: reps, timed)
                    _ = try timed(1)
                    let o = download(out, rows: 0..<n)
                    var num = 0.0, den = 0.0
                    if ref.isEmpty { ref = o }
                    for (a, b) in zip(o, ref) { num += Double(a - b) * Double(a - b); den += Double(b) * Double(b) }
                    let rel = (num / max(den, 1e-30)).squareRoot()
                    cells.append("\(name) [\(label)]: \((dt * 1e7).rounded() / 10) us (\((bytes / dt / 1e10).rounded() / 100) TB/s, rel \(String(Float(rel))))")
                }
                lines.append("rows \(n), contexts \(lo)...\(hi) (\((bytes / 1e5).rounded() / 10) MB of KV):\n    " + cells.joined(separator: "\n    "))
            }
        }
        return lines.joined(separator: "\n")
    }

    /// Seconds per call of what `timed(n)` runs n times in one step (each a fresh submit and wait): the best of three
    /// step lengths with one call and with `reps` + 1, differenced, so that the step's fixed costs cancel.
    static func perCall(reps: Int, _ timed: (Int) throws -> Double) rethrows -> Double {
        var best1 = Double.infinity, bestN = Double.infinity
        for _ in 0..<3 { best1 = min(best1, try timed(1)); bestN = min(bestN, try timed(reps + 1)) }
        return max(bestN - best1, 1e-9) / Double(reps)
    }

    /// A relative difference with 3 significant digits and its exponent (String(d).prefix(7) dropped the
    /// exponent: kernel-bench printed 1.33545e-05 as "1.33545").
    static func short(_ d: Double) -> String {
        guard d.isFinite, d != 0 else { return "\(d)" }
        let e = Int((log10(abs(d))).rounded(.down)), m = d / pow(10, Double(e))
        return "\((m * 100).rounded() / 100)e\(e)"
    }

    /// A GGUF file of random weights for the kernel reports, already open (its path is gone): for each
    /// shape (type, M, K) i, `copies` different M × K matrices "w<i>_<c>" (products of decode size are then
    /// not served from L2 when used in turn) and a norm weight "n<i>" of K.
    static func benchWeights(_ shapes: [(GGMLType, Int, Int)], copies: Int, name: String) throws -> GGUFFile {
        let path = "/tmp/shard-\(name)-bench-\(getpid()).gguf"
        let writer = GGUFWriter()
        writer.set("general.architecture", "bench")
        for (i, (t, m, k)) in shapes.enumerated() {
            for c in 0..<copies {
                try writer.addTensor(name: "w\(i)_\(c)", shape: [k, m], type: t) { chunk, rows in
                    var rng = SplitMix64(seed: 31 &+ UInt64(rows.lowerBound) &+ UInt64(c) << 32)
                    SyntheticData.fillWeights(chunk, type: t, sigma: 0.05, rng: &rng)
                }
            }
            try writer.addTensor(name: "n\(i)", shape: [k], type: .f32) { chunk, _ in
                var rng = SplitMix64(seed: 77)
                SyntheticData.fillFloats(chunk, type: .f32, mean: 1, sigma: 0.3, rng: &rng)
            }
        }
        try writer.write(to: path)
        defer { unlink(path) }
        return try GGUFFile(path: path)
    }

    /// Times decode mat-vecs (one column) on random weights of the 7B's shapes, each call after a
    /// barrier as in a decode step: the float mat-vec (matvec.comp, f32 activations: no rounding pass)
    /// and, where the device has integer dot products, matvec_q8x (x packed as int8 once, by an
    /// rms_quant before the calls) and matvec_q8 rounding x in every workgroup. GPU time per call from
    /// the difference of two step lengths (host-timed), and the weight bytes read per second.
    /// A developer tool (`shardctl kernel-bench --vulkan --matvec`).
    public func matvecReport(reps: Int = 200) throws -> String {
        let shapes: [(GGMLType, Int, Int)] = [(.q4_K, 4096, 4096), (.q4_K, 11008, 4096), (.q4_K, 4096, 11008),
                                              (.q6_K, 4096, 4096), (.q6_K, 4096, 11008), (.q6_K, 32000, 4096)]
        let file = try Self.benchWeights(shapes, copies: 1, name: "matvec")
        let saved = (dotProducts, roundsActivations, replays, dotRoundsX)
        defer { (dotProducts, roundsActivations, replays, dotRoundsX) = saved }
        replays = false
        let batch = StepBatch(positions: [0], tableIndex: [0], pageTables: [[0]])
        var lines: [String] = []
        for (i, (t, m, k)) in shapes.enumerated() {
            let info = file.tensor(named: "w\(i)_0")!
            let w = try loadWeight(info, of: file), nw = try loadWeight(file.tensor(named: "n\(i)")!, of: file)
            var rng = SplitMix64(seed: 9 &+ UInt64(i))
            let xs = (0..<k).map { _ in Float(rng.next() >> 40) / Float(1 << 24) * 2 - 1 }
            let x = try makeActivations(rowCapacity: 1, columns: k), xn = try makeActivations(rowCapacity: 1, columns: k)
            let y = try makeActivations(rowCapacity: 1, columns: m)
            for mode in 0..<3 where mode == 0 || saved.0 {
                dotProducts = mode > 0
                roundsActivations = mode > 0
                dotRoundsX = mode == 2
                func timed(_ count: Int) throws -> Double {
                    let t0 = DispatchTimeShim.now()
                    try beginStep(batch)
                    upload(xs, to: x)
                    if mode == 1 {
                        // One rms_quant writes the int8 copy; every call reads it.
                        rmsNorm(x, weight: nw, eps: 1e-5, into: xn)
                        matmul(w, xn, bias: nil, into: y, rows: nil)
                        if case let .matmul(job) = pending, job.qx != nil {
                            flushPending()
                            for _ in 1..<count { emitMatmul(job, residual: nil, barrierAfter: true) }
                        } else {
                            fail("matvecReport: no int8 input for \(t)")
                        }
                    } else {
                        for _ in 0..<count { matmul(w, x, bias: nil, into: y, rows: nil) }
                    }
                    try endStep()
                    return DispatchTimeShim.now() - t0
                }
                _ = try timed(1)
                let dt = try Self.perCall(reps: reps, timed)
                let gbs = Double(info.byteCount) / dt / 1e9
                let kind = ["float (matvec, R=\(matvecRows))", "int8 dot, x packed once (matvec_q8x, R=\(dotRows))",
                            "int8 dot, x rounded per workgroup (matvec_q8, R=\(dotRows))"][mode]
                lines.append("matvec \(t) \(m)x\(k) (\(info.byteCount / 1000) kB), \(kind): \((dt * 1e7).rounded() / 10) us/call, \(gbs.rounded()) GB/s")
            }
        }
        return lines.joined(separator: "\n")
    }

    /// Records `body` into the one-shot command buffer, submits it and waits.
    func immediate(_ body: (VkCommandBuffer?) -> Void) throws {
        try finishUploads()
        try ctx.begin(oneShot)
        body(oneShot)
        barrier(oneShot, toHost: true)
        try ctx.submitAndWait(oneShot)
    }

    func pipeline(_ name: String) throws -> Pipeline {
        if let p = pipelines[name] { return p }
        let started = ContinuousClock.now
        defer { pipelineCreation.count += 1; pipelineCreation.seconds += Self.since(started) }
        if let hash = name.firstIndex(of: "#") {
            // matmul_cm_<type>#RM.NT.RS.KS.KC: one pipeline per tile shape (specialization constants 1...5).
            let base = String(name[..<hash])
            guard let (spirv, bindings) = Self.shaders[base] else { throw ComputeError("VulkanBackend: no shader \(base)") }
            let shape = name[name.index(after: hash)...].split(separator: ".").compactMap { UInt32($0) }
            let p = try Pipeline(ctx, name: name, spirv: spirv, bindings: bindings, specialization: [128] + shape)   // WG, RM, NT, RS, KS, KC
            pipelines[name] = p
            return p
        }
        if name.hasPrefix("attn_decode_vec"), let at = name.firstIndex(of: "@") {
            // attn_decode_vec(_merge)@LP.CPL.NPV: one pipeline per lane shape (specialization constants 4, 1, 2).
            let base = String(name[..<at])
            let shape = name[name.index(after: at)...].split(separator: ".").compactMap { UInt32($0) }
            guard let (spirv, bindings) = Self.shaders[base], shape.count == 3 else { throw ComputeError("VulkanBackend: no shader \(name)") }
            let spec = [UInt32(decodeAttentionWorkgroupSize), shape[1], shape[2], UInt32((256 + device.subgroupSize - 1) / device.subgroupSize), shape[0]]
            let p = try Pipeline(ctx, name: name, spirv: spirv, bindings: bindings, specialization: spec)
            pipelines[name] = p
            return p
        }
        if let at = name.firstIndex(of: "@") {
            // matvec_q8_mc_<type>@R.NC.XPRE: one pipeline per shape (specialization constants 1...3).
            let base = String(name[..<at])
            let shape = name[name.index(after: at)...].split(separator: ".").compactMap { UInt32($0) }
            guard let (spirv, bindings) = Self.shaders[base], shape.count == 3 else { throw ComputeError("VulkanBackend: no shader \(name)") }
            let wg = UInt32(matvecGroupSize)
            let p = try Pipeline(ctx, name: name, spirv: spirv, bindings: bindings, specialization: [wg] + shape)
            pipelines[name] = p
            return p
        }
        guard let (spirv, bindings) = Self.shaders[name] else { throw ComputeError("VulkanBackend: no shader \(name)") }
        // rms_norm: one workgroup per row, so a wide one on GPUs (decode normalizes a single row).
        var spec: [UInt32]
        switch name {
        case "attention": spec = [UInt32(attentionWorkgroupSize)]
        case "sync_probe": spec = [256]
        case "coopmat_layout": spec = [32]
        case "attn_prefill", "attn_prefill_small", "attn_prefill_cm": spec = [128]
        case _ where name.hasPrefix("matmul_tiled_"): spec = [256]
        case _ where name.hasPrefix("matmul_coop"): spec = [128]
        case "attn_decode", "attn_decode_q8":
            spec = [UInt32(decodeAttentionWorkgroupSize), UInt32(Self.decodeMaxPairs(device.subgroupSize)), UInt32(attentionPositions), 1,
                    attentionPrefetchPages ? 1 : 0]
        case "attn_decode_merge":
            spec = [UInt32(decodeAttentionWorkgroupSize), UInt32(Self.decodeMaxPairs(device.subgroupSize)), UInt32(attentionPositions),
                    UInt32((256 + device.subgroupSize - 1) / device.subgroupSize), attentionPrefetchPages ? 1 : 0]
        case "rms_norm":
            spec = [UInt32(device.type != "cpu" ? min(1024, max(workgroupSize, 512)) : workgroupSize)]
        case "rms_quant": spec = [UInt32(rmsQuantWorkgroupSize), UInt32((256 + device.subgroupSize - 1) / device.subgroupSize)]
        case "attention_merge_quant":
            spec = [UInt32(workgroupSize), UInt32((256 + device.subgroupSize - 1) / device.subgroupSize), UInt32(mergeBatch)]
        case "swiglu_quant": spec = [UInt32(workgroupSize), UInt32((256 + device.subgroupSize - 1) / device.subgroupSize)]
        case _ where name.hasPrefix("matvec_q8x_sg_"):
            spec = [UInt32(matvecGroupSize), UInt32(dotRows), UInt32(dotUnitsPerLane)]
        case _ where name.hasPrefix("matvec_q8x_") || name.hasPrefix("matvec_q8_q") || name.hasPrefix("matvec_q8_pair_"):
            // matvec_q8.comp's variants (not matvec_q8_0, the float mat-vec of Q8_0 weights)
            spec = [UInt32(matvecGroupSize), UInt32(dotRows)]
        case _ where name.hasPrefix("matvec_mc_"):
            spec = [UInt32(matvecGroupSize), UInt32(multiColumnRows), 1]
        case _ where name.hasPrefix("matvec_"):  // matvec_xs_q4_K too
            spec = [UInt32(matvecGroupSize), UInt32(matvecRows), UInt32(matvecUnits)]
        default: spec = [UInt32(workgroupSize)]
        }
        let p = try Pipeline(ctx, name: name, spirv: spirv, bindings: bindings, specialization: spec)
        pipelines[name] = p
        return p
    }

    /// rms_quant.comp's workgroup: a few subgroups (one block each); each workgroup re-reduces the row.
    var rmsQuantWorkgroupSize: Int { device.type == "cpu" ? workgroupSize : min(1024, max(workgroupSize, 8 * device.subgroupSize)) }

    /// Tiled mat-mat for more than 8 rows (env SHARD_VK_NO_TILED=1: the row-per-workgroup matmul.comp).
    public var tiles = true { didSet { invalidateSkips() } }
    /// Prefill mat-mat on cooperative matrices where the device has them (f16 operands: ~1e-3 relative
    /// error per product instead of f32's; env SHARD_VK_NO_COOPMAT=1 leaves the f32 tiles).
    public var cooperativeMatrix: Bool { didSet { invalidateSkips() } }
    /// Cooperative-matrix tile: 1 = 64 × 64 (matmul_coop.comp), 2 = 64 × 128 (matmul_coop2.comp; env SHARD_VK_COOP_TILE).
    public var coopTile = 1 { didSet { invalidateSkips() } }

    /// Mat-vec workgroup size (0: `workgroupSize`; env SHARD_VK_MATVEC_WG).
    public private(set) var matvecWorkgroupSize = 0
    /// The workgroup size mat-vec pipelines are built with.
    var matvecGroupSize: Int { matvecWorkgroupSize > 0 ? matvecWorkgroupSize : workgroupSize }

    static let matvecNames = Dictionary(uniqueKeysWithValues: supportedTypes.map { ($0, "matvec_" + shaderSuffix($0)) })
    static let matvecMCNames = Dictionary(uniqueKeysWithValues: supportedTypes.map { ($0, "matvec_mc_" + shaderSuffix($0)) })
    static let matmulNames = Dictionary(uniqueKeysWithValues: supportedTypes.map { ($0, "matmul_" + shaderSuffix($0)) })
    static let coop2Names = Dictionary(uniqueKeysWithValues: supportedTypes.map { ($0, "matmul_coop2_" + shaderSuffix($0)) })
    static let coopNames = Dictionary(uniqueKeysWithValues: supportedTypes.map { ($0, "matmul_coop_" + shaderSuffix($0)) })
    static let tiledNames = Dictionary(uniqueKeysWithValues: supportedTypes.map { ($0, "matmul_tiled_" + shaderSuffix($0)) })
    static let embedNames = Dictionary(uniqueKeysWithValues: supportedTypes.map { ($0, "embed_" + shaderSuffix($0)) })

    static let shaders: [String: ([UInt32], Int)] = [
        "matmul_f32": (SPIRV.matmul_f32, 5), "matmul_f16": (SPIRV.matmul_f16, 5),
        "matmul_q4_0": (SPIRV.matmul_q4_0, 5), "matmul_q4_1": (SPIRV.matmul_q4_1, 5),
        "matmul_q5_0": (SPIRV.matmul_q5_0, 5), "matmul_q5_1": (SPIRV.matmul_q5_1, 5),
        "matmul_q8_0": (SPIRV.matmul_q8_0, 5), "matmul_q4_K": (SPIRV.matmul_q4_K, 5),
        "matmul_q5_K": (SPIRV.matmul_q5_K, 5), "matmul_q6_K": (SPIRV.matmul_q6_K, 5),
        "embed_f32": (SPIRV.embed_f32, 3), "embed_f16": (SPIRV.embed_f16, 3),
        "embed_q4_0": (SPIRV.embed_q4_0, 3), "embed_q4_1": (SPIRV.embed_q4_1, 3),
        "embed_q5_0": (SPIRV.embed_q5_0, 3), "embed_q5_1": (SPIRV.embed_q5_1, 3),
        "embed_q8_0": (SPIRV.embed_q8_0, 3), "embed_q4_K": (SPIRV.embed_q4_K, 3),
        "embed_q5_K": (SPIRV.embed_q5_K, 3), "embed_q6_K": (SPIRV.embed_q6_K, 3),
        "rms_norm": (SPIRV.rms_norm, 3), "rope": (SPIRV.rope, 2), "store_kv": (SPIRV.store_kv, 4),
        "attention": (SPIRV.attention, 5), "attention_merge": (SPIRV.attention_merge, 2), "swiglu": (SPIRV.swiglu, 3), "add": (SPIRV.add, 2), "argmax": (SPIRV.argmax, 2),
        "attn_decode": (SPIRV.attn_decode, 4), "rms_quant": (SPIRV.rms_quant, 5), "swiglu_quant": (SPIRV.swiglu_quant, 5),
        "rope_store": (SPIRV.rope_store, 6), "attn_decode_q8": (SPIRV.attn_decode_q8, 4), "store_kv_q8": (SPIRV.store_kv_q8, 4),
        "attn_decode_merge": (SPIRV.attn_decode_merge, 8), "attn_decode_vec": (SPIRV.attn_decode_vec, 4), "attn_decode_vec_merge": (SPIRV.attn_decode_vec_merge, 8),
        "attn_prefill": (SPIRV.attn_prefill, 4), "attn_prefill_small": (SPIRV.attn_prefill_small, 4), "attn_prefill_cm": (SPIRV.attn_prefill_cm, 4),
        "matmul_coop2_f32": (SPIRV.matmul_coop2_f32, 5), "matmul_coop2_f16": (SPIRV.matmul_coop2_f16, 5), "matmul_coop2_q4_0": (SPIRV.matmul_coop2_q4_0, 5), "matmul_coop2_q4_1": (SPIRV.matmul_coop2_q4_1, 5), "matmul_coop2_q5_0": (SPIRV.matmul_coop2_q5_0, 5), "matmul_coop2_q5_1": (SPIRV.matmul_coop2_q5_1, 5), "matmul_coop2_q8_0": (SPIRV.matmul_coop2_q8_0, 5), "matmul_coop2_q4_K": (SPIRV.matmul_coop2_q4_K, 5), "matmul_coop2_q5_K": (SPIRV.matmul_coop2_q5_K, 5), "matmul_coop2_q6_K": (SPIRV.matmul_coop2_q6_K, 5), "matvec_xs_q4_K": (SPIRV.matvec_xs_q4_K, 5),
        "matmul_coop_f32": (SPIRV.matmul_coop_f32, 5), "matmul_coop_f16": (SPIRV.matmul_coop_f16, 5), "matmul_coop_q4_0": (SPIRV.matmul_coop_q4_0, 5), "matmul_coop_q4_1": (SPIRV.matmul_coop_q4_1, 5), "matmul_coop_q5_0": (SPIRV.matmul_coop_q5_0, 5), "matmul_coop_q5_1": (SPIRV.matmul_coop_q5_1, 5), "matmul_coop_q8_0": (SPIRV.matmul_coop_q8_0, 5), "matmul_coop_q4_K": (SPIRV.matmul_coop_q4_K, 5), "matmul_coop_q5_K": (SPIRV.matmul_coop_q5_K, 5), "matmul_coop_q6_K": (SPIRV.matmul_coop_q6_K, 5), "attention_merge_quant": (SPIRV.attention_merge_quant, 4), "copy": (SPIRV.copy, 2),
        "matmul_tiled_f32": (SPIRV.matmul_tiled_f32, 5), "matmul_tiled_f16": (SPIRV.matmul_tiled_f16, 5), "matmul_tiled_q4_0": (SPIRV.matmul_tiled_q4_0, 5), "matmul_tiled_q4_1": (SPIRV.matmul_tiled_q4_1, 5), "matmul_tiled_q5_0": (SPIRV.matmul_tiled_q5_0, 5), "matmul_tiled_q5_1": (SPIRV.matmul_tiled_q5_1, 5), "matmul_tiled_q8_0": (SPIRV.matmul_tiled_q8_0, 5), "matmul_tiled_q4_K": (SPIRV.matmul_tiled_q4_K, 5), "matmul_tiled_q5_K": (SPIRV.matmul_tiled_q5_K, 5), "matmul_tiled_q6_K": (SPIRV.matmul_tiled_q6_K, 5),
        "quantize_act": (SPIRV.quantize_act, 2), "quantize_k": (SPIRV.quantize_k, 3),
        "matvec_q8_q4_K": (SPIRV.matvec_q8_q4_K, 7), "matvec_q8_q6_K": (SPIRV.matvec_q8_q6_K, 7),
        "matvec_q8_pair_q4_K": (SPIRV.matvec_q8_pair_q4_K, 8),
        "matvec_q8x_q4_K": (SPIRV.matvec_q8x_q4_K, 7), "matvec_q8x_q6_K": (SPIRV.matvec_q8x_q6_K, 7),
        "matvec_q8x_rope_q4_K": (SPIRV.matvec_q8x_rope_q4_K, 10), "matvec_q8x_sg_q4_K": (SPIRV.matvec_q8x_sg_q4_K, 7),
        "matvec_q8x_sg_rope_q4_K": (SPIRV.matvec_q8x_sg_rope_q4_K, 10), "matvec_q8x_rope_q6_K": (SPIRV.matvec_q8x_rope_q6_K, 10),
        "matvec_q8_mc_q4_K": (SPIRV.matvec_q8_mc_q4_K, 5), "matvec_q8_mc_q6_K": (SPIRV.matvec_q8_mc_q6_K, 5),
        "matvec_f32": (SPIRV.matvec_f32, 5), "matvec_f16": (SPIRV.matvec_f16, 5),
        "matvec_q4_0": (SPIRV.matvec_q4_0, 5), "matvec_q4_1": (SPIRV.matvec_q4_1, 5),
        "matvec_q5_0": (SPIRV.matvec_q5_0, 5), "matvec_q5_1": (SPIRV.matvec_q5_1, 5),
        "matvec_q8_0": (SPIRV.matvec_q8_0, 5), "matvec_q4_K": (SPIRV.matvec_q4_K, 5),
        "matvec_q5_K": (SPIRV.matvec_q5_K, 5), "matvec_q6_K": (SPIRV.matvec_q6_K, 5),
        "matvec_mc_f32": (SPIRV.matvec_mc_f32, 5), "matvec_mc_f16": (SPIRV.matvec_mc_f16, 5),
        "matvec_mc_q4_0": (SPIRV.matvec_mc_q4_0, 5), "matvec_mc_q4_1": (SPIRV.matvec_mc_q4_1, 5),
        "matvec_mc_q5_0": (SPIRV.matvec_mc_q5_0, 5), "matvec_mc_q5_1": (SPIRV.matvec_mc_q5_1, 5),
        "matvec_mc_q8_0": (SPIRV.matvec_mc_q8_0, 5), "matvec_mc_q4_K": (SPIRV.matvec_mc_q4_K, 5),
        "matvec_mc_q5_K": (SPIRV.matvec_mc_q5_K, 5), "matvec_mc_q6_K": (SPIRV.matvec_mc_q6_K, 5),
        "matmul_cm_q4_K": (SPIRV.matmul_cm_q4_K, 5), "matmul_cm_q6_K": (SPIRV.matmul_cm_q6_K, 5),
        "matmul_cm_pk_q4_K": (SPIRV.matmul_cm_pk_q4_K, 5), "matmul_cm_pk_q6_K": (SPIRV.matmul_cm_pk_q6_K, 5),
        "splitk_reduce": (SPIRV.splitk_reduce, 4), "sync_probe": (SPIRV.sync_probe, 2),
        "matmul_cmd_q4_K": (SPIRV.matmul_cmd_q4_K, 5), "matmul_cmd_q6_K": (SPIRV.matmul_cmd_q6_K, 5), "coopmat_layout": (SPIRV.coopmat_layout, 2),
    ]

    static func shaderSuffix(_ t: GGMLType) -> String {
        switch t {
        case .f32: "f32"
        case .f16: "f16"
        case .q4_0: "q4_0"
        case .q4_1: "q4_1"
        case .q5_0: "q5_0"
        case .q5_1: "q5_1"
        case .q8_0: "q8_0"
        case .q4_K: "q4_K"
        case .q5_K: "q5_K"
        case .q6_K: "q6_K"
        default: "unsupported_\(t)"
        }
    }

    // MARK: recording

    /// One recorded command. A step's commands are kept with its command buffer; a later step that
    /// produces the same commands (same pipelines, descriptor sets, push constants, grids, copies)
    /// replays that buffer instead of recording it again: only the per-step host data (positions,
    /// page tables, token ids, rope tables) is written, into the same staging offsets.
    enum Cmd: Equatable {
        case dispatch(Pipeline, VkDescriptorSet?, [UInt32], UInt32, UInt32, UInt32)
        case copy(GPUBuffer, GPUBuffer, Int, Int, Int)   // src, dst, src offset, dst offset, bytes
        case barrier(UInt8)                               // Barrier kind: 0 compute→compute, 1 with transfers, 2 to host

        static func == (a: Cmd, b: Cmd) -> Bool {
            switch (a, b) {
            case let (.dispatch(p1, s1, c1, x1, y1, z1), .dispatch(p2, s2, c2, x2, y2, z2)):
                return p1 === p2 && s1 == s2 && x1 == x2 && y1 == y2 && z1 == z2 && c1 == c2
            case let (.copy(a1, b1, o1, d1, n1), .copy(a2, b2, o2, d2, n2)):
                return a1 === a2 && b1 === b2 && o1 == o2 && d1 == d2 && n1 == n2
            case let (.barrier(h1), .barrier(h2)): return h1 == h2
            default: return false
            }
        }
    }

    final class Recording {
        let cmd: VkCommandBuffer?
        var cmds: [Cmd] = []
        var rows = 0, tables = 0, lastUse = 0
        /// The step's host data copies, in the order the last walk of this buffer wrote them.
        var hostWrites: [HostWrite] = []
        /// Where the last walk of this buffer asked `repeatsOps`: a later step that asks there with the same key may skip its ops.
        var skip: SkipPoint?
        /// The rows its walk copied out for `download` (`prepareDownload`).
        var download: PreparedDownload?
        init(_ cmd: VkCommandBuffer?) { self.cmd = cmd }
    }

    /// One staged host data copy of a step: the copy command's index, its staging bytes, and (for data the
    /// backend derives from the step's batch alone, such as rope tables) how to write them again for another batch.
    struct HostWrite {
        let index: Int, src: GPUBuffer, offset: Int, bytes: Int
        let refill: ((UnsafeMutableRawPointer, StepBatch) -> Void)?
        func sameCopy(_ o: HostWrite) -> Bool { index == o.index && src === o.src && offset == o.offset && bytes == o.bytes }
    }

    /// The state of a step's walk where the caller asked `repeatsOps(key)`.
    struct SkipPoint: Equatable {
        let key: [Int]
        /// What the ops read of the batch besides its shape (see `signature`).
        let signature: [Int]
        let index: Int
        let pendingBarrier: Bool, pendingTransfer: Bool
    }

    /// Record-once command buffers, most recently used last.
    private var cache: [Recording] = []
    private static let cacheLimit = 8
    private var useTick = 0
    /// The step's command buffer being recorded, or the cached one being matched (`checkIndex` commands so far).
    private var current: Recording?
    private var checking: Recording?
    private var checkIndex = 0
    private var caching: Bool { replays && !profile }

    // MARK: repeated steps
    //
    // Matching a replayed step's commands still walks its ops on the host: ~355 op calls (routing, fusion, the
    // match) per decode token of a 7B, 0.5–0.8 ms with the GPU idle (BENCHMARKS.md, session 9). A caller whose
    // ops from some point to `endStep` repeat an earlier step's calls (ModelShard: the layers and the head of a
    // step with the same rows, logit rows and input kind) says so with `repeatsOps(key)`. If the cached
    // buffer being matched was walked to its end from the same point with the same key, the same batch
    // signature and the same pending state, the rest of its commands are taken as they are: the backend
    // writes only the host data that follows (rope tables, from the batch) and the caller goes to `endStep`.
    // What the ops read of the batch beyond its shape (positions: attn_decode_vec's split count and the
    // prefill attention's one-run test) is in the step's signature; every `skipCheckInterval`-th repeat is
    // walked anyway and compared, and a difference turns skipping off (`skipMismatches`).

    /// Let callers skip the op walk of repeated steps (env SHARD_VK_NO_SKIP=1: off).
    public var skipsRepeatedOps = true
    /// Walk every this-many-th repeatable step anyway and check that it matches (env SHARD_VK_SKIP_CHECK; 1: every
    /// step, as the tests do, which then never skips; 0: never check).
    public var skipCheckInterval = 64
    /// A checked repeat that differs stops the process instead (tests: every Vulkan test runs with checks on every
    /// second repeat, so that a missing signature or key part fails loudly; env SHARD_VK_SKIP_STRICT=1).
    public var skipMismatchIsFatal = false
    /// Steps whose ops were skipped; checks that found a repeatable step's walk differing from its recording.
    public private(set) var skipMismatches = 0
    public var skippedSteps: Int { hostTimes.skipped }
    /// Repeatable steps walked anyway and compared with their recording.
    public private(set) var skipChecks = 0
    private var stepHostWrites: [HostWrite] = []
    private var skipCandidate: SkipPoint?
    private var checkingSkip = false, opsSkipped = false
    /// In a checked walk: where it first left the buffer it matched (for the message).
    private var divergence: (index: Int, recorded: String, walked: String)?
    private var repeatsSinceCheck = 0
    /// A tuning knob was set, or a scratch buffer that steps bind was replaced by a larger one: what the ops record may
    /// differ now, so no cached step may skip its walk until it is walked again.
    private func invalidateSkips() {
        for r in cache { r.skip = nil }
        // The step being walked, too: its commands so far bind the old buffer, a repeat's would bind the new one.
        stepInvalidated = true
    }
    private var stepInvalidated = false
    /// Another cached buffer of `chk`'s shape whose first `count` commands are `chk`'s and that satisfies `also`
    /// (checked first: it is the cheap part).
    private func sibling(of chk: Recording, sharing count: Int, where also: (Recording) -> Bool) -> Recording? {
        cache.last { $0 !== chk && also($0) && $0.rows == chk.rows && $0.tables == chk.tables && $0.cmds.count >= count
                     && $0.cmds[0..<count] == chk.cmds[0..<count] }
    }
    /// Where the step's next command goes in its command list.
    private var streamIndex: Int { checking != nil ? checkIndex : (current?.cmds.count ?? 0) }

    /// Says that the ops from here to `endStep` repeat, call for call and argument for argument, those of an
    /// earlier step that asked here with the same `key`. True: the backend has the rest of the step (the
    /// caller makes no more op calls and goes to `endStep`); false: the caller makes the calls as usual.
    public func repeatsOps(_ key: [Int]) -> Bool {
        guard recording, caching, skipsRepeatedOps, deferredError == nil, case .none = pending else { return false }
        let here = SkipPoint(key: key, signature: Self.signature(batch), index: streamIndex,
                             pendingBarrier: pendingBarrier, pendingTransfer: pendingTransfer)
        skipCandidate = here
        guard var chk = checking else { return false }
        if chk.skip != here {
            // Another buffer of this shape with the same commands so far may have been walked from here with this key
            // (the most recently used one of a shape is matched first; decode steps change split counts as they grow).
            guard let other = sibling(of: chk, sharing: here.index, where: { $0.skip == here }) else { return false }
            checking = other
            chk = other
        }
        repeatsSinceCheck += 1
        if skipCheckInterval > 0 && repeatsSinceCheck >= skipCheckInterval {
            repeatsSinceCheck = 0
            checkingSkip = true
            return false
        }
        for w in chk.hostWrites where w.index >= here.index { w.refill!(w.src.mapped! + w.offset, batch) }
        if stepDownload == nil { stepDownload = chk.download }
        checkIndex = chk.cmds.count
        opsSkipped = true
        return true
    }

    /// What ops read of a batch besides its row and table counts: the padded table lengths (the step buffer's
    /// layout), whether its rows are one run of one sequence (prefill attention), and its longest context rounded
    /// up to a power of two (attn_decode_vec's split count).
    private static func signature(_ b: StepBatch) -> [Int] {
        var longest = 1
        while longest < Int(b.positions.max() ?? 0) + 1 { longest *= 2 }
        return [b.rows, b.pageTables.count, b.windowPageTables.count, isOneRun(b) ? 1 : 0, longest]
            + (b.pageTables + b.windowPageTables).map { paddedCount($0.count) }
    }

    /// After a walk that submitted `rec`: keeps the walk's host writes and skip point with it, and checks a
    /// repeat that was walked to be compared.
    private func finishWalk(_ rec: Recording, replayed: Bool) {
        if checkingSkip {
            checkingSkip = false
            skipChecks += 1
            let old = rec.skip.map { s in rec.hostWrites.filter { $0.index >= s.index } } ?? []
            let new = skipCandidate.map { s in stepHostWrites.filter { $0.index >= s.index } } ?? []
            if !replayed || divergence != nil || rec.skip != skipCandidate || old.count != new.count || !zip(old, new).allSatisfy({ $0.sameCopy($1) }) {
                skipMismatches += 1
                skipsRepeatedOps = false
                let at = divergence.map { "at command \($0.index): \($0.recorded) recorded, \($0.walked) now" } ?? "in its host data copies"
                if skipMismatchIsFatal { preconditionFailure("VulkanBackend: a repeated step's ops differed from its recording (\(batch.rows) rows, \(at))") }
                fputs("shard: VulkanBackend: a repeated step's ops differed from its recording (\(batch.rows) rows, \(at)); skipping repeated ops is off\n", stderr)
            }
        }
        rec.hostWrites = stepHostWrites
        rec.download = stepDownload
        if let s = skipCandidate, !stepInvalidated, stepHostWrites.allSatisfy({ $0.index < s.index || $0.refill != nil }) {
            rec.skip = s
        } else {
            rec.skip = nil
        }
    }
    /// Steps submitted from a freshly recorded command buffer, and replayed from a cached one.
    public private(set) var recordedSteps = 0, replayedSteps = 0
    /// Where a step's wall time goes on the host (seconds, summed over steps): recording or matching its
    /// commands and writing its host data (beginStep to the submit), the submit and the wait for the GPU,
    /// and the read-back of the step's results. `bench --concurrency` reports them.
    public struct HostTimes: Sendable {
        public var record = 0.0, gpu = 0.0, download = 0.0, steps = 0
        /// Parts of `record`: beginStep itself, the ops between beginStep and endStep, and endStep up to the submit;
        /// and, inside the ops, the time spent in `dispatch` (pipeline and descriptor-set lookups, matching or
        /// encoding; measured only with env SHARD_VK_HOST_TIMES=1) over `dispatches` calls.
        public var begin = 0.0, ops = 0.0, end = 0.0, dispatch = 0.0, dispatches = 0
        /// Steps whose op calls were skipped (`repeatsOps`).
        public var skipped = 0
    }
    public private(set) var hostTimes = HostTimes()
    /// The first step's host times (record: beginStep to the submit; gpu: the submit and the wait), and the
    /// pipelines created so far (lazily, while steps record) with the time that took: `profileReport` prints them.
    public private(set) var firstStepHost: (record: Double, gpu: Double)?
    public private(set) var pipelineCreation = (count: 0, seconds: 0.0)
    private var stepStarted = ContinuousClock.now, opsStarted = ContinuousClock.now, endStarted = ContinuousClock.now
    /// Host time per op kind (seconds, calls) with env SHARD_VK_HOST_TIMES=1 (`opTimesReport`).
    private var opTimes: [String: (seconds: Double, calls: Int)] = [:]
    private func noteOp(_ name: String, _ started: ContinuousClock.Instant) {
        opTimes[name, default: (0, 0)].seconds += Self.since(started)
        opTimes[name, default: (0, 0)].calls += 1
    }
    /// One line per op kind: total host ms and calls (nested ops count in both: matmul calls matmuls).
    public func opTimesReport() -> String {
        opTimes.sorted { $0.value.seconds > $1.value.seconds }
            .map { "\($0.key): \(($0.value.seconds * 1e6).rounded() / 1e3) ms in \($0.value.calls) calls" }.joined(separator: "\n")
    }
    /// hostTimes.dispatch and the time per op kind (`opTimesReport`) are measured (two clock reads per dispatch and per
    /// op) only with env SHARD_VK_HOST_TIMES=1.
    public let timesHost = getenv("SHARD_VK_HOST_TIMES").map { String(cString: $0) == "1" } ?? false
    private static func since(_ t: ContinuousClock.Instant) -> Double {
        let d = (ContinuousClock.now - t).components
        return Double(d.seconds) + Double(d.attoseconds) * 1e-18
    }
    /// Submits a step's command buffer and waits for it, counting the host time before and the wait.
    private func submitStep(_ cmd: VkCommandBuffer?, end: Bool = true) throws {
        readyDownload = stepDownload
        let recorded = Self.since(stepStarted)
        hostTimes.record += recorded
        hostTimes.end += Self.since(endStarted)
        let submitted = ContinuousClock.now
        defer {
            let gpu = Self.since(submitted)
            hostTimes.gpu += gpu
            hostTimes.steps += 1
            if firstStepHost == nil { firstStepHost = (recorded, gpu) }
        }
        try ctx.submitAndWait(cmd, end: end)
    }

    private func encode(_ c: Cmd, into cmd: VkCommandBuffer?) {
        switch c {
        case let .dispatch(p, set, push, x, y, z):
            var set = set
            vkCmdBindPipeline(cmd, VK_PIPELINE_BIND_POINT_COMPUTE, p.pipeline)
            vkCmdBindDescriptorSets(cmd, VK_PIPELINE_BIND_POINT_COMPUTE, p.layout, 0, 1, &set, 0, nil)
            push.withUnsafeBytes { raw in
                vkCmdPushConstants(cmd, p.layout, flags(VK_SHADER_STAGE_COMPUTE_BIT), 0, UInt32(raw.count), raw.baseAddress)
            }
            vkCmdDispatch(cmd, x, y, z)
        case let .copy(src, dst, so, d, n):
            var region = VkBufferCopy(srcOffset: VkDeviceSize(so), dstOffset: VkDeviceSize(d), size: VkDeviceSize(n))
            vkCmdCopyBuffer(cmd, src.buffer, dst.buffer, 1, &region)
        case let .barrier(kind):
            if kind == 0 && !fullBarriers { computeBarrier(cmd) } else { barrier(cmd, toHost: kind == 2) }
        }
    }

    /// Starts recording this step into a command buffer, re-encoding `prefix` (commands already matched).
    private func startRecording(_ prefix: ArraySlice<Cmd>) throws {
        let rec: Recording
        if !caching {
            rec = Recording(cmd)
        } else if cache.count < Self.cacheLimit {
            rec = Recording(try ctx.allocateCommandBuffer())
        } else {
            let lru = cache.indices.min { cache[$0].lastUse < cache[$1].lastUse }!
            rec = Recording(cache.remove(at: lru).cmd)
        }
        rec.rows = batch.rows
        rec.tables = batch.pageTables.count
        try ctx.begin(rec.cmd, oneTime: !caching)
        profileBegin(rec.cmd)
        rec.cmds = Array(prefix)
        for c in prefix { encode(c, into: rec.cmd) }
        current = rec
        checking = nil
    }

    /// Appends a command to the step: records it, or matches it against the cached buffer.
    private func emit(_ c: Cmd, label: @autoclosure () -> String = "") {
        if opsSkipped { return fail("an op was called after repeatsOps said the step repeats") }
        if let chk = checking {
            if checkIndex < chk.cmds.count && chk.cmds[checkIndex] == c { checkIndex += 1; return }
            // Another cached buffer of this shape with the same commands so far that goes on with this one (several
            // shards on one backend: their steps have the same shape but not the same commands).
            let i = checkIndex
            if checkingSkip && divergence == nil {
                divergence = (i, i < chk.cmds.count ? "\(chk.cmds[i])" : "the end", "\(c)")
            }
            if let other = sibling(of: chk, sharing: i, where: { $0.cmds.count > i && $0.cmds[i] == c }) {
                checking = other
                checkIndex += 1
                return
            }
            do { try startRecording(chk.cmds[0..<checkIndex]) } catch { deferredError = error; return }
        }
        guard let rec = current else { return }
        rec.cmds.append(c)
        if profile, case .dispatch = c {
            timed(label(), rec.cmd) { encode(c, into: rec.cmd) }
        } else {
            encode(c, into: rec.cmd)
        }
    }

    public func beginStep(_ batch: StepBatch) throws {
        stepStarted = ContinuousClock.now
        defer { opsStarted = ContinuousClock.now; hostTimes.begin += Self.since(stepStarted) }
        precondition(!recording, "beginStep inside a step")
        try releaseUploadSlots()
        self.batch = batch
        staging.reset()
        arena.reset()
        ropeTables.removeAll(keepingCapacity: true)
        stepPart = nil
        deferredError = nil
        pendingBarrier = false
        pendingTransfer = false
        pending = .none
        current = nil
        checking = nil
        checkIndex = 0
        stepHostWrites.removeAll(keepingCapacity: true)
        skipCandidate = nil
        checkingSkip = false
        divergence = nil
        opsSkipped = false
        stepInvalidated = false
        stepDownload = nil
        readyDownload = nil
        if caching, let hit = cache.lazy.filter({ $0.rows == batch.rows && $0.tables == batch.pageTables.count }).max(by: { $0.lastUse < $1.lastUse }) {
            checking = hit
        } else {
            try startRecording([])
        }
        recording = true
        // positions | tableIndex | tableStart | windowTableStart | pages of every table, then of every
        // sliding-window ring table (each padded to a power of two ≥ 16 entries, so that the layout, and
        // the recorded copies, change only when a table doubles)
        let rows = batch.rows, tables = batch.pageTables.count, windowTables = batch.windowPageTables.count
        let all = batch.pageTables + batch.windowPageTables
        let padded = all.map { Self.paddedCount($0.count) }
        let words = 2 * rows + tables + windowTables + padded.reduce(0, +)
        let (buffer, offset) = try arena.allocate(ctx, bytes: words * 4)
        let base = offset / 4
        stepBuffer = buffer
        stepPositions = base
        stepTableIndex = base + rows
        stepTableStart = base + 2 * rows
        stepWindowTableStart = base + 2 * rows + tables
        try record(bytes: words * 4, to: buffer, offset: offset) { raw in
            let w = raw.bindMemory(to: Int32.self, capacity: words)
            for r in 0..<rows {
                w[r] = batch.positions[r]
                w[rows + r] = batch.tableIndex[r]
            }
            var next = base + 2 * rows + tables + windowTables
            for (t, table) in all.enumerated() {
                w[2 * rows + t] = Int32(next)
                for (i, page) in table.enumerated() { w[next - base + i] = page }
                for i in table.count..<padded[t] { w[next - base + i] = 0 }
                next += padded[t]
            }
        }
    }

    static func paddedCount(_ n: Int) -> Int {
        var p = 16
        while p < n { p *= 2 }
        return p
    }

    public func endStep() throws {
        precondition(recording, "endStep without beginStep")
        hostTimes.ops += Self.since(opsStarted)
        endStarted = ContinuousClock.now
        if opsSkipped, let chk = checking {
            opsSkipped = false
            recording = false
            checking = nil
            if let e = deferredError {
                deferredError = nil
                throw e
            }
            useTick += 1
            chk.lastUse = useTick
            replayedSteps += 1
            hostTimes.skipped += 1
            try submitStep(chk.cmd, end: false)
            return
        }
        opsSkipped = false
        flushPending()
        emit(.barrier(2))
        recording = false
        useTick += 1
        // Pipelines created while recording this step: the cache file gets them (VulkanContext's MARK: pipeline cache).
        if ctx.pipelineCacheDirty {
            ctx.pipelineCacheDirty = false
            ctx.savePipelineCache()
        }
        if let e = deferredError {
            if let rec = current { _ = vkEndCommandBuffer(rec.cmd) }
            current = nil
            checking = nil
            deferredError = nil
            throw e
        }
        if let chk = checking {
            if checkIndex == chk.cmds.count {
                checking = nil
                chk.lastUse = useTick
                replayedSteps += 1
                finishWalk(chk, replayed: true)
                try submitStep(chk.cmd, end: false)
                return
            }
            try startRecording(chk.cmds[0..<checkIndex])
        }
        guard let rec = current else { return }
        current = nil
        recordedSteps += 1
        try submitStep(rec.cmd)
        if caching {
            rec.lastUse = useTick
            finishWalk(rec, replayed: false)
            cache.append(rec)
        }
        profileCollect()
    }

    /// Global barrier: earlier compute/transfer writes visible to later compute/transfer (and host) access.
    private func barrier(_ cmd: VkCommandBuffer?, toHost: Bool = false) {
        var b = VkMemoryBarrier()
        b.sType = VK_STRUCTURE_TYPE_MEMORY_BARRIER
        b.srcAccessMask = flags(VK_ACCESS_SHADER_WRITE_BIT, VK_ACCESS_TRANSFER_WRITE_BIT)
        b.dstAccessMask = flags(VK_ACCESS_SHADER_READ_BIT, VK_ACCESS_SHADER_WRITE_BIT, VK_ACCESS_TRANSFER_READ_BIT, VK_ACCESS_TRANSFER_WRITE_BIT)
            | (toHost ? flags(VK_ACCESS_HOST_READ_BIT) : 0)
        let src = flags(VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT, VK_PIPELINE_STAGE_TRANSFER_BIT)
        let dst = src | (toHost ? flags(VK_PIPELINE_STAGE_HOST_BIT) : 0)
        vkCmdPipelineBarrier(cmd, src, dst, 0, 1, &b, 0, nil, 0, nil)
    }

    /// Shader writes visible to later shaders only (between two dispatches: no transfer stage to wait for).
    func computeBarrier(_ cmd: VkCommandBuffer?) {
        var b = VkMemoryBarrier()
        b.sType = VK_STRUCTURE_TYPE_MEMORY_BARRIER
        b.srcAccessMask = flags(VK_ACCESS_SHADER_WRITE_BIT)
        b.dstAccessMask = flags(VK_ACCESS_SHADER_READ_BIT, VK_ACCESS_SHADER_WRITE_BIT)
        let stage = flags(VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT)
        vkCmdPipelineBarrier(cmd, stage, stage, 0, 1, &b, 0, nil, 0, nil)
    }

    /// Records the barrier owed to earlier writes before a dispatch (`transfer` false) or a copy.
    private func barrierIfPending(transfer: Bool = false) {
        if pendingBarrier {
            emit(.barrier(transfer || pendingTransfer ? 1 : 0))
            pendingBarrier = false
            pendingTransfer = false
        }
    }

    /// Stages `bytes` (written by `fill`) and records their copy to `dst` at `offset`.
    /// `refill` (data derived from the step's batch alone) lets a repeated step whose ops are skipped write it again.
    private func record(bytes: Int, to dst: GPUBuffer, offset: Int, fill: (UnsafeMutableRawPointer) -> Void,
                        refill: ((UnsafeMutableRawPointer, StepBatch) -> Void)? = nil) throws {
        guard bytes > 0 else { return }
        let (src, srcOffset) = try staging.allocate(ctx, bytes: bytes)
        fill(src.mapped! + srcOffset)
        barrierIfPending(transfer: true)
        emit(.copy(src, dst, srcOffset, offset, bytes))
        stepHostWrites.append(HostWrite(index: streamIndex - 1, src: src, offset: srcOffset, bytes: bytes, refill: refill))
        pendingBarrier = true
        pendingTransfer = true
    }

    /// Labels of the dispatches recorded while non-nil (tests: which kernels an op sequence used).
    var dispatchLog: [String]?

    /// Records one dispatch. `barrierAfter: false` lets independent dispatches follow without a barrier.
    private func dispatch(_ name: String, _ buffers: [GPUBuffer], _ push: [UInt32], groups: (Int, Int, Int),
                          barrierAfter: Bool = true, label: @autoclosure () -> String? = nil) {
        guard recording else { preconditionFailure("VulkanBackend: ops run between beginStep and endStep") }
        guard deferredError == nil, groups.0 > 0, groups.1 > 0, groups.2 > 0 else { return }
        hostTimes.dispatches += 1
        let entered = timesHost ? ContinuousClock.now : nil
        defer { if let entered { hostTimes.dispatch += Self.since(entered) } }
        do {
            let p = try pipeline(name)
            let set = try descriptors.set(for: p, buffers)
            barrierIfPending()
            if dispatchLog != nil { dispatchLog!.append(label() ?? name) }
            emit(.dispatch(p, set, push, UInt32(groups.0), UInt32(groups.1), UInt32(groups.2)), label: label() ?? name)
            if barrierAfter { pendingBarrier = true }
        } catch {
            deferredError = error
        }
    }

    private func fail(_ message: String) {
        if deferredError == nil { deferredError = ComputeError("VulkanBackend: \(message)") }
    }

    /// `n` workgroups spread over x and y (x ≤ 65535).
    private func grid(_ n: Int) -> (Int, Int) {
        let x = min(n, 65535)
        return (x, (n + x - 1) / max(x, 1))
    }

    // MARK: host transfers

    public func upload(_ values: [Float], to a: Activations) {
        let a = a as! VulkanActivations
        precondition(values.count <= a.rowCapacity * a.columns)
        if recording {
            flushPending()
            do {
                try record(bytes: values.count * 4, to: a.buffer, offset: 0) { raw in
                    values.withUnsafeBytes { raw.copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
                }
            } catch { deferredError = error }
        } else {
            do { try values.withUnsafeBytes { try uploadNow($0, to: a.buffer) } } catch {
                preconditionFailure("VulkanBackend.upload: \(error)")
            }
        }
    }

    public func download(_ a: Activations, rows: Range<Int>) -> [Float] {
        precondition(!recording, "download inside a step: call endStep first")
        let a = a as! VulkanActivations
        if let d = readyDownload, d.activations == ObjectIdentifier(a), d.rows == rows, let buffer = downloadBuffer {
            let started = ContinuousClock.now
            defer { hostTimes.download += Self.since(started) }
            return Self.mappedValues(buffer, count: rows.count * a.columns, as: Float.self)
        }
        return readBack(a.buffer, offset: rows.lowerBound * a.columns * 4, count: rows.count * a.columns, as: Float.self)
    }

    /// Rows that the step copies into `downloadBuffer` (host-visible) for `download` after it: this step's
    /// (`prepareDownload`), and the last submitted step's (cleared by beginStep).
    struct PreparedDownload: Equatable { let activations: ObjectIdentifier, rows: Range<Int> }
    private var stepDownload: PreparedDownload?, readyDownload: PreparedDownload?
    private var downloadBuffer: GPUBuffer?

    public func prepareDownload(_ a: Activations, rows: Range<Int>) {
        guard recording, !rows.isEmpty else { return }
        flushPending()
        let a = a as! VulkanActivations
        let bytes = rows.count * a.columns * 4
        guard rows.upperBound <= a.rowCapacity else { return fail("prepareDownload: rows \(rows) of \(a.rowCapacity)") }
        do {
            if (downloadBuffer?.size ?? 0) < bytes {
                // The old buffer stays alive: cached steps copy into it.
                if let old = downloadBuffer { retiredScratch.append(old) }
                downloadBuffer = try GPUBuffer(ctx, size: max(bytes, 1 << 16), hostVisible: true, use: .readback)
                invalidateSkips()
            }
        } catch { deferredError = error; return }
        barrierIfPending(transfer: true)
        emit(.copy(a.buffer, downloadBuffer!, rows.lowerBound * a.columns * 4, 0, bytes))
        pendingBarrier = true
        pendingTransfer = true
        stepDownload = PreparedDownload(activations: ObjectIdentifier(a), rows: rows)
    }

    /// The first `count` values of a host-visible buffer (after the fence of the step that wrote them).
    static func mappedValues<T>(_ b: GPUBuffer, count: Int, as type: T.Type) -> [T] {
        Array(UnsafeBufferPointer(start: b.mapped!.bindMemory(to: T.self, capacity: count), count: count))
    }

    /// `count` values of `type` at byte `offset` of `buffer`, copied through the host-visible readback buffer.
    func readBack<T>(_ buffer: GPUBuffer, offset: Int, count: Int, as type: T.Type) -> [T] {
        let bytes = count * MemoryLayout<T>.stride
        guard bytes > 0 else { return [] }
        let started = ContinuousClock.now
        defer { hostTimes.download += Self.since(started) }
        do {
            if (readback?.size ?? 0) < bytes { readback = try GPUBuffer(ctx, size: max(bytes, 1 << 20), hostVisible: true, use: .readback) }
            let rb = readback!
            try immediate { cmd in
                var region = VkBufferCopy(srcOffset: VkDeviceSize(offset), dstOffset: 0, size: VkDeviceSize(bytes))
                vkCmdCopyBuffer(cmd, buffer.buffer, rb.buffer, 1, &region)
            }
            return Self.mappedValues(rb, count: count, as: T.self)
        } catch {
            preconditionFailure("VulkanBackend.download: \(error)")
        }
    }

    /// Greedy steps pick each logit row's argmax on the device (argmax.comp) and read back one id per
    /// row instead of the logits (at 64 rows × 32000: 8 MB read back and scanned on the host per step);
    /// env SHARD_VK_NO_ARGMAX=1: off, the host picks from the logits as before.
    public var argmaxOnDevice = true { didSet { invalidateSkips() } }
    /// The ids `recordArgmax` writes: allocated once, for the first logits' row capacity (a buffer is
    /// never replaced while recorded steps may refer to it). Host-visible: argmax.comp writes the few ids there
    /// itself, and `downloadArgmax` reads them after the step's fence without a read-back submit of its own
    /// (~0.07 ms of a batch-1 token on an H200).
    private var argmaxIDs: GPUBuffer?

    public func recordArgmax(_ logits: Activations, rows: Int) -> Bool {
        let opStart = timesHost ? ContinuousClock.now : nil
        defer { if let opStart { noteOp("recordArgmax", opStart) } }
        guard argmaxOnDevice, rows > 0 else { return false }
        let a = logits as! VulkanActivations
        if argmaxIDs == nil {
            argmaxIDs = try? GPUBuffer(ctx, size: max(a.rowCapacity, rows, 512) * 4 + 16, hostVisible: true, use: .readback)
        }
        guard let ids = argmaxIDs, ids.size >= rows * 4 else { return false }
        flushPending()
        dispatch("argmax", [a.buffer, ids], [UInt32(a.columns)], groups: (rows, 1, 1))
        return true
    }

    public func downloadArgmax(rows: Int) -> [Int32] {
        precondition(!recording, "download inside a step: call endStep first")
        guard let ids = argmaxIDs, rows * 4 <= ids.size else { return [] }
        let started = ContinuousClock.now
        defer { hostTimes.download += Self.since(started) }
        // endStep's last barrier made the shader's writes visible to the host, and its fence has signalled.
        return Self.mappedValues(ids, count: rows, as: Int32.self)
    }

    // MARK: fusion
    //
    // Ops are recorded one call late where the next call may fuse with them (decode runs 12 dispatches
    // per layer instead of 20): rmsNorm + the rounding of the following matmuls' input (rms_quant),
    // swiglu + the rounding of the down projection's input (swiglu_quant), decode attention's merge + the
    // rounding of the o projection's input (attention_merge_quant), a single matmul + the add of its
    // output into the residual (matvec/matmul with a residual binding), rope(q) + rope(k) + storeKV
    // (rope_store). Each fused shader computes what the separate ones do with the same arithmetic (rms_quant
    // sums the squares in another order: the norm's scale may differ in the last bit). Every other op (and
    // endStep) first records what is pending. `fuses = false` (env SHARD_VK_NO_FUSE=1) turns it off.

    private enum Pending {
        case none
        case norm(VulkanActivations, VulkanWeight, Float, VulkanActivations)
        case swiglu(VulkanActivations, VulkanActivations, VulkanActivations)
        case matmul(MatJob)
        /// Two decode mat-vecs of one input on integer dot products (gate and up), waiting for a swiglu.
        case pair(MatJob, MatJob)
        case rope([RopeJob])
        case merge(MergeJob)
        case attention(AttentionJob)
        /// The q, k, v decode mat-vecs on int8 input (matvec_q8x), waiting for the ropes of q and k and the
        /// KV store, which their epilogues then do (matvec_q8x_rope; `ropeStoreFusion`).
        case qkv([MatJob], [RopeJob])
    }
    struct AttentionJob {
        let kv: GPUBuffer, q: GPUBuffer, step: GPUBuffer, part: GPUBuffer, offset: Int, out: VulkanActivations
        let push: [UInt32], heads: Int, headDim: Int, splits: Int
        /// attn_decode_merge, or attn_decode_vec_merge@… (batched steps).
        var name = "attn_decode_merge"
    }
    /// Counters of attn_decode_merge's workgroups per (row, group); each group's last workgroup resets its own.
    private var mergeCounters: GPUBuffer?

    /// attn_decode_merge: decode attention whose last workgroup per group merges (and rounds, mode 0/1; 2: none).
    private func emitAttentionMerge(_ j: AttentionJob, mode: Int, rounded: GPUBuffer?, int8: GPUBuffer? = nil) {
        do {
            if mergeCounters == nil {
                let c = try GPUBuffer(ctx, size: 65536 * 4, hostVisible: false, use: .scratch)
                try immediate { cmd in vkCmdFillBuffer(cmd, c.buffer, 0, VkDeviceSize(VK_WHOLE_SIZE), 0) }
                mergeCounters = c
            }
            dispatch(j.name, [j.kv, j.q, j.part, j.step, j.out.buffer, rounded ?? dummy, mergeCounters!, int8 ?? dummy],
                     j.push + [UInt32(j.splits), UInt32(j.offset), UInt32(mode), 0, int8 == nil ? 0 : 1], groups: (j.heads, batch.rows, j.splits),
                     label: j.name.hasPrefix("attn_decode_vec") ? "attn_decode_vec_merge" : j.name)
        } catch { deferredError = error }
    }
    struct MergeJob { let part: GPUBuffer, offset: Int, out: VulkanActivations, heads: Int, headDim: Int, splits: Int }
    struct MatJob {
        let w: VulkanWeight, input: GPUBuffer, bias: VulkanWeight?, out: VulkanActivations, n: Int, k: Int
        /// matvec_q8 NORM: `input` is the norm's raw input, normalized on read with this weight and eps;
        /// `output` (the norm's output) is written by the job that has it.
        var norm: (weight: GPUBuffer, eps: Float, output: GPUBuffer?)? = nil
        /// matvec_q8x: the input rounded as packed int8 + block scales (written by rms_quant / swiglu_quant).
        var qx: GPUBuffer? = nil
    }
    struct RopeJob { let x: VulkanActivations, heads: Int, headDim: Int, params: RopeParams }
    private var pending = Pending.none
    public var fuses = true { didSet { invalidateSkips() } }

    private func flushPending() {
        let p = pending
        pending = .none
        switch p {
        case .none: break
        case let .norm(x, w, eps, o):
            dispatch("rms_norm", [x.buffer, w.buffer, o.buffer], [UInt32(x.columns), eps.bitPattern], groups: (batch.rows, 1, 1))
        case let .swiglu(g, u, o):
            let count = batch.rows * g.columns
            let (gx, gy) = grid((count + workgroupSize - 1) / workgroupSize)
            dispatch("swiglu", [g.buffer, u.buffer, o.buffer], [UInt32(count)], groups: (gx, gy, 1))
        case let .matmul(job):
            emitMatmul(job, residual: nil, barrierAfter: true)
        case let .pair(a, b):
            emitMatmul(a, residual: nil, barrierAfter: false)
            emitMatmul(b, residual: nil, barrierAfter: true)
        case let .rope(jobs):
            for j in jobs { emitRope(j) }
        case let .attention(j):
            emitAttentionMerge(j, mode: 2, rounded: nil)
        case let .qkv(jobs, ropes):
            for (i, job) in jobs.enumerated() { emitMatmul(job, residual: nil, barrierAfter: i == jobs.count - 1) }
            for r in ropes { emitRope(r) }
        case let .merge(m):
            dispatch("attention_merge", [m.part, m.out.buffer],
                     [UInt32(m.heads), UInt32(m.headDim), UInt32(m.splits), UInt32(m.out.columns), UInt32(m.offset)],
                     groups: (m.heads, batch.rows, 1))
        }
    }

    // MARK: ops

    public func embed(_ table: Weight, tokens: [Int32], into out: Activations) {
        let opStart = timesHost ? ContinuousClock.now : nil
        defer { if let opStart { noteOp("embed", opStart) } }
        flushPending()
        if let h = table as? VulkanHostWeight {
            let o = out as! VulkanActivations, n = h.rowLength
            guard o.columns == n, tokens.count <= o.rowCapacity else { return fail("embed \(h.name): rows of \(n) into \(o.columns) columns") }
            do {
                try record(bytes: tokens.count * n * 4, to: o.buffer, offset: 0) { raw in
                    let f = raw.bindMemory(to: Float.self, capacity: tokens.count * n)
                    for (i, t) in tokens.enumerated() { Dequant.row(h.type, h.data.baseAddress! + Int(t) * h.rowBytes, f + i * n, count: n) }
                }
            } catch { deferredError = error }
            return
        }
        let w = table as! VulkanWeight, o = out as! VulkanActivations
        guard w.rowLength % 4 == 0, o.columns == w.rowLength, Self.supportedTypes.contains(w.type) else {
            return fail("embed \(w.name): \(w.type) rows of \(w.rowLength) into \(o.columns) columns")
        }
        do {
            let (buffer, offset) = try arena.allocate(ctx, bytes: tokens.count * 4)
            try record(bytes: tokens.count * 4, to: buffer, offset: offset) { raw in
                tokens.withUnsafeBytes { raw.copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
            }
            dispatch(Self.embedNames[w.type]!, [w.buffer, buffer, o.buffer],
                     [UInt32(w.rowLength), UInt32(w.rowBytes), UInt32(offset / 4)], groups: (tokens.count, 1, 1))
        } catch { deferredError = error }
    }

    public func rmsNorm(_ x: Activations, weight: Weight, eps: Float, into out: Activations) {
        let opStart = timesHost ? ContinuousClock.now : nil
        defer { if let opStart { noteOp("rmsNorm", opStart) } }
        flushPending()
        let x = x as! VulkanActivations, o = out as! VulkanActivations, w = weight as! VulkanWeight
        guard w.type == .f32, w.rowLength == x.columns, o.columns == x.columns else {
            return fail("rmsNorm: weight \(w.name) \(w.type) \(w.shape) for \(x.columns) columns")
        }
        pending = .norm(x, w, eps, o)
        if !fuses || o === x { flushPending() }   // in place: the fused rounding would read normalized values
    }

    public func matmul(_ w: Weight, _ x: Activations, bias: Weight?, into out: Activations, rows: Int?) {
        let opStart = timesHost ? ContinuousClock.now : nil
        defer { if let opStart { noteOp("matmul", opStart) } }
        matmuls(x, [MatmulItem(weight: w, bias: bias, output: out)], rows: rows)
    }

    /// A buffer for activations rounded to grid `mode`, at least `bytes` long.
    private func roundedBuffer(_ mode: Int, bytes: Int) throws -> GPUBuffer {
        if (rounded[mode]?.size ?? 0) < bytes + 16 {
            // The old buffer stays alive: cached steps (and their descriptor sets) bind it.
            if let old = rounded[mode] { retiredScratch.append(old) }
            rounded[mode] = try GPUBuffer(ctx, size: bytes + 16, hostVisible: false, use: .scratch)
            invalidateSkips()
        }
        return rounded[mode]!
    }

    public func matmuls(_ x: Activations, _ items: [MatmulItem], rows: Int?) {
        let opStart = timesHost ? ContinuousClock.now : nil
        defer { if let opStart { noteOp("matmuls", opStart) } }
        let x = x as! VulkanActivations
        let n = rows ?? batch.rows
        for item in items {
            let w = item.weight as! VulkanWeight, o = item.output as! VulkanActivations
            guard w.rowLength == x.columns, o.columns == w.rowCount, x.columns % 4 == 0, Self.supportedTypes.contains(w.type) else {
                flushPending()
                return fail("matmul \(w.name) (\(w.type) \(w.shape)): x has \(x.columns) columns, out \(o.columns)")
            }
            if let bias = item.bias, bias.type != .f32 || bias.rowLength != w.rowCount {
                flushPending()
                return fail("bias \(bias.name) must be f32[\(w.rowCount)]")
            }
        }
        // Decode mat-vecs on integer dot products (matvec_q8.comp) round x themselves: no rounding pass;
        // a pending RMSNorm of x is applied on read (each mat-vec's workgroups normalize x themselves).
        if dotRoundsX && n == 1 && items.allSatisfy({ usesDot($0.weight as! VulkanWeight) }) {
            var norm: (x: VulkanActivations, weight: GPUBuffer, eps: Float, output: VulkanActivations)?
            if normFusion && fuses && batch.rows == 1, case let .norm(nx, nw, eps, no) = pending, no === x, nx.columns == x.columns {
                pending = .none
                norm = (nx, nw.buffer, eps, no)
            }
            flushPending()
            let jobs = items.enumerated().map { i, item in
                var job = MatJob(w: item.weight as! VulkanWeight, input: norm?.x.buffer ?? x.buffer, bias: item.bias as? VulkanWeight,
                                 out: item.output as! VulkanActivations, n: n, k: x.columns)
                if let norm { job.norm = (norm.weight, norm.eps, i == 0 ? norm.output.buffer : nil) }
                return job
            }
            if fuses && jobs.count == 1 {
                pending = .matmul(jobs[0])
                return
            }
            // Gate and up (same Q4_K shape, no bias) wait for a swiglu of their outputs (matvec_q8 PAIR).
            if fuses && swigluFusion && jobs.count == 2, jobs.allSatisfy({ $0.w.type == .q4_K && $0.bias == nil }),
               jobs[0].w.rowCount == jobs[1].w.rowCount, jobs[0].out !== jobs[1].out, dotRows * 2 * dotSubgroups <= 64 {
                pending = .pair(jobs[0], jobs[1])
                return
            }
            for (i, job) in jobs.enumerated() { emitMatmul(job, residual: nil, barrierAfter: i == jobs.count - 1) }
            return
        }
        // The input rounded once per activation grid the weights need (as the CPU quantizes it once per type).
        var inputs: [Int: GPUBuffer] = [:]
        var qx: GPUBuffer?   // and as packed int8 for matvec_q8x, where the fused producer wrote it
        if roundsActivations {
            let modes = Set(items.compactMap { Self.roundingMode($0.weight.type) })
            // Fused with the pending op that produced x (one grid only).
            if modes.count == 1, let mode = modes.first, n == batch.rows {
                let blockSize = mode == 0 ? 32 : 256
                switch pending {
                case let .norm(nx, nw, eps, no) where no === x && x.columns % blockSize == 0:
                    pending = .none
                    do {
                        let r = try roundedBuffer(mode, bytes: n * x.columns * 4)
                        let q = try int8Input(mode: mode, n: n, k: x.columns, items: items)
                        let perGroup = max(1, rmsQuantWorkgroupSize / device.subgroupSize)
                        let blocks = x.columns / blockSize
                        dispatch("rms_quant", [nx.buffer, nw.buffer, no.buffer, r, q ?? dummy],
                                 [UInt32(x.columns), eps.bitPattern, UInt32(mode), q == nil ? 0 : 1],
                                 groups: ((blocks + perGroup - 1) / perGroup, batch.rows, 1))
                        inputs[mode] = r
                        qx = q
                    } catch { deferredError = error; return }
                case let .attention(j) where j.out === x && x.columns % blockSize == 0 && j.heads * j.headDim == x.columns
                    && (blockSize % j.headDim == 0 || j.headDim % blockSize == 0) && blockSize / j.headDim <= 8:
                    pending = .none
                    do {
                        let r = try roundedBuffer(mode, bytes: n * x.columns * 4)
                        let q = mergePacksInt8 ? try int8Input(mode: mode, n: n, k: x.columns, items: items) : nil
                        emitAttentionMerge(j, mode: mode, rounded: r, int8: q)
                        inputs[mode] = r
                        qx = q
                    } catch { deferredError = error; return }
                case let .merge(m) where m.out === x && x.columns % blockSize == 0 && m.heads * m.headDim == x.columns
                    && (blockSize % m.headDim == 0 || m.headDim % blockSize == 0) && blockSize / m.headDim <= 8 && m.splits <= 128:
                    pending = .none
                    do {
                        let r = try roundedBuffer(mode, bytes: n * x.columns * 4)
                        let q = mergePacksInt8 ? try int8Input(mode: mode, n: n, k: x.columns, items: items) : nil
                        dispatch("attention_merge_quant", [m.part, m.out.buffer, r, q ?? dummy],
                                 [UInt32(m.heads), UInt32(m.headDim), UInt32(m.splits), UInt32(m.out.columns), UInt32(m.offset), UInt32(mode),
                                  q == nil ? 0 : 1],
                                 groups: (x.columns / blockSize, batch.rows, 1))
                        inputs[mode] = r
                        qx = q
                    } catch { deferredError = error; return }
                case let .swiglu(g, u, o) where o === x && x.columns % blockSize == 0:
                    pending = .none
                    do {
                        let r = try roundedBuffer(mode, bytes: n * x.columns * 4)
                        let q = try int8Input(mode: mode, n: n, k: x.columns, items: items)
                        let blocks = n * x.columns / blockSize
                        let perGroup = max(1, workgroupSize / device.subgroupSize)
                        let (gx, gy) = grid((blocks + perGroup - 1) / perGroup)
                        dispatch("swiglu_quant", [g.buffer, u.buffer, o.buffer, r, q ?? dummy], [UInt32(blocks), UInt32(mode), q == nil ? 0 : UInt32(x.columns)],
                                 groups: (gx, gy, 1))
                        inputs[mode] = r
                        qx = q
                    } catch { deferredError = error; return }
                default: break
                }
            }
            flushPending()
            for item in items {
                guard let mode = Self.roundingMode(item.weight.type), inputs[mode] == nil else { continue }
                let r: GPUBuffer
                do { r = try roundedBuffer(mode, bytes: n * x.columns * 4) } catch { deferredError = error; return }
                let blocks = n * x.columns / (mode == 0 ? 32 : 256)
                // Q8_K blocks: a workgroup per block (quantize_k), which also writes the int8 copy where a product
                // reads it (e.g. the o projection after prefill attention); Q8_0 blocks: an invocation per block.
                let (gx, gy) = grid(mode == 1 ? blocks : (blocks + workgroupSize - 1) / workgroupSize)
                if mode == 1 {
                    let q: GPUBuffer?
                    do { q = quantizeWritesInt8 && n > 1 && x.columns % 256 == 0 ? try int8Input(mode: 1, n: n, k: x.columns, items: items) : nil }
                    catch { deferredError = error; return }
                    dispatch("quantize_k", [x.buffer, r, q ?? dummy], [UInt32(blocks), 1, q == nil ? 0 : UInt32(x.columns)],
                             groups: (gx, gy, 1), barrierAfter: false)
                    if q != nil { qx = q }
                } else {
                    dispatch("quantize_act", [x.buffer, r], [UInt32(blocks), UInt32(mode)], groups: (gx, gy, 1), barrierAfter: false)
                }
                inputs[mode] = r
            }
            if !inputs.isEmpty { pendingBarrier = true }
        } else {
            flushPending()
        }
        let jobs = items.map { item in
            let w = item.weight as! VulkanWeight
            var job = MatJob(w: w, input: Self.roundingMode(w.type).flatMap { inputs[$0] } ?? x.buffer,
                             bias: item.bias as? VulkanWeight, out: item.output as! VulkanActivations, n: n, k: x.columns)
            if usesDot(w) { job.qx = qx }
            return job
        }
        // A single matmul waits for a possible add of its output into the residual.
        if fuses && jobs.count == 1 {
            pending = .matmul(jobs[0])
            return
        }
        // q, k, v of a decode step on int8 input wait for their ropes and the KV store (see rope, storeKV).
        if fuses && ropeStoreFusion && jobs.count == 3 && n == 1 && batch.rows == 1 && dotRows % 2 == 0
            && jobs.allSatisfy({ $0.qx != nil && $0.w.rowCount % 2 == 0 }) {
            pending = .qkv(jobs, [])
            return
        }
        for (i, job) in jobs.enumerated() { emitMatmul(job, residual: nil, barrierAfter: i == jobs.count - 1) }
    }

    private func emitMatmul(_ job: MatJob, residual: GPUBuffer?, barrierAfter: Bool) {
        emitMatmulBody(job, residual: residual, barrierAfter: barrierAfter)
        // K-split products of this group (dispatched without barriers between them): one barrier, then
        // their reductions (splitk_reduce.comp) in the order of the products.
        if barrierAfter && !splitReduces.isEmpty {
            pendingBarrier = true
            let reduces = splitReduces
            splitReduces = []
            splitOffset = 0
            emitSplitReduces(reduces)
        }
    }

    /// The reductions of a group's K-split products (splitk_reduce.comp), after the group's barrier, in the order of
    /// the products, one dispatch each (they run side by side), the last followed by a barrier. (Up to three products
    /// per dispatch gave the same bits and no measurable gain on an H200: BENCHMARKS.md, session 8.)
    func emitSplitReduces(_ reduces: [SplitReduce]) {
        for (i, r) in reduces.enumerated() {
            let count = r.m * r.n
            let (gx, gy) = grid((count + workgroupSize - 1) / workgroupSize)
            dispatch("splitk_reduce", [r.scratch, r.out, r.bias ?? dummy, r.residual ?? dummy],
                     [UInt32(r.m), UInt32(r.n), UInt32(r.splits), r.flags, UInt32(r.offset)],
                     groups: (gx, gy, 1), barrierAfter: i == reduces.count - 1, label: "splitk reduce \(r.m)x\(r.n) /\(r.splits)")
        }
    }

    /// A K-split product's reduction, recorded after the barrier that ends its group.
    struct SplitReduce { let scratch: GPUBuffer, out: GPUBuffer, bias: GPUBuffer?, residual: GPUBuffer?, m: Int, n: Int, splits: Int, flags: UInt32, offset: Int }
    private var splitReduces: [SplitReduce] = []
    /// Next free float of splitScratch in the current group of products.
    private var splitOffset = 0
    /// Partial sums of K-split products (splits × n × M floats each, one region per product of a group).
    private var splitScratch: GPUBuffer?
    /// Scratch buffers replaced by a larger one: kept alive, since recorded steps (and their replays) bind them.
    private var retiredScratch: [GPUBuffer] = []

    private func emitMatmulBody(_ job: MatJob, residual: GPUBuffer?, barrierAfter: Bool) {
        let w = job.w, n = job.n
        let flags: UInt32 = (job.bias == nil ? 0 : 1) | (residual == nil ? 0 : 2)
        let buffers = [w.buffer, job.input, job.out.buffer, job.bias?.buffer ?? dummy, residual ?? dummy]
        /// A matmul_cm / matmul_cmd product over a (x, y) grid of tiles: one dispatch into the output, or with splits > 1
        /// (grid z) partial sums into the split scratch, which splitk_reduce adds after the group's barrier.
        func tileProduct(_ name: String, input: GPUBuffer, grid: (Int, Int), splits: Int, kLen: Int, label: String) {
            guard splits > 1 else {
                dispatch(name, [w.buffer, input, job.out.buffer, job.bias?.buffer ?? dummy, residual ?? dummy],
                         [UInt32(w.rowCount), UInt32(w.rowLength), UInt32(n), UInt32(w.rowBytes), flags, UInt32(w.rowLength), 0],
                         groups: (grid.0, grid.1, 1), barrierAfter: barrierAfter, label: label)
                return
            }
            let need = splitOffset + splits * n * w.rowCount
            if (splitScratch?.size ?? 0) < need * 4 + 16 {
                do {
                    if let old = splitScratch { retiredScratch.append(old) }
                    splitScratch = try GPUBuffer(ctx, size: max(need * 4, 16 << 20) + 16, hostVisible: false, use: .scratch)
                    invalidateSkips()
                } catch { deferredError = error; return }
            }
            let scratch = splitScratch!
            dispatch(name, [w.buffer, input, scratch, dummy, dummy],
                     [UInt32(w.rowCount), UInt32(w.rowLength), UInt32(n), UInt32(w.rowBytes), 4, UInt32(kLen), UInt32(splitOffset)],
                     groups: (grid.0, grid.1, splits), barrierAfter: false, label: label)
            splitReduces.append(SplitReduce(scratch: scratch, out: job.out.buffer, bias: job.bias?.buffer, residual: residual,
                                            m: w.rowCount, n: n, splits: splits, flags: flags, offset: splitOffset))
            splitOffset = need
        }
        if n == 1, let q = job.qx {
            // Decode on integer dot products with x already packed as int8 (matvec_q8.comp -DQX): dotRows
            // rows per workgroup, or (Q4_K with dotSubgroupRows, -DSGROWS) dotRows rows per subgroup.
            let sg = dotSubgroupRows && w.type == .q4_K
            let perGroup = sg ? dotRows * dotSubgroups : dotRows
            let (gx, gy) = grid((w.rowCount + perGroup - 1) / perGroup)
            let kind = sg ? "sg_" : ""
            dispatch("matvec_q8x_" + kind + Self.shaderSuffix(w.type),
                     [w.buffer, q, job.out.buffer, job.bias?.buffer ?? dummy, residual ?? dummy, dummy, dummy],
                     [UInt32(w.rowCount), UInt32(w.rowLength), UInt32(w.rowBytes), flags, 0],
                     groups: (gx, gy, 1), barrierAfter: barrierAfter,
                     label: "matvec q8x \(sg ? "sg " : "")\(Self.shaderSuffix(w.type)) \(w.rowCount)x\(w.rowLength)")
            return
        }
        if n == 1 && dotRoundsX && usesDot(w) && job.k == w.rowLength {
            // Decode on integer dot products (matvec_q8.comp), dotRows rows per workgroup.
            let (gx, gy) = grid((w.rowCount + dotRows - 1) / dotRows)
            let normFlags: UInt32 = job.norm == nil ? 0 : (4 | (job.norm?.output == nil ? 0 : 8))
            dispatch("matvec_q8_" + Self.shaderSuffix(w.type),
                     buffers + [job.norm?.weight ?? dummy, job.norm?.output ?? dummy],
                     [UInt32(w.rowCount), UInt32(w.rowLength), UInt32(w.rowBytes), flags | normFlags, (job.norm?.eps ?? 0).bitPattern],
                     groups: (gx, gy, 1), barrierAfter: barrierAfter,
                     label: "matvec q8 \(Self.shaderSuffix(w.type)) \(w.rowCount)x\(w.rowLength)\(job.norm == nil ? "" : " +norm")")
            return
        }
        if n == 1 {
            // Decode: mat-vec (matvec.comp), matvecRows rows per workgroup.
            let perGroup = matvecRows
            let (gx, gy) = grid((w.rowCount + perGroup - 1) / perGroup)
            let xs = matvecSharedX && w.type == .q4_K && w.rowLength <= 4096
            dispatch(xs ? "matvec_xs_q4_K" : Self.matvecNames[w.type]!, buffers,
                     [UInt32(w.rowCount), UInt32(w.rowLength), UInt32(w.rowBytes), flags, UInt32(perGroup)],
                     groups: (gx, gy, 1), barrierAfter: barrierAfter,
                     label: "matvec \(Self.shaderSuffix(w.type)) \(w.rowCount)x\(w.rowLength)")
            return
        }
        if n >= 2, let q = job.qx, usesDot(w), job.k == w.rowLength, let nc = mcDotShape(n), !takesDirect(w, n: n) {
            // Batched decode on integer dot products, x already packed as n rows of int8 (matvec_q8_mc.comp).
            let (gx, gy) = grid((w.rowCount + mcDotRows - 1) / mcDotRows)
            dispatch("matvec_q8_mc_" + Self.shaderSuffix(w.type) + "@\(mcDotRows).\(nc).\(mcDotPreload ? 1 : 0)", [w.buffer, q, job.out.buffer, job.bias?.buffer ?? dummy, residual ?? dummy],
                     [UInt32(w.rowCount), UInt32(w.rowLength), UInt32(w.rowBytes), flags, UInt32(n), UInt32(Self.int8RowWords(w.rowLength))],
                     groups: (gx, gy, (n + nc - 1) / nc), barrierAfter: barrierAfter,
                     label: "matvec q8mc \(Self.shaderSuffix(w.type)) \(w.rowCount)x\(w.rowLength) x\(n)")
            return
        }
        if takesDirect(w, n: n), let qx = job.qx, job.k == w.rowLength, let alay = directLayout(), case let nt = (n + 15) / 16,
           case let name = "matmul_cmd_\(Self.shaderSuffix(w.type))#\(nt).\(alay).\(cmDirectAblation).\(cmDirectHalf2 ? 1 : 0)",
           cmPipeline(name) {
            // Batched decode on cooperative matrices with the weight fragments built in registers (matmul_cmd.comp),
            // 64 rows × 16·nt columns per workgroup, K split as matmul_cm's decode tiles.
            var shape = Self.cmDirectShape
            shape.nt = nt
            let (splits, kLen) = cmSplit(shape, m: w.rowCount, k: w.rowLength, n: n, target: n > 32 ? cmDirectSplitTargetWide : cmDirectSplitTarget)
            tileProduct(name, input: qx, grid: ((w.rowCount + 63) / 64, 1), splits: splits, kLen: kLen,
                  label: "matmul cmd /\(splits) \(Self.shaderSuffix(w.type)) \(w.rowCount)x\(w.rowLength) x\(n)")
            return
        }
        if let shape = cmShape(w, n: n), case let xi8 = cmReadsInt8(w, n: n) && job.qx != nil && job.k == w.rowLength,
           let full = cmPipelineName(w, shape: shape, n: n, int8X: xi8), cmPipeline(full) {
            // Cooperative-matrix mat-mat with a tile shape for this column count (matmul_cm.comp), X from the
            // int8 copy where xi8.
            let (splits, kLen) = cmSplit(shape, m: w.rowCount, k: w.rowLength, n: n)
            let input = xi8 ? job.qx! : job.input
            // With a K split: partial sums into the scratch, added by splitk_reduce.
            tileProduct(full, input: input, grid: ((w.rowCount + shape.rows - 1) / shape.rows, (n + shape.columns - 1) / shape.columns),
                  splits: splits, kLen: kLen,
                  label: "matmul cm\(cmPacks(n) ? " pk" : "")\(xi8 ? " i8x" : "") \(shape.rows)x\(shape.columns)\(splits > 1 ? " /\(splits)" : "") \(Self.shaderSuffix(w.type)) \(w.rowCount)x\(w.rowLength)")
            return
        }
        let subgroups = dotSubgroups
        if n <= multiColumnMax && multiColumnRows * Self.multiColumnGroup * subgroups <= 1024 {
            // Batched decode (2...multiColumnMax rows): the multi-column mat-vec (matvec.comp -DMC),
            // multiColumnRows rows per workgroup, columns in groups of 8 over z.
            let perGroup = multiColumnRows
            let (gx, gy) = grid((w.rowCount + perGroup - 1) / perGroup)
            dispatch(Self.matvecMCNames[w.type]!, buffers,
                     [UInt32(w.rowCount), UInt32(w.rowLength), UInt32(w.rowBytes), flags, UInt32(perGroup), UInt32(n)],
                     groups: (gx, gy, (n + Self.multiColumnGroup - 1) / Self.multiColumnGroup), barrierAfter: barrierAfter,
                     label: "matvec mc \(Self.shaderSuffix(w.type)) \(w.rowCount)x\(w.rowLength)")
            return
        }
        // A device that lists the extension but cannot build the pipeline: the f32 tiles instead.
        let coopName = (coopTile == 2 ? Self.coop2Names : Self.coopNames)[w.type]!
        if n > 8 && tiles && cooperativeMatrix && (try? pipeline(coopName)) == nil { cooperativeMatrix = false }
        if n > 8 && tiles && cooperativeMatrix {
            // Prefill on cooperative matrices (matmul_coop.comp): 64 × 64 tiles (coop2: 64 × 128), f16 operands.
            let tn = coopTile == 2 ? 128 : 64
            dispatch(coopName, buffers,
                     [UInt32(w.rowCount), UInt32(w.rowLength), UInt32(n), UInt32(w.rowBytes), flags],
                     groups: ((w.rowCount + 63) / 64, (n + tn - 1) / tn, 1), barrierAfter: barrierAfter,
                     label: "matmul coop \(Self.shaderSuffix(w.type)) \(w.rowCount)x\(w.rowLength)")
            return
        }
        if n > 8 && tiles {
            // Prefill: shared-memory tiles of 64 rows × 64 columns (matmul_tiled.comp).
            dispatch(Self.tiledNames[w.type]!, buffers,
                     [UInt32(w.rowCount), UInt32(w.rowLength), UInt32(n), UInt32(w.rowBytes), flags],
                     groups: ((w.rowCount + 63) / 64, (n + 63) / 64, 1), barrierAfter: barrierAfter,
                     label: "matmul tiled \(Self.shaderSuffix(w.type)) \(w.rowCount)x\(w.rowLength)")
            return
        }
        let (gx, gy) = grid(w.rowCount)
        dispatch(Self.matmulNames[w.type]!, buffers,
                 [UInt32(w.rowCount), UInt32(w.rowLength), UInt32(n), UInt32(w.rowBytes), flags],
                 groups: (gx, gy, (n + 7) / 8), barrierAfter: barrierAfter,
                 label: "matmul \(Self.shaderSuffix(w.type)) \(w.rowCount)x\(w.rowLength)")
    }

    /// Decode mat-vecs of Q4_K / Q6_K weights on integer dot products (matvec_q8.comp: x rounded to the
    /// Q8_K grid in each workgroup, 4 × int8 dot products) where the device has
    /// VK_KHR_shader_integer_dot_product and activations are rounded (env SHARD_VK_NO_DP=1: off, the
    /// float mat-vec). Numerically the same as the rounding pass + float mat-vec, to f32 rounding.
    public var dotProducts = false { didSet { invalidateSkips() } }
    /// matvec_q8.comp rounds x itself in every workgroup (and the norm / swiglu fusions below apply)
    /// instead of reading the int8 copy its producer wrote (env SHARD_VK_DP_ROUNDX=1). Off: on an H200
    /// every workgroup re-rounding x cost more than the dot products saved (BENCHMARKS.md).
    public var dotRoundsX = false { didSet { invalidateSkips() } }
    /// Q4_K mat-vecs on int8 input with one subgroup per dotRows rows (matvec_q8.comp -DSGROWS: no
    /// cross-subgroup reduction; env SHARD_VK_DP_SG=0: off, the workgroup per row pair). On an H200
    /// (kernel-bench) 1.1–1.25× faster on 4096 × 4096 and 11008 × 4096, ~3% slower on 4096 × 11008.
    public var dotSubgroupRows = true { didSet { invalidateSkips() } }
    /// The Q4_K q/k/v mat-vecs with the rope + KV store epilogue also a subgroup per row pair
    /// (matvec_q8x_sg_rope_q4_K; env SHARD_VK_DP_SG_ROPE=1). Off: not yet measured on a GPU.
    public var dotRopeSubgroupRows = false { didSet { invalidateSkips() } }
    /// Units per lane SGROWS loads before using them (its UPL; env SHARD_VK_DP_UPL): 2 beat 4 and 8 on
    /// the 7B's 11008 × 4096 (12.3 against 13.1 and 14.7 µs, H200).
    public private(set) var dotUnitsPerLane = 2
    /// Rows per workgroup of matvec_q8.comp (env SHARD_VK_DP_ROWS). 2: on an H200 it was as fast as or
    /// faster than 4 and 8 on the 7B's shapes alone and in decode (BENCHMARKS.md).
    public private(set) var dotRows = 2
    /// A pending RMSNorm is applied by the integer-dot mat-vecs that read its output (each workgroup
    /// normalizes x itself; env SHARD_VK_NO_NORM_FUSE=1: rms_norm dispatched on its own).
    public var normFusion = true { didSet { invalidateSkips() } }
    /// Decode gate and up mat-vecs followed by a swiglu of their outputs run as one matvec_q8 PAIR
    /// dispatch with the swiglu in its epilogue (env SHARD_VK_NO_SWIGLU_FUSE=1: off).
    public var swigluFusion = true { didSet { invalidateSkips() } }
    /// Largest row length matvec_q8.comp holds in shared memory (its MAXK).
    static let dotMaxK = 16384

    func usesDot(_ w: VulkanWeight) -> Bool {
        dotProducts && roundsActivations && (w.type == .q4_K || w.type == .q6_K)
            && w.rowLength % 256 == 0 && w.rowLength <= Self.dotMaxK && dotRows * dotSubgroups <= 64
    }
    /// An int8 copy of a decode input for matvec_q8x (K bytes + K/256 f32 scales) or, for a step of
    /// 2...mcDotMax rows, of its n rows for matvec_q8_mc (row r at word r · int8RowWords(K)), or of n rows
    /// for matmul_cm's packed tiles (cmReadsInt8), when the grid is Q8_K's and an item will read it; nil
    /// otherwise (the producer then writes none).
    private func int8Input(mode: Int, n: Int, k: Int, items: [MatmulItem]) throws -> GPUBuffer? {
        guard mode == 1, n == batch.rows, items.contains(where: { usesDot($0.weight as! VulkanWeight) }) else { return nil }
        guard n == 1 || mcDotShape(n) != nil
              || items.contains(where: { let w = $0.weight as! VulkanWeight; return w.rowLength == k && cmReadsInt8(w, n: n) }) else { return nil }
        let bytes = n * Self.int8RowWords(k) * 4
        if (int8Buffer?.size ?? 0) < bytes + 16 {
            // The old buffer stays alive: recorded steps (and their cached descriptor sets) bind it.
            if let old = int8Buffer { retiredScratch.append(old) }
            int8Buffer = try GPUBuffer(ctx, size: max(bytes, 1 << 20) + 16, hostVisible: false)
            invalidateSkips()
        }
        return int8Buffer
    }
    private var int8Buffer: GPUBuffer?
    /// quantize_k (the rounding of an input no fused op produced) also writes the int8 copy for the products of 2+
    /// rows that read it — the o projection after prefill attention (env SHARD_VK_QK_I8=0: f32 rounded values only,
    /// as before; one-row steps keep their float mat-vec there).
    public var quantizeWritesInt8 = true { didSet { invalidateSkips() } }
    /// 32-bit words per row of an int8 copy: K int8 bytes, then K/256 f32 scales, padded to 16 bytes
    /// (quant.glsl's qx_stride).
    static func int8RowWords(_ k: Int) -> Int { (k / 4 + k / 256 + 3) & ~3 }
    /// Batched decode steps of 2...mcDotMax rows run their Q4_K / Q6_K products on integer dot products
    /// (matvec_q8_mc.comp: mcDotRows weight rows × up to mcDotColumns columns per workgroup, each weight
    /// unit loaded once for all its columns), reading the n-row int8 copy the fused producers write,
    /// instead of matmul_cm / the float multi-column mat-vec (env SHARD_VK_MC8_MAX; 0 or 1: off). 16: on
    /// an H200 (7B Q4_K_M, bench --concurrency) it beat matmul_cm without the K split at 4 streams (2.3×)
    /// and 16 (1.12×) and lost at 32 (0.84×) and 64 (0.69×): its time grows with the columns (BENCHMARKS.md).
    public var mcDotMax = 16 { didSet { invalidateSkips() } }
    /// ... and up to this many rows only where matmul_cm's K-split decode tiles are available (cooperative
    /// matrices, cmSplitTarget > 0; env SHARD_VK_MC8_SPLIT_MAX): on an H200 those beat matvec_q8_mc at 16
    /// columns (kernel-bench: 4096 × 4096 Q4_K 31–34 against 37–39 µs, 11008 × 4096 64–69 against 87–91;
    /// 16 streams 1004 against 875 tok/s) and lose at 8 (23 against 34 µs).
    public var mcDotSplitMax = 8 { didSet { invalidateSkips() } }
    /// Most columns per matvec_q8_mc workgroup (NC; env SHARD_VK_MC8_COLS): a step of n rows uses
    /// min(this, n rounded up to a power of 2) and ceil(n / NC) workgroups per row group. 8: 16 and 4
    /// were slower at 16 and 64 streams, as were 4 rows per workgroup (SHARD_VK_MC8_ROWS=4).
    public var mcDotColumns = 8 { didSet { invalidateSkips() } }
    /// Weight rows per matvec_q8_mc workgroup (R; env SHARD_VK_MC8_ROWS).
    public var mcDotRows = 2 { didSet { invalidateSkips() } }
    /// matvec_q8_mc loads a unit's x words of all its columns before the dot products (XPRE; env
    /// SHARD_VK_MC8_PRE=1). Off: on an H200 it did not pay (Q4_K the same, Q6_K 4096x11008 x16 110 µs
    /// instead of 97; BENCHMARKS.md).
    public var mcDotPreload = false { didSet { invalidateSkips() } }
    /// NC of matvec_q8_mc for an n-row step, or nil where it does not apply.
    func mcDotShape(_ n: Int) -> Int? {
        let splitTiles = cmSplitTarget > 0 && cmEnabled && cooperativeMatrix && tiles
        guard n >= 2, n <= mcDotMax, !splitTiles || n <= mcDotSplitMax, dotProducts, roundsActivations else { return nil }
        var nc = 1
        while nc < n && nc < mcDotColumns { nc *= 2 }
        return mcDotRows * nc * dotSubgroups <= 1024 ? nc : nil
    }
    /// attention_merge_quant also packs the o projection's input as int8 for matvec_q8x (env SHARD_VK_NO_O_DP=1: off,
    /// the o projection on the float mat-vec as before).
    public var mergePacksInt8 = true { didSet { invalidateSkips() } }

    /// Subgroups per mat-vec workgroup (matvec_q8's partial sums per row and subgroup go through red_sh[64]).
    var dotSubgroups: Int { max(1, matvecGroupSize / device.subgroupSize) }

    /// Rows each mat-vec workgroup computes together (specialization constant R of matvec.comp;
    /// env SHARD_VK_MATVEC_ROWS).
    public private(set) var matvecRows = 4
    /// Steps of 2...multiColumnMax rows (batched decode) use the multi-column mat-vec (matvec.comp
    /// -DMC: each weight row loaded and decoded once for 8 columns) instead of matmul.comp (n <= 8) or
    /// the prefill tiles (env SHARD_VK_MULTICOL_MAX; 0 or 1: off). 16: on an H200 (7B Q4_K_M, many
    /// streams) it beat the other paths at 4 and 16 rows and lost to the tiles at 64 (BENCHMARKS.md).
    public var multiColumnMax = 16 { didSet { invalidateSkips() } }
    /// Rows per workgroup of the multi-column mat-vec (R of matvec.comp -DMC; env SHARD_VK_MULTICOL_ROWS, 1...4).
    public private(set) var multiColumnRows = 2
    /// Columns per workgroup of the multi-column mat-vec (NC in matvec.comp).
    static let multiColumnGroup = 8

    // MARK: matmul_cm tile shapes

    /// A tile shape of matmul_cm.comp: 4 subgroups as rs (rows) × cs (columns) × ks (K split), each
    /// multiplying rm × nt matrices of 16 × 16, over kc of K per step.
    public struct CMShape: Equatable, Sendable {
        public var rm: Int, nt: Int, rs: Int, ks: Int, kc: Int
        public init(rm: Int, nt: Int, rs: Int, ks: Int, kc: Int = 32) { (self.rm, self.nt, self.rs, self.ks, self.kc) = (rm, nt, rs, ks, kc) }
        var cs: Int { 4 / (rs * ks) }
        var rows: Int { 16 * rm * rs }
        var columns: Int { 16 * nt * cs }
        var key: String { "\(rm).\(nt).\(rs).\(ks).\(kc)" }
        /// Within the shader's fixed register and shared-memory arrays (MAXA, MAXB, Ash, Bsh).
        var valid: Bool {
            let st = kc * ks + 8
            return (1...4).contains(rm) && (1...4).contains(nt) && [1, 2, 4].contains(rs) && [1, 2, 4].contains(ks) && [32, 64].contains(kc)
                && rs * ks <= 4 && rows * kc * ks / 16 <= 256 && columns * kc * ks / 4 <= 2048 && rows * st <= 5120 && columns * st <= 9216
        }
        /// Within the packed kernel's (matmul_cm_pk_*) arrays: MAXA 4, Ash4 and Bsh4 of 9216 f16 each, MAXX 8
        /// X units of 8 k; up to 128 k per step.
        var validPacked: Bool {
            let st = kc * ks + 8
            return (1...4).contains(rm) && (1...4).contains(nt) && [1, 2, 4].contains(rs) && [1, 2, 4].contains(ks) && [32, 64, 128].contains(kc)
                && rs * ks <= 4 && rows * kc * ks / 16 <= 512 && columns * kc * ks / 8 <= 1024 && rows * st <= 9216 && columns * st <= 9216
        }
        /// "rm,nt,rs,ks[,kc]" (an env knob's value; nt 0: from the column count, checked as 1). Shapes only the
        /// packed kernel holds (128 k per step) are accepted; the unpacked one's products then take the other paths.
        init?(_ text: String) {
            let v = text.split(separator: ",").compactMap { Int($0) }
            guard v.count == 4 || v.count == 5 else { return nil }
            self.init(rm: v[0], nt: max(1, v[1]), rs: v[2], ks: v[3], kc: v.count == 5 ? v[4] : 32)
            guard valid || validPacked else { return nil }
        }
    }
    /// The formats with a matmul_cm variant: those checked on a GPU so far (kernel-bench against the f32
    /// paths; the shader's generic dq4 path for the other formats compiles but has not run on one).
    static let cmNames: [GGMLType: String] = [.q4_K: "matmul_cm_q4_K", .q6_K: "matmul_cm_q6_K"]
    /// matmul_cm.comp for steps of cmMinColumns or more columns where the device has cooperative
    /// matrices (env SHARD_VK_CM=0: off, the paths before it: multi-column mat-vec, matmul_coop).
    public var cmEnabled = true { didSet { invalidateSkips() } }
    /// Fewest columns that take matmul_cm (fewer: the multi-column mat-vec; env SHARD_VK_CM_MIN).
    public var cmMinColumns = 2 { didSet { invalidateSkips() } }
    /// Up to this many columns a decode shape (cmDecode with nt = columns / 16 rounded up), above it cmPrefill.
    public var cmDecodeMax = 64 { didSet { invalidateSkips() } }
    /// Decode tile: rm, rs, ks (nt from the column count; env SHARD_VK_CM_DEC="rm,0,rs,ks"). 16 rows per
    /// workgroup with K split 4 ways: 256 workgroups for a 4096-row matrix (the SMs need several each).
    public var cmDecode = CMShape(rm: 1, nt: 1, rs: 1, ks: 4) { didSet { invalidateSkips() } }
    /// Prefill tile (env SHARD_VK_CM_PRE="rm,nt,rs,ks"): 64 rows × 128 columns. On an H200 (4096 × 4096 ×
    /// 512, kernel-bench) it beat 128 × 64, 128 × 128, 64 × 64 and 32 × 64 for Q4_K, and was within 6% of
    /// 128 × 64 for Q6_K (BENCHMARKS.md).
    public var cmPrefill = CMShape(rm: 2, nt: 4, rs: 2, ks: 1) { didSet { invalidateSkips() } }
    /// Q4_K's prefill tile, nil: cmPrefill (env SHARD_VK_CM_PRE_Q4K="rm,nt,rs,ks,kc"; SHARD_VK_CM_PRE alone sets
    /// both): 64 × 128 with 64 k per step, 101 against 93 TFLOP/s on 4096 × 4096 × 512 (kernel-bench, H200),
    /// where Q6_K was slower with 64 k.
    public var cmPrefillQ4K: CMShape? = CMShape(rm: 2, nt: 4, rs: 2, ks: 1, kc: 64) { didSet { invalidateSkips() } }
    /// Q6_K prefill tiles load each 16 weight bytes as two aligned 16-byte loads, shifted (matmul_cm.comp
    /// Q6W), instead of 4–5 word loads (env SHARD_VK_CM_Q6W=0: off). Decode shapes keep the word loads.
    public var cmQ6Wide = true { didSet { invalidateSkips() } }
    /// matmul_cm's packed variant (matmul_cm_pk_*, -DPACK): shared tiles written with 16-byte stores of f16
    /// pairs instead of 2-byte stores, and X from the int8 copy per cmInt8X (env SHARD_VK_CM_PACK=0: off,
    /// matmul_cm as before, f32 X). Same operands and results as the unpacked kernel.
    public var cmPacked = true { didSet { invalidateSkips() } }
    /// The packed tiles read X from the n-row int8 copy the fused producers (rms_quant, swiglu_quant,
    /// attention_merge_quant) then write (Q8_K blocks, 4× fewer bytes than the f32 copy, decoded to exactly
    /// its values): 0 never (f32 X), 1 for decode products (≤ cmDecodeMax columns), 2 for every product
    /// (env SHARD_VK_CM_I8X). Products whose input has no such producer keep f32 X.
    public var cmInt8X = 2 { didSet { invalidateSkips() } }
    /// How the packed tiles give coopMatLoadNV the row stride of their uvec4 shared arrays: 1 in uvec4s
    /// (the array's element type), 0 in f16 values (env SHARD_VK_CM_SU; kernel-bench's relative error
    /// tells which the driver reads).
    public var cmStrideUnits = 1 { didSet { invalidateSkips() } }
    /// Prefill products (more than cmDecodeMax columns) on the packed kernel too (env SHARD_VK_CM_PACK_PRE=0:
    /// the unpacked one, f32 X, for them).
    public var cmPackPrefill = true { didSet { invalidateSkips() } }
    /// Whether n-column products take the packed kernel.
    func cmPacks(_ n: Int) -> Bool { cmPacked && (n <= cmDecodeMax || cmPackPrefill) }
    /// Whether a tile shape fits the kernel n-column products take.
    func fits(_ shape: CMShape, n: Int) -> Bool { cmPacks(n) ? shape.validPacked : shape.valid }
    /// Whether an n-column matmul_cm product with w would read X from the int8 copy (where there is one).
    func cmReadsInt8(_ w: VulkanWeight, n: Int) -> Bool {
        cmPacks(n) && cmInt8X > 0 && (cmInt8X == 2 || n <= cmDecodeMax) && usesDot(w) && cmShape(w, n: n) != nil
    }
    /// The matmul_cm pipeline of a product: "matmul_cm_<type>#rm.nt.rs.ks.kc[.1]" (".1": Q6W, Q6_K prefill),
    /// or with cmPacked "matmul_cm_pk_<type>#rm.nt.rs.ks.kc.Q6W.XI8.SU" (specialization constants 1...8).
    func cmPipelineName(_ w: VulkanWeight, shape: CMShape, n: Int, int8X: Bool) -> String? {
        guard let name = Self.cmNames[w.type] else { return nil }
        let q6w = w.type == .q6_K && n > cmDecodeMax && cmQ6Wide
        if cmPacks(n) {
            return "matmul_cm_pk_" + name.dropFirst("matmul_cm_".count) + "#" + shape.key + ".\(q6w ? 1 : 0).\(int8X ? 1 : 0).\(cmStrideUnits)"
        }
        return name + "#" + shape.key + (q6w ? ".1" : "")
    }

    private var cmFailed: Set<String> = []
    /// Whether matmul_cm's pipeline for this shape builds (a failure is reported once on stderr and
    /// that shape's products take the other paths).
    private func cmPipeline(_ name: String) -> Bool {
        if cmFailed.contains(name) { return false }
        do { _ = try pipeline(name); return true } catch {
            cmFailed.insert(name)
            fputs("VulkanBackend: \(name) unavailable (\(error)); using the other mat-mat paths\n", stderr)
            return false
        }
    }

    /// Decode products (2...cmDecodeMax columns) of matmul_cm split K over workgroups so that the grid has
    /// about this many workgroups (env SHARD_VK_CM_SPLIT; 0: off, cmDecode's tiles without a split as
    /// before), each writing partial sums that splitk_reduce.comp adds in a fixed order (deterministic: a
    /// product's result does not depend on what else runs). With it the decode tile is cmDecodeSplit:
    /// more weight rows per workgroup, so that each X tile (f32, n columns) is read by fewer workgroups.
    /// 256: on an H200 (7B Q4_K_M, bench --concurrency, two calls) 2106–2201 tok/s at 64 streams and 1032
    /// at 16 against 2024–2099 and 1004 with 512 (GPU per step 28.1–28.2 against 28.9 ms at 64); kernel-bench:
    /// 4 splits of a 4096-row product (47.6 µs at 64 columns) beat 8 (51.0) and 16 (56.3).
    public var cmSplitTarget = 256 { didSet { invalidateSkips() } }
    /// Q4_K and Q6_K decode products (`takesDirect`) with the int8 copy of X take matmul_cmd.comp (weight
    /// fragments built in registers, no shared weight tiles; ahead of matvec_q8_mc and matmul_cm) where the device's
    /// cooperative-matrix layout is the one it assumes (coopmat_layout.comp, probed once; `takesDirect`); env
    /// SHARD_VK_CMD=0: off, matvec_q8_mc / matmul_cm as before. On an H200 (7B Q4_K_M, 16 streams): GPU per step
    /// 10.6–10.7 ms against 13.1 (BENCHMARKS.md, session 7).
    public var cmDirect = true { didSet { invalidateSkips() } }
    /// matmul_cmd's K split aims at this many workgroups (env SHARD_VK_CMD_SPLIT; cmSplitTarget's role for it).
    /// 512: at 16 streams on an H200 GPU per step 12.49 ms against 12.81 with 1024, 13.19 with 256, 13.47 with 2048.
    public var cmDirectSplitTarget = 512 { didSet { invalidateSkips() } }
    /// The same for products of more than 32 columns (env SHARD_VK_CMD_SPLIT_WIDE): 256 — on an H200 at 64 streams GPU
    /// per step 22.79–22.82 ms against 23.13–23.15 with 512 (at 16 streams 256 lost: 10.06 against 9.93); another
    /// call, 22.91–22.94 against 23.32.
    public var cmDirectSplitTargetWide = 256 { didSet { invalidateSkips() } }
    /// Most columns matmul_cmd takes (env SHARD_VK_CMD_MAX, up to 64; more: matmul_cm). 64: on an H200 at 64 streams
    /// GPU per step 23.26 ms against 23.85–23.92 with 32 (in the model at ~62 columns: Q6_K 4096 × 11008 88 µs against
    /// matmul_cm's 121, Q4_K 4096 × 11008 74 against 79, 4096² 34 against 34, 11008 × 4096 72 against 68 — hence
    /// cmDirectTallMax). At 32 streams: 32 against 16 columns, GPU per step 15.4 against 17.0 ms.
    public var cmDirectMax = 64 { didSet { invalidateSkips() } }
    /// Most columns a Q4_K product of 8192+ rows takes matmul_cmd with (env SHARD_VK_CMD_TALL_MAX): above it
    /// matmul_cm's 128-row tall tile was faster on an H200 (72 against 68 µs for 11008 × 4096 at ~62 columns).
    public var cmDirectTallMax = 32 { didSet { invalidateSkips() } }
    /// Fewest columns a Q4_K product takes matmul_cmd with (env SHARD_VK_CMD_MIN; fewer: matvec_q8_mc). 8: two shards
    /// on two H200s at 16 streams (8-row micro-batches) 1626–1664 tok/s with 8-row Q4_K products on matmul_cmd against
    /// 1496–1502 on matvec_q8_mc. Q6_K: cmDirectMinQ6K.
    public var cmDirectMin = 8 { didSet { invalidateSkips() } }
    /// Whether an n-column product with w takes matmul_cmd: Q4_K or Q6_K, cmDirectMin (Q6_K: cmDirectMinQ6K)…cmDirectMax columns (the shader holds 64),
    /// the int8 copy of X, and a device whose probed layout is the kernel's (probed on the first call).
    func takesDirect(_ w: VulkanWeight, n: Int) -> Bool {
        cmDirect && (w.type == .q4_K || (w.type == .q6_K && cmDirectQ6K)) && n >= max(2, w.type == .q6_K ? cmDirectMinQ6K : cmDirectMin)
            && n <= min(64, cmDecodeMax, cmDirectMax) && (w.type != .q4_K || w.rowCount < 8192 || n <= cmDirectTallMax) && cooperativeMatrix
            && cmReadsInt8(w, n: n) && directLayout() != nil
    }
    /// Q6_K products take matmul_cmd too (env SHARD_VK_CMD_Q6=0: matvec_q8_mc / matmul_cm as before). On an H200
    /// at 16 streams: GPU per step 10.07 ms against 10.66 (Q6_K 4096 × 11008 at 16 columns 48.6 µs against matmul_cm's
    /// 78.1, 4096² 23.4 against 32.6).
    public var cmDirectQ6K = true { didSet { invalidateSkips() } }
    /// Fewest columns a Q6_K product takes matmul_cmd with (env SHARD_VK_CMD_MIN_Q6). 8: at 8 streams GPU per step
    /// 8.23 ms against 8.37 with the 8-column Q6_K products on matvec_q8_mc (9).
    public var cmDirectMinQ6K = 8 { didSet { invalidateSkips() } }
    /// matmul_cmd builds its weight values with half2 arithmetic (H2; env SHARD_VK_CMD_H2=0: in f32, rounded once,
    /// as matmul_cm's operands). On an H200 at 16 streams: GPU per step 10.68–10.71 ms against 11.05 (f32 values) and
    /// 13.16–13.17 (matmul_cm); outputs 4.4e-4 from the f32 tiles against 2.9e-4 (the scale and min rounded to f16).
    public var cmDirectHalf2 = true { didSet { invalidateSkips() } }
    /// matmul_cmd's ablation bits (timing experiments only: wrong results; env SHARD_VK_CMD_ABL).
    var cmDirectAblation = 0 { didSet { invalidateSkips() } }
    /// The probe's answer: nil not yet probed, .some(nil) the kernel does not apply.
    var directLayoutProbe: UInt32?? = nil
    /// The tile matmul_cmd covers (64 rows, 128 k per step) for cmSplit.
    static let cmDirectShape = CMShape(rm: 1, nt: 1, rs: 4, ks: 1, kc: 128)
    /// Decode tile with the K split (env SHARD_VK_CM_DECS="rm,0,rs,ks[,kc]"): 64 weight rows (4 subgroups
    /// along rows) × 16·⌈n/16⌉ columns, 64 k per step.
    public var cmDecodeSplit = CMShape(rm: 1, nt: 1, rs: 4, ks: 1, kc: 64) { didSet { invalidateSkips() } }
    /// The split decode tile of matrices of 8192+ rows (env SHARD_VK_CM_DECS_TALL="rm,0,rs,ks[,kc]"; "0":
    /// cmDecodeSplit for them too): 128 rows, 32 k per step. On an H200 (kernel-bench, 64 columns) the
    /// 11008 × 4096 Q4_K product took 97 µs with it (6 splits) against 112 with the 64-row tile (3 splits),
    /// where 4096-row products were faster on 64 rows (47.6–51 against 52 µs).
    public var cmDecodeSplitTall: CMShape? = CMShape(rm: 2, nt: 1, rs: 4, ks: 1, kc: 32) { didSet { invalidateSkips() } }
    /// Q4_K's split decode tiles (nil: cmDecodeSplit / cmDecodeSplitTall; env SHARD_VK_CM_DECS_Q4K /
    /// SHARD_VK_CM_DECS_TALL_Q4K, "0": nil; SHARD_VK_CM_DECS / _DECS_TALL alone set both formats): 64 rows with
    /// 128 k per step, and 128 rows with 64 k for 8192+ rows. Only the packed kernel holds them: the unpacked
    /// one (SHARD_VK_CM_PACK=0) steps down to 64 / 32 k, i.e. cmDecodeSplit / cmDecodeSplitTall. On an H200
    /// (kernel-bench, one call) 4096 × 4096 at 16 columns 32.2 against 37.0 µs, 4096 × 11008 at 64 90.0 against
    /// 101.1, 11008 × 4096 at 16 / 64 56.0 / 79.9 against 65.8 / 88.0; Q6_K was slower with 128 k (BENCHMARKS.md).
    public var cmDecodeSplitQ4K: CMShape? = CMShape(rm: 1, nt: 1, rs: 4, ks: 1, kc: 128) { didSet { invalidateSkips() } }
    public var cmDecodeSplitTallQ4K: CMShape? = CMShape(rm: 2, nt: 1, rs: 4, ks: 1, kc: 64) { didSet { invalidateSkips() } }
    /// Splits of K over workgroups for a matmul_cm product of shape (rows, columns) and the k each covers
    /// (a multiple of the shape's k per step): (1, k) for prefill shapes, with cmSplitTarget 0, or where
    /// the grid is large enough already.
    /// `target`: the workgroup count to aim at (default cmSplitTarget; matmul_cmd passes its own).
    func cmSplit(_ shape: CMShape, m: Int, k: Int, n: Int, target: Int? = nil) -> (splits: Int, kLen: Int) {
        let goal = target ?? cmSplitTarget
        guard goal > 0, n <= cmDecodeMax else { return (1, k) }
        let step = shape.kc * shape.ks
        let groups = ((m + shape.rows - 1) / shape.rows) * ((n + shape.columns - 1) / shape.columns)
        let want = min((goal + groups - 1) / groups, (k + step - 1) / step)
        guard want > 1 else { return (1, k) }
        let kLen = ((k + want - 1) / want + step - 1) / step * step
        return ((k + kLen - 1) / kLen, kLen)
    }

    /// The matmul_cm shape for an n-column product with w, or nil for the other paths.
    func cmShape(_ w: VulkanWeight, n: Int) -> CMShape? {
        guard cmEnabled, cooperativeMatrix, tiles, n >= max(2, cmMinColumns), w.rowLength % 16 == 0, Self.cmNames[w.type] != nil else { return nil }
        var shape = (w.type == .q4_K ? cmPrefillQ4K : nil) ?? cmPrefill
        if n <= cmDecodeMax {
            let q4 = w.type == .q4_K
            shape = cmSplitTarget <= 0 ? cmDecode
                : w.rowCount >= 8192 ? (q4 ? cmDecodeSplitTallQ4K : nil) ?? cmDecodeSplitTall ?? (q4 ? cmDecodeSplitQ4K : nil) ?? cmDecodeSplit
                : (q4 ? cmDecodeSplitQ4K : nil) ?? cmDecodeSplit
            shape.nt = min(4, (n + 15) / 16)
            // Fewer columns than the decode shape covers (cs > 1): one column group suffices.
            if shape.cs > 1 { shape.nt = min(shape.nt, max(1, (n + 16 * shape.cs - 1) / (16 * shape.cs))) }
            // 64 (128) k per step where the tiles fit (Bsh), else 32.
            if !fits(shape, n: n) && shape.kc == 128 { shape.kc = 64 }
            if !fits(shape, n: n) && shape.kc == 64 { shape.kc = 32 }
        }
        return fits(shape, n: n) ? shape : nil
    }
    /// Q4_K units (16 weight bytes of each row) per invocation loaded together (matvec.comp U; env SHARD_VK_MATVEC_UNITS).
    public private(set) var matvecUnits = 1
    /// Q4_K mat-vecs over at most 4096 columns stage x in shared memory (env SHARD_VK_MATVEC_XSH=1).
    public private(set) var matvecSharedX = false

    /// quantize_act mode for a weight type: 0 = Q8_0/Q8_1 grid (blocks of 32), 1 = Q8_K (256), nil = f32.
    static func roundingMode(_ t: GGMLType) -> Int? {
        switch QuantDot.activationType(for: t) {
        case .q8_0, .q8_1: 0
        case .q8_K: 1
        default: nil
        }
    }

    /// The step's cos/sin table for `params` (computed on the host as CPUKernels.rope does): buffer, float offset.
    private func ropeTable(_ params: RopeParams) throws -> (GPUBuffer, Int) {
        let key = RopeKey(dims: params.dims, base: params.base.bitPattern)
        if let t = ropeTables[key] { return (t.buffer, t.offset / 4) }
        // Per row: cos[half], sin[half].
        let half = params.dims / 2
        let rows = batch.rows, bytes = rows * 2 * half * 4
        let (buffer, offset) = try arena.allocate(ctx, bytes: bytes)
        let fill = { (raw: UnsafeMutableRawPointer, batch: StepBatch) in
            let t = raw.bindMemory(to: Float.self, capacity: batch.rows * 2 * half)
            let thetaScale = powf(params.base, -2 / Float(params.dims))
            for r in 0..<batch.rows {
                var theta = Float(batch.positions[r])
                for i in 0..<half {
                    t[r * 2 * half + i] = cosf(theta)
                    t[r * 2 * half + half + i] = sinf(theta)
                    theta *= thetaScale
                }
            }
        }
        let batch = self.batch
        try record(bytes: bytes, to: buffer, offset: offset, fill: { fill($0, batch) }, refill: fill)
        ropeTables[key] = (buffer, offset)
        return (buffer, offset / 4)
    }

    public func rope(_ x: Activations, heads: Int, headDim: Int, params: RopeParams) {
        let opStart = timesHost ? ContinuousClock.now : nil
        defer { if let opStart { noteOp("rope", opStart) } }
        let x = x as! VulkanActivations
        let half = params.dims / 2
        guard half > 0, params.dims <= headDim, heads * headDim <= x.columns else {
            flushPending()
            return fail("rope: dims \(params.dims), \(heads) heads of \(headDim) in \(x.columns) columns")
        }
        let job = RopeJob(x: x, heads: heads, headDim: headDim, params: params)
        // The rope of q, then of k, after the q, k, v mat-vecs: kept for their epilogues (non-neox only:
        // a rotated pair is then two adjacent rows, both in one workgroup).
        if case let .qkv(jobs, ropes) = pending, ropes.count < 2, x === jobs[ropes.count].out, !params.neox,
           headDim % 2 == 0, heads * headDim == jobs[ropes.count].w.rowCount, ropes.allSatisfy({ $0.params == params && $0.headDim == headDim }) {
            pending = .qkv(jobs, ropes + [job])
            return
        }
        if fuses, case let .rope(jobs) = pending, jobs.count == 1, jobs[0].params == params, jobs[0].headDim == headDim, jobs[0].x !== x {
            pending = .rope(jobs + [job])
            return
        }
        flushPending()
        pending = .rope([job])
        if !fuses { flushPending() }
    }

    private func emitRope(_ j: RopeJob) {
        do {
            let (table, offset) = try ropeTable(j.params)
            let half = j.params.dims / 2
            let count = batch.rows * j.heads * half
            let (gx, gy) = grid((count + workgroupSize - 1) / workgroupSize)
            dispatch("rope", [j.x.buffer, table],
                     [UInt32(batch.rows), UInt32(j.heads), UInt32(j.headDim), UInt32(half), j.params.neox ? 1 : 0,
                      UInt32(j.x.columns), UInt32(offset)], groups: (gx, gy, 1))
        } catch { deferredError = error }
    }

    public func storeKV(k: Activations, v: Activations, storage: KVStorage, layer: Int) {
        let opStart = timesHost ? ContinuousClock.now : nil
        defer { if let opStart { noteOp("storeKV", opStart) } }
        let k = k as! VulkanActivations, v = v as! VulkanActivations, s = storage as! VulkanKVStorage
        guard k.columns == s.shape.kvDim, v.columns == s.shape.kvDim, let step = stepBuffer else {
            flushPending()
            return fail("storeKV: k/v of \(k.columns)/\(v.columns) columns for kvDim \(s.shape.kvDim)")
        }
        if s.shape.window > 0 && batch.windowPageTables.count != batch.pageTables.count {
            flushPending()
            return fail("storeKV into a sliding-window store needs the step's ring page tables")
        }
        let kv = [UInt32(s.shape.kvDim), UInt32(s.shape.pageSize), UInt32(s.vOffsetWords),
                  UInt32(stepPositions), UInt32(stepTableIndex), UInt32(tableStart(s))]
        if s.shape.type == .q8_0 {
            // Q8_0 blocks straddle words, so one workgroup writes a row's whole slot (no rope fusion).
            flushPending()
            dispatch("store_kv_q8", [s.layers[layer], k.buffer, v.buffer, step], kv, groups: (batch.rows, 1, 1))
            return
        }
        if case let .qkv(jobs, ropes) = pending, ropes.count == 2, jobs[1].out === k, jobs[2].out === v,
           jobs[2].w.rowCount == v.columns, jobs[1].w.rowCount == k.columns {
            // matvec_q8x_rope: q rotated, k rotated and stored, v stored, by the mat-vecs' epilogues.
            pending = .none
            do {
                let (table, offset) = try ropeTable(ropes[0].params)
                let rope = [UInt32(ropes[0].headDim), UInt32(ropes[0].params.dims / 2), UInt32(offset), UInt32(s.shape.pageSize),
                            UInt32(s.vOffsetWords), UInt32(stepPositions), UInt32(stepTableIndex), UInt32(tableStart(s))]
                for (mode, job) in jobs.enumerated() {
                    let w = job.w
                    // Q4_K with dotRopeSubgroupRows: a subgroup per row pair (SGROWS), else a workgroup per pair.
                    let sg = dotRopeSubgroupRows && w.type == .q4_K
                    let perGroup = sg ? dotRows * dotSubgroups : dotRows
                    let (gx, gy) = grid((w.rowCount + perGroup - 1) / perGroup)
                    dispatch(sg ? "matvec_q8x_sg_rope_q4_K" : "matvec_q8x_rope_" + Self.shaderSuffix(w.type),
                             [w.buffer, job.qx!, job.out.buffer, job.bias?.buffer ?? dummy, dummy, dummy, dummy, s.layers[layer], step, table],
                             [UInt32(w.rowCount), UInt32(w.rowLength), UInt32(w.rowBytes), job.bias == nil ? 0 : 1, 0, UInt32(mode)] + rope,
                             groups: (gx, gy, 1), barrierAfter: mode == 2,
                             label: "matvec q8x \(sg ? "sg " : "")\(["rope", "rope+store k", "store v"][mode]) \(Self.shaderSuffix(w.type)) \(w.rowCount)x\(w.rowLength)")
                }
            } catch { deferredError = error }
            return
        }
        if case let .rope(jobs) = pending, jobs.count == 2, jobs[1].x === k, jobs[0].x !== v, jobs[1].x !== v,
           jobs[0].headDim % 2 == 0, jobs[1].heads * jobs[1].headDim == k.columns {
            pending = .none
            let (qj, kj) = (jobs[0], jobs[1])
            do {
                let (table, offset) = try ropeTable(qj.params)
                dispatch("rope_store", [qj.x.buffer, k.buffer, v.buffer, s.layers[layer], step, table],
                         kv + [UInt32(qj.heads), UInt32(kj.heads), UInt32(qj.headDim), UInt32(qj.params.dims / 2),
                               qj.params.neox ? 1 : 0, UInt32(qj.x.columns), UInt32(offset)],
                         groups: (max(qj.heads, kj.heads), batch.rows, 1))
            } catch { deferredError = error }
            return
        }
        flushPending()
        dispatch("store_kv", [s.layers[layer], k.buffer, v.buffer, step], kv, groups: (batch.rows, 1, 1))
    }

    /// Splits of decode attention (attn_decode.comp): a fixed count, so the grid does not depend on
    /// the KV length (env SHARD_VK_ATTN_SPLITS).
    public var attentionSplits: Int { didSet { invalidateSkips() } }
    /// More than 16 rows: attention.comp (one position per invocation) instead of attn_decode.comp
    /// (env SHARD_VK_PREFILL_ATTN_OLD=1).
    public var prefillAttentionPerPosition = false { didSet { invalidateSkips() } }
    /// Decode attention merges in its last workgroups (attn_decode_merge, which also packs the o
    /// projection's int8 input; env SHARD_VK_ATTN_FUSED_MERGE=0: attention_merge_quant dispatched after it).
    /// On: on an H200 it saved ~80 µs of a 4.8 ms decode step (a dispatch and a barrier per layer; BENCHMARKS.md).
    public var attentionFusedMerge = true { didSet { invalidateSkips() } }
    /// Splits attention_merge_quant loads together per output (MB; env SHARD_VK_MERGE_BATCH, 1: one at a time).
    public private(set) var mergeBatch = 8
    /// Decode q, k, v mat-vecs on int8 input rotate q and k and store k and v in their epilogues
    /// (matvec_q8x_rope: no rope_store dispatch; f16 KV, non-neox rope; env SHARD_VK_NO_ROPE_FUSE=1: off).
    public var ropeStoreFusion = true { didSet { invalidateSkips() } }
    /// attn_decode loads the page-table entries of its split's first 4 pages before its loop
    /// (PREFETCH_PAGES; env SHARD_VK_ATTN_PREFETCH=1). Off: on an H200 it made attn_decode ~0.6 µs
    /// slower per call, not faster (BENCHMARKS.md): the page lookups were not what it waits for.
    public private(set) var attentionPrefetchPages = false
    /// Positions each attn_decode subgroup loads together (NP; env SHARD_VK_ATTN_POS).
    public private(set) var attentionPositions = 2

    public func attention(q: Activations, storage: KVStorage, layer: Int, params p: AttentionParams, into out: Activations) {
        let opStart = timesHost ? ContinuousClock.now : nil
        defer { if let opStart { noteOp("attention", opStart) } }
        flushPending()
        let q = q as! VulkanActivations, o = out as! VulkanActivations, s = storage as! VulkanKVStorage
        guard let step = stepBuffer, p.headDim % 2 == 0, p.headDim <= min(256, 8 * attentionWorkgroupSize),
              p.heads % p.kvHeads == 0, p.kvHeads * p.headDim <= s.shape.kvDim,
              q.columns >= p.heads * p.headDim, o.columns == q.columns
        else { return fail("attention: \(p) with q of \(q.columns) columns, kvDim \(s.shape.kvDim)") }
        let q8 = s.shape.type == .q8_0, window = s.shape.window
        if window > 0 && batch.windowPageTables.count != batch.pageTables.count {
            return fail("attention over a sliding-window store needs the step's ring page tables")
        }
        if q8 && p.headDim % 32 != 0 { return fail("attention over q8_0 KV needs a head dim that is a multiple of 32 (\(p.headDim))") }
        let push = [UInt32(s.shape.kvDim), UInt32(s.shape.pageSize), UInt32(s.vOffsetWords),
                    UInt32(stepPositions), UInt32(stepTableIndex), UInt32(tableStart(s)),
                    UInt32(p.heads), UInt32(p.heads / p.kvHeads), UInt32(p.headDim), UInt32(q.columns), p.scale.bitPattern]
        if prefillFlash && !prefillAttentionPerPosition && !q8 && window == 0 && batch.rows >= max(2, flashMinRows) && p.headDim % 4 == 0 && p.headDim <= 128,
           let name = flashPipeline(headDim: p.headDim), batchIsOneRun() {
            // Prefill (one sequence at consecutive positions): attn_prefill.comp, 32 query rows × a KV tile at a
            // time (attn_prefill_cm: 64 rows).
            flashDispatches += 1
            let tile = name == "attn_prefill_cm" ? 64 : 32
            dispatch(name, [s.layers[layer], q.buffer, o.buffer, step], push + [UInt32(batch.rows)],
                     groups: (p.heads, (batch.rows + tile - 1) / tile, 1), label: "attn prefill")
            return
        }
        // Batched decode steps (2+ rows, f16 KV): attn_decode_vec.comp, 16-byte K/V loads, several positions
        // per subgroup load, splits from the step's rows × heads and its longest context.
        if attentionVec && batch.rows >= attentionVecMinRows && !q8 && (batch.rows <= 16 || !prefillAttentionPerPosition), let (lp, cpl) = vecLanes(headDim: p.headDim) {
            let splits = vecSplits(rows: batch.rows, heads: p.heads)
            do {
                let (part, offset) = try attentionPartials(floats: batch.rows * p.heads * splits * (p.headDim + 2))
                let shape = "@\(lp).\(cpl).\(attentionVecPositions)"
                if window == 0 && attentionFusedMerge && batch.rows <= attentionVecFusedMaxRows && splits <= 128 && batch.rows * p.heads <= 65536 {
                    var job = AttentionJob(kv: s.layers[layer], q: q.buffer, step: step, part: part, offset: offset / 4,
                                           out: o, push: push, heads: p.heads, headDim: p.headDim, splits: splits)
                    job.name = "attn_decode_vec_merge" + shape
                    pending = .attention(job)
                    if !fuses { flushPending() }
                    return
                }
                dispatch("attn_decode_vec" + shape, [s.layers[layer], q.buffer, part, step],
                         push + [UInt32(splits), UInt32(offset / 4), 2, UInt32(window)], groups: (p.heads, batch.rows, splits),
                         label: "attn_decode_vec")
                pending = .merge(MergeJob(part: part, offset: offset / 4, out: o, heads: p.heads, headDim: p.headDim, splits: splits))
                if !fuses { flushPending() }
            } catch { deferredError = error }
            return
        }
        // attn_decode.comp for any row count: each row's positions split into shares (flash-decoding;
        // `attentionSplits` for up to 16 rows, fewer as rows fill the GPU, one from 256 rows), then merged.
        let sg = device.subgroupSize
        let maxPairs = Self.decodeMaxPairs(sg)
        let subgroups = max(1, decodeAttentionWorkgroupSize / sg)
        if p.headDim / 2 <= maxPairs * sg && subgroups * p.headDim / 2 <= 1024 && (batch.rows <= 16 || !prefillAttentionPerPosition || q8 || window > 0) {
            let splits = max(1, min(attentionSplits, attentionSplits * 16 / batch.rows))
            do {
                let (part, offset) = try attentionPartials(floats: batch.rows * p.heads * splits * (p.headDim + 2))
                if !q8 && window == 0 && attentionFusedMerge && batch.rows <= 16 && splits <= 128 && batch.rows * p.heads <= 65536 {
                    pending = .attention(AttentionJob(kv: s.layers[layer], q: q.buffer, step: step, part: part, offset: offset / 4,
                                                      out: o, push: push, heads: p.heads, headDim: p.headDim, splits: splits))
                    if !fuses { flushPending() }
                    return
                }
                dispatch(q8 ? "attn_decode_q8" : "attn_decode", [s.layers[layer], q.buffer, part, step],
                         push + [UInt32(splits), UInt32(offset / 4), 2, UInt32(window)], groups: (p.heads, batch.rows, splits))
                // The merge waits for a following matmul of `out`, which may take its rounding along.
                pending = .merge(MergeJob(part: part, offset: offset / 4, out: o, heads: p.heads, headDim: p.headDim, splits: splits))
                if !fuses { flushPending() }
            } catch { deferredError = error }
            return
        }
        if q8 || window > 0 { return fail("attention over q8_0 KV or a sliding window runs only on attn_decode (head dim \(p.headDim), subgroup \(sg))") }
        dispatch("attention", [s.layers[layer], q.buffer, o.buffer, step, dummy], push + [0, 0],
                 groups: (p.heads, batch.rows, 1))
    }

    /// The step's region for decode attention's partial results (`floats` of them): buffer and byte offset. One
    /// region per step, shared by every layer: a layer's merge is done (a barrier) before the next layer's
    /// attention writes it; it grows (a new arena allocation) when a layer needs more.
    private func attentionPartials(floats: Int) throws -> (GPUBuffer, Int) {
        if stepPart == nil || stepPart!.bytes < floats * 4 {
            let (b, o) = try arena.allocate(ctx, bytes: floats * 4)
            stepPart = (b, o, floats * 4)
        }
        return (stepPart!.buffer, stepPart!.offset)
    }

    /// Prefill attention on attn_prefill.comp (tiled, online softmax) for steps of at least `flashMinRows`
    /// rows of one sequence at consecutive positions over f16 KV (env SHARD_VK_NO_FLASH=1: attn_decode.comp).
    public var prefillFlash = true { didSet { invalidateSkips() } }
    /// Fewest rows that take attn_prefill.comp (env SHARD_VK_FLASH_MIN; default 17: up to 16 rows are decode).
    public var flashMinRows = 17 { didSet { invalidateSkips() } }
    /// attn_prefill dispatches recorded so far (tests check that the kernel ran).
    public private(set) var flashDispatches = 0
    private var flashUnavailable = false
    /// Prefill attention on cooperative matrices (attn_prefill_cm.comp; env SHARD_VK_FLASH_CM=0: attn_prefill),
    /// where the device has them and the head dim is a multiple of 16 (H200, 7B, 512 tokens: 6.9 ms against
    /// attn_prefill's 9.1 and attn_decode's 24.1; BENCHMARKS.md).
    public var flashCoopMatrix = true { didSet { invalidateSkips() } }
    private var flashCMUnavailable = false
    /// attn_prefill_cm, attn_prefill (KV tiles of 32 positions, 40 KiB of shared memory) or attn_prefill_small
    /// (16, 29 KiB), or nil.
    private func flashPipeline(headDim: Int) -> String? {
        if flashCoopMatrix && cooperativeMatrix && !flashCMUnavailable && headDim % 16 == 0 && device.maxSharedMemory >= 36 * 1024 {
            if (try? pipeline("attn_prefill_cm")) != nil { return "attn_prefill_cm" }
            flashCMUnavailable = true
            fputs("VulkanBackend: attn_prefill_cm unavailable; using attn_prefill\n", stderr)
        }
        if flashUnavailable { return nil }
        let name = device.maxSharedMemory >= 41 * 1024 ? "attn_prefill" : "attn_prefill_small"
        if device.maxSharedMemory < 30 * 1024 || (try? pipeline(name)) == nil {
            flashUnavailable = true
            return nil
        }
        return name
    }
    /// The step's rows are one sequence at consecutive positions (what attn_prefill.comp requires).
    private func batchIsOneRun() -> Bool { Self.isOneRun(batch) }
    static func isOneRun(_ b: StepBatch) -> Bool {
        let pos = b.positions, ti = b.tableIndex
        guard let p0 = pos.first, let t0 = ti.first else { return false }
        for i in pos.indices where pos[i] != p0 + Int32(i) || ti[i] != t0 { return false }
        return true
    }

    /// Decode steps (of at least `attentionVecMinRows` rows) over f16 KV on attn_decode_vec.comp (env SHARD_VK_ATTN_VEC=0:
    /// attn_decode.comp as before; Q8_0 KV and head dims that are not a multiple of 8 always take attn_decode).
    public var attentionVec = true { didSet { invalidateSkips() } }
    /// Fewest rows of a step that take attn_decode_vec (env SHARD_VK_ATTN_VEC_MIN_ROWS; 2: one-row decode on
    /// attn_decode_merge as before). One row on an H200: 16.7 µs per layer against 21.7–23.5 at 512–768 positions,
    /// 11.2 against 13.5–14.1 at 16–128; decode after a 512-token prompt +1–3% (BENCHMARKS.md).
    public var attentionVecMinRows = 1 { didSet { invalidateSkips() } }
    /// Positions per lane group per attn_decode_vec iteration (NPV; env SHARD_VK_ATTN_VEC_POS).
    public var attentionVecPositions = 4 { didSet { invalidateSkips() } }
    /// attn_decode_vec's splits: enough for about this many workgroups (rows × heads × splits; env SHARD_VK_ATTN_VEC_WGS) …
    public var attentionVecWorkgroups = 2048 { didSet { invalidateSkips() } }
    /// … but no more than leave this many positions per split of the step's longest context, rounded up to a power
    /// of two (so that the step's commands change only where that bound does; env SHARD_VK_ATTN_VEC_MINPOS, 0: no bound),
    /// and at most `attentionSplits`.
    public var attentionVecMinPositions = 32 { didSet { invalidateSkips() } }
    /// Largest step that merges in attn_decode_vec's last workgroups (attn_decode_vec_merge; env SHARD_VK_ATTN_VEC_FUSED_MAX);
    /// larger ones dispatch attention_merge(_quant) after it.
    public var attentionVecFusedMaxRows = 64 { didSet { invalidateSkips() } }

    /// attn_decode_vec's lanes per position (LP, a power of two ≤ the subgroup size) and 16-byte chunks per lane
    /// (CPL ≤ 4) for this head dim, or nil (attn_decode.comp then).
    func vecLanes(headDim: Int) -> (lp: Int, cpl: Int)? {
        let sg = device.subgroupSize, chunks = headDim / 8
        guard headDim % 8 == 0, chunks > 0, headDim <= 256 else { return nil }
        let lp = min(sg, chunks & -chunks), cpl = chunks / lp
        let groups = max(1, decodeAttentionWorkgroupSize / sg) * (sg / lp)
        guard cpl <= 4, groups <= 64, groups * headDim / 2 <= 1024 else { return nil }
        return (lp, cpl)
    }

    /// attn_decode_vec's split count for this step (see attentionVecWorkgroups / attentionVecMinPositions).
    func vecSplits(rows: Int, heads: Int) -> Int {
        var splits = max(1, (attentionVecWorkgroups + rows * heads - 1) / max(1, rows * heads))
        if attentionVecMinPositions > 0 {
            let longest = Int(batch.positions.max() ?? 0) + 1
            var bucket = 1
            while bucket < longest { bucket *= 2 }
            splits = min(splits, max(1, bucket / attentionVecMinPositions))
        }
        return max(1, min(splits, attentionSplits, 128))
    }

    /// MAXP of attn_decode.comp: dim pairs per lane for head dims up to 256.
    static func decodeMaxPairs(_ subgroupSize: Int) -> Int { max(1, (128 + subgroupSize - 1) / subgroupSize) }

    public func swiglu(gate: Activations, up: Activations, into out: Activations) {
        let opStart = timesHost ? ContinuousClock.now : nil
        defer { if let opStart { noteOp("swiglu", opStart) } }
        let g = gate as! VulkanActivations, u = up as! VulkanActivations, o = out as! VulkanActivations
        if case let .pair(a, b) = pending, a.out === g, b.out === u, o === g {
            // matvec_q8 PAIR: gate and up rows in one workgroup, out = silu(gate) * up, up written too.
            pending = .none
            let w = a.w
            let (gx, gy) = grid((w.rowCount + dotRows - 1) / dotRows)
            let normFlags: UInt32 = a.norm == nil ? 0 : (4 | (a.norm?.output == nil ? 0 : 8))
            dispatch("matvec_q8_pair_q4_K",
                     [w.buffer, a.input, o.buffer, dummy, u.buffer, a.norm?.weight ?? dummy, a.norm?.output ?? dummy, b.w.buffer],
                     [UInt32(w.rowCount), UInt32(w.rowLength), UInt32(w.rowBytes), normFlags, (a.norm?.eps ?? 0).bitPattern],
                     groups: (gx, gy, 1), label: "matvec q8 pair+swiglu q4_K \(w.rowCount)x\(w.rowLength)\(a.norm == nil ? "" : " +norm")")
            return
        }
        flushPending()
        pending = .swiglu(g, u, o)
        if !fuses { flushPending() }
    }

    public func add(_ x: Activations, _ y: Activations) {
        let opStart = timesHost ? ContinuousClock.now : nil
        defer { if let opStart { noteOp("add", opStart) } }
        let x = x as! VulkanActivations, y = y as! VulkanActivations
        if case let .matmul(job) = pending, job.out === y, job.input !== x.buffer, job.out !== x,
           job.n == batch.rows, x.columns == y.columns {
            pending = .none
            emitMatmul(job, residual: x.buffer, barrierAfter: true)
            return
        }
        flushPending()
        let count = batch.rows * x.columns
        let (gx, gy) = grid((count + workgroupSize - 1) / workgroupSize)
        dispatch("add", [x.buffer, y.buffer], [UInt32(count)], groups: (gx, gy, 1))
    }

    public func copyRows(_ src: Activations, from srcRow: Int, to dst: Activations, at dstRow: Int, count: Int) {
        flushPending()
        let s = src as! VulkanActivations, d = dst as! VulkanActivations
        precondition(s.columns == d.columns)
        guard recording else { preconditionFailure("VulkanBackend: ops run between beginStep and endStep") }
        guard count > 0 else { return }
        barrierIfPending(transfer: true)
        let rowBytes = s.columns * 4
        emit(.copy(s.buffer, d.buffer, srcRow * rowBytes, dstRow * rowBytes, count * rowBytes))
        pendingBarrier = true
        pendingTransfer = true
    }
}

/// Monotonic seconds (no Foundation in this module).
enum DispatchTimeShim {
    static func now() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
    }
}

/// Bump allocator over a list of buffers (host-visible staging or device-local arena), reset each step.
/// Chunks are kept and reused; a request that does not fit moves to the next chunk (or a new one).
struct ChunkedAllocator {
    let hostVisible: Bool
    let use: MemoryUse
    private var chunks: [GPUBuffer] = []
    private var index = 0, offset = 0
    static let chunkBytes = 4 << 20
    static let alignment = 256

    init(hostVisible: Bool, use: MemoryUse) { self.hostVisible = hostVisible; self.use = use }

    mutating func reset() { index = 0; offset = 0 }

    mutating func allocate(_ ctx: VulkanContext, bytes: Int) throws -> (GPUBuffer, Int) {
        let bytes = max(bytes, 4)
        while index < chunks.count {
            if chunks[index].size - offset >= bytes {
                let at = offset
                offset = (offset + bytes + Self.alignment - 1) / Self.alignment * Self.alignment
                return (chunks[index], at)
            }
            index += 1
            offset = 0
        }
        let chunk = try GPUBuffer(ctx, size: max(Self.chunkBytes, bytes + 16), hostVisible: hostVisible, use: use)
        chunks.append(chunk)
        index = chunks.count - 1
        offset = (bytes + Self.alignment - 1) / Self.alignment * Self.alignment
        return (chunk, 0)
    }
}
