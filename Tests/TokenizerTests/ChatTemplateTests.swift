import Foundation
import Testing
@testable import Tokenizer

/// tests/golden/tokenizer/chat_templates.json, written by scripts/golden-chat-template.py (jinja2 renderings
/// of the real template strings).
struct ChatGolden: Decodable {
    struct Case: Decodable {
        let template: String
        let messages: [ChatMessage]
        let add_generation_prompt: Bool
        let expected: String
    }
    let templates: [String: String]
    let cases: [Case]
}

@Suite("chat templates")
struct ChatTemplateTests {
    @Test func rendersLikeJinja() throws {
        let g = try TestSupport.readJSON(ChatGolden.self, "chat_templates.json")
        #expect(g.cases.count >= 50)
        for c in g.cases {
            let t = ChatTemplate(template: g.templates[c.template])
            #expect(!t.isFallback, "\(c.template) not recognized")
            let got = t.render(c.messages, addGenerationPrompt: c.add_generation_prompt)
            #expect(Array(got.unicodeScalars) == Array(c.expected.unicodeScalars),
                    "\(c.template) \(c.messages)\n got      \(got.debugDescription)\n expected \(c.expected.debugDescription)")
        }
    }

    @Test func detection() throws {
        let g = try TestSupport.readJSON(ChatGolden.self, "chat_templates.json")
        let expected: [String: (ChatTemplateKind, String?)] = [
            "smollm2": (.chatml, "You are a helpful AI assistant named SmolLM, trained by Hugging Face"),
            "chatml": (.chatml, nil),
            "qwen25-style": (.chatml, "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."),
            "llama3": (.llama3, nil),
            "gemma3": (.gemma, nil),
        ]
        for (name, (kind, sys)) in expected {
            let t = ChatTemplate(template: try #require(g.templates[name]))
            #expect(t.kind == kind, "\(name)")
            #expect(t.defaultSystemPrompt == sys, "\(name)")
        }
        let unknown = ChatTemplate(template: "{{ messages }} [whatever]")
        #expect(unknown.kind == .chatml && unknown.isFallback)
        #expect(ChatTemplate(template: nil).isFallback)
        #expect(ChatTemplate(template: "gemma").kind == .gemma)
    }

    @Test func modelRenderers() throws {
        let smol = try TestSupport.tokenizer(TestSupport.smollm2)
        let r = smol.chatRenderer
        #expect(r.kind == .chatml && !r.isFallback)
        let prompt = r.render([ChatMessage(role: "user", content: "hi")])
        #expect(prompt == "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n")
        let ids = smol.encode(prompt)
        #expect(ids.first == 1)                     // <|im_start|>
        #expect(ids.filter { $0 == 2 }.count == 2)  // <|im_end|>

        let gemma = try TestSupport.tokenizer(TestSupport.gemma3)
        let gr = gemma.chatRenderer  // this GGUF carries no chat_template
        #expect(gr.kind == .gemma && gr.isFallback)
        let gids = gemma.encode(gr.render([ChatMessage(role: "user", content: "hi")]))
        #expect(gids.prefix(2) == [2, 105])  // <bos> <start_of_turn>
        #expect(gids.suffix(3).first == 105 || gids.contains(106))
    }
}
