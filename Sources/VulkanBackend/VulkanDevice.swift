import CVulkan
import Compute
#if canImport(Glibc)
import Glibc
#endif

// Vulkan plumbing: instance/device selection, buffers, pipelines. Handles are OpaquePointer
// optionals in Swift; pNext chains must point at structs that outlive the call.

@inline(__always)
func check(_ result: VkResult, _ call: @autoclosure () -> String) throws {
    guard result == VK_SUCCESS else { throw ComputeError("Vulkan: \(call()) failed (VkResult \(result.rawValue))") }
}

/// C flag enums import as RawRepresentable structs; masks are plain UInt32.
@inline(__always)
func flags<B: RawRepresentable>(_ bits: B...) -> VkFlags where B.RawValue == UInt32 {
    bits.reduce(0) { $0 | $1.rawValue }
}

func cString<T>(_ tuple: T) -> String {
    withUnsafeBytes(of: tuple) { raw in
        String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
    }
}

/// What `VulkanBackend.available()` reports for each physical device.
public struct VulkanDeviceInfo: Sendable, CustomStringConvertible {
    public let index: Int
    public let name: String
    /// "discrete-gpu", "integrated-gpu", "virtual-gpu", "cpu", "other".
    public let type: String
    public let apiVersion: String
    public let subgroupSize: Int
    public let maxSharedMemory: Int
    public let deviceLocalBytes: Int
    /// Subgroup arithmetic in compute shaders and Vulkan >= 1.1: what the shaders need.
    public let usable: Bool
    public var description: String {
        "\(index): \(name) [\(type)] Vulkan \(apiVersion) subgroup=\(subgroupSize) sharedMem=\(maxSharedMemory)B "
            + "deviceLocal=\(deviceLocalBytes >> 20)MiB\(usable ? "" : " (unusable: needs Vulkan 1.1 + subgroup arithmetic)")"
    }
    var rank: Int {
        switch type {
        case "discrete-gpu": 0
        case "integrated-gpu": 1
        case "virtual-gpu": 2
        case "cpu": 3
        default: 4
        }
    }
}

/// Properties of one physical device, queried once.
struct PhysicalDevice {
    let handle: VkPhysicalDevice?
    let info: VulkanDeviceInfo
    let limits: VkPhysicalDeviceLimits
    let memoryTypes: [VkMemoryType]
    /// The largest device-local heap (the one `deviceLocalBytes` reports).
    let localHeap: Int?
    /// The device extensions offered.
    let extensions: Set<String>
    /// VK_EXT_memory_budget is offered (free device memory can be asked for).
    var hasMemoryBudget: Bool { extensions.contains("VK_EXT_memory_budget") }
    /// Largest single vkAllocateMemory (VkPhysicalDeviceMaintenance3Properties).
    let maxAllocation: Int
    /// What a pipeline cache's header must name to be this device's: vendor, device, pipelineCacheUUID.
    let vendorID: UInt32, deviceID: UInt32
    let pipelineCacheUUID: [UInt8]

    init(_ pd: VkPhysicalDevice?, index: Int) {
        handle = pd
        var subgroup = VkPhysicalDeviceSubgroupProperties()
        subgroup.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SUBGROUP_PROPERTIES
        var maint3 = VkPhysicalDeviceMaintenance3Properties()
        maint3.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_MAINTENANCE_3_PROPERTIES
        var props2 = VkPhysicalDeviceProperties2()
        props2.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2
        withUnsafeMutablePointer(to: &maint3) { m3 in
            subgroup.pNext = UnsafeMutableRawPointer(m3)
            withUnsafeMutablePointer(to: &subgroup) { sub in
                props2.pNext = UnsafeMutableRawPointer(sub)
                vkGetPhysicalDeviceProperties2(pd, &props2)
            }
        }
        props2.pNext = nil
        subgroup.pNext = nil
        maxAllocation = maint3.maxMemoryAllocationSize > 0 ? Int(clamping: maint3.maxMemoryAllocationSize) : 1 << 30
        var extCount: UInt32 = 0
        var exts: [VkExtensionProperties] = []
        if vkEnumerateDeviceExtensionProperties(pd, nil, &extCount, nil) == VK_SUCCESS, extCount > 0 {
            exts = [VkExtensionProperties](repeating: .init(), count: Int(extCount))
            if vkEnumerateDeviceExtensionProperties(pd, nil, &extCount, &exts) != VK_SUCCESS { exts = [] }
        }
        extensions = Set(exts.prefix(Int(extCount)).map { cString($0.extensionName) })
        let p = props2.properties
        var mem = VkPhysicalDeviceMemoryProperties()
        vkGetPhysicalDeviceMemoryProperties(pd, &mem)
        let heaps = withUnsafeBytes(of: mem.memoryHeaps) { Array($0.bindMemory(to: VkMemoryHeap.self).prefix(Int(mem.memoryHeapCount))) }
        memoryTypes = withUnsafeBytes(of: mem.memoryTypes) { Array($0.bindMemory(to: VkMemoryType.self).prefix(Int(mem.memoryTypeCount))) }
        limits = p.limits
        vendorID = p.vendorID
        deviceID = p.deviceID
        pipelineCacheUUID = withUnsafeBytes(of: p.pipelineCacheUUID) { Array($0) }
        let type: String = switch p.deviceType {
        case VK_PHYSICAL_DEVICE_TYPE_DISCRETE_GPU: "discrete-gpu"
        case VK_PHYSICAL_DEVICE_TYPE_INTEGRATED_GPU: "integrated-gpu"
        case VK_PHYSICAL_DEVICE_TYPE_VIRTUAL_GPU: "virtual-gpu"
        case VK_PHYSICAL_DEVICE_TYPE_CPU: "cpu"
        default: "other"
        }
        localHeap = heaps.indices.filter { heaps[$0].flags & VK_MEMORY_HEAP_DEVICE_LOCAL_BIT.rawValue != 0 }
            .max { heaps[$0].size < heaps[$1].size }
        let local = localHeap.map { Int(heaps[$0].size) } ?? 0
        let v = p.apiVersion
        let arithmetic = subgroup.supportedOperations & VK_SUBGROUP_FEATURE_ARITHMETIC_BIT.rawValue != 0
            && subgroup.supportedStages & VK_SHADER_STAGE_COMPUTE_BIT.rawValue != 0
        info = VulkanDeviceInfo(
            index: index, name: cString(p.deviceName), type: type,
            apiVersion: "\(v >> 22 & 0x7F).\(v >> 12 & 0x3FF).\(v & 0xFFF)",
            subgroupSize: Int(subgroup.subgroupSize), maxSharedMemory: Int(p.limits.maxComputeSharedMemorySize),
            deviceLocalBytes: local, usable: v >= SHARD_VK_API_VERSION_1_1 && arithmetic && subgroup.subgroupSize >= 4)
    }

