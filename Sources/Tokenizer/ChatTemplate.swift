/// One chat turn.
public struct ChatMessage: Sendable, Equatable, Codable {
    public var role: String
    public var content: String
    public init(role: String, content: String) {
        self.role = role
        self.content = content
    }
}

/// Chat prompt formats Shard renders natively (no Jinja engine).
public enum ChatTemplateKind: String, Sendable, CaseIterable {
    /// `<|im_start|>role\ncontent<|im_end|>\n` (SmolLM2, Qwen, Hermes, …).
    case chatml
    /// `<|start_header_id|>role<|end_header_id|>\n\ncontent<|eot_id|>` (Llama 3.x).
    case llama3
    /// `<start_of_turn>user\n…<end_of_turn>\n<start_of_turn>model\n` (Gemma 2/3); system folded into the first user turn.
    case gemma
}

/// A chat renderer chosen by recognizing the GGUF's `tokenizer.chat_template`, as llama.cpp's
/// `llm_chat_detect_template` does, and reproducing what the template's Jinja renders (checked against
/// jinja2 renderings of the real templates in tests/golden/tokenizer/chat_templates.json).
///
/// The output never contains BOS text: encode it with `addSpecial: true` (the tokenizer adds BOS per the
/// model's metadata) and `parseSpecial: true` (so the turn markers become their control tokens).
public struct ChatTemplate: Sendable, Equatable {
    public let kind: ChatTemplateKind
    /// A ChatML system prompt the template inserts when the conversation has none (SmolLM2, Qwen2.5).
    public let defaultSystemPrompt: String?
    /// True when the template was missing or not recognized and `kind` is a guess (ChatML unless the
    /// vocabulary says otherwise): callers may want to warn.
    public let isFallback: Bool

    public init(kind: ChatTemplateKind, defaultSystemPrompt: String? = nil, isFallback: Bool = false) {
        self.kind = kind
        self.defaultSystemPrompt = defaultSystemPrompt
        self.isFallback = isFallback
    }

    /// Recognizes a template text. Unknown or missing → ChatML with `isFallback`.
    public init(template: String?) {
        if let template, let kind = Self.detect(template) {
            self.init(kind: kind,
                      defaultSystemPrompt: kind == .chatml ? Self.defaultSystem(in: template) : nil)
        } else {
            self.init(kind: .chatml, isFallback: true)
        }
    }

    /// The format of a template text, as llama.cpp's detection (restricted to the supported formats);
    /// nil when it is none of them.
    public static func detect(_ t: String) -> ChatTemplateKind? {
        let name = t.trimmingWhitespaceForName()
        if let k = ChatTemplateKind(rawValue: name) { return k }
        if t.contains("<|im_start|>") {
            // Phi-4 (<|im_sep|>) and SmolVLM (<end_of_utterance>) look like ChatML but are not
            if t.contains("<|im_sep|>") || t.contains("<end_of_utterance>") { return nil }
            return .chatml
        }
        if t.contains("<start_of_turn>") { return .gemma }
        if t.contains("<|start_header_id|>") && t.contains("<|end_header_id|>") { return .llama3 }
        return nil
    }

    /// A fixed ChatML system turn in the template text — `'<|im_start|>system\n…<|im_end|>\n'` as one
    /// string literal — is the default system prompt the template emits when none is given.
    static func defaultSystem(in t: String) -> String? {
        let s = Array(t.unicodeScalars)
        let open = Array("<|im_start|>system".unicodeScalars)
        let close = Array("<|im_end|>".unicodeScalars)
        func matches(_ pat: [Unicode.Scalar], at i: Int) -> Bool {
            i >= 0 && i + pat.count <= s.count && Array(s[i..<i + pat.count]) == pat
        }
        /// Length of a newline at i: a real "\n" or the escape "\\n".
        func newline(at i: Int) -> Int {
            if i < s.count && s[i] == "\n" { return 1 }
            if i + 1 < s.count && s[i] == "\\" && s[i + 1] == "n" { return 2 }
            return 0
        }
        var i = 0
        while i + open.count <= s.count {
            defer { i += 1 }
            guard matches(open, at: i), i > 0, s[i - 1] == "'" || s[i - 1] == "\"" else { continue }
            let quote = s[i - 1]
            let nl = newline(at: i + open.count)
            guard nl > 0 else { continue }
            let start = i + open.count + nl
            var j = start
            var body: [Unicode.Scalar] = []
            var ok = false
            while j < s.count {
                if matches(close, at: j) {
                    let nl2 = newline(at: j + close.count)
                    ok = nl2 > 0 && j + close.count + nl2 < s.count && s[j + close.count + nl2] == quote && !body.isEmpty
                    break
                }
                let c = s[j]
                if c == quote || c == "{" || c == "}" { break }
                if c == "\\" && j + 1 < s.count {
                    let e = s[j + 1]
                    switch e {
                    case "n": body.append("\n")
                    case "t": body.append("\t")
                    default: body.append(e)
                    }
                    j += 2
                    continue
                }
                body.append(c)
                j += 1
            }
            if ok {
                var str = String.UnicodeScalarView()
                str.append(contentsOf: body)
                return String(str)
            }
        }
        return nil
    }

