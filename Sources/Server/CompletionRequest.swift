import Tokenizer

/// What a client asks for on /v1/completions or /v1/chat/completions, checked: every field this
/// server reads has the type and range OpenAI documents, or the request is refused with a 400 that
/// names the field. Fields it does not know are ignored, as OpenAI's own API does.
public struct CompletionRequest: Sendable, Equatable {
    public enum Kind: Sendable, Equatable { case completion, chat }
    public enum Prompt: Sendable, Equatable {
        case text(String)
        case tokens([Int32])
        case chat([ChatMessage])
    }

    public var kind: Kind
    public var model: String?
    public var prompt: Prompt
    /// nil: until the context is full or the model ends its turn.
    public var maxTokens: Int?
    /// OpenAI's defaults: temperature 1, top_p 1. top_k, min_p and repeat_penalty are llama.cpp's
    /// extensions (defaults 40, 0.05, 1), accepted under the same names llama-server uses.
    public var temperature: Double = 1
    public var topP: Double = 1
    public var topK: Int = 40
    public var minP: Double = 0.05
    public var repeatPenalty: Double = 1
    public var stop: [String] = []
    public var seed: UInt64?
    public var stream = false
    public var includeUsage = false
    public var logprobs = false
    /// Alternatives per token (chat: top_logprobs 0…20; completions: logprobs 0…5).
    public var topLogprobs = 0
    public var user: String?

    public static let maxStopSequences = 16
    public static let maxStopLength = 256

    public init(kind: Kind, prompt: Prompt) {
        self.kind = kind
        self.prompt = prompt
    }

    /// Parses and checks a request body.
    public init(kind: Kind, body: JSONValue) throws {
        guard case .object = body else {
            throw APIError.invalid("the request body must be a JSON object, not \(body.typeName)")
        }
        let f = Fields(body)
        self.kind = kind
        model = try f.string("model")
        switch kind {
        case .chat:
            prompt = .chat(try Self.messages(body["messages"]))
        case .completion:
            prompt = try Self.prompt(body["prompt"])
        }
        let maxCompletion = try f.int("max_completion_tokens", min: 0)
        maxTokens = try maxCompletion ?? f.int("max_tokens", min: 0)
        temperature = try f.number("temperature", in: 0...2) ?? 1
        topP = try f.number("top_p", in: 0...1) ?? 1
        topK = try f.int("top_k", min: 0) ?? 40
        minP = try f.number("min_p", in: 0...1) ?? 0.05
        repeatPenalty = try f.number("repeat_penalty", in: 0.01...100) ?? 1
        _ = try f.number("presence_penalty", in: -2...2)
        _ = try f.number("frequency_penalty", in: -2...2)
        if let s = try f.int("seed", min: Int(Int64.min)) { seed = UInt64(bitPattern: Int64(s)) }
        if let n = try f.int("n", min: 1), n != 1 {
            throw APIError.invalid("only n=1 is supported (one choice per request)", param: "n", code: "unsupported_value")
        }
        if let bestOf = try f.int("best_of", min: 1), bestOf != 1 {
            throw APIError.invalid("only best_of=1 is supported", param: "best_of", code: "unsupported_value")
        }
        if try f.bool("echo") == true {
            throw APIError.invalid("echo is not supported", param: "echo", code: "unsupported_value")
        }
        if let suffix = try f.string("suffix"), !suffix.isEmpty {
            throw APIError.invalid("suffix is not supported", param: "suffix", code: "unsupported_value")
        }
        stream = try f.bool("stream") ?? false
        if let options = body["stream_options"], options != .null {
            guard case .object = options else { throw APIError.wrongType("stream_options", expected: "an object", got: options) }
            includeUsage = try Fields(options, prefix: "stream_options.").bool("include_usage") ?? false
        }
        switch kind {
        case .chat:
            logprobs = try f.bool("logprobs") ?? false
            topLogprobs = try f.int("top_logprobs", min: 0) ?? 0
            guard topLogprobs <= 20 else { throw APIError.invalid("top_logprobs must be at most 20", param: "top_logprobs") }
            if topLogprobs > 0 && !logprobs {
                throw APIError.invalid("top_logprobs needs logprobs set to true", param: "top_logprobs")
            }
        case .completion:
            if let n = try f.int("logprobs", min: 0) {
                guard n <= 5 else { throw APIError.invalid("logprobs must be at most 5", param: "logprobs") }
                logprobs = true
                topLogprobs = n
            }
        }
        stop = try Self.stop(body["stop"])
        user = try f.string("user")
    }

    static func stop(_ v: JSONValue?) throws -> [String] {
        let list: [String]
        switch v {
        case nil, .null?: return []
        case .string(let s)?: list = [s]
        case .array(let items)?:
            list = try items.enumerated().map { i, item in
                guard case .string(let s) = item else { throw APIError.wrongType("stop[\(i)]", expected: "a string", got: item) }
                return s
            }
        case let other?: throw APIError.wrongType("stop", expected: "a string or an array of strings", got: other)
        }
        guard list.count <= maxStopSequences else {
            throw APIError.invalid("at most \(maxStopSequences) stop sequences are supported", param: "stop")
        }
        guard list.allSatisfy({ $0.utf8.count <= maxStopLength }) else {
            throw APIError.invalid("a stop sequence is longer than \(maxStopLength) bytes", param: "stop")
        }
        return list.filter { !$0.isEmpty }
    }

