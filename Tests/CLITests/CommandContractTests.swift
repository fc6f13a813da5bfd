import Foundation
import Testing

/// The command-line contract of DESIGN.md, driven through the real `shardctl` binary.
@Suite(.serialized) struct CommandContractTests {
    let smol = CLI.model("SmolLM2-135M-Instruct.Q4_1.gguf")
    let gemma = CLI.model("gemma-3-270m-q4_k_m.gguf")

    @Test func tokenizePrintsJSONArrayOfIds() throws {
        let r = try CLI.run(["tokenize", "--model", smol, "--text", "The capital of France is"])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout == "[504,3575,282,4649,314]\n")
        // Special-token text is parsed by default, and not with --no-parse-special.
        let special = try CLI.run(["tokenize", "--model", smol, "--text", "<|im_start|>"])
        #expect(special.stdout == "[1]\n")
        let plain = try CLI.run(["tokenize", "--model", smol, "--text", "<|im_start|>", "--no-parse-special"])
        #expect(plain.stdout != "[1]\n" && plain.status == 0)
    }

    @Test func tokenizeAddsBOSPerMetadataUnlessNoBOS() throws {
        let withBOS = try CLI.run(["tokenize", "--model", gemma, "--text", "Hello"])
        let ids = try #require(try CLI.json(withBOS.stdout) as? [Int])
        #expect(ids.first == 2, "Gemma adds <bos> (id 2)")
        let noBOS = try CLI.run(["tokenize", "--model", gemma, "--text", "Hello", "--no-bos"])
        let ids2 = try #require(try CLI.json(noBOS.stdout) as? [Int])
        #expect(ids2 == Array(ids.dropFirst()))
    }

    @Test func logitsPrintsTopKHighestFirst() throws {
        let r = try CLI.run(["logits", "--model", smol, "--prompt", "The capital of France is", "--top", "3"])
        #expect(r.status == 0, "\(r.stderr)")
        let items = try #require(try CLI.json(r.stdout) as? [[String: Any]])
        #expect(items.count == 3)
        #expect(items[0]["id"] as? Int == 7042)  // " Paris", as llama.cpp
        let logits = items.compactMap { ($0["logit"] as? NSNumber)?.doubleValue }
        #expect(logits.count == 3 && logits == logits.sorted(by: >))
    }

    @Test func generateJSONLinesAndSummary() throws {
        let r = try CLI.run(["generate", "--model", smol, "--prompt", "The capital of France is",
                             "--temperature", "0", "--max-tokens", "6", "--json"])
        #expect(r.status == 0, "\(r.stderr)")
        let lines = r.lines
        #expect(lines.count == 7)
        let tokens = try lines.dropLast().map { try #require(try CLI.json($0) as? [String: Any]) }
        #expect(tokens.allSatisfy { $0["token"] is Int && $0["text"] is String })
        // llama.cpp's greedy continuation up to its first near-tie (tests/golden/model/smollm2.json).
        #expect(tokens.prefix(4).compactMap { $0["token"] as? Int } == [7042, 30, 198, 198])
        let done = try #require(try CLI.json(lines.last!) as? [String: Any])
        #expect(done["done"] as? Bool == true)
        #expect(done["prompt_tokens"] as? Int == 5)
        #expect(done["generated_tokens"] as? Int == 6)
        #expect(done["stop_reason"] as? String == "length")
        #expect((done["prefill_tokens_per_s"] as? NSNumber)?.doubleValue ?? 0 > 0)
        #expect((done["decode_tokens_per_s"] as? NSNumber)?.doubleValue ?? 0 > 0)

        // Plain output is the same text, streamed.
        let plain = try CLI.run(["generate", "--model", smol, "--prompt", "The capital of France is",
                                 "--temperature", "0", "--max-tokens", "6"])
        let joined = tokens.compactMap { $0["text"] as? String }.joined()
        #expect(plain.stdout == joined + "\n")
    }

    @Test func sameSeedSameOutput() throws {
        let args = ["generate", "--model", smol, "--prompt", "Once upon a time", "--temperature", "0.9",
                    "--max-tokens", "12", "--seed", "42"]
        let a = try CLI.run(args), b = try CLI.run(args)
        #expect(a.status == 0 && a.stdout == b.stdout && !a.stdout.isEmpty)
    }

    @Test func chatModeStopsAtEndOfTurn() throws {
        let r = try CLI.run(["generate", "--model", smol, "--chat", "--prompt", "What is 2+2?",
                             "--temperature", "0", "--max-tokens", "64", "--json"])
        #expect(r.status == 0, "\(r.stderr)")
        let done = try #require(try CLI.json(r.lines.last!) as? [String: Any])
        #expect(done["stop_reason"] as? String == "eos")
        // The ChatML template with SmolLM2's default system prompt makes a long prompt.
        #expect((done["prompt_tokens"] as? Int ?? 0) > 20)
    }

    @Test func perplexityLastLineWithinOnePercentOfLlamaCpp() throws {
        let golden = try JSONSerialization.jsonObject(with: Data(contentsOf: CLI.packageRoot.appendingPathComponent("tests/golden/model/smollm2.json"))) as! [String: Any]
        let ppl = (golden["perplexity"] as! [String: Any])["ppl"] as! Double
        let r = try CLI.run(["perplexity", "--model", smol, "--file", CLI.packageRoot.appendingPathComponent("tests/data/ppl-text.txt").path, "--ctx", "128"])
        #expect(r.status == 0, "\(r.stderr)")
        let last = try #require(r.lines.last)
        #expect(last.hasPrefix("PPL = "))
        let ours = try #require(Double(last.dropFirst(6)))
        #expect(abs(ours - ppl) / ppl < 0.01, "PPL \(ours) vs llama.cpp \(ppl)")
    }

    @Test func inspectShowsMetadataTypesAndLayerMemory() throws {
        let r = try CLI.run(["inspect", "--model", smol])
        #expect(r.status == 0)
        #expect(r.stdout.contains("llama.block_count = 30"))
        #expect(r.stdout.contains("Q4_1"))
        #expect(r.stdout.contains("memory per layer"))
        #expect(r.stdout.contains("layer  29"))
    }

    @Test func benchJSONHasTheContractKeys() throws {
        let r = try CLI.run(["bench", "--model", smol, "--prompt-tokens", "16", "--gen-tokens", "4", "--json"])
        #expect(r.status == 0, "\(r.stderr)")
        let o = try #require(try CLI.json(r.stdout) as? [String: Any])
        for key in ["prefill_tokens_per_s", "decode_tokens_per_s", "prompt_tokens", "gen_tokens", "backend", "device", "shards", "concurrency"] {
            #expect(o[key] != nil, "missing \(key)")
        }
        #expect(o["backend"] as? String == "cpu")
        #expect(o["gen_tokens"] as? Int == 4)
    }

    /// The Vulkan backend through the CLI (lavapipe where there is no GPU): llama.cpp's decisive greedy tokens.
    @Test func vulkanBackendGenerates() throws {
        let r = try CLI.run(["generate", "--model", smol, "--prompt", "The capital of France is",
                             "--temperature", "0", "--max-tokens", "4", "--json", "--backend", "vulkan"])
        #expect(r.status == 0, "\(r.stderr)")
        let tokens = try r.lines.dropLast().map { try #require(try CLI.json($0) as? [String: Any])["token"] as? Int }
        #expect(tokens == [7042, 30, 198, 198])
        let b = try CLI.run(["bench", "--model", smol, "--prompt-tokens", "4", "--gen-tokens", "10", "--json", "--backend", "vulkan"])
        let o = try #require(try CLI.json(b.stdout) as? [String: Any])
        #expect(o["backend"] as? String == "vulkan")
        // Decode steps that repeat an earlier one skip their ops' host walk (VulkanBackend.repeatsOps), and none of the
        // checked ones differed from its recording.
        let host = try #require(o["decode_host"] as? [String: Any])
        #expect((host["skipped_steps"] as? Int ?? 0) >= 2, "\(host)")
        #expect(host["skip_mismatches"] as? Int == 0, "\(host)")
    }
}

/// In the serialized MultiProcessTests suite: it starts shard-workers, which the other tests there count.
extension MultiProcessTests {
    @Test func synthWritesAModelThatGenerates() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("shard-cli-\(getpid())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        for arch in ["llama", "qwen2"] {
            let path = dir.appendingPathComponent("\(arch).gguf").path
            let w = try CLI.run(["synth", "--arch", arch, "--preset", "tiny", "--quant", "q8_0", "--out", path])
            #expect(w.status == 0, "\(w.stderr)")
            let g = try CLI.run(["generate", "--model", path, "--prompt", "hello", "--temperature", "0", "--max-tokens", "4", "--json", "--shards", "2"])
            #expect(g.status == 0, "\(g.stderr)")
            #expect(g.lines.count == 5)
            // bench's prompts fit a tiny vocabulary too (its ids once assumed more than 1000 tokens).
            let b = try CLI.run(["bench", "--model", path, "--backend", "cpu", "--concurrency", "2", "--prompt-tokens", "8",
                                 "--gen-tokens", "4", "--json"])
            #expect(b.status == 0, "\(b.stderr)")
            #expect(b.stdout.contains("\"generated_tokens\":8"), "\(b.stdout)")
        }
    }
}