    /// Free bytes of the device-local heap, heapBudget − heapUsage (VK_EXT_memory_budget: the budget
    /// accounts for other processes' use); nil where the extension is not offered.
    func freeLocalMemory() -> Int? {
        guard hasMemoryBudget, let heap = localHeap else { return nil }
        var budget = VkPhysicalDeviceMemoryBudgetPropertiesEXT()
        budget.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_MEMORY_BUDGET_PROPERTIES_EXT
        var props = VkPhysicalDeviceMemoryProperties2()
        props.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_MEMORY_PROPERTIES_2
        withUnsafeMutablePointer(to: &budget) { b in
            props.pNext = UnsafeMutableRawPointer(b)
            vkGetPhysicalDeviceMemoryProperties2(handle, &props)
        }
        let (total, used) = withUnsafeBytes(of: budget.heapBudget) { b in
            withUnsafeBytes(of: budget.heapUsage) { u in
                (Int(clamping: b.bindMemory(to: VkDeviceSize.self)[heap]), Int(clamping: u.bindMemory(to: VkDeviceSize.self)[heap]))
            }
        }
        guard total > 0 else { return nil }
        return max(0, total - used)
    }
}

/// What a device allocation is for (`VulkanBackend.memoryReport`).
public enum MemoryUse: String, CaseIterable, Sendable {
    /// Weight tensors (device-local).
    case weights
    /// The KV cache.
    case kv
    /// Activation buffers (`makeActivations`).
    case activations
    /// Per-step device-local arena chunks (step data, rope tables, attention partials).
    case arena
    /// Rounded-activation buffers and other backend-owned scratch.
    case scratch
    /// Host-visible: per-step staging chunks.
    case staging
    /// Host-visible: weight-upload staging slots (freed once the weights are uploaded).
    case upload
    /// Host-visible: download readback.
    case readback
    case other
}

/// Device memory in use, by purpose: bytes of live buffers, and bytes of live vkAllocateMemory
/// allocations (device-local memory blocks and dedicated allocations; host-visible separately).
public struct MemoryAccount: Sendable, Equatable {
    public var buffers: [MemoryUse: Int] = [:]
    /// Device-local bytes allocated (blocks + dedicated), now and at most so far.
    public var deviceAllocated = 0, devicePeak = 0
    /// Host-visible bytes allocated.
    public var hostAllocated = 0
    /// Device-local bytes in memory blocks (weights, KV, activations are bound into them), and of
    /// those, bytes bound to live buffers: the difference is block slack.
    public var blockBytes = 0, blockBound = 0
    public init() {}
}

/// Instance + logical device + one compute queue, command pool and fence. Owned by buffers and
/// pipelines (strong references), so it is destroyed last.
final class VulkanContext {
    private(set) var instance: VkInstance?
    private(set) var device: VkDevice?
    private(set) var queue: VkQueue?
    private(set) var commandPool: VkCommandPool?
    private(set) var fence: VkFence?
    let physical: PhysicalDevice
    /// Valid timestamp bits of the compute queue (0: no timestamps).
    private(set) var timestampValidBits = 0
    /// Memory blocks of pooled buffers (GPUBuffer(pooled: true)).
    var blocks: [MemoryBlock] = []
    /// Live allocations by purpose (see MemoryAccount).
    var account = MemoryAccount()
    /// Bytes announced for pooled buffers of a purpose and not placed yet: a new block for that purpose
    /// is sized to hold all of them (exactly, up to the largest allocation the device allows) instead of
    /// 64 MiB, so that a model's weights (or its KV cache) leave no block slack.
    var reserved: [MemoryUse: Int] = [:]

    func allocated(_ bytes: Int, host: Bool) {
        if host { account.hostAllocated += bytes; return }
        account.deviceAllocated += bytes
        account.devicePeak = max(account.devicePeak, account.deviceAllocated)
    }
    /// VK_NV_cooperative_matrix is enabled with a 16×16×16 f16·f16 + f32 subgroup shape (and shaderFloat16).
    private(set) var cooperativeMatrix16 = false

    /// VK_KHR_shader_integer_dot_product is enabled (matvec_q8.comp's OpSDot on packed int8).
    private(set) var integerDot = false
    /// VK_KHR_pipeline_executable_properties is enabled and pipelines are created capturing their statistics
    /// (env SHARD_VK_PIPELINE_STATS=1 on a device that has it; `Pipeline.statistics`).
    private(set) var pipelineStatistics = false

    /// vkCreateDevice with VK_NV_cooperative_matrix, shaderFloat16 and the Vulkan memory model enabled
    /// (`coop`), and/or VK_KHR_shader_integer_dot_product (`dot`).
    /// `stats`: also VK_KHR_pipeline_executable_properties with pipelineExecutableInfo (pipeline statistics).
    static func createDevice(_ pd: VkPhysicalDevice?, _ dci: inout VkDeviceCreateInfo, coop: Bool, dot: Bool = false,
                             stats: Bool = false, into device: inout VkDevice?) -> VkResult {
        var exec = VkPhysicalDevicePipelineExecutablePropertiesFeaturesKHR()
        exec.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PIPELINE_EXECUTABLE_PROPERTIES_FEATURES_KHR
        exec.pipelineExecutableInfo = VkBool32(VK_TRUE)
        var coopFeatures = VkPhysicalDeviceCooperativeMatrixFeaturesNV()
        coopFeatures.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_COOPERATIVE_MATRIX_FEATURES_NV
        coopFeatures.cooperativeMatrix = VkBool32(VK_TRUE)
        var f16 = VkPhysicalDeviceShaderFloat16Int8Features()
        f16.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SHADER_FLOAT16_INT8_FEATURES
        f16.shaderFloat16 = VkBool32(VK_TRUE)
        var model = VkPhysicalDeviceVulkanMemoryModelFeatures()   // the shader's SPIR-V declares VulkanMemoryModel
        model.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_MEMORY_MODEL_FEATURES
        model.vulkanMemoryModel = VkBool32(VK_TRUE)
        var dotFeatures = VkPhysicalDeviceShaderIntegerDotProductFeatures()
        dotFeatures.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SHADER_INTEGER_DOT_PRODUCT_FEATURES
        dotFeatures.shaderIntegerDotProduct = VkBool32(VK_TRUE)
        var result = VK_ERROR_INITIALIZATION_FAILED
        var info = dci
        let extensions = (coop ? ["VK_NV_cooperative_matrix"] : []) + (dot ? ["VK_KHR_shader_integer_dot_product"] : [])
            + (stats ? ["VK_KHR_pipeline_executable_properties"] : [])
        let cstrings = extensions.map { strdup($0) }
        defer { cstrings.forEach { free($0) } }
        withUnsafeMutablePointer(to: &dotFeatures) { df in
            model.pNext = dot ? UnsafeMutableRawPointer(df) : nil
            withUnsafeMutablePointer(to: &model) { mm in
                coopFeatures.pNext = UnsafeMutableRawPointer(mm)
                withUnsafeMutablePointer(to: &coopFeatures) { cf in
                    f16.pNext = UnsafeMutableRawPointer(cf)
                    withUnsafeMutablePointer(to: &f16) { f in
                        info.pNext = coop ? UnsafeRawPointer(f) : (dot ? UnsafeRawPointer(df) : nil)
                        withUnsafeMutablePointer(to: &exec) { e in
                            if stats {
                                e.pointee.pNext = UnsafeMutableRawPointer(mutating: info.pNext)
                                info.pNext = UnsafeRawPointer(e)
                            }
                            var names: [UnsafePointer<CChar>?] = cstrings.map { UnsafePointer($0) }
                            names.withUnsafeMutableBufferPointer { n in
                                info.enabledExtensionCount = UInt32(n.count)
                                info.ppEnabledExtensionNames = UnsafePointer(n.baseAddress)
                                result = vkCreateDevice(pd, &info, nil, &device)
                            }
                        }
                    }
                }
            }
        }
        return result
    }

