import Foundation
import GGUF
import Testing
import Quant

/// `SHARD_QUANT_BENCH=1 swift test -c release --filter QuantTests.benchmark` prints GB/s of weights per core.
@Test(.enabled(if: ProcessInfo.processInfo.environment["SHARD_QUANT_BENCH"] != nil))
func benchmark() {
    for t in [GGMLType.q4_1, .q8_0, .q4_K, .q6_K, .q5_0, .q4_0, .q5_K, .q3_K, .q2_K, .f16] {
        print(QuantDot.benchmark(t, rows: 1536, count: t.blockSize == 256 ? 512 : 576))
        print(QuantDot.benchmark(t, rows: 49152, count: 512 + 64 * (t.blockSize == 256 ? 0 : 1)))
    }
    for t in [GGMLType.q4_1, .q8_0, .q4_K] {
        print(QuantDot.benchmark(t, rows: 1536, count: 576 - (t.blockSize == 256 ? 64 : 0), columns: 8))
    }
}
