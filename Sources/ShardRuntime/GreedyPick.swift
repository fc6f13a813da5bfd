#if canImport(Glibc)
import Glibc
#endif

/// A greedy choice from one row of logits: the argmax token and, when asked, its log-probability and the
/// most likely alternatives. The last shard computes it itself for greedy requests (so that a token id,
/// not vocab × 4 bytes of logits, crosses the wire) and the coordinator computes it from logits: both
/// run this code on the same f32 logits, so the tokens and log-probabilities are bit-identical.
public struct GreedyPick: Sendable, Equatable {
    public struct Alternative: Sendable, Equatable {
        public var token: Int32
        public var logprob: Float
        public init(token: Int32, logprob: Float) {
            self.token = token
            self.logprob = logprob
        }
    }
    public var token: Int32
    /// log-softmax of the logits at `token` (0 when not asked for).
    public var logprob: Float
    /// Most likely first; ties: lower id first.
    public var top: [Alternative]
    public init(token: Int32, logprob: Float, top: [Alternative]) {
        self.token = token
        self.logprob = logprob
        self.top = top
    }

    /// The argmax of `logits`; with `logprobs`, also its log-probability and the `top` best alternatives.
    public static func pick(_ logits: UnsafeBufferPointer<Float>, logprobs: Bool, top k: Int) -> GreedyPick {
        let token = argmax(logits)
        return logprobs ? self.logprobs(logits, token: token, top: k) : GreedyPick(token: token, logprob: 0, top: [])
    }

    /// The first index of the largest value: the maximum eight lanes at a time, then the first entry equal
    /// to it (the scalar loop below, for NaNs and short rows, defines the result).
    public static func argmax(_ logits: UnsafeBufferPointer<Float>) -> Int32 {
        let n = logits.count
        if n >= 64, let base = logits.baseAddress {
            var m8 = UnsafeRawPointer(base).loadUnaligned(as: SIMD8<Float>.self)
            var nan = m8 .!= m8
            var i = 8
            while i + 8 <= n {
                let v = UnsafeRawPointer(base + i).loadUnaligned(as: SIMD8<Float>.self)
                m8 = pointwiseMax(m8, v)
                nan .|= v .!= v
                i += 8
            }
            var m = m8.max()
            while i < n { m = max(m, base[i]); nan[0] = nan[0] || base[i].isNaN; i += 1 }
            if !any(nan), let at = logits.firstIndex(of: m) { return Int32(at) }
        }
        return scalarArgmax(logits)
    }

    public static func scalarArgmax(_ logits: UnsafeBufferPointer<Float>) -> Int32 {
        var best = 0
        var bestValue = logits[0]
        for i in 1..<logits.count where logits[i] > bestValue {
            best = i
            bestValue = logits[i]
        }
        return Int32(best)
    }

    /// log-softmax at `token` and the `k` most likely tokens.
    public static func logprobs(_ logits: UnsafeBufferPointer<Float>, token: Int32, top k: Int) -> GreedyPick {
        let logZ = logSumExp(logits)
        var top: [Alternative] = []
        if k > 0 {
            // Partial selection: keep the k best in a small sorted array.
            for (i, x) in logits.enumerated() where top.count < k || x > top[top.count - 1].logprob {
                let entry = Alternative(token: Int32(i), logprob: x)
                let at = top.firstIndex { $0.logprob < x } ?? top.count
                top.insert(entry, at: at)
                if top.count > k { top.removeLast() }
            }
            top = top.map { Alternative(token: $0.token, logprob: $0.logprob - logZ) }
        }
        return GreedyPick(token: token, logprob: logits[Int(token)] - logZ, top: top)
    }

    /// log Σ exp(logits), eight lanes at a time with a polynomial exp (relative error ≈ 2e-7, far below
    /// what a reported log-probability needs): a vocabulary of 50k–150k entries per token is the
    /// largest per-token cost outside the model, and `expf` one value at a time made it ~0.3 ms.
    public static func logSumExp(_ logits: UnsafeBufferPointer<Float>) -> Float {
        let n = logits.count
        guard n > 0, let base = logits.baseAddress else { return -.infinity }
        var m8 = SIMD8<Float>(repeating: -.infinity)
        var i = 0
        while i + 8 <= n {
            m8 = pointwiseMax(m8, UnsafeRawPointer(base + i).loadUnaligned(as: SIMD8<Float>.self))
            i += 8
        }
        var maxLogit = m8.max()
        while i < n { maxLogit = max(maxLogit, base[i]); i += 1 }
        guard maxLogit.isFinite else { return maxLogit }
        let mv = SIMD8<Float>(repeating: maxLogit)
        var acc = SIMD8<Float>(repeating: 0)
        var total: Double = 0
        i = 0
        var blocks = 0
        while i + 8 <= n {
            acc += expNonPositive(UnsafeRawPointer(base + i).loadUnaligned(as: SIMD8<Float>.self) - mv)
            i += 8
            blocks += 1
            if blocks == 512 { total += Double(acc.sum()); acc = .zero; blocks = 0 }
        }
        total += Double(acc.sum())
        while i < n { total += Double(expf(base[i] - maxLogit)); i += 1 }
        return maxLogit + Float(log(total))
    }

    /// exp(x) for x ≤ 0 (Cephes' expf: 2^n · p(r) with r = x − n·ln 2 in two parts, degree-5 polynomial).
    /// n is rounded with the 1.5 · 2^23 trick and its integer read from the sum's low bits: the SIMD
    /// `rounded(_:)` and `SIMD8<Int32>(_: SIMD8<Float>)` conversions go lane by lane through generic
    /// code (~1 ms per 50k-entry row, more than everything else a step costs the scheduler).
    @inline(__always)
    public static func expNonPositive(_ x: SIMD8<Float>) -> SIMD8<Float> {
        let x = pointwiseMax(x, SIMD8(repeating: -87.3))
        let magic = SIMD8<Float>(repeating: 12_582_912)   // 1.5 · 2^23: adding it rounds to an integer (ties to even)
        let shifted = x * 1.442_695_04 + magic
        let n = shifted - magic
        var r = x - n * 0.693_359_375
        r = r + n * 2.121_944_4e-4
        var p = SIMD8<Float>(repeating: 1.987_569_2e-4)
        p = p * r + 1.398_199_9e-3
        p = p * r + 8.333_452e-3
        p = p * r + 4.166_579_6e-2
        p = p * r + 1.666_666_5e-1
        p = p * r + 5.000_000_1e-1
        p = p * r * r + r + 1
        // shifted's bits minus magic's bits = n (|n| ≤ 126 sits in the low mantissa bits).
        let ni = unsafeBitCast(shifted, to: SIMD8<Int32>.self) &- unsafeBitCast(magic, to: SIMD8<Int32>.self)
        let bits = (ni &+ 127) &<< 23
        return p * unsafeBitCast(bits, to: SIMD8<Float>.self)
    }
}