    /// Whether the device has VK_KHR_shader_integer_dot_product with shaderIntegerDotProduct (env
    /// SHARD_VK_NO_DP=1: treated as absent).
    static func integerDotSupport(_ pd: PhysicalDevice) -> Bool {
        if let v = getenv("SHARD_VK_NO_DP"), String(cString: v) == "1" { return false }
        guard pd.extensions.contains("VK_KHR_shader_integer_dot_product") else { return false }
        var dotFeatures = VkPhysicalDeviceShaderIntegerDotProductFeatures()
        dotFeatures.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SHADER_INTEGER_DOT_PRODUCT_FEATURES
        var features = VkPhysicalDeviceFeatures2()
        features.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2
        withUnsafeMutablePointer(to: &dotFeatures) { df in
            features.pNext = UnsafeMutableRawPointer(df)
            vkGetPhysicalDeviceFeatures2(pd.handle, &features)
        }
        return dotFeatures.shaderIntegerDotProduct != 0
    }

    /// Whether the device offers what matmul_coop.comp needs: VK_NV_cooperative_matrix with the
    /// 16×16×16 f16 × f16 → f32 subgroup shape (queried at run time), shaderFloat16, the Vulkan memory
    /// model (GL_KHR_memory_scope_semantics, which GL_NV_cooperative_matrix needs), 32-wide subgroups.
    /// (The NV extension rather than VK_KHR_cooperative_matrix: the glslc here has no GL_KHR_cooperative_matrix.)
    /// Env SHARD_VK_NO_COOPMAT=1 turns it off.
    static func cooperativeMatrixSupport(_ instance: VkInstance?, _ pd: PhysicalDevice) -> Bool {
        if let v = getenv("SHARD_VK_NO_COOPMAT"), String(cString: v) == "1" { return false }
        guard pd.info.subgroupSize == 32 else { return false }
        guard pd.extensions.contains("VK_NV_cooperative_matrix") else { return false }
        var coopFeatures = VkPhysicalDeviceCooperativeMatrixFeaturesNV()
        coopFeatures.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_COOPERATIVE_MATRIX_FEATURES_NV
        var f16 = VkPhysicalDeviceShaderFloat16Int8Features()
        f16.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SHADER_FLOAT16_INT8_FEATURES
        var model = VkPhysicalDeviceVulkanMemoryModelFeatures()
        model.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_MEMORY_MODEL_FEATURES
        var features = VkPhysicalDeviceFeatures2()
        features.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2
        withUnsafeMutablePointer(to: &model) { mm in
            coopFeatures.pNext = UnsafeMutableRawPointer(mm)
            withUnsafeMutablePointer(to: &coopFeatures) { cf in
                f16.pNext = UnsafeMutableRawPointer(cf)
                withUnsafeMutablePointer(to: &f16) { f in
                    features.pNext = UnsafeMutableRawPointer(f)
                    vkGetPhysicalDeviceFeatures2(pd.handle, &features)
                }
            }
        }
        guard coopFeatures.cooperativeMatrix != 0, f16.shaderFloat16 != 0, model.vulkanMemoryModel != 0 else { return false }
        guard let fn = vkGetInstanceProcAddr(instance, "vkGetPhysicalDeviceCooperativeMatrixPropertiesNV") else { return false }
        let query = unsafeBitCast(fn, to: PFN_vkGetPhysicalDeviceCooperativeMatrixPropertiesNV.self)
        var n: UInt32 = 0
        guard query(pd.handle, &n, nil) == VK_SUCCESS, n > 0 else { return false }
        var props = [VkCooperativeMatrixPropertiesNV](repeating: .init(), count: Int(n))
        for i in props.indices { props[i].sType = VK_STRUCTURE_TYPE_COOPERATIVE_MATRIX_PROPERTIES_NV }
        guard query(pd.handle, &n, &props) == VK_SUCCESS else { return false }
        return props.prefix(Int(n)).contains {
            $0.MSize == 16 && $0.NSize == 16 && $0.KSize == 16 && $0.AType == VK_COMPONENT_TYPE_FLOAT16_NV
                && $0.BType == VK_COMPONENT_TYPE_FLOAT16_NV && $0.CType == VK_COMPONENT_TYPE_FLOAT32_NV
                && $0.DType == VK_COMPONENT_TYPE_FLOAT32_NV && $0.scope == VK_SCOPE_SUBGROUP_NV
        }
    }

