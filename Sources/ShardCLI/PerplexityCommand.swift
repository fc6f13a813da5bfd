import ArgumentParser
import Coordinator
#if canImport(Glibc)
import Glibc
#endif

extension Shardctl {
    struct Perplexity: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Perplexity of a text file, computed as llama.cpp's llama-perplexity does.")
        @OptionGroup var model: ModelOption
        @Option(help: "Text file to score.")
        var file: String
        @OptionGroup var compute: ComputeOptions

        func run() throws {
            var options = try compute.loadOptions(singleSequence: true)
            let ctx = compute.ctx ?? 512
            options.contextLength = ctx
            let m = try loadModel(model.model, options)
            guard let bytes = readWholeFile(file) else { throw ValidationError("cannot read \(file)") }
            let text = String(decoding: bytes, as: UTF8.self)
            let tokens = m.tokenizer.encode(text, addSpecial: true, parseSpecial: true)
            let result = try PerplexityRunner(generator: m.generator, vocabSize: m.config.vocabSize,
                                              bos: m.tokenizer.addBOS ? m.tokenizer.bosID : nil)
                .run(tokens: tokens, context: ctx) { chunk, total, ppl in
                    Terminal.write("[\(chunk)/\(total)] \(fixed(ppl, 4))\n")
                }
            Terminal.write("PPL = \(fixed(result.perplexity, 4))\n")
        }
    }
}

func readWholeFile(_ path: String) -> [UInt8]? {
    guard let f = fopen(path, "rb") else { return nil }
    defer { fclose(f) }
    var out: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 1 << 16)
    while true {
        let n = fread(&chunk, 1, chunk.count, f)
        if n == 0 { break }
        out.append(contentsOf: chunk[..<n])
    }
    return ferror(f) == 0 ? out : nil
}
