import Testing
@testable import Server

@Suite struct JSONValueTests {
    @Test func parsesAndWritesBack() throws {
        let text = #"{"a":[1,2.5,-3e2,true,false,null],"b":{"c":"x\"y\\z\n\u00e9\ud83c\udf0d"},"d":""}"#
        let v = try JSONValue.parse(text)
        #expect(v["a"] == [1, 2.5, -300, true, false, nil])
        #expect(v["b"]?["c"] == .string("x\"y\\z\né🌍"))
        #expect(try JSONValue.parse(v.text) == v)
        #expect(v["missing"] == nil)
    }

    @Test func lastDuplicateKeyWins() throws {
        #expect(try JSONValue.parse(#"{"k":1,"k":2}"#)["k"] == 2)
    }

    @Test func refusesMalformedInput() {
        let bad = ["", "{", "[1,]", "{\"a\":}", "{'a':1}", "01", "1.", "-", "tru", "\"\\x\"", "\"\\ud800\"", "[1] 2",
                   "\"a\u{01}\"", "{\"a\" 1}", "1e999", "NaN", "[" + String(repeating: "[", count: 100) + "]"]
        for text in bad {
            #expect(throws: JSONParseError.self, "\(text)") { try JSONValue.parse(text) }
        }
        // invalid UTF-8 inside a string
        #expect(throws: JSONParseError.self) { try JSONValue.parse([0x22, 0xC3, 0x28, 0x22]) }
    }

    @Test func survivesRandomBytes() {
        var rng = SystemRandomNumberGenerator()
        let seed = Array(#"{"messages":[{"role":"user","content":"hé"}],"max_tokens":5,"stop":["a","b"]}"#.utf8)
        for _ in 0..<2000 {
            var b = seed
            for _ in 0..<Int.random(in: 1...4, using: &rng) { b[Int.random(in: 0..<b.count, using: &rng)] = UInt8.random(in: 0...255, using: &rng) }
            _ = try? JSONValue.parse(b)
        }
    }

    @Test func writesNumbersAndEscapes() {
        #expect(JSONValue.number(3).text == "3")
        #expect(JSONValue.number(-0.5).text == "-0.5")
        #expect(JSONValue(Float(-0.1)).text == "-0.1")
        #expect(JSONValue.number(.infinity).text == "null")
        #expect(JSONValue.string("a\u{0}\u{2028}").text == #""a\u0000\u2028""#)
    }
}

@Suite struct StopSequenceTests {
    /// Feeds pieces one by one and returns everything emitted.
    func run(_ pieces: [String], stops: [String]) -> (String, Bool) {
        var f = StopSequenceFilter(stops)
        var out = ""
        for p in pieces { out += f.push(p) }
        out += f.flush()
        return (out, f.stopped)
    }

    @Test func cutsAtStopsSpanningPieces() {
        #expect(run(["Hello", " wor", "ld!", " more"], stops: ["world"]) == ("Hello ", true))
        #expect(run(["ab", "c", "d"], stops: ["bcd"]) == ("a", true))
        #expect(run(["a", "b", "c"], stops: ["bcx"]) == ("abc", false))
        #expect(run(["x<|", "end", "|>y"], stops: ["<|end|>"]) == ("x", true))
        // the earliest match wins, whichever stop it is
        #expect(run(["one two three"], stops: ["three", "two"]) == ("one ", true))
    }

    @Test func holdsBackOnlyPossibleStarts() {
        var f = StopSequenceFilter(["STOP"])
        #expect(f.push("abcS") == "abc")
        #expect(f.push("T") == "")
        #expect(f.push("x") == "STx")
        #expect(f.push("ST") == "")
        #expect(f.flush() == "ST")
    }

    @Test func neverSplitsUTF8() {
        // "é" is C3 A9: a stop "e" must not match inside it, and held text stays whole characters
        #expect(run(["caf", "é", " ok"], stops: ["e"]) == ("café ok", false))
        #expect(run(["🌍", "🚀", "x"], stops: ["🚀"]) == ("🌍", true))
        var f = StopSequenceFilter(["é!"])
        #expect(f.push("aé") == "a")
        #expect(f.push("b") == "éb")
    }

    @Test func noStopsPassesThrough() {
        #expect(run(["a", "b"], stops: []) == ("ab", false))
        #expect(run(["a", "b"], stops: [""]) == ("ab", false))
    }
}

@Suite struct CompletionRequestTests {
    func chat(_ body: String) throws -> CompletionRequest {
        try CompletionRequest(kind: .chat, body: try JSONValue.parse(body))
    }

