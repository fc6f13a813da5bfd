import Foundation
import Coordinator
import Compute
import ShardRuntime
import Testing

@Suite struct SamplerTests {
    let logits: [Float] = [1.0, 3.0, 2.5, -1.0, 0.5, 2.9]

    func sample(_ p: SamplingParams, _ logits: [Float], times: Int = 1) -> [Int32] {
        var s = Sampler(p)
        return (0..<times).map { _ in logits.withUnsafeBufferPointer { s.sample($0) } }
    }

    @Test func greedyIsArgmax() {
        #expect(sample(.greedy, logits) == [1])
    }

    @Test func sameSeedSameDraws() {
        var p = SamplingParams()
        p.temperature = 1.5; p.topK = 0; p.topP = 1; p.minP = 0; p.seed = 7
        let a = sample(p, logits, times: 50), b = sample(p, logits, times: 50)
        #expect(a == b)
        p.seed = 8
        #expect(sample(p, logits, times: 50) != a)
        #expect(Set(a).count > 2, "a hot temperature explores several tokens")
    }

    @Test func topKKeepsOnlyTheKBest() {
        var p = SamplingParams()
        p.temperature = 5; p.topK = 2; p.topP = 1; p.minP = 0; p.seed = 1
        #expect(Set(sample(p, logits, times: 200)).isSubset(of: [1, 5]))
    }

    @Test func topPKeepsTheSmallestNucleus() {
        var p = SamplingParams()
        p.temperature = 5; p.topK = 0; p.topP = 0.01; p.minP = 0; p.seed = 1
        #expect(Set(sample(p, logits, times: 100)) == [1])
    }

    @Test func minPDropsUnlikelyTokens() {
        var p = SamplingParams()
        p.temperature = 5; p.topK = 0; p.topP = 1; p.minP = 0.5; p.seed = 3
        // softmax at temperature 1: tokens within log(2) of the best survive: 1 (3.0), 5 (2.9), 2 (2.5)
        #expect(Set(sample(p, logits, times: 300)) == [1, 2, 5])
    }

    @Test func repetitionPenaltyDemotesSeenTokens() {
        var p = SamplingParams.greedy
        p.repeatPenalty = 2
        var s = Sampler(p)
        s.accept(1)
        #expect(logits.withUnsafeBufferPointer { s.sample($0) } == 5)
    }

    @Test func topKHelperOrdersByLogit() {
        let top = Sampler.topK(logits, 3)
        #expect(top.map(\.id) == [1, 5, 2])
    }
}

@Suite struct LogSumExpTests {
    /// The vectorized log Σ exp agrees with a double-precision reference, on vocabulary-sized inputs and
    /// on ragged lengths, very negative and equal values.
    @Test func matchesDoublePrecision() {
        var rng = SystemRandomNumberGenerator()
        for n in [1, 7, 8, 9, 4097, 49152, 151_936] {
            let x = (0..<n).map { _ in Float.random(in: -30...25, using: &rng) }
            let m = Double(x.max()!)
            let reference = m + log(x.map { exp(Double($0) - m) }.reduce(0, +))
            let fast = x.withUnsafeBufferPointer { logSumExp($0) }
            #expect(abs(Double(fast) - reference) < 1e-5 * max(1, abs(reference)), "n = \(n)")
        }
        let flat = [Float](repeating: 2, count: 1000)
        #expect(abs(flat.withUnsafeBufferPointer { logSumExp($0) } - (2 + log(1000))) < 1e-5)
        let extreme: [Float] = [0, -200, -1e30, 5]
        #expect(abs(extreme.withUnsafeBufferPointer { logSumExp($0) } - (5 + log(1 + exp(-5)))) < 1e-5)
    }

    /// The vectorized argmax is the first index of the largest value, as the scalar loop defines it:
    /// random rows of vocabulary size and ragged lengths, ties (the first wins), a maximum in the
    /// unvectorized tail, -inf everywhere, and NaNs (ignored by the scalar loop).
    @Test func argmaxMatchesTheScalarDefinition() {
        var rng = SystemRandomNumberGenerator()
        var rows: [[Float]] = [1, 7, 63, 64, 65, 200, 49152, 32003].map { n in (0..<n).map { _ in Float.random(in: -20...20, using: &rng) } }
        var tie = [Float](repeating: 1, count: 300); tie[77] = 5; tie[201] = 5; rows.append(tie)
        var tail = [Float](repeating: 0, count: 203); tail[202] = 3; rows.append(tail)
        rows.append([Float](repeating: -.infinity, count: 100))
        var nan = (0..<500).map { Float($0 % 37) }; nan[10] = .nan; nan[480] = .nan; rows.append(nan)
        var nanFirst = (0..<100).map { Float($0) }; nanFirst[0] = .nan; rows.append(nanFirst)
        for row in rows {
            let fast = row.withUnsafeBufferPointer { GreedyPick.argmax($0) }
            let scalar = row.withUnsafeBufferPointer { GreedyPick.scalarArgmax($0) }
            #expect(fast == scalar, "\(row.count) entries")
        }
        #expect(tie.withUnsafeBufferPointer { GreedyPick.argmax($0) } == 77)
    }

