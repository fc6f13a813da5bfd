import Testing
@testable import VulkanBackend

/// kernel-bench --vulkan --sync (sync_probe.comp): the chains run and time. One workgroup is always resident,
/// so its grid barriers must complete (no spin overflow); on lavapipe, 2 workgroups may not be resident at once
/// and then the report must say so rather than hang.
extension VulkanBackendTests {
    @Test func syncProbeTimesEveryChainAndNeverHangs() throws {
        let vk = try Shared.vulkan()
        let report = try vk.syncReport(groupCounts: [1, 2], chunks: [0, 4096])
        let lines = report.split(separator: "\n").map(String.init)
        #expect(lines.count == 5, "a header and one line per (groups, chunk): \(report)")
        for line in lines.dropFirst() {
            for name in ["dispatch + barrier", "dispatch, no barrier", "grid barrier", "grid barrier, loads first", "chained dispatches",
                         "chained, loads first"] {
                #expect(line.contains(name + " ") || line.contains(name + " failed"), "\(name) missing: \(line)")
            }
        }
        // A single workgroup's grid barriers: never an overflow; chained dispatches never overflow (each waits only
        // for dispatches launched before it).
        for line in lines where line.hasPrefix("G 1,") { #expect(!line.contains("failed"), "\(line)") }
        for line in lines.dropFirst() { #expect(!line.contains("chained dispatches failed") && !line.contains("chained, loads first failed"), "\(line)") }
        // 4096 bytes per phase report a bandwidth.
        #expect(lines.contains { $0.hasPrefix("G 1, 4096 B") && $0.contains("GB/s") })
        print(report)
    }
}