    static func createInstance() throws -> VkInstance? {
        var app = VkApplicationInfo()
        app.sType = VK_STRUCTURE_TYPE_APPLICATION_INFO
        app.apiVersion = SHARD_VK_API_VERSION_1_2
        var instance: VkInstance?
        let r = withUnsafePointer(to: &app) { app in
            "Shard".withCString { name in
                var a = app.pointee
                a.pApplicationName = name
                return withUnsafePointer(to: &a) { a in
                    var ci = VkInstanceCreateInfo()
                    ci.sType = VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO
                    ci.pApplicationInfo = a
                    return vkCreateInstance(&ci, nil, &instance)
                }
            }
        }
        guard r == VK_SUCCESS else {
            throw ComputeError("Vulkan: no Vulkan instance (vkCreateInstance: VkResult \(r.rawValue)); is a Vulkan driver installed (e.g. mesa-vulkan-drivers, or the NVIDIA driver's ICD)?")
        }
        return instance
    }

    static func physicalDevices(_ instance: VkInstance?) throws -> [PhysicalDevice] {
        var count: UInt32 = 0
        try check(vkEnumeratePhysicalDevices(instance, &count, nil), "vkEnumeratePhysicalDevices")
        var handles = [VkPhysicalDevice?](repeating: nil, count: Int(count))
        try check(vkEnumeratePhysicalDevices(instance, &count, &handles), "vkEnumeratePhysicalDevices")
        return handles.prefix(Int(count)).enumerated().map { PhysicalDevice($1, index: $0) }
    }

    init(deviceIndex: Int?) throws {
        let instance = try Self.createInstance()
        self.instance = instance
        let all: [PhysicalDevice]
        do { all = try Self.physicalDevices(instance) } catch { vkDestroyInstance(instance, nil); throw error }
        let usable = all.filter(\.info.usable)
        let chosen: PhysicalDevice
        if let i = deviceIndex {
            guard all.indices.contains(i) else {
                vkDestroyInstance(instance, nil)
                throw ComputeError("Vulkan: device \(i) does not exist (\(all.count) device(s): \(all.map(\.info.description)))")
            }
            guard all[i].info.usable else {
                vkDestroyInstance(instance, nil)
                throw ComputeError("Vulkan: device \(all[i].info) cannot run Shard's shaders")
            }
            chosen = all[i]
        } else {
            guard let best = usable.min(by: { ($0.info.rank, $0.info.index) < ($1.info.rank, $1.info.index) }) else {
                vkDestroyInstance(instance, nil)
                throw ComputeError(all.isEmpty
                    ? "Vulkan: no Vulkan device found (install a driver: mesa-vulkan-drivers for lavapipe, or NVIDIA's)"
                    : "Vulkan: no usable device among \(all.map(\.info.description))")
            }
            chosen = best
        }
        physical = chosen
        let pd = chosen.handle

        var familyCount: UInt32 = 0
        vkGetPhysicalDeviceQueueFamilyProperties(pd, &familyCount, nil)
        var families = [VkQueueFamilyProperties](repeating: .init(), count: Int(familyCount))
        vkGetPhysicalDeviceQueueFamilyProperties(pd, &familyCount, &families)
        // Prefer a compute-only family (async compute on discrete GPUs), else any with compute.
        let compute = families.indices.filter { families[$0].queueFlags & VK_QUEUE_COMPUTE_BIT.rawValue != 0 }
        guard let family = compute.first(where: { families[$0].queueFlags & VK_QUEUE_GRAPHICS_BIT.rawValue == 0 }) ?? compute.first else {
            throw ComputeError("Vulkan: \(chosen.info.name) has no compute queue")
        }
        timestampValidBits = Int(families[family].timestampValidBits)
        let coop = Self.cooperativeMatrixSupport(instance, chosen)
        cooperativeMatrix16 = coop
        let dot = Self.integerDotSupport(chosen)
        integerDot = dot
        let priority: Float = 1
        try withUnsafePointer(to: priority) { priority in
            var qci = VkDeviceQueueCreateInfo()
            qci.sType = VK_STRUCTURE_TYPE_DEVICE_QUEUE_CREATE_INFO
            qci.queueFamilyIndex = UInt32(family)
            qci.queueCount = 1
            qci.pQueuePriorities = priority
            try withUnsafePointer(to: qci) { qci in
                var dci = VkDeviceCreateInfo()
                dci.sType = VK_STRUCTURE_TYPE_DEVICE_CREATE_INFO
                dci.queueCreateInfoCount = 1
                dci.pQueueCreateInfos = qci
                // Optional features, most first: a driver that refuses a combination gets fewer.
                var created = false
                // Pipeline statistics (register counts etc.) only when asked for: env SHARD_VK_PIPELINE_STATS=1.
                let stats = getenv("SHARD_VK_PIPELINE_STATS").map { String(cString: $0) == "1" } == true
                    && chosen.extensions.contains("VK_KHR_pipeline_executable_properties")
                if stats, Self.createDevice(pd, &dci, coop: coop, dot: dot, stats: true, into: &device) == VK_SUCCESS {
                    (cooperativeMatrix16, integerDot, pipelineStatistics, created) = (coop, dot, true, true)
                }
                for (c, d) in [(coop, dot), (false, dot), (coop, false)] where (c || d) && !created {
                    if Self.createDevice(pd, &dci, coop: c, dot: d, into: &device) == VK_SUCCESS {
                        (cooperativeMatrix16, integerDot, created) = (c, d, true)
                    }
                }
                if !created {
                    (cooperativeMatrix16, integerDot) = (false, false)
                    try check(vkCreateDevice(pd, &dci, nil, &device), "vkCreateDevice")
                }
            }
        }
        vkGetDeviceQueue(device, UInt32(family), 0, &queue)
        var pci = VkCommandPoolCreateInfo()
        pci.sType = VK_STRUCTURE_TYPE_COMMAND_POOL_CREATE_INFO
        pci.flags = flags(VK_COMMAND_POOL_CREATE_RESET_COMMAND_BUFFER_BIT)
        pci.queueFamilyIndex = UInt32(family)
        try check(vkCreateCommandPool(device, &pci, nil, &commandPool), "vkCreateCommandPool")
        var fci = VkFenceCreateInfo()
        fci.sType = VK_STRUCTURE_TYPE_FENCE_CREATE_INFO
        try check(vkCreateFence(device, &fci, nil, &fence), "vkCreateFence")
        openPipelineCache()
    }

    // MARK: pipeline cache
    //
    // Every pipeline is created through one VkPipelineCache, loaded from a file at start and written
    // back (whole, through a temporary file and a rename) after steps that created pipelines, so that a
    // process on a fresh machine with the file does not compile the shaders again while recording its
    // first steps. The file is `$SHARD_CACHE_DIR` (else `~/.cache/shard`) /
    // vulkan-pipelines-<vendor>-<device>.bin; one whose header does not name this device (vendor, device,
    // pipelineCacheUUID: another GPU or driver) or that is truncated is ignored (an empty cache) and
    // replaced at the next save. Env SHARD_VK_NO_PIPELINE_CACHE=1: no file (an in-memory cache).

