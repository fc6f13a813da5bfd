import Coordinator
import ShardRuntime
import Testing

/// Checks a pipeline against a llama.cpp golden (scripts/golden-model.py).
struct LlamaCppParity {
    let golden: ModelGolden
    /// A gap between llama.cpp's top two logits below which its greedy choice is a coin toss.
    let nearTie: Float
    /// Largest allowed difference of one logit.
    let logitTolerance: Float
    /// Largest allowed difference of a logit's gap to the top logit.
    let gapTolerance: Float

    func checkTopLogits(_ p: LocalPipeline, _ gen: Generator) throws {
        for c in golden.cases {
            let logits = try gen.prefill(c.ids, sequence: 7)
            try p.release(7)
            let ours = Sampler.topK(logits, 10)
            if c.margins[0] > nearTie {
                #expect(ours[0].id == c.top10[0].id, "top-1 differs for \(c.prompt.debugDescription)")
            }
            let ourTop = logits[Int(c.top10[0].id)], theirTop = c.top10[0].logit
            for t in c.top10 {
                let ours = logits[Int(t.id)]
                #expect(abs(ours - t.logit) < logitTolerance,
                        "logit of \(t.id) after \(c.prompt.debugDescription): ours \(ours), llama.cpp \(t.logit)")
                #expect(abs((ours - ourTop) - (t.logit - theirTop)) < gapTolerance,
                        "logit gap of \(t.id) to the top after \(c.prompt.debugDescription): ours \(ours - ourTop), llama.cpp \(t.logit - theirTop)")
            }
        }
    }

    /// Feeds llama.cpp's greedy tokens and checks our argmax at every step where llama.cpp's top two
    /// logits are not a near-tie; free-running greedy must agree up to the first near-tie.
    /// Returns how many steps were decisive.
    @discardableResult
    func checkGreedy(_ p: LocalPipeline, _ gen: Generator) throws -> Int {
        var decisive = 0
        for (n, c) in golden.cases.enumerated() {
            let seq = SequenceID(100 + n)
            var logits = try gen.prefill(c.ids, sequence: seq)
            for (step, expected) in c.greedy.enumerated() {
                if c.margins[step] > nearTie {
                    #expect(Sampler.argmax(logits) == expected, "step \(step) of \(c.prompt.debugDescription)")
                    decisive += 1
                }
                logits = try p.step(tokens: [expected], rows: [StepRow(sequence: seq, position: c.ids.count + step)], logitRows: [0])
            }
            try p.release(seq)

            let result = try gen.generate(prompt: c.ids, maxTokens: c.greedy.count, sampling: .greedy,
                                          isEndOfGeneration: { _ in false }, onToken: { _ in true })
            let untilTie = c.margins.firstIndex { $0 <= nearTie } ?? c.greedy.count
            #expect(Array(result.generated.prefix(untilTie)) == Array(c.greedy.prefix(untilTie)),
                    "free-running greedy differs before the first near-tie for \(c.prompt.debugDescription)")
        }
        return decisive
    }
}
