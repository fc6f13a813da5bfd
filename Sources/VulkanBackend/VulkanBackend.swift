// VulkanBackend: Shard's compute backend on any Vulkan 1.1+ device with subgroup arithmetic
// (NVIDIA/AMD/Intel GPUs; Mesa's lavapipe on CPUs, which the tests and CI use).
//
// Design
// - One submit per step. `beginStep` resets one primary command buffer; every op between
//   `beginStep` and `endStep` only *records* dispatches (and small buffer copies) into it, with a
//   global compute/transfer memory barrier before any command that follows a write (the q/k/v and
//   gate/up matmuls of one `matmuls` call run without barriers between them). `endStep` does the
//   single `vkQueueSubmit` and waits on a fence. `download` (after `endStep`) is a second, tiny
//   submit: a copy into a host-visible readback buffer.
// - Memory. Weights, activations and the KV cache are device-local buffers (one allocation each;
//   padded by 16 bytes so shaders may read a word past the end). Weights keep the tensor's raw GGUF
//   bytes (quantized blocks as in the file), uploaded through a host-visible staging buffer at load.
//   Per-step data (positions, page tables, token ids, rope cos/sin tables, uploaded hidden states)
//   is written into host-visible staging chunks while recording and copied on the GPU into
//   device-local arena chunks at its place in the command buffer; shaders only read device memory.
//   KV: per layer one buffer, K pages then V pages, f16 (`pageSize` positions × kvDim per page),
//   indexed through the step's page tables, like the CPU backend.
// - Pipelines are created lazily, one per shader (per weight format for matmul/embed), with
//   specialization constant 0 = workgroup size, chosen from the device's subgroup size (4 subgroups,
//   64...256 invocations; the attention tile is also bounded by the shared-memory limit). Sizes and
//   offsets go in push constants. Descriptor sets are cached per (pipeline, buffers) and reused
//   across steps (a model binds the same buffers every step).
// - Shaders: GLSL 450 in `Shaders/*.comp` (one op per file; `dequant.glsl` holds every format's
//   block decoding, `common.glsl` the reductions and the round-to-nearest-even f16 conversion).
//   `scripts/gen-shaders.sh` compiles them with glslc to SPIR-V, embedded as `[UInt32]` arrays in
//   `Generated/Shaders.swift`, which is committed: the GPU hosts have no glslc, and SwiftPM needs no
//   build-time tool. A test recompiles with glslc (where installed) and fails if the file is stale.
// - Numerics follow the CPU backend: weights dequantized with Dequant.row's arithmetic, f32
//   accumulation, K/V stored as f16 (round to nearest even), q rounded to f16 before q·k, rope
//   angles computed on the host exactly as CPUKernels.rope does. Before a quantized matmul the input
//   is rounded (quantize_act.comp) to the same 8-bit grid the CPU's int8 dot products use (Q8_0/Q8_1
//   blocks of 32, Q8_K blocks of 256, as llama.cpp), so one matmul matches the CPU to f32 rounding;
//   `roundsActivations = false` (or env SHARD_VK_F32_ACT=1) keeps plain f32 activations instead.
//   Remaining differences: summation order and attention's online softmax (~1e-6 relative), which
//   the 8-bit rounding occasionally amplifies (a flipped quant) to ~1% of logits on small models.
// - Workgroup size: 4 subgroups on GPUs (128 on NVIDIA); one subgroup on CPU devices (lavapipe),
//   where every barrier is a coroutine switch. Not thread-safe: one thread drives a backend.
// - Ops' errors (e.g. a pipeline that fails to build) are kept and thrown by `endStep`.
import CVulkan
import Compute
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

final class VulkanActivations: Activations {
    let buffer: GPUBuffer
    init(rowCapacity: Int, columns: Int, buffer: GPUBuffer) {
        self.buffer = buffer
        super.init(rowCapacity: rowCapacity, columns: columns)
    }
}