    private(set) var pipelineCache: VkPipelineCache?
    /// The cache file, nil without one.
    private(set) var pipelineCachePath: String?
    /// Whether the cache's data came from the file.
    private(set) var pipelineCacheLoaded = false
    /// A pipeline was created since the cache was last saved.
    var pipelineCacheDirty = false

    static func pipelineCacheDirectory() -> String? {
        if let v = getenv("SHARD_VK_NO_PIPELINE_CACHE"), String(cString: v) == "1" { return nil }
        if let d = getenv("SHARD_CACHE_DIR"), d.pointee != 0 { return String(cString: d) }
        guard let h = getenv("HOME"), h.pointee != 0 else { return nil }
        return String(cString: h) + "/.cache/shard"
    }

    /// Whether `data` starts with a pipeline cache header (VK_PIPELINE_CACHE_HEADER_VERSION_ONE) of this device.
    static func pipelineCacheMatches(_ data: [UInt8], _ pd: PhysicalDevice) -> Bool {
        guard data.count >= 32 else { return false }
        func u32(_ o: Int) -> UInt32 { UInt32(data[o]) | UInt32(data[o + 1]) << 8 | UInt32(data[o + 2]) << 16 | UInt32(data[o + 3]) << 24 }
        return u32(0) >= 32 && Int(u32(0)) <= data.count && u32(4) == UInt32(VK_PIPELINE_CACHE_HEADER_VERSION_ONE.rawValue)
            && u32(8) == pd.vendorID && u32(12) == pd.deviceID && Array(data[16..<32]) == pd.pipelineCacheUUID
    }

    private func openPipelineCache() {
        var initial: [UInt8] = []
        if let dir = Self.pipelineCacheDirectory() {
            let path = dir + "/vulkan-pipelines-\(String(physical.vendorID, radix: 16))-\(String(physical.deviceID, radix: 16)).bin"
            pipelineCachePath = path
            if let f = fopen(path, "rb") {
                var buf = [UInt8](repeating: 0, count: 1 << 16)
                while true {
                    let n = fread(&buf, 1, buf.count, f)
                    if n <= 0 { break }
                    initial += buf[0..<n]
                    if initial.count > 1 << 30 { initial = []; break }
                }
                fclose(f)
                if !Self.pipelineCacheMatches(initial, physical) { initial = [] }
            }
        }
        var cache: VkPipelineCache?
        let r = initial.withUnsafeBytes { raw -> VkResult in
            var ci = VkPipelineCacheCreateInfo()
            ci.sType = VK_STRUCTURE_TYPE_PIPELINE_CACHE_CREATE_INFO
            ci.initialDataSize = raw.count
            ci.pInitialData = raw.count > 0 ? raw.baseAddress : nil
            return vkCreatePipelineCache(device, &ci, nil, &cache)
        }
        if r == VK_SUCCESS {
            pipelineCache = cache
            pipelineCacheLoaded = !initial.isEmpty
        } else if !initial.isEmpty {
            // A driver that refuses the data: start empty.
            var ci = VkPipelineCacheCreateInfo()
            ci.sType = VK_STRUCTURE_TYPE_PIPELINE_CACHE_CREATE_INFO
            if vkCreatePipelineCache(device, &ci, nil, &cache) == VK_SUCCESS { pipelineCache = cache }
        }
    }

    /// Writes the cache to its file (errors ignored: the cache is an optimization).
    func savePipelineCache() {
        guard let cache = pipelineCache, let path = pipelineCachePath else { return }
        var size = 0
        guard vkGetPipelineCacheData(device, cache, &size, nil) == VK_SUCCESS, size > 0 else { return }
        var data = [UInt8](repeating: 0, count: size)
        guard vkGetPipelineCacheData(device, cache, &size, &data) == VK_SUCCESS else { return }
        let dir = String(path[..<path.lastIndex(of: "/")!])
        var prefix = ""
        for part in dir.split(separator: "/") { prefix += "/" + part; mkdir(prefix, 0o755) }
        let tmp = path + ".\(getpid()).tmp"
        guard let f = fopen(tmp, "wb") else { return }
        let ok = fwrite(data, 1, size, f) == size
        fclose(f)
        if ok { rename(tmp, path) } else { unlink(tmp) }
    }

    deinit {
        if let device {
            vkDeviceWaitIdle(device)
            if let pipelineCache { vkDestroyPipelineCache(device, pipelineCache, nil) }
            blocks.removeAll()
            if fence != nil { vkDestroyFence(device, fence, nil) }
            if commandPool != nil { vkDestroyCommandPool(device, commandPool, nil) }
            vkDestroyDevice(device, nil)
        }
        if let instance { vkDestroyInstance(instance, nil) }
    }

    func memoryType(bits: UInt32, preferred: VkMemoryPropertyFlags, required: VkMemoryPropertyFlags) -> UInt32? {
        let types = physical.memoryTypes
        let ok = { (i: Int, want: VkMemoryPropertyFlags) in bits & (1 << UInt32(i)) != 0 && types[i].propertyFlags & want == want }
        return (types.indices.first { ok($0, preferred | required) } ?? types.indices.first { ok($0, required) }).map(UInt32.init)
    }

    func allocateCommandBuffer() throws -> VkCommandBuffer? {
        var ai = VkCommandBufferAllocateInfo()
        ai.sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO
        ai.commandPool = commandPool
        ai.level = VK_COMMAND_BUFFER_LEVEL_PRIMARY
        ai.commandBufferCount = 1
        var cmd: VkCommandBuffer?
        try check(vkAllocateCommandBuffers(device, &ai, &cmd), "vkAllocateCommandBuffers")
        return cmd
    }

    /// `oneTime: false` for a command buffer that is submitted again (replayed).
    func begin(_ cmd: VkCommandBuffer?, oneTime: Bool = true) throws {
        try check(vkResetCommandBuffer(cmd, 0), "vkResetCommandBuffer")
        var bi = VkCommandBufferBeginInfo()
        bi.sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO
        bi.flags = oneTime ? flags(VK_COMMAND_BUFFER_USAGE_ONE_TIME_SUBMIT_BIT) : 0
        try check(vkBeginCommandBuffer(cmd, &bi), "vkBeginCommandBuffer")
    }

    /// Ends `cmd`, submits it alone and waits for it.
    func makeFence() throws -> VkFence? {
        var fci = VkFenceCreateInfo()
        fci.sType = VK_STRUCTURE_TYPE_FENCE_CREATE_INFO
        var f: VkFence?
        try check(vkCreateFence(device, &fci, nil, &f), "vkCreateFence")
        return f
    }

