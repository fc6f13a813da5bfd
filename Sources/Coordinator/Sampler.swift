#if canImport(Glibc)
import Glibc
#endif
import ShardRuntime
import GGUF  // SplitMix64: the same seed gives the same samples on every machine

public struct SamplingParams: Sendable, Equatable {
    /// 0 (or less) is greedy.
    public var temperature: Float = 0.8
    /// 0 disables.
    public var topK: Int = 40
    /// 1 disables.
    public var topP: Float = 0.95
    /// 0 disables.
    public var minP: Float = 0.05
    /// 1 disables.
    public var repeatPenalty: Float = 1.0
    /// How many recent tokens the repetition penalty looks at.
    public var repeatLastN: Int = 64
    public var seed: UInt64 = 0
    public init() {}
    public static var greedy: SamplingParams { var p = SamplingParams(); p.temperature = 0; return p }
}

/// Picks the next token from logits: repetition penalty, then top-k, top-p, min-p, temperature and a
/// seeded draw (llama.cpp's default chain order). Temperature 0 is argmax.
public struct Sampler: Sendable {
    public let params: SamplingParams
    private var rng: SplitMix64
    private var recent: [Int32] = []

    public init(_ params: SamplingParams) {
        self.params = params
        rng = SplitMix64(seed: params.seed)
    }

    /// Tokens already in the context (the prompt) count for the repetition penalty.
    public mutating func accept(_ token: Int32) {
        recent.append(token)
        if recent.count > max(params.repeatLastN, 0) { recent.removeFirst(recent.count - max(params.repeatLastN, 0)) }
    }

    public mutating func sample(_ logitsIn: UnsafeBufferPointer<Float>) -> Int32 {
        // Greedy without a penalty: the argmax of the logits as they are, no copy.
        if params.temperature <= 0 && (params.repeatPenalty == 1 || recent.isEmpty) { return Sampler.argmax(logitsIn) }
        var logits = Array(logitsIn)
        if params.repeatPenalty != 1, !recent.isEmpty {
            for t in Set(recent) where Int(t) < logits.count {
                let l = logits[Int(t)]
                logits[Int(t)] = l > 0 ? l / params.repeatPenalty : l * params.repeatPenalty
            }
        }
        if params.temperature <= 0 { return Sampler.argmax(logits) }

        // Candidates sorted by logit, highest first.
        var candidates: [(id: Int32, logit: Float)]
        if params.topK > 0 && params.topK < logits.count {
            candidates = Sampler.topK(logits, params.topK)
        } else {
            candidates = logits.enumerated().map { (Int32($0.offset), $0.element) }.sorted { $0.logit > $1.logit }
        }
        // Probabilities at temperature 1 for top-p / min-p, as llama.cpp computes them.
        var probs = Sampler.softmax(candidates.map(\.logit))
        if params.topP < 1 {
            var cumulative: Float = 0, keep = candidates.count
            for (i, p) in probs.enumerated() {
                cumulative += p
                if cumulative >= params.topP { keep = i + 1; break }
            }
            candidates.removeLast(candidates.count - keep)
            probs.removeLast(probs.count - keep)
        }
        if params.minP > 0, let top = probs.first {
            let threshold = top * params.minP
            let keep = max(1, probs.prefix { $0 >= threshold }.count)
            candidates.removeLast(candidates.count - keep)
        }
        let final = Sampler.softmax(candidates.map { $0.logit / params.temperature })
        let r = Float(Double(rng.next() >> 11) * 0x1p-53)
        var cumulative: Float = 0
        for (i, p) in final.enumerated() {
            cumulative += p
            if r < cumulative { return candidates[i].id }
        }
        return candidates[candidates.count - 1].id
    }

    public static func argmax(_ logits: [Float]) -> Int32 {
        logits.withUnsafeBufferPointer { argmax($0) }
    }

    /// The first index of the largest value.
    public static func argmax(_ logits: UnsafeBufferPointer<Float>) -> Int32 { GreedyPick.argmax(logits) }

    /// True when this sampler always takes the argmax of the logits as they are (greedy, no penalty):
    /// then the last shard can pick the token itself (`LogitSampling.greedy`).
    public var isPlainGreedy: Bool { params.temperature <= 0 && params.repeatPenalty == 1 }

    static func softmax(_ x: [Float]) -> [Float] {
        guard let m = x.max() else { return [] }
        let e = x.map { expf($0 - m) }
        let s = e.reduce(0, +)
        return e.map { $0 / s }
    }

    /// The k highest logits, highest first (ties: lower id first).
    public static func topK(_ logits: [Float], _ k: Int) -> [(id: Int32, logit: Float)] {
        var heap: [(id: Int32, logit: Float)] = []
        heap.reserveCapacity(k + 1)
        var minIndex = 0
        for (i, l) in logits.enumerated() {
            if heap.count < k {
                heap.append((Int32(i), l))
                if heap.count == k { minIndex = heap.indices.min { heap[$0].logit < heap[$1].logit }! }
            } else if l > heap[minIndex].logit {
                heap[minIndex] = (Int32(i), l)
                minIndex = heap.indices.min { heap[$0].logit < heap[$1].logit }!
            }
        }
        return heap.sorted { $0.logit > $1.logit || ($0.logit == $1.logit && $0.id < $1.id) }
    }
}