final class VulkanKVStorage: KVStorage {
    /// Per layer: K pages, then V pages (f16).
    let layers: [GPUBuffer]
    /// Where V starts in each layer's buffer, in 32-bit words.
    let vOffsetWords: Int
    init(shape: KVShape, layers: [GPUBuffer]) {
        self.layers = layers
        vOffsetWords = shape.pages * shape.pageSize * shape.kvDim / 2
        super.init(shape: shape)
    }
}

public final class VulkanBackend: ComputeBackend {
    public let kind = BackendKind.vulkan
    public let device: VulkanDeviceInfo
    public var deviceName: String { "\(device.name) (Vulkan \(device.apiVersion))" }

    /// Weight formats the matmul and embedding shaders read.
    public static let supportedTypes: Set<GGMLType> = [.f32, .f16, .q4_0, .q4_1, .q5_0, .q5_1, .q8_0, .q4_K, .q5_K, .q6_K]

    let ctx: VulkanContext
    private let descriptors: DescriptorCache
    private var pipelines: [String: Pipeline] = [:]
    /// Workgroup size of every shader but attention, and attention's (its tile of positions).
    let workgroupSize: Int
    let attentionWorkgroupSize: Int

    private var cmd: VkCommandBuffer?
    private var oneShot: VkCommandBuffer?
    private var recording = false
    private var pendingBarrier = false
    private var deferredError: Error?
    private var batch = StepBatch(positions: [], tableIndex: [], pageTables: [])

    /// Per-step host-visible staging chunks and device-local arena chunks (bump allocators reset by beginStep).
    private var staging = ChunkedAllocator(hostVisible: true)
    private var arena = ChunkedAllocator(hostVisible: false)
    /// This step's positions / table indices / page tables in the arena (word offsets in `stepBuffer`).
    private var stepBuffer: GPUBuffer?
    private var stepPositions = 0, stepTableIndex = 0, stepTableStart = 0
    private var ropeTables: [RopeKey: (buffer: GPUBuffer, offset: Int)] = [:]
    private struct RopeKey: Hashable { let dims: Int; let base: UInt32 }

    private let dummy: GPUBuffer
    /// Activations rounded to the 8-bit grids (index: quantize_act mode), reused by every matmul.
    private var rounded: [GPUBuffer?] = [nil, nil]

    /// Round activations to the 8-bit grid of the weight's int8 dot product before quantized
    /// matmuls, as the CPU backend and llama.cpp do (default). Off: plain f32 activations, which is
    /// closer to exact math but gives different logits (and greedy tokens on near-ties) than the CPU.
    public var roundsActivations = true
    private var readback: GPUBuffer?
    /// Positions per split of decode attention (default: 2 tiles; env SHARD_VK_ATTN_CHUNK, which also
    /// enables splitting on CPU devices, for tests).
    public var attentionSplitChunk: Int? = nil

    // MARK: profiling
    /// Per-dispatch GPU timestamps (a query pool around each dispatch), summed per op kind and phase
    /// (decode: steps of one row; prefill: more). Read with `profileReport()`. Costs a little per dispatch.
    public var profile = false
    private var queryPool: VkQueryPool?
    private static let maxQueries: UInt32 = 8192
    private var queryNames: [String] = []
    private var stepQuery = false
    /// (phase + op kind) → (dispatches, total ns); phase → (steps, ns from first to last timestamp).
    private var opStats: [String: (count: Int, ns: Double)] = [:]
    private var stepStats: [String: (count: Int, ns: Double)] = [:]