/// Bad input: one `error: …` line on stderr, a non-zero exit, never a crash.
@Suite struct CommandErrorTests {
    func expectCleanError(_ args: [String], mentioning text: String) throws {
        let r = try CLI.run(args)
        #expect(r.status != 0)
        let lines = r.stderr.split(separator: "\n")
        #expect(lines.count == 1, "stderr: \(r.stderr)")
        #expect(r.stderr.hasPrefix("error: "), "stderr: \(r.stderr)")
        #expect(r.stderr.contains(text), "stderr: \(r.stderr)")
        #expect(r.status < 128, "killed by a signal")
    }

    @Test func missingModelFile() throws {
        try expectCleanError(["generate", "--model", "/nonexistent/model.gguf", "--prompt", "hi"], mentioning: "cannot open")
    }

    @Test func truncatedModelFile() throws {
        let src = CLI.model("SmolLM2-135M-Instruct.Q4_1.gguf")
        let dst = FileManager.default.temporaryDirectory.appendingPathComponent("truncated-\(getpid()).gguf").path
        defer { try? FileManager.default.removeItem(atPath: dst) }
        let handle = try FileHandle(forReadingFrom: URL(fileURLWithPath: src))
        let head = try handle.read(upToCount: 5_000_000) ?? Data()
        try head.write(to: URL(fileURLWithPath: dst))
        try expectCleanError(["logits", "--model", dst, "--prompt", "hi"], mentioning: "truncated")
        try expectCleanError(["inspect", "--model", dst], mentioning: "truncated")
    }

    @Test func notAGGUFFile() throws {
        try expectCleanError(["tokenize", "--model", CLI.packageRoot.appendingPathComponent("Package.swift").path, "--text", "x"],
                             mentioning: "not a GGUF file")
    }

    @Test func badOptionValues() throws {
        let smol = CLI.model("SmolLM2-135M-Instruct.Q4_1.gguf")
        try expectCleanError(["generate", "--model", smol, "--prompt", "hi", "--temperature", "-1"], mentioning: "temperature")
        try expectCleanError(["generate", "--model", smol, "--prompt", "hi", "--shards", "0"], mentioning: "shards")
        try expectCleanError(["generate", "--model", smol, "--prompt", "hi", "--shards", "31"], mentioning: "30 layers")
        try expectCleanError(["synth", "--arch", "gpt5", "--out", "/tmp/x.gguf"], mentioning: "arch")
        try expectCleanError(["generate", "--model", smol, "--prompt", "hi", "--backend", "vulkan", "--devices", "7"],
                             mentioning: "Vulkan device 7 does not exist")
        try expectCleanError(["generate", "--model", smol, "--prompt", "hi", "--devices", "a,b"], mentioning: "--devices")
    }
}