    /// Ends `cmd` (unless `end` is false: an already ended buffer being replayed), submits it
    /// signalling `f`, and returns without waiting.
    func submit(_ cmd: VkCommandBuffer?, fence f: VkFence?, end: Bool = true) throws {
        if end { try check(vkEndCommandBuffer(cmd), "vkEndCommandBuffer") }
        var cmd = cmd
        try withUnsafePointer(to: &cmd) { cmds in
            var si = VkSubmitInfo()
            si.sType = VK_STRUCTURE_TYPE_SUBMIT_INFO
            si.commandBufferCount = 1
            si.pCommandBuffers = cmds
            try check(vkQueueSubmit(queue, 1, &si, f), "vkQueueSubmit")
        }
    }

    /// Poll a step's fence for up to this many seconds before sleeping in vkWaitForFences (0: sleep at once; VulkanBackend
    /// sets it: 20 ms on GPUs, env SHARD_VK_FENCE_SPIN_MS): the driver's wake-up after a sleep adds latency to every step.
    var fenceSpinSeconds = 0.0

    func wait(_ f: VkFence?) throws {
        var f = f
        if fenceSpinSeconds > 0 {
            let start = DispatchTimeShim.now()
            while DispatchTimeShim.now() - start < fenceSpinSeconds {
                let r = vkGetFenceStatus(device, f)
                if r == VK_SUCCESS { try check(vkResetFences(device, 1, &f), "vkResetFences"); return }
                if r != VK_NOT_READY { try check(r, "vkGetFenceStatus") }
            }
        }
        try check(vkWaitForFences(device, 1, &f, VkBool32(VK_TRUE), UInt64.max), "vkWaitForFences")
        try check(vkResetFences(device, 1, &f), "vkResetFences")
    }

    /// Ends (unless `end` is false: an already ended buffer being replayed), submits and waits.
    func submitAndWait(_ cmd: VkCommandBuffer?, end: Bool = true) throws {
        try submit(cmd, fence: fence, end: end)
        try wait(fence)
    }
}

/// A VkBuffer with its own memory. Device-local unless `hostVisible` (then persistently mapped).
/// Device-local memory blocks that long-lived buffers (weights, KV cache, activations) are bound into
/// at offsets, first fit: one allocation per buffer would round each up to the driver's page size
/// (2 MiB on NVIDIA: ~1 MiB lost per weight tensor, hundreds of MiB per model). Ranges are not reused
/// when a buffer goes; blocks are freed with the context.
final class MemoryBlock {
    let device: VkDevice?   // not the context: the context keeps its blocks (and frees them before the device)
    let memory: VkDeviceMemory?
    let size: Int
    let type: UInt32
    var used = 0
    let use: MemoryUse
    init(_ ctx: VulkanContext, size: Int, type: UInt32, use: MemoryUse) throws {
        device = ctx.device
        self.size = size
        self.type = type
        self.use = use
        var mai = VkMemoryAllocateInfo()
        mai.sType = VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO
        mai.allocationSize = VkDeviceSize(size)
        mai.memoryTypeIndex = type
        var m: VkDeviceMemory?
        try check(vkAllocateMemory(ctx.device, &mai, nil, &m), "vkAllocateMemory(\(size) bytes)")
        memory = m
        ctx.allocated(size, host: false)
        ctx.account.blockBytes += size
    }
    deinit { vkFreeMemory(device, memory, nil) }
}

final class GPUBuffer {
    let ctx: VulkanContext
    private(set) var buffer: VkBuffer?
    private(set) var memory: VkDeviceMemory?
    /// The block this buffer is bound into (pooled buffers), kept alive with it.
    private var block: MemoryBlock?
    let size: Int
    let use: MemoryUse
    let hostVisible: Bool
    /// Bytes of this buffer's own vkAllocateMemory (0 when bound into a block), or bound in its block.
    private var allocationBytes = 0, boundBytes = 0
    private(set) var mapped: UnsafeMutableRawPointer?
    /// Unique for the backend's lifetime (descriptor-set cache key; handles may be reused).
    let id: UInt64
    nonisolated(unsafe) private static var nextID: UInt64 = 0
    static let blockBytes = 64 << 20

    /// `pooled`: a device-local buffer bound into one of the context's memory blocks (see MemoryBlock).
    init(_ ctx: VulkanContext, size: Int, hostVisible: Bool, pooled: Bool = false, use: MemoryUse = .other) throws {
        self.ctx = ctx
        self.size = max(size, 16)
        self.use = use
        self.hostVisible = hostVisible
        Self.nextID += 1
        id = Self.nextID
        var bci = VkBufferCreateInfo()
        bci.sType = VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO
        bci.size = VkDeviceSize(self.size)
        bci.usage = flags(VK_BUFFER_USAGE_STORAGE_BUFFER_BIT, VK_BUFFER_USAGE_TRANSFER_SRC_BIT, VK_BUFFER_USAGE_TRANSFER_DST_BIT)
        bci.sharingMode = VK_SHARING_MODE_EXCLUSIVE
        try check(vkCreateBuffer(ctx.device, &bci, nil, &buffer), "vkCreateBuffer(\(self.size) bytes)")
        var req = VkMemoryRequirements()
        vkGetBufferMemoryRequirements(ctx.device, buffer, &req)
        if pooled && !hostVisible, let type = ctx.memoryType(bits: req.memoryTypeBits, preferred: flags(VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT), required: 0) {
            let align = max(Int(req.alignment), 256), need = Int(req.size)
            // Blocks hold one purpose each (a reserved purpose's blocks are sized to what was announced).
            func fit(_ b: MemoryBlock) -> Int? {
                let at = (b.used + align - 1) / align * align
                return b.type == type && b.use == use && at + need <= b.size ? at : nil
            }
            var chosen: (MemoryBlock, Int)?
            for b in ctx.blocks { if let at = fit(b) { chosen = (b, at); break } }
            if chosen == nil {
                let announced = ctx.reserved[use] ?? 0
                var size = announced > 0 ? max(need, min(announced, ctx.physical.maxAllocation)) : max(Self.blockBytes, need)
                size = (size + 4095) / 4096 * 4096
                let b: MemoryBlock
                do {
                    b = try MemoryBlock(ctx, size: size, type: type, use: use)
                } catch where size > max(Self.blockBytes, need) {
                    b = try MemoryBlock(ctx, size: max(Self.blockBytes, need), type: type, use: use)   // no room for one large block
                }
                ctx.blocks.append(b)
                chosen = (b, 0)
            }
            let (b, at) = chosen!
            try check(vkBindBufferMemory(ctx.device, buffer, b.memory, VkDeviceSize(at)), "vkBindBufferMemory")
            b.used = at + need
            if let left = ctx.reserved[use] { ctx.reserved[use] = max(0, left - (need + align - 1) / align * align) }
            block = b
            ctx.account.buffers[use, default: 0] += self.size
            ctx.account.blockBound += need
            boundBytes = need
            return
        }
        let host = flags(VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT, VK_MEMORY_PROPERTY_HOST_COHERENT_BIT)
        let local = flags(VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT)
        guard let type = hostVisible
            ? ctx.memoryType(bits: req.memoryTypeBits, preferred: flags(VK_MEMORY_PROPERTY_HOST_CACHED_BIT), required: host)
            : ctx.memoryType(bits: req.memoryTypeBits, preferred: local, required: 0)
        else { throw ComputeError("Vulkan: no memory type for a \(hostVisible ? "host-visible" : "device") buffer") }
        var mai = VkMemoryAllocateInfo()
        mai.sType = VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO
        mai.allocationSize = req.size
        mai.memoryTypeIndex = type
        try check(vkAllocateMemory(ctx.device, &mai, nil, &memory), "vkAllocateMemory(\(req.size) bytes)")
        allocationBytes = Int(req.size)
        ctx.allocated(allocationBytes, host: hostVisible)
        ctx.account.buffers[use, default: 0] += self.size
        try check(vkBindBufferMemory(ctx.device, buffer, memory, 0), "vkBindBufferMemory")
        if hostVisible {
            try check(vkMapMemory(ctx.device, memory, 0, VkDeviceSize(VK_WHOLE_SIZE), 0, &mapped), "vkMapMemory")
        }
    }

