import Foundation
import Testing
import Wire

/// Opt-in: `SHARD_WIRE_BENCH=1 swift test --filter WireTests.WireBenchmark` (prints the table).
@Suite(.enabled(if: ProcessInfo.processInfo.environment["SHARD_WIRE_BENCH"] == "1"))
struct WireBenchmarkTests {
    @Test func activationFrames() throws {
        print(try WireBenchmark.report())
    }
}
