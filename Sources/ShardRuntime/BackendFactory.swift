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
