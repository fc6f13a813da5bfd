#if canImport(Glibc)
import Glibc
#endif
import Compute
import VulkanBackend

/// Makes the compute backend a shard runs on.
public enum BackendFactory {
    public static func make(_ kind: BackendKind, device: Int? = nil, threads: Int = Parallel.defaultThreads) throws -> any ComputeBackend {
        switch kind {
        case .cpu: return CPUBackend(threads: threads)
        case .vulkan:
            if let device, !VulkanBackend.available().indices.contains(device) {
                throw ComputeError("Vulkan device \(device) does not exist (\(VulkanBackend.available().count) found)")
            }
            return try VulkanBackend(deviceIndex: device)
        }
    }

    /// What `--backend auto` means: Vulkan when a real GPU is present, else the CPU
    /// (a CPU Vulkan driver such as lavapipe is slower than the CPU backend).
    public static func auto() -> BackendKind {
        VulkanBackend.available().contains { $0.usable && $0.type != "cpu" } ? .vulkan : .cpu
    }
}

extension BackendFactory {
    /// Bytes a new shard could use on this backend: for the CPU the host's available memory
    /// (MemAvailable: free plus reclaimable page cache), for Vulkan the device-local heap's free bytes
    /// (VK_EXT_memory_budget), or the heap's size where the device does not report them.
    public static func freeMemory(_ kind: BackendKind, device: Int? = nil) -> Int {
        switch kind {
        case .cpu:
            return HostMemory.available() ?? 0
        case .vulkan:
            if let free = VulkanBackend.freeMemory(deviceIndex: device) { return free }
            let devices = VulkanBackend.available()
            if let device, devices.indices.contains(device) { return devices[device].deviceLocalBytes }
            // The device VulkanBackend picks by default: discrete first, then integrated, virtual, CPU.
            let order = ["discrete-gpu", "integrated-gpu", "virtual-gpu", "cpu"]
            func rank(_ d: VulkanDeviceInfo) -> Int { order.firstIndex(of: d.type) ?? order.count }
            let best = devices.filter(\.usable).min { (rank($0), $0.index) < (rank($1), $1.index) }
            return best?.deviceLocalBytes ?? 0
        }
    }

}