    func refusal(_ body: String) -> APIError? { refusal(.chat, body) }

    func refusal(_ kind: CompletionRequest.Kind, _ body: String) -> APIError? {
        do {
            _ = try CompletionRequest(kind: kind, body: try JSONValue.parse(body))
            return nil
        } catch let e as APIError {
            return e
        } catch {
            return nil
        }
    }

    @Test func readsTheFieldsThatMatter() throws {
        let r = try chat(#"""
            {"model":"m","messages":[{"role":"system","content":"s"},{"role":"user","content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]}],
             "max_tokens":7,"temperature":0,"top_p":0.5,"stop":"\n","seed":-1,"n":1,"stream":true,
             "stream_options":{"include_usage":true},"logprobs":true,"top_logprobs":2,"user":"u","unknown":{"x":[1]}}
            """#)
        #expect(r.prompt == .chat([.init(role: "system", content: "s"), .init(role: "user", content: "ab")]))
        #expect(r.maxTokens == 7 && r.temperature == 0 && r.topP == 0.5 && r.stop == ["\n"])
        #expect(r.seed == UInt64.max && r.stream && r.includeUsage && r.logprobs && r.topLogprobs == 2 && r.user == "u")
        let c = try CompletionRequest(kind: .completion, body: try JSONValue.parse(#"{"prompt":["hi"],"max_completion_tokens":3,"logprobs":2,"stop":null}"#))
        #expect(c.prompt == .text("hi") && c.maxTokens == 3 && c.logprobs && c.topLogprobs == 2 && c.stop.isEmpty)
        let t = try CompletionRequest(kind: .completion, body: try JSONValue.parse(#"{"prompt":[1,2,3]}"#))
        #expect(t.prompt == .tokens([1, 2, 3]))
        #expect(try chat(#"{"messages":[{"role":"developer","content":"d"}]}"#).prompt == .chat([.init(role: "system", content: "d")]))
    }

    @Test func refusesWrongTypesWithTheField() {
        #expect(refusal(#"{"messages":[{"role":"user","content":"x"}],"max_tokens":"5"}"#)?.param == "max_tokens")
        #expect(refusal(#"{"messages":[{"role":"user","content":"x"}],"max_tokens":1.5}"#)?.param == "max_tokens")
        #expect(refusal(#"{"messages":[{"role":"user","content":"x"}],"temperature":3}"#)?.param == "temperature")
        #expect(refusal(#"{"messages":[{"role":"user","content":"x"}],"stream":"yes"}"#)?.param == "stream")
        #expect(refusal(#"{"messages":[{"role":"user","content":"x"}],"stop":[1]}"#)?.param == "stop[0]")
        #expect(refusal(#"{"messages":[{"role":"user","content":"x"}],"n":2}"#)?.param == "n")
        #expect(refusal(#"{"messages":[{"role":"user","content":"x"}],"top_logprobs":2}"#)?.param == "top_logprobs")
        #expect(refusal(#"{"messages":"hi"}"#)?.param == "messages")
        #expect(refusal(#"{"messages":[]}"#)?.param == "messages")
        #expect(refusal(#"{"messages":[{"content":"x"}]}"#)?.param == "messages[0].role")
        #expect(refusal(#"{"messages":[{"role":"user","content":[{"type":"image_url"}]}]}"#)?.param == "messages[0].content[0].type")
        #expect(refusal(#"[1]"#)?.status == 400)
        #expect(refusal(.completion, #"{"prompt":["a","b"]}"#)?.param == "prompt")
        #expect(refusal(.completion, #"{"prompt":[-1]}"#)?.param == "prompt")
        #expect(refusal(.completion, #"{}"#)?.param == "prompt")
        #expect(refusal(.completion, #"{"prompt":"x","logprobs":9}"#)?.param == "logprobs")
        #expect(refusal(#"{"messages":[{"role":"user","content":"x"}],"stop":["1","2","3","4","5","6","7","8","9","10","11","12","13","14","15","16","17"]}"#)?.param == "stop")
    }

    @Test func errorJSONHasOpenAIShape() throws {
        let e = APIError.invalid("bad", param: "n", code: "c")
        let v = try JSONValue.parse(e.json.text)
        #expect(v["error"]?["message"] == "bad" && v["error"]?["type"] == "invalid_request_error")
        #expect(v["error"]?["param"] == "n" && v["error"]?["code"] == "c")
    }
}
