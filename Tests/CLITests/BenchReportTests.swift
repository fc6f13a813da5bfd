import Testing
@testable import ShardCLI

/// `bench --concurrency`'s arithmetic on made-up token times (no model): aggregate decode counts every token after the
/// last stream's first one; steady decode only those while every stream still decodes.
@Suite struct BenchReportTests {
    /// Stream i's tokens at the given milliseconds after `start`.
    func streams(_ times: [[Int]], start: ContinuousClock.Instant) -> [BenchLog.Stream] {
        times.map { ms in
            var s = BenchLog.Stream()
            s.tokenTimes = ms.map { start + .milliseconds($0) }
            s.done = true
            return s
        }
    }

    @Test func steadyDecodeCountsOnlyTheStepsEveryStreamTakesPartIn() {
        let start = ContinuousClock().now
        // Stream 0 starts at 10 ms and ends at 100; stream 1 starts at 40 and ends at 190 (steps every 10 ms).
        let s = streams([Array(stride(from: 10, through: 100, by: 10)), Array(stride(from: 40, through: 190, by: 10))], start: start)
        let r = BenchReport(streams: s, start: start, promptTokens: 4)
        // Steady: steps at 50…100 ms, 2 tokens each, over the 60 ms from 40 to 100: 200 tok/s.
        #expect(abs(r.steadyDecode - 200) < 1e-6)
        // Aggregate: after 40 ms, stream 0's 6 tokens and stream 1's 15, over 150 ms: 140 tok/s (the tail has one stream).
        #expect(abs(r.aggregateDecode - 140) < 1e-6)
        #expect(r.generated == 26)
    }

    @Test func noSteadySpanWhenAStreamEndsBeforeTheLastStarts() {
        let start = ContinuousClock().now
        let r = BenchReport(streams: streams([[10, 20, 30], [50, 60, 70]], start: start), start: start, promptTokens: 4)
        #expect(r.steadyDecode == 0)
        #expect(r.aggregateDecode > 0)
    }
}
