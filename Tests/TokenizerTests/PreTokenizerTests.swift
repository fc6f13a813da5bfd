import Foundation
import Testing
@testable import Tokenizer

/// tests/golden/tokenizer/pretokenizer.json, written by scripts/golden-pretokenizer.py: llama.cpp's regex
/// strings applied with Python's `regex` module.
struct PreTokenizerGolden: Decodable {
    struct Split: Decodable { let text: String; let words: [String] }
    let splits: [String: [Split]]
}

@Suite("pre-tokenizers")
struct PreTokenizerTests {
    @Test("splits match the regex reference", arguments: ["llama3", "qwen2", "gpt2", "smollm"])
    func splits(name: String) throws {
        let g = try TestSupport.readJSON(PreTokenizerGolden.self, "pretokenizer.json")
        let kind = try #require(PreTokenizer(rawValue: name))
        let cases = try #require(g.splits[name])
        #expect(cases.count > 40)
        for c in cases {
            let got = kind.split(c.text)
            // compare as unicode scalars (String == is canonical equivalence)
            #expect(got.map { Array($0.unicodeScalars) } == c.words.map { Array($0.unicodeScalars) },
                    "\(name) \(c.text.debugDescription)\n got      \(got)\n expected \(c.words)")
        }
    }

    @Test func llama3Examples() {
        #expect(PreTokenizer.llama3.split("I'M 1234567 ok!\n\n  x") == ["I", "'M", " ", "123", "456", "7", " ok", "!\n\n", " ", " x"])
        #expect(PreTokenizer.qwen2.split("a 12") == ["a", " ", "1", "2"])
        #expect(PreTokenizer.smollm.split("x 12") == ["x", " ", "1", "2"])
    }
}
