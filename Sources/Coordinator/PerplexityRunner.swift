#if canImport(Glibc)
import Glibc
#endif

/// Perplexity the way llama.cpp's llama-perplexity computes it: the tokens are cut into chunks of
/// `context`; the first token of each chunk becomes BOS when the model adds one; each chunk is
/// evaluated from scratch and only its second half is scored (every scored token sees at least
/// context/2 tokens before it).
public struct PerplexityRunner {
    public let generator: Generator
    public let vocabSize: Int
    public let bos: Int32?

    public init(generator: Generator, vocabSize: Int, bos: Int32?) {
        self.generator = generator
        self.vocabSize = vocabSize
        self.bos = bos
    }

    public struct Result { public var perplexity: Double; public var scored: Int; public var chunks: Int }

    public func run(tokens: [Int32], context: Int, onChunk: (Int, Int, Double) -> Void = { _, _, _ in }) throws -> Result {
        guard context >= 8 else { throw GenerationError("the context must be at least 8 tokens") }
        let chunks = tokens.count / context
        guard tokens.count >= 2 * context else {
            throw GenerationError("the text has \(tokens.count) tokens; perplexity with a context of \(context) needs at least \(2 * context)")
        }
        let first = context / 2
        var nll = 0.0
        var scored = 0
        for c in 0..<chunks {
            var chunk = Array(tokens[(c * context)..<((c + 1) * context)])
            if let bos { chunk[0] = bos }
            let logits = try generator.allLogits(chunk)
            for j in first..<(context - 1) {
                let row = logits[(j * vocabSize)..<((j + 1) * vocabSize)]
                let m = Double(row.max()!)
                var sum = 0.0
                for l in row { sum += exp(Double(l) - m) }
                let target = Int(tokens[c * context + j + 1])
                nll += m + log(sum) - Double(row[row.startIndex + target])
                scored += 1
            }
            onChunk(c + 1, chunks, exp(nll / Double(scored)))
        }
        return Result(perplexity: exp(nll / Double(scored)), scored: scored, chunks: chunks)
    }
}