    /// The vector exp at every scale the clamp allows, including x where x·log2(e) is half an integer
    /// (the rounding's ties), against exp in double precision.
    @Test func vectorExpIsAccurateOverItsRange() {
        var xs = stride(from: -87.0, through: 0.0, by: 0.0437).map { Float($0) }
        xs += (-125...0).map { Float((Double($0) + 0.5) * log(2.0)) }.filter { $0 >= -87 && $0 <= 0 }
        xs += [0, -0.0, -1e-30, -87.3]
        var worst = 0.0
        for start in stride(from: 0, to: xs.count, by: 8) {
            var v = SIMD8<Float>(repeating: 0)
            for i in 0..<8 { v[i] = xs[min(start + i, xs.count - 1)] }
            let e = GreedyPick.expNonPositive(v)
            for i in 0..<8 {
                let reference = exp(Double(v[i]))
                worst = max(worst, abs(Double(e[i]) - reference) / reference)
            }
        }
        #expect(worst < 5e-7, "worst relative error \(worst)")
    }
}

@Suite struct ThreadPoolIdleTests {
    /// Workers woken by `prepare()` (no job) or kept spinning by `idleSpin` still run every chunk of the
    /// next jobs exactly once, and the pool shuts down while they spin.
    @Test func prepareAndIdleSpinKeepJobsCorrect() {
        for idle in [Duration.zero, .milliseconds(5)] {
            let pool = ThreadPool(threads: 3)
            pool.idleSpin = idle
            #expect(pool.idleSpin == idle)
            for round in 0..<20 {
                if round % 3 == 0 { usleep(2000) }  // long enough for the default spin to end in sleep
                if round % 2 == 0 { pool.prepare() }
                let hits = UnsafeMutablePointer<Int>.allocate(capacity: 64)
                hits.initialize(repeating: 0, count: 64)
                pool.run(chunks: 64) { hits[$0] += 1 }
                #expect((0..<64).allSatisfy { hits[$0] == 1 }, "round \(round), idle spin \(idle)")
                hits.deallocate()
            }
            pool.prepare()
            pool.shutdown()
        }
    }

    /// A pool shut down while something still calls it (a generator outliving its LocalModel) runs the
    /// job on the caller's thread instead of waiting forever for workers that are gone.
    @Test func runAfterShutdownStillRunsEveryChunk() {
        let pool = ThreadPool(threads: 3)
        pool.shutdown()
        let hits = UnsafeMutablePointer<Int>.allocate(capacity: 17)
        defer { hits.deallocate() }
        hits.initialize(repeating: 0, count: 17)
        pool.run(chunks: 17) { hits[$0] += 1 }
        #expect((0..<17).allSatisfy { hits[$0] == 1 })
    }

    /// `pinThreads()` leaves the calling thread and every worker on one core each (the caller on the
    /// first allowed core); jobs still run every chunk. Runs on a thread of its own, so that no test
    /// runner thread stays pinned.
    @Test func pinnedThreadsRunOnOneCoreEach() {
        final class Result: @unchecked Sendable { var caller: [Int] = []; var allowed: [Int] = []; var masks: [[Int]] = []; var complete = false }
        let result = Result()
        let done = DispatchSemaphore(value: 0)
        let thread = Thread {
            result.allowed = ThreadPool.callingThreadCores()
            let pool = ThreadPool(threads: 3)
            pool.pinThreads()
            result.caller = ThreadPool.callingThreadCores()
            let lock = NSLock()
            var hits = [Int](repeating: 0, count: 48)
            pool.run(chunks: 48) { i in
                let cores = ThreadPool.callingThreadCores()
                usleep(100)
                lock.lock(); hits[i] += 1; result.masks.append(cores); lock.unlock()
            }
            result.complete = hits.allSatisfy { $0 == 1 }
            pool.shutdown()
            done.signal()
        }
        thread.start()
        done.wait()
        #expect(!result.allowed.isEmpty)
        #expect(result.caller == [result.allowed[0]])
        // Threads start with the process's mask, which `usableCores` counts.
        #expect(ThreadPool.usableCores == result.allowed.count)
        #expect(result.complete)
        #expect(result.masks.allSatisfy { $0.count == 1 && result.allowed.contains($0[0]) })
    }

    /// Parked workers (`park()`: no job soon, sleep now) come back for the next job, with or without a
    /// `prepare()` first, and the jobs use them (not only the calling thread).
    @Test func parkedWorkersWakeForTheNextJob() {
        let pool = ThreadPool(threads: 3)
        defer { pool.shutdown() }
        let hits = UnsafeMutablePointer<Int>.allocate(capacity: 64)
        let threads = UnsafeMutablePointer<pthread_t>.allocate(capacity: 64)
        defer { hits.deallocate(); threads.deallocate() }
        var others = 0
        for round in 0..<40 {
            hits.initialize(repeating: 0, count: 64)
            if round % 2 == 0 { pool.prepare() }
            pool.run(chunks: 64) { i in
                hits[i] += 1
                threads[i] = pthread_self()
                if i % 8 == 0 { usleep(200) }  // long enough for a woken worker to take chunks
            }
            #expect((0..<64).allSatisfy { hits[$0] == 1 }, "round \(round)")
            if (0..<64).contains(where: { pthread_equal(threads[$0], pthread_self()) == 0 }) { others += 1 }
            pool.park()
            if round % 3 == 0 { usleep(2000) }  // the workers are asleep by now
        }
        #expect(others > 20, "workers took part in \(others) of 40 jobs")
    }
}