    /// Renders the conversation; with `addGenerationPrompt` it ends with the opening of the assistant turn.
    public func render(_ messages: [ChatMessage], addGenerationPrompt: Bool = true) -> String {
        var out = ""
        switch kind {
        case .chatml:
            if let sys = defaultSystemPrompt, let first = messages.first, first.role != "system" {
                out += "<|im_start|>system\n\(sys)<|im_end|>\n"
            }
            for m in messages { out += "<|im_start|>\(m.role)\n\(m.content)<|im_end|>\n" }
            if addGenerationPrompt { out += "<|im_start|>assistant\n" }
        case .llama3:
            for m in messages {
                out += "<|start_header_id|>\(m.role)<|end_header_id|>\n\n\(Self.jinjaTrim(m.content))<|eot_id|>"
            }
            if addGenerationPrompt { out += "<|start_header_id|>assistant<|end_header_id|>\n\n" }
        case .gemma:
            var rest = messages[...]
            var prefix = ""
            if let first = messages.first, first.role == "system" {
                prefix = first.content + "\n\n"
                rest = messages.dropFirst()
            }
            var isFirst = true
            for m in rest {
                let role = m.role == "assistant" ? "model" : m.role
                out += "<start_of_turn>\(role)\n" + (isFirst ? prefix : "") + Self.jinjaTrim(m.content) + "<end_of_turn>\n"
                isFirst = false
            }
            if addGenerationPrompt { out += "<start_of_turn>model\n" }
        }
        return out
    }

    /// Jinja's `trim` filter (Python `str.strip()`): strips Unicode whitespace and U+001C…U+001F.
    static func jinjaTrim(_ s: String) -> String {
        func ws(_ c: Unicode.Scalar) -> Bool {
            c.properties.isWhitespace || (0x1C...0x1F).contains(c.value)
        }
        let u = s.unicodeScalars
        guard let a = u.firstIndex(where: { !ws($0) }) else { return "" }
        let b = u.lastIndex(where: { !ws($0) })!
        return String(u[a...b])
    }
}

extension Tokenizer {
    /// The renderer for this model's `tokenizer.chat_template`. With no template in the file, the format
    /// is guessed from the vocabulary (`<start_of_turn>` → Gemma, `<|start_header_id|>` → Llama 3,
    /// else ChatML) and `isFallback` is set.
    public var chatRenderer: ChatTemplate {
        if let t = chatTemplate {
            return ChatTemplate(template: t)
        }
        if tokenID("<start_of_turn>") != nil && tokenID("<end_of_turn>") != nil {
            return ChatTemplate(kind: .gemma, isFallback: true)
        }
        if tokenID("<|start_header_id|>") != nil && tokenID("<|eot_id|>") != nil {
            return ChatTemplate(kind: .llama3, isFallback: true)
        }
        return ChatTemplate(kind: .chatml, isFallback: true)
    }
}

extension String {
    fileprivate func trimmingWhitespaceForName() -> String {
        // a template given by name ("chatml", "llama3", "gemma"), as llama.cpp accepts
        count < 16 ? String(unicodeScalars.filter { !$0.properties.isWhitespace }) : ""
    }
}