    deinit {
        if mapped != nil { vkUnmapMemory(ctx.device, memory) }
        if buffer != nil { vkDestroyBuffer(ctx.device, buffer, nil) }
        if memory != nil { vkFreeMemory(ctx.device, memory, nil) }
        if memory != nil || block != nil { ctx.account.buffers[use, default: 0] -= size }
        if allocationBytes > 0 { ctx.allocated(-allocationBytes, host: hostVisible) }
        if block != nil { ctx.account.blockBound -= boundBytes }
        // Let go of the block while the context (and its device) surely lives: if this buffer holds
        // the context's last reference, the context goes right after, freeing its blocks first.
        block = nil
    }
}

/// A compute pipeline for one shader (one SPIR-V module), with its descriptor-set layout
/// (`bindings` storage buffers), a push-constant range and specialization constants.
final class Pipeline {
    let ctx: VulkanContext
    let name: String
    let bindings: Int
    private(set) var module: VkShaderModule?
    private(set) var setLayout: VkDescriptorSetLayout?
    private(set) var layout: VkPipelineLayout?
    private(set) var pipeline: VkPipeline?

    init(_ ctx: VulkanContext, name: String, spirv: [UInt32], bindings: Int, specialization: [UInt32]) throws {
        self.ctx = ctx
        self.name = name
        self.bindings = bindings
        let device = ctx.device
        try spirv.withUnsafeBufferPointer { code in
            var ci = VkShaderModuleCreateInfo()
            ci.sType = VK_STRUCTURE_TYPE_SHADER_MODULE_CREATE_INFO
            ci.codeSize = code.count * 4
            ci.pCode = code.baseAddress
            try check(vkCreateShaderModule(device, &ci, nil, &module), "vkCreateShaderModule(\(name))")
        }
        let layoutBindings = (0..<bindings).map { i in
            VkDescriptorSetLayoutBinding(binding: UInt32(i), descriptorType: VK_DESCRIPTOR_TYPE_STORAGE_BUFFER,
                                         descriptorCount: 1, stageFlags: flags(VK_SHADER_STAGE_COMPUTE_BIT), pImmutableSamplers: nil)
        }
        try layoutBindings.withUnsafeBufferPointer { b in
            var ci = VkDescriptorSetLayoutCreateInfo()
            ci.sType = VK_STRUCTURE_TYPE_DESCRIPTOR_SET_LAYOUT_CREATE_INFO
            ci.bindingCount = UInt32(b.count)
            ci.pBindings = b.baseAddress
            try check(vkCreateDescriptorSetLayout(device, &ci, nil, &setLayout), "vkCreateDescriptorSetLayout")
        }
        var range = VkPushConstantRange(stageFlags: flags(VK_SHADER_STAGE_COMPUTE_BIT), offset: 0, size: 128)
        try withUnsafePointer(to: &setLayout) { sl in
            try withUnsafePointer(to: &range) { r in
                var ci = VkPipelineLayoutCreateInfo()
                ci.sType = VK_STRUCTURE_TYPE_PIPELINE_LAYOUT_CREATE_INFO
                ci.setLayoutCount = 1
                ci.pSetLayouts = sl
                ci.pushConstantRangeCount = 1
                ci.pPushConstantRanges = r
                try check(vkCreatePipelineLayout(device, &ci, nil, &layout), "vkCreatePipelineLayout")
            }
        }
        let entries = specialization.indices.map {
            VkSpecializationMapEntry(constantID: UInt32($0), offset: UInt32($0 * 4), size: 4)
        }
        try entries.withUnsafeBufferPointer { entries in
            try specialization.withUnsafeBytes { data in
                var spec = VkSpecializationInfo(mapEntryCount: UInt32(entries.count), pMapEntries: entries.baseAddress,
                                                dataSize: data.count, pData: data.baseAddress)
                try withUnsafePointer(to: &spec) { spec in
                    try "main".withCString { entry in
                        var ci = VkComputePipelineCreateInfo()
                        ci.sType = VK_STRUCTURE_TYPE_COMPUTE_PIPELINE_CREATE_INFO
                        ci.stage.sType = VK_STRUCTURE_TYPE_PIPELINE_SHADER_STAGE_CREATE_INFO
                        ci.stage.stage = VK_SHADER_STAGE_COMPUTE_BIT
                        ci.stage.module = module
                        ci.stage.pName = entry
                        ci.stage.pSpecializationInfo = spec
                        ci.layout = layout
                        if ctx.pipelineStatistics { ci.flags = flags(VK_PIPELINE_CREATE_CAPTURE_STATISTICS_BIT_KHR) }
                        try check(vkCreateComputePipelines(device, ctx.pipelineCache, 1, &ci, nil, &pipeline), "vkCreateComputePipelines(\(name))")
                        ctx.pipelineCacheDirty = true
                    }
                }
            }
        }
    }