    private func profileBegin() {
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
    private func timed(_ name: String, _ body: () -> Void) {
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
        dummy = try GPUBuffer(ctx, size: 16, hostVisible: false)
        if let v = getenv("SHARD_VK_F32_ACT"), String(cString: v) == "1" { roundsActivations = false }
        if let v = getenv("SHARD_VK_ATTN_CHUNK"), let c = Int(String(cString: v)), c > 0 { attentionSplitChunk = c }
        cmd = try ctx.allocateCommandBuffer()
        oneShot = try ctx.allocateCommandBuffer()
    }

    deinit {
        if let device = ctx.device {
            vkDeviceWaitIdle(device)
            if queryPool != nil { vkDestroyQueryPool(device, queryPool, nil) }
        }
    }

    // MARK: resources

    public func loadWeight(_ tensor: GGUFTensorInfo, of file: GGUFFile) throws -> Weight {
        if tensor.shape.count >= 2 && !Self.supportedTypes.contains(tensor.type) {
            throw ComputeError("VulkanBackend: \(tensor.name) is \(tensor.type), which has no Vulkan kernel (supported: \(Self.supportedTypes.map { "\($0)" }.sorted()))")
        }
        let data = file.data(for: tensor)
        let buffer = try GPUBuffer(ctx, size: data.count + 16, hostVisible: false)
        try uploadNow(data, to: buffer)
        return VulkanWeight(tensor, buffer: buffer)
    }

    public func makeActivations(rowCapacity: Int, columns: Int) throws -> Activations {
        let buffer = try GPUBuffer(ctx, size: rowCapacity * columns * 4 + 16, hostVisible: false)
        try immediate { cmd in vkCmdFillBuffer(cmd, buffer.buffer, 0, VkDeviceSize(VK_WHOLE_SIZE), 0) }
        return VulkanActivations(rowCapacity: rowCapacity, columns: columns, buffer: buffer)
    }

    public func makeKVStorage(_ shape: KVShape) throws -> KVStorage {
        guard shape.kvDim % 2 == 0 else { throw ComputeError("VulkanBackend: kvDim \(shape.kvDim) must be even") }
        let bytes = 2 * shape.pages * shape.pageSize * shape.kvDim * 2
        let layers = try (0..<shape.layers).map { _ in try GPUBuffer(ctx, size: bytes + 16, hostVisible: false) }
        try immediate { cmd in
            for l in layers { vkCmdFillBuffer(cmd, l.buffer, 0, VkDeviceSize(VK_WHOLE_SIZE), 0) }
        }
        return VulkanKVStorage(shape: shape, layers: layers)
    }

    /// Copies `data` into the device-local `buffer` through a staging buffer (≤ 64 MiB at a time).
    private func uploadNow(_ data: UnsafeRawBufferPointer, to buffer: GPUBuffer, offset: Int = 0) throws {
        let chunk = min(max(data.count, 1), 64 << 20)
        let stage = try GPUBuffer(ctx, size: chunk, hostVisible: true)
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

    /// Records `body` into the one-shot command buffer, submits it and waits.
    private func immediate(_ body: (VkCommandBuffer?) -> Void) throws {
        try ctx.begin(oneShot)
        body(oneShot)
        barrier(oneShot, toHost: true)
        try ctx.submitAndWait(oneShot)
    }

    private func pipeline(_ name: String) throws -> Pipeline {
        if let p = pipelines[name] { return p }
        guard let (spirv, bindings) = Self.shaders[name] else { throw ComputeError("VulkanBackend: no shader \(name)") }
        // rms_norm: one workgroup per row, so a wide one on GPUs (decode normalizes a single row).
        let wg = name == "attention" ? attentionWorkgroupSize
            : name == "rms_norm" && device.type != "cpu" ? min(1024, max(workgroupSize, 512)) : workgroupSize
        let p = try Pipeline(ctx, name: name, spirv: spirv, bindings: bindings, specialization: [UInt32(wg)])
        pipelines[name] = p
        return p
    }

    static let shaders: [String: ([UInt32], Int)] = [
        "matmul_f32": (SPIRV.matmul_f32, 4), "matmul_f16": (SPIRV.matmul_f16, 4),
        "matmul_q4_0": (SPIRV.matmul_q4_0, 4), "matmul_q4_1": (SPIRV.matmul_q4_1, 4),
        "matmul_q5_0": (SPIRV.matmul_q5_0, 4), "matmul_q5_1": (SPIRV.matmul_q5_1, 4),
        "matmul_q8_0": (SPIRV.matmul_q8_0, 4), "matmul_q4_K": (SPIRV.matmul_q4_K, 4),
        "matmul_q5_K": (SPIRV.matmul_q5_K, 4), "matmul_q6_K": (SPIRV.matmul_q6_K, 4),
        "embed_f32": (SPIRV.embed_f32, 3), "embed_f16": (SPIRV.embed_f16, 3),
        "embed_q4_0": (SPIRV.embed_q4_0, 3), "embed_q4_1": (SPIRV.embed_q4_1, 3),
        "embed_q5_0": (SPIRV.embed_q5_0, 3), "embed_q5_1": (SPIRV.embed_q5_1, 3),
        "embed_q8_0": (SPIRV.embed_q8_0, 3), "embed_q4_K": (SPIRV.embed_q4_K, 3),
        "embed_q5_K": (SPIRV.embed_q5_K, 3), "embed_q6_K": (SPIRV.embed_q6_K, 3),
        "rms_norm": (SPIRV.rms_norm, 3), "rope": (SPIRV.rope, 2), "store_kv": (SPIRV.store_kv, 4),
        "attention": (SPIRV.attention, 5), "attention_merge": (SPIRV.attention_merge, 2), "swiglu": (SPIRV.swiglu, 3), "add": (SPIRV.add, 2),
        "quantize_act": (SPIRV.quantize_act, 2), "quantize_k": (SPIRV.quantize_k, 2),
        "matvec_f32": (SPIRV.matvec_f32, 4), "matvec_f16": (SPIRV.matvec_f16, 4),
        "matvec_q4_0": (SPIRV.matvec_q4_0, 4), "matvec_q4_1": (SPIRV.matvec_q4_1, 4),
        "matvec_q5_0": (SPIRV.matvec_q5_0, 4), "matvec_q5_1": (SPIRV.matvec_q5_1, 4),
        "matvec_q8_0": (SPIRV.matvec_q8_0, 4), "matvec_q4_K": (SPIRV.matvec_q4_K, 4),
        "matvec_q5_K": (SPIRV.matvec_q5_K, 4), "matvec_q6_K": (SPIRV.matvec_q6_K, 4),
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

    public func beginStep(_ batch: StepBatch) throws {
        precondition(!recording, "beginStep inside a step")
        self.batch = batch
        staging.reset()
        arena.reset()
        ropeTables.removeAll(keepingCapacity: true)
        deferredError = nil
        pendingBarrier = false
        try ctx.begin(cmd)
        recording = true
        profileBegin()
        // positions | tableIndex | tableStart | pages of every table
        let rows = batch.rows, tables = batch.pageTables.count
        let words = 2 * rows + tables + batch.pageTables.reduce(0) { $0 + $1.count }
        let (buffer, offset) = try arena.allocate(ctx, bytes: words * 4)
        let base = offset / 4
        stepBuffer = buffer
        stepPositions = base
        stepTableIndex = base + rows
        stepTableStart = base + 2 * rows
        try record(bytes: words * 4, to: buffer, offset: offset) { raw in
            let w = raw.bindMemory(to: Int32.self, capacity: words)
            for r in 0..<rows {
                w[r] = batch.positions[r]
                w[rows + r] = batch.tableIndex[r]
            }
            var next = base + 2 * rows + tables
            for (t, table) in batch.pageTables.enumerated() {
                w[2 * rows + t] = Int32(next)
                for (i, page) in table.enumerated() { w[next - base + i] = page }
                next += table.count
            }
        }
    }

    public func endStep() throws {
        precondition(recording, "endStep without beginStep")
        recording = false
        if let e = deferredError {
            _ = vkEndCommandBuffer(cmd)
            deferredError = nil
            throw e
        }
        barrier(cmd, toHost: true)
        try ctx.submitAndWait(cmd)
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

    private func barrierIfPending() {
        if pendingBarrier { barrier(cmd); pendingBarrier = false }
    }

    /// Stages `bytes` (written by `fill`) and records their copy to `dst` at `offset`.
    private func record(bytes: Int, to dst: GPUBuffer, offset: Int, fill: (UnsafeMutableRawPointer) -> Void) throws {
        guard bytes > 0 else { return }
        let (src, srcOffset) = try staging.allocate(ctx, bytes: bytes)
        fill(src.mapped! + srcOffset)
        barrierIfPending()
        var region = VkBufferCopy(srcOffset: VkDeviceSize(srcOffset), dstOffset: VkDeviceSize(offset), size: VkDeviceSize(bytes))
        vkCmdCopyBuffer(cmd, src.buffer, dst.buffer, 1, &region)
        pendingBarrier = true
    }

    /// Records one dispatch. `barrierAfter: false` lets independent dispatches follow without a barrier.
    private func dispatch(_ name: String, _ buffers: [GPUBuffer], _ push: [UInt32], groups: (Int, Int, Int),
                          barrierAfter: Bool = true, label: String? = nil) {
        guard recording else { preconditionFailure("VulkanBackend: ops run between beginStep and endStep") }
        guard deferredError == nil, groups.0 > 0, groups.1 > 0, groups.2 > 0 else { return }
        do {
            let p = try pipeline(name)
            var set = try descriptors.set(for: p, buffers)
            barrierIfPending()
            vkCmdBindPipeline(cmd, VK_PIPELINE_BIND_POINT_COMPUTE, p.pipeline)
            vkCmdBindDescriptorSets(cmd, VK_PIPELINE_BIND_POINT_COMPUTE, p.layout, 0, 1, &set, 0, nil)
            push.withUnsafeBytes { raw in
                vkCmdPushConstants(cmd, p.layout, flags(VK_SHADER_STAGE_COMPUTE_BIT), 0, UInt32(raw.count), raw.baseAddress)
            }
            if profile {
                timed(label ?? name) { vkCmdDispatch(cmd, UInt32(groups.0), UInt32(groups.1), UInt32(groups.2)) }
            } else {
                vkCmdDispatch(cmd, UInt32(groups.0), UInt32(groups.1), UInt32(groups.2))
            }
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
        let bytes = rows.count * a.columns * 4
        guard bytes > 0 else { return [] }
        do {
            if (readback?.size ?? 0) < bytes { readback = try GPUBuffer(ctx, size: max(bytes, 1 << 20), hostVisible: true) }
            let rb = readback!
            try immediate { cmd in
                var region = VkBufferCopy(srcOffset: VkDeviceSize(rows.lowerBound * a.columns * 4), dstOffset: 0, size: VkDeviceSize(bytes))
                vkCmdCopyBuffer(cmd, a.buffer.buffer, rb.buffer, 1, &region)
            }
            let p = rb.mapped!.bindMemory(to: Float.self, capacity: bytes / 4)
            return Array(UnsafeBufferPointer(start: p, count: bytes / 4))
        } catch {
            preconditionFailure("VulkanBackend.download: \(error)")
        }
    }

    // MARK: ops

    public func embed(_ table: Weight, tokens: [Int32], into out: Activations) {
        let w = table as! VulkanWeight, o = out as! VulkanActivations
        guard w.rowLength % 4 == 0, o.columns == w.rowLength, Self.supportedTypes.contains(w.type) else {
            return fail("embed \(w.name): \(w.type) rows of \(w.rowLength) into \(o.columns) columns")
        }
        do {
            let (buffer, offset) = try arena.allocate(ctx, bytes: tokens.count * 4)
            try record(bytes: tokens.count * 4, to: buffer, offset: offset) { raw in
                tokens.withUnsafeBytes { raw.copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
            }
            dispatch("embed_\(Self.shaderSuffix(w.type))", [w.buffer, buffer, o.buffer],
                     [UInt32(w.rowLength), UInt32(w.rowBytes), UInt32(offset / 4)], groups: (tokens.count, 1, 1))
        } catch { deferredError = error }
    }

    public func rmsNorm(_ x: Activations, weight: Weight, eps: Float, into out: Activations) {
        let x = x as! VulkanActivations, o = out as! VulkanActivations, w = weight as! VulkanWeight
        guard w.type == .f32, w.rowLength == x.columns, o.columns == x.columns else {
            return fail("rmsNorm: weight \(w.name) \(w.type) \(w.shape) for \(x.columns) columns")
        }
        dispatch("rms_norm", [x.buffer, w.buffer, o.buffer], [UInt32(x.columns), eps.bitPattern], groups: (batch.rows, 1, 1))
    }

    public func matmul(_ w: Weight, _ x: Activations, bias: Weight?, into out: Activations, rows: Int?) {
        matmuls(x, [MatmulItem(weight: w, bias: bias, output: out)], rows: rows)
    }

    public func matmuls(_ x: Activations, _ items: [MatmulItem], rows: Int?) {
        let x = x as! VulkanActivations
        let n = rows ?? batch.rows
        for item in items {
            let w = item.weight as! VulkanWeight, o = item.output as! VulkanActivations
            guard w.rowLength == x.columns, o.columns == w.rowCount, x.columns % 4 == 0, Self.supportedTypes.contains(w.type) else {
                return fail("matmul \(w.name) (\(w.type) \(w.shape)): x has \(x.columns) columns, out \(o.columns)")
            }
            if let bias = item.bias, bias.type != .f32 || bias.rowLength != w.rowCount { return fail("bias \(bias.name) must be f32[\(w.rowCount)]") }
        }
        // The input rounded once per activation grid the weights need (as the CPU quantizes it once per type).
        var inputs: [Int: GPUBuffer] = [:]
        if roundsActivations {
            for item in items {
                guard let mode = Self.roundingMode(item.weight.type), inputs[mode] == nil else { continue }
                let bytes = n * x.columns * 4
                do {
                    if (rounded[mode]?.size ?? 0) < bytes + 16 {
                        rounded[mode] = try GPUBuffer(ctx, size: max(bytes, 1 << 16) * 2 + 16, hostVisible: false)
                    }
                } catch { deferredError = error; return }
                let blocks = n * x.columns / (mode == 0 ? 32 : 256)
                // Q8_K blocks: a workgroup per block (quantize_k); Q8_0 blocks: an invocation per block.
                let (gx, gy) = grid(mode == 1 ? blocks : (blocks + workgroupSize - 1) / workgroupSize)
                dispatch(mode == 1 ? "quantize_k" : "quantize_act", [x.buffer, rounded[mode]!], [UInt32(blocks), UInt32(mode)],
                         groups: (gx, gy, 1), barrierAfter: false)
                inputs[mode] = rounded[mode]!
            }
            if !inputs.isEmpty { pendingBarrier = true }
        }
        for (i, item) in items.enumerated() {
            let w = item.weight as! VulkanWeight, o = item.output as! VulkanActivations
            let input = Self.roundingMode(w.type).flatMap { inputs[$0] } ?? x.buffer
            let bias = item.bias as? VulkanWeight
            if n == 1 {
                // Decode: mat-vec (matvec.comp), matvecRows rows per workgroup.
                let perGroup = Self.matvecRows
                let (gx, gy) = grid((w.rowCount + perGroup - 1) / perGroup)
                dispatch("matvec_\(Self.shaderSuffix(w.type))", [w.buffer, input, o.buffer, bias?.buffer ?? dummy],
                         [UInt32(w.rowCount), UInt32(w.rowLength), UInt32(w.rowBytes), bias == nil ? 0 : 1, UInt32(perGroup)],
                         groups: (gx, gy, 1), barrierAfter: i == items.count - 1,
                         label: "matvec \(Self.shaderSuffix(w.type)) \(w.rowCount)x\(w.rowLength)")
                continue
            }
            let (gx, gy) = grid(w.rowCount)
            dispatch("matmul_\(Self.shaderSuffix(w.type))", [w.buffer, input, o.buffer, bias?.buffer ?? dummy],
                     [UInt32(w.rowCount), UInt32(w.rowLength), UInt32(n), UInt32(w.rowBytes), bias == nil ? 0 : 1],
                     groups: (gx, gy, (n + 7) / 8), barrierAfter: i == items.count - 1,
                     label: "matmul \(Self.shaderSuffix(w.type)) \(w.rowCount)x\(w.rowLength)")
        }
    }

    /// R in matvec.comp: rows each workgroup computes together.
    static let matvecRows = 4

    /// quantize_act mode for a weight type: 0 = Q8_0/Q8_1 grid (blocks of 32), 1 = Q8_K (256), nil = f32.
    static func roundingMode(_ t: GGMLType) -> Int? {
        switch QuantDot.activationType(for: t) {
        case .q8_0, .q8_1: 0
        case .q8_K: 1
        default: nil
        }
    }

    public func rope(_ x: Activations, heads: Int, headDim: Int, params: RopeParams) {
        let x = x as! VulkanActivations
        let half = params.dims / 2
        guard half > 0, params.dims <= headDim, heads * headDim <= x.columns else {
            return fail("rope: dims \(params.dims), \(heads) heads of \(headDim) in \(x.columns) columns")
        }
        let key = RopeKey(dims: params.dims, base: params.base.bitPattern)
        do {
            if ropeTables[key] == nil {
                // Per row: cos[half], sin[half], angles as CPUKernels.rope computes them.
                let rows = batch.rows, bytes = rows * 2 * half * 4
                let (buffer, offset) = try arena.allocate(ctx, bytes: bytes)
                let positions = batch.positions
                try record(bytes: bytes, to: buffer, offset: offset) { raw in
                    let t = raw.bindMemory(to: Float.self, capacity: rows * 2 * half)
                    let thetaScale = powf(params.base, -2 / Float(params.dims))
                    for r in 0..<rows {
                        var theta = Float(positions[r])
                        for i in 0..<half {
                            t[r * 2 * half + i] = cosf(theta)
                            t[r * 2 * half + half + i] = sinf(theta)
                            theta *= thetaScale
                        }
                    }
                }
                ropeTables[key] = (buffer, offset)
            }
            let (table, offset) = ropeTables[key]!
            let count = batch.rows * heads * half
            let (gx, gy) = grid((count + workgroupSize - 1) / workgroupSize)
            dispatch("rope", [x.buffer, table],
                     [UInt32(batch.rows), UInt32(heads), UInt32(headDim), UInt32(half), params.neox ? 1 : 0,
                      UInt32(x.columns), UInt32(offset / 4)], groups: (gx, gy, 1))
        } catch { deferredError = error }
    }

    public func storeKV(k: Activations, v: Activations, storage: KVStorage, layer: Int) {
        let k = k as! VulkanActivations, v = v as! VulkanActivations, s = storage as! VulkanKVStorage
        guard k.columns == s.shape.kvDim, v.columns == s.shape.kvDim, let step = stepBuffer else {
            return fail("storeKV: k/v of \(k.columns)/\(v.columns) columns for kvDim \(s.shape.kvDim)")
        }
        dispatch("store_kv", [s.layers[layer], k.buffer, v.buffer, step],
                 [UInt32(s.shape.kvDim), UInt32(s.shape.pageSize), UInt32(s.vOffsetWords),
                  UInt32(stepPositions), UInt32(stepTableIndex), UInt32(stepTableStart)], groups: (batch.rows, 1, 1))
    }

    public func attention(q: Activations, storage: KVStorage, layer: Int, params p: AttentionParams, into out: Activations) {
        let q = q as! VulkanActivations, o = out as! VulkanActivations, s = storage as! VulkanKVStorage
        guard let step = stepBuffer, p.headDim % 2 == 0, p.headDim <= min(256, 8 * attentionWorkgroupSize),
              p.heads % p.kvHeads == 0, p.kvHeads * p.headDim <= s.shape.kvDim,
              q.columns >= p.heads * p.headDim, o.columns == q.columns
        else { return fail("attention: \(p) with q of \(q.columns) columns, kvDim \(s.shape.kvDim)") }
        let push = [UInt32(s.shape.kvDim), UInt32(s.shape.pageSize), UInt32(s.vOffsetWords),
                    UInt32(stepPositions), UInt32(stepTableIndex), UInt32(stepTableStart),
                    UInt32(p.heads), UInt32(p.heads / p.kvHeads), UInt32(p.headDim), UInt32(q.columns), p.scale.bitPattern]
        // Few rows (decode): split each row's positions into chunks (flash-decoding) so that the GPU has
        // more than heads × rows workgroups, then merge; many rows (prefill) fill the GPU as they are.
        let maxLen = Int(batch.positions.max() ?? 0) + 1
        let chunk = attentionSplitChunk ?? attentionWorkgroupSize * 2
        let splits = (maxLen + chunk - 1) / chunk
        if (device.type != "cpu" || attentionSplitChunk != nil) && batch.rows * p.heads < 1024 && splits > 1 {
            do {
                let floats = batch.rows * p.heads * splits * (p.headDim + 2)
                let (part, offset) = try arena.allocate(ctx, bytes: floats * 4)
                dispatch("attention", [s.layers[layer], q.buffer, o.buffer, step, part], push + [UInt32(chunk), UInt32(offset / 4)],
                         groups: (p.heads, batch.rows, splits))
                dispatch("attention_merge", [part, o.buffer],
                         [UInt32(p.heads), UInt32(p.headDim), UInt32(splits), UInt32(q.columns), UInt32(offset / 4)],
                         groups: (p.heads, batch.rows, 1))
            } catch { deferredError = error }
            return
        }
        dispatch("attention", [s.layers[layer], q.buffer, o.buffer, step, dummy], push + [0, 0],
                 groups: (p.heads, batch.rows, 1))
    }

    public func swiglu(gate: Activations, up: Activations, into out: Activations) {
        let g = gate as! VulkanActivations, u = up as! VulkanActivations, o = out as! VulkanActivations
        let count = batch.rows * g.columns
        let (gx, gy) = grid((count + workgroupSize - 1) / workgroupSize)
        dispatch("swiglu", [g.buffer, u.buffer, o.buffer], [UInt32(count)], groups: (gx, gy, 1))
    }

    public func add(_ x: Activations, _ y: Activations) {
        let x = x as! VulkanActivations, y = y as! VulkanActivations
        let count = batch.rows * x.columns
        let (gx, gy) = grid((count + workgroupSize - 1) / workgroupSize)
        dispatch("add", [x.buffer, y.buffer], [UInt32(count)], groups: (gx, gy, 1))
    }

    public func copyRows(_ src: Activations, from srcRow: Int, to dst: Activations, at dstRow: Int, count: Int) {
        let s = src as! VulkanActivations, d = dst as! VulkanActivations
        precondition(s.columns == d.columns)
        guard recording else { preconditionFailure("VulkanBackend: ops run between beginStep and endStep") }
        guard count > 0 else { return }
        barrierIfPending()
        let rowBytes = s.columns * 4
        var region = VkBufferCopy(srcOffset: VkDeviceSize(srcRow * rowBytes), dstOffset: VkDeviceSize(dstRow * rowBytes),
                                  size: VkDeviceSize(count * rowBytes))
        vkCmdCopyBuffer(cmd, s.buffer.buffer, d.buffer.buffer, 1, &region)
        pendingBarrier = true
    }
}

/// Bump allocator over a list of buffers (host-visible staging or device-local arena), reset each step.
/// Chunks are kept and reused; a request that does not fit moves to the next chunk (or a new one).
struct ChunkedAllocator {
    let hostVisible: Bool
    private var chunks: [GPUBuffer] = []
    private var index = 0, offset = 0
    static let chunkBytes = 4 << 20
    static let alignment = 256

    init(hostVisible: Bool) { self.hostVisible = hostVisible }

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
        let chunk = try GPUBuffer(ctx, size: max(Self.chunkBytes, bytes + 16), hostVisible: hostVisible)
        chunks.append(chunk)
        index = chunks.count - 1
        offset = (bytes + Self.alignment - 1) / Self.alignment * Self.alignment
        return (chunk, 0)
    }
}
