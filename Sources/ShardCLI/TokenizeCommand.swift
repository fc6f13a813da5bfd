import ArgumentParser
import GGUF
import Tokenizer

extension Shardctl {
    struct Tokenize: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Print the token ids of a text as a JSON array.")
        @OptionGroup var model: ModelOption
        @Option(help: "The text to tokenize.")
        var text: String
        @Flag(name: .customLong("no-bos"), help: "Do not add BOS even when the model's metadata asks for it.")
        var noBOS = false
        @Flag(name: .customLong("no-parse-special"), help: "Treat special-token text as plain text.")
        var noParseSpecial = false

        func run() throws {
            let file = try GGUFFile(path: model.model)
            let tokenizer = try Tokenizer(gguf: file)
            let ids = tokenizer.encode(text, addSpecial: !noBOS, parseSpecial: !noParseSpecial)
            Terminal.write("[" + ids.map(String.init).joined(separator: ",") + "]\n")
        }
    }
}