    static func prompt(_ v: JSONValue?) throws -> Prompt {
        switch v {
        case nil, .null?: throw APIError.invalid("'prompt' is required", param: "prompt", code: "missing_required_parameter")
        case .string(let s)?: return .text(s)
        case .array(let items)?:
            guard !items.isEmpty else { throw APIError.invalid("'prompt' is empty", param: "prompt") }
            if case .string = items[0] {
                guard items.count == 1, case .string(let s) = items[0] else {
                    throw APIError.invalid("only one prompt per request is supported", param: "prompt", code: "unsupported_value")
                }
                return .text(s)
            }
            if case .array(let inner) = items[0] {
                guard items.count == 1 else {
                    throw APIError.invalid("only one prompt per request is supported", param: "prompt", code: "unsupported_value")
                }
                return .tokens(try tokenList(inner, param: "prompt[0]"))
            }
            return .tokens(try tokenList(items, param: "prompt"))
        case let other?:
            throw APIError.wrongType("prompt", expected: "a string, an array of strings or an array of token ids", got: other)
        }
    }

    static func tokenList(_ items: [JSONValue], param: String) throws -> [Int32] {
        try items.enumerated().map { i, item in
            guard case .number(let d) = item, d == d.rounded(), d >= 0, d < Double(Int32.max) else {
                throw APIError.invalid("'\(param)[\(i)]' must be a token id (a non-negative integer)", param: param, code: "invalid_type")
            }
            return Int32(d)
        }
    }

    static func messages(_ v: JSONValue?) throws -> [ChatMessage] {
        guard let v, v != .null else {
            throw APIError.invalid("'messages' is required", param: "messages", code: "missing_required_parameter")
        }
        guard case .array(let items) = v else { throw APIError.wrongType("messages", expected: "an array", got: v) }
        guard !items.isEmpty else { throw APIError.invalid("'messages' must not be empty", param: "messages") }
        return try items.enumerated().map { i, m in
            let p = "messages[\(i)]"
            guard case .object = m else { throw APIError.wrongType(p, expected: "an object", got: m) }
            guard let role = try Fields(m, prefix: p + ".").string("role") else {
                throw APIError.invalid("'\(p).role' is required", param: p + ".role", code: "missing_required_parameter")
            }
            guard ["system", "developer", "user", "assistant", "tool"].contains(role) else {
                throw APIError.invalid("'\(p).role' must be system, developer, user, assistant or tool, not '\(role)'", param: p + ".role")
            }
            var content = ""
            switch m["content"] {
            case nil, .null?: content = ""
            case .string(let s)?: content = s
            case .array(let parts)?:
                for (j, part) in parts.enumerated() {
                    let pp = "\(p).content[\(j)]"
                    guard case .object = part else { throw APIError.wrongType(pp, expected: "an object", got: part) }
                    let f = Fields(part, prefix: pp + ".")
                    let type = try f.string("type") ?? "text"
                    guard type == "text" else {
                        throw APIError.invalid("'\(pp).type' '\(type)' is not supported: this model reads text only", param: pp + ".type",
                                               code: "unsupported_value")
                    }
                    content += try f.string("text") ?? ""
                }
            case let other?:
                throw APIError.wrongType(p + ".content", expected: "a string or an array of content parts", got: other)
            }
            // OpenAI's newer "developer" role is the system prompt for models that know no such role.
            return ChatMessage(role: role == "developer" ? "system" : role, content: content)
        }
    }
}

/// Typed access to an object's fields: a missing field or null is nil; a wrong type or an out-of-range
/// value throws a 400 naming the field.
struct Fields {
    let object: JSONValue
    let prefix: String
    init(_ object: JSONValue, prefix: String = "") {
        self.object = object
        self.prefix = prefix
    }

    private func present(_ key: String) -> JSONValue? {
        guard let v = object[key], v != .null else { return nil }
        return v
    }

    func string(_ key: String) throws -> String? {
        guard let v = present(key) else { return nil }
        guard case .string(let s) = v else { throw APIError.wrongType(prefix + key, expected: "a string", got: v) }
        return s
    }

    func bool(_ key: String) throws -> Bool? {
        guard let v = present(key) else { return nil }
        guard case .bool(let b) = v else { throw APIError.wrongType(prefix + key, expected: "a boolean", got: v) }
        return b
    }

    func number(_ key: String, in range: ClosedRange<Double>) throws -> Double? {
        guard let v = present(key) else { return nil }
        guard case .number(let d) = v else { throw APIError.wrongType(prefix + key, expected: "a number", got: v) }
        guard range.contains(d) else {
            throw APIError.invalid("'\(prefix + key)' must be between \(JSONValue.numberText(range.lowerBound)) and \(JSONValue.numberText(range.upperBound)), not \(JSONValue.numberText(d))",
                                   param: prefix + key, code: "invalid_value")
        }
        return d
    }

    func int(_ key: String, min: Int) throws -> Int? {
        guard let v = present(key) else { return nil }
        guard case .number(let d) = v, d == d.rounded() else {
            throw APIError.wrongType(prefix + key, expected: "an integer", got: v)
        }
        guard abs(d) < 9.0e18 else {
            throw APIError.invalid("'\(prefix + key)' is out of range", param: prefix + key, code: "invalid_value")
        }
        guard Int(d) >= min else {
            throw APIError.invalid("'\(prefix + key)' must be at least \(min), not \(Int(d))", param: prefix + key, code: "invalid_value")
        }
        return Int(d)
    }
}
