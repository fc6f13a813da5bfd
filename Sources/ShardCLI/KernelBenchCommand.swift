import ArgumentParser
import GGUF
import Quant
import VulkanBackend
import Wire

extension Shardctl {
    /// Single-core GB/s of the quantized dot kernels (a developer tool; not in the public contract).
    struct KernelBench: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "kernel-bench", abstract: "Measure the CPU dot-product kernels (GB/s of weights, one core).",
            shouldDisplay: false)
        @Flag(help: "Measure the Vulkan device's copy bandwidth (GB/s read + written) and its mat-mat paths (prefill and batched decode, checked against f32) instead.")
        var vulkan = false
        @Flag(help: "With --vulkan: time the decode mat-vecs (float and integer-dot) on the 7B's shapes only.")
        var matvec = false
        @Flag(help: "With --vulkan: time batched-decode products (8...64 columns) on the 7B's shapes: matvec_q8_mc, matmul_cm and its K-split tiles.")
        var decode = false
        @Flag(help: "With --vulkan: what a dependent step costs: chains of phases as dispatches with barriers, without, and as grid barriers in one dispatch.")
        var sync = false
        @Flag(help: "With --vulkan: time decode attention (1...64 rows, the 7B's heads) under its variants.")
        var attention = false
        @Option(help: "With --attention: row counts, comma-separated.")
        var attentionRows: String = "1,2,8,16,32,64"
        @Option(help: "With --attention: context ranges lo-hi, comma-separated.")
        var attentionContexts: String = "16-112,128-256"
        @Option(help: "Vulkan mat-mat size: rows,columns-of-weights,tokens.")
        var matmul: String = "4096,4096,512"

        func run() throws {
            if vulkan {
                let b = try VulkanBackend()
                if matvec {
                    Terminal.write("\(b.deviceName), integer dot products: \(b.dotProducts ? "yes" : "no")\n" + (try b.matvecReport()) + "\n")
                    return
                }
                if sync {
                    Terminal.write("\(b.deviceName)\n" + (try b.syncReport()) + "\n")
                    return
                }
                if attention {
                    let rows = attentionRows.split(separator: ",").compactMap { Int($0) }
                    let ranges = attentionContexts.split(separator: ",").compactMap { r -> (Int, Int)? in
                        let v = r.split(separator: "-").compactMap { Int($0) }
                        return v.count == 2 && v[0] >= 1 && v[1] >= v[0] ? (v[0], v[1]) : nil
                    }
                    guard !rows.isEmpty, !ranges.isEmpty, rows.allSatisfy({ $0 >= 1 }) else { throw ValidationError("--attention-rows / --attention-contexts") }
                    Terminal.write(try b.attentionReport(rowsList: rows, ranges: ranges) + "\n")
                    return
                }
                if decode {
                    Terminal.write(try b.decodeReport() + "\n")
                    return
                }
                let gbs = try b.copyBandwidth()
                Terminal.write("vulkan copy bandwidth: \((gbs * 10).rounded() / 10) GB/s (read + write, 1 GiB buffers) on \(b.deviceName)\n")
                Terminal.write("cooperative matrices: \(b.cooperativeMatrix ? "yes (VK_NV_cooperative_matrix, 16x16x16 f16)" : "no")\n")
                let mkn = matmul.split(separator: ",").compactMap { Int($0) }
                guard mkn.count == 3, mkn.allSatisfy({ $0 > 0 }) else { throw ValidationError("--matmul wants M,K,N") }
                Terminal.write(try b.matmulReport(m: mkn[0], k: mkn[1], n: mkn[2]) + "\n")
                return
            }
            for t in [GGMLType.q4_1, .q8_0, .q4_K, .q6_K, .q5_0, .q4_0, .q5_K, .q3_K, .q2_K, .f16] {
                Terminal.write("\(QuantDot.benchmark(t, rows: 1536, count: t.blockSize == 256 ? 512 : 576))\n")
                Terminal.write("\(QuantDot.benchmark(t, rows: 49152, count: 512 + 64 * (t.blockSize == 256 ? 0 : 1)))\n")
            }
            for t in [GGMLType.q4_1, .q8_0, .q4_K] {
                Terminal.write("\(QuantDot.benchmark(t, rows: 1536, count: 576 - (t.blockSize == 256 ? 64 : 0), columns: 8))\n")
            }
        }
    }
}

extension Shardctl {
    /// Per-hop latency and throughput of activation frames over the same-host link, ipc:// and tcp:// (a developer tool).
    struct WireBench: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "wire-bench", abstract: "Measure activation frames over the same-host link and ZeroMQ (ipc:// and tcp://).",
            shouldDisplay: false)
        @Option(help: "Round trips per measurement.")
        var iterations: Int = 300

        func run() throws {
            Terminal.write(try WireBenchmark.report(iterations: iterations) + "\n")
        }
    }
}