    /// The driver's statistics of this pipeline's executables ("name=value", e.g. NVIDIA's register count and
    /// shared memory), or [] unless the context captures them (SHARD_VK_PIPELINE_STATS=1).
    func statistics() -> [String] {
        guard ctx.pipelineStatistics, let device = ctx.device,
              let pp = vkGetDeviceProcAddr(device, "vkGetPipelineExecutablePropertiesKHR"),
              let sp = vkGetDeviceProcAddr(device, "vkGetPipelineExecutableStatisticsKHR") else { return [] }
        let properties = unsafeBitCast(pp, to: PFN_vkGetPipelineExecutablePropertiesKHR.self)
        let statistics = unsafeBitCast(sp, to: PFN_vkGetPipelineExecutableStatisticsKHR.self)
        var info = VkPipelineInfoKHR()
        info.sType = VK_STRUCTURE_TYPE_PIPELINE_INFO_KHR
        info.pipeline = pipeline
        var executables: UInt32 = 0
        guard properties(device, &info, &executables, nil) == VK_SUCCESS else { return [] }
        var out: [String] = []
        for e in 0..<executables {
            var ei = VkPipelineExecutableInfoKHR()
            ei.sType = VK_STRUCTURE_TYPE_PIPELINE_EXECUTABLE_INFO_KHR
            ei.pipeline = pipeline
            ei.executableIndex = e
            var count: UInt32 = 0
            guard statistics(device, &ei, &count, nil) == VK_SUCCESS, count > 0 else { continue }
            var stats = [VkPipelineExecutableStatisticKHR](repeating: .init(), count: Int(count))
            for i in stats.indices { stats[i].sType = VK_STRUCTURE_TYPE_PIPELINE_EXECUTABLE_STATISTIC_KHR }
            guard statistics(device, &ei, &count, &stats) == VK_SUCCESS else { continue }
            for st in stats.prefix(Int(count)) {
                let name = withUnsafeBytes(of: st.name) { String(decoding: $0.prefix(while: { $0 != 0 }), as: UTF8.self) }
                let value: String
                switch st.format {
                case VK_PIPELINE_EXECUTABLE_STATISTIC_FORMAT_BOOL32_KHR: value = st.value.b32 != 0 ? "true" : "false"
                case VK_PIPELINE_EXECUTABLE_STATISTIC_FORMAT_INT64_KHR: value = String(st.value.i64)
                case VK_PIPELINE_EXECUTABLE_STATISTIC_FORMAT_UINT64_KHR: value = String(st.value.u64)
                default: value = String(st.value.f64)
                }
                out.append("\(name)=\(value)")
            }
        }
        return out
    }

    deinit {
        let device = ctx.device
        if pipeline != nil { vkDestroyPipeline(device, pipeline, nil) }
        if layout != nil { vkDestroyPipelineLayout(device, layout, nil) }
        if setLayout != nil { vkDestroyDescriptorSetLayout(device, setLayout, nil) }
        if module != nil { vkDestroyShaderModule(device, module, nil) }
    }
}

/// Descriptor sets, one per (pipeline, bound buffers), allocated once and reused for every step
/// (a model binds the same weights and activation buffers every step). Entries keep their buffers
/// alive so that a cached set never points at a freed buffer.
final class DescriptorCache {
    struct Key: Hashable { let pipeline: ObjectIdentifier; let buffers: [UInt64] }
    let ctx: VulkanContext
    private var pools: [VkDescriptorPool?] = []
    private var sets: [Key: (set: VkDescriptorSet?, keep: [GPUBuffer])] = [:]
    private let setsPerPool: UInt32 = 512

    init(_ ctx: VulkanContext) { self.ctx = ctx }
    deinit { for p in pools { vkDestroyDescriptorPool(ctx.device, p, nil) } }

    func set(for pipeline: Pipeline, _ buffers: [GPUBuffer]) throws -> VkDescriptorSet? {
        let key = Key(pipeline: ObjectIdentifier(pipeline), buffers: buffers.map(\.id))
        if let hit = sets[key] { return hit.set }
        var set: VkDescriptorSet?
        if pools.isEmpty || !allocate(pipeline, &set) {
            try addPool()
            guard allocate(pipeline, &set) else { throw ComputeError("Vulkan: vkAllocateDescriptorSets failed") }
        }
        let infos = buffers.map { VkDescriptorBufferInfo(buffer: $0.buffer, offset: 0, range: VkDeviceSize(VK_WHOLE_SIZE)) }
        infos.withUnsafeBufferPointer { infos in
            let writes = (0..<infos.count).map { i in
                var w = VkWriteDescriptorSet()
                w.sType = VK_STRUCTURE_TYPE_WRITE_DESCRIPTOR_SET
                w.dstSet = set
                w.dstBinding = UInt32(i)
                w.descriptorCount = 1
                w.descriptorType = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER
                w.pBufferInfo = infos.baseAddress! + i
                return w
            }
            vkUpdateDescriptorSets(ctx.device, UInt32(writes.count), writes, 0, nil)
        }
        sets[key] = (set, buffers)
        return set
    }

    private func allocate(_ pipeline: Pipeline, _ set: inout VkDescriptorSet?) -> Bool {
        var layout = pipeline.setLayout
        return withUnsafePointer(to: &layout) { sl in
            var ai = VkDescriptorSetAllocateInfo()
            ai.sType = VK_STRUCTURE_TYPE_DESCRIPTOR_SET_ALLOCATE_INFO
            ai.descriptorPool = pools.last!
            ai.descriptorSetCount = 1
            ai.pSetLayouts = sl
            return vkAllocateDescriptorSets(ctx.device, &ai, &set) == VK_SUCCESS
        }
    }

    private func addPool() throws {
        var size = VkDescriptorPoolSize(type: VK_DESCRIPTOR_TYPE_STORAGE_BUFFER, descriptorCount: setsPerPool * 4)
        var ci = VkDescriptorPoolCreateInfo()
        ci.sType = VK_STRUCTURE_TYPE_DESCRIPTOR_POOL_CREATE_INFO
        ci.maxSets = setsPerPool
        ci.poolSizeCount = 1
        var pool: VkDescriptorPool?
        try withUnsafePointer(to: &size) { s in
            ci.pPoolSizes = s
            try check(vkCreateDescriptorPool(ctx.device, &ci, nil, &pool), "vkCreateDescriptorPool")
        }
        pools.append(pool)
    }
}
