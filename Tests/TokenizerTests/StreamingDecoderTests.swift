import Foundation
import Testing
@testable import Tokenizer

@Suite("streaming decoder")
struct StreamingDecoderTests {
    static let texts = [
        "emoji 😀🎉🚀 family 👨‍👩‍👧‍👦 thumbs 👍🏽 melting 🫠",
        "中文测试，日本語のテキスト，한국어 텍스트",
        "math 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 and ancient 𓀀𓁐 glyphs",
        "plain ascii with <|im_end|> and <end_of_turn> markers",
    ]

    @Test("never yields partial UTF-8; concatenation equals decode", arguments: [TestSupport.smollm2, TestSupport.gemma3])
    func streaming(model: String) throws {
        let tok = try TestSupport.tokenizer(model)
        for text in Self.texts {
            let ids = tok.encode(text, addSpecial: false)
            var dec = StreamingDecoder(tokenizer: tok)
            var parts: [String] = []
            for id in ids { parts.append(dec.append(id)) }
            parts.append(dec.flush())
            for p in parts { #expect(!p.unicodeScalars.contains("\u{FFFD}"), "\(model): partial UTF-8 in \(p.debugDescription)") }
            #expect(parts.joined() == tok.decode(ids), "\(model) \(text)")
            #expect(Array(parts.joined().unicodeScalars) == Array(text.unicodeScalars), "\(model) round trip")
        }
    }

    @Test func holdsBackSplitSequences() throws {
        let tok = try TestSupport.tokenizer(TestSupport.smollm2)
        // SmolLM2 spells 🫠 as byte tokens: the first ones must yield nothing
        let ids = tok.encode("🫠", addSpecial: false)
        #expect(ids.count > 1)
        var dec = StreamingDecoder(tokenizer: tok)
        var out = ""
        for (k, id) in ids.enumerated() {
            let s = dec.append(id)
            if k < ids.count - 1 { #expect(s.isEmpty) }
            out += s
        }
        #expect(out == "🫠")
        #expect(dec.flush().isEmpty)
    }

    @Test func completePrefix() {
        #expect(StreamingDecoder.completePrefixLength([0x41, 0xF0, 0x9F]) == 1)
        #expect(StreamingDecoder.completePrefixLength([0xF0, 0x9F, 0x98, 0x80]) == 4)
        #expect(StreamingDecoder.completePrefixLength([0xE4, 0xB8]) == 0)
        #expect(StreamingDecoder.completePrefixLength([0x41]) == 1)
        #expect(StreamingDecoder.completePrefixLength([]) == 0)
    }
}

@Suite("speed")
struct TokenizerSpeedTests {
    /// ~10 KB of mostly unique words (so the per-word BPE cache does not hide the cost) plus unicode.
    static let text: String = {
        var rng: UInt64 = 0x9E3779B97F4A7C15
        var s = ""
        let letters = Array("abcdefghijklmnopqrstuvwxyzéüß")
        while s.utf8.count < 10_000 {
            rng = rng &* 6364136223846793005 &+ 1442695040888963407
            let len = Int(rng >> 60) + 2
            var w = ""
            for k in 0..<len { w.append(letters[Int((rng >> UInt64(4 * k % 56)) % UInt64(letters.count))]) }
            s += w
            s += (rng & 7 == 0) ? ".\n" : (rng & 7 == 1 ? ", 1234 中文 😀 " : " ")
        }
        return s
    }()

    @Test("10 KB encodes well under a second", arguments: [TestSupport.smollm2, TestSupport.gemma3])
    func encode10KB(model: String) throws {
        let tok = try TestSupport.tokenizer(model)
        let clock = ContinuousClock()
        var ids: [Int32] = []
        let t = clock.measure { ids = tok.encode(Self.text) }
        #expect(ids.count > 1000)
        #expect(t < .milliseconds(500), "\(model): \(t) for \(Self.text.utf8.count) bytes")
        #expect(tok.decode(ids).hasSuffix(String(Self.text.suffix(20))))
    }
}
