import Foundation
import Testing
@testable import Tokenizer

/// tests/golden/tokenizer/*.json, written by scripts/golden-tokenizer.py with llama.cpp (llama-cpp-python).
struct TokenizerGolden: Decodable {
    struct Case: Decodable {
        let text: String
        let add_special: Bool
        let parse_special: Bool
        let ids: [Int32]
        let decoded_hex: String
    }
    let model: String
    let n_vocab: Int
    let bos: Int32
    let eos: Int32
    let eot: Int32
    let add_bos: Bool
    let add_eos: Bool
    let eog: [Int32]
    let pieces_hex: [String: String]
    let cases: [Case]
}

@Suite("llama.cpp goldens")
struct GoldenTokenizerTests {
    static let files = ["smollm2.json", "gemma3.json"]

    func load(_ file: String) throws -> (TokenizerGolden, Tokenizer) {
        let g = try TestSupport.readJSON(TokenizerGolden.self, file)
        return (g, try TestSupport.tokenizer(g.model))
    }

    @Test("encode matches llama_tokenize", arguments: files)
    func encode(file: String) throws {
        let (g, tok) = try load(file)
        var failures = 0
        for c in g.cases {
            let ids = tok.encode(c.text, addSpecial: c.add_special, parseSpecial: c.parse_special)
            if ids != c.ids {
                failures += 1
                Issue.record("\(file) \(c.text.debugDescription) add_special=\(c.add_special) parse_special=\(c.parse_special)\n got      \(ids)\n expected \(c.ids)")
            }
        }
        #expect(failures == 0, "\(failures) of \(g.cases.count) cases differ")
    }

    @Test("decode matches llama_detokenize", arguments: files)
    func decode(file: String) throws {
        let (g, tok) = try load(file)
        for c in g.cases {
            let got = tok.decodeBytes(c.ids)
            #expect(got.hex == c.decoded_hex, "\(file) \(c.text.debugDescription): got \(String(decoding: got, as: UTF8.self).debugDescription)")
        }
    }

    @Test("pieces match llama_token_to_piece(special: true)", arguments: files)
    func pieces(file: String) throws {
        let (g, tok) = try load(file)
        for (id, hex) in g.pieces_hex {
            let got = tok.piece(Int32(id)!)
            #expect(got.hex == hex, "\(file) token \(id) \(tok.tokenText(Int32(id)!).debugDescription)")
        }
    }

    @Test("special ids and end-of-generation set", arguments: files)
    func specials(file: String) throws {
        let (g, tok) = try load(file)
        #expect(tok.vocabSize == g.n_vocab)
        #expect(tok.bosID == g.bos)
        #expect(tok.eosID == g.eos)
        #expect(tok.addBOS == g.add_bos)
        #expect(tok.addEOS == g.add_eos)
        #expect(tok.endOfGenerationIDs == Set(g.eog))
        for id in g.eog { #expect(tok.isEndOfGeneration(id)) }
        #expect(!tok.isEndOfGeneration(g.bos) || g.eog.contains(g.bos))
    }
}
