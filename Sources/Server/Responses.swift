import Coordinator
import Tokenizer

/// OpenAI's response shapes: chat.completion, text_completion, their streaming chunks, usage and
/// log-probabilities.
enum Responses {
    static func usage(_ o: Outcome) -> JSONValue {
        ["prompt_tokens": JSONValue(o.promptTokens), "completion_tokens": JSONValue(o.completionTokens),
         "total_tokens": JSONValue(o.promptTokens + o.completionTokens)]
    }

    static func complete(_ p: APIServer.Prepared, _ o: Outcome) -> JSONValue {
        let lp = p.request.logprobs ? logprobs(p, o.logprobs, textOffset: 0) : .null
        let choice: JSONValue
        switch p.request.kind {
        case .chat:
            choice = ["index": 0, "message": ["role": "assistant", "content": .string(o.text)],
                      "logprobs": lp, "finish_reason": JSONValue(o.finishReason)]
        case .completion:
            choice = ["text": .string(o.text), "index": 0, "logprobs": lp, "finish_reason": JSONValue(o.finishReason)]
        }
        return ["id": .string(p.id), "object": p.request.kind == .chat ? "chat.completion" : "text_completion",
                "created": JSONValue(p.created), "model": .string(p.model.id), "system_fingerprint": "shard",
                "choices": [choice], "usage": usage(o)]
    }

    /// One streaming chunk. Chat chunks carry a `delta` (the first one the role), completion chunks `text`.
    static func chunk(_ p: APIServer.Prepared, role: Bool, text: String, logprobs lps: [TokenEvent], finish: String?) -> JSONValue {
        let lp: JSONValue = p.request.logprobs && !lps.isEmpty ? logprobs(p, lps, textOffset: 0) : .null
        let choice: JSONValue
        switch p.request.kind {
        case .chat:
            var delta: [(key: String, value: JSONValue)] = []
            if role { delta.append(("role", "assistant")) }
            if finish == nil { delta.append(("content", .string(text))) }
            choice = ["index": 0, "delta": .object(delta), "logprobs": lp, "finish_reason": JSONValue(finish)]
        case .completion:
            choice = ["text": .string(text), "index": 0, "logprobs": lp, "finish_reason": JSONValue(finish)]
        }
        var object: [(key: String, value: JSONValue)] = [
            ("id", .string(p.id)), ("object", p.request.kind == .chat ? "chat.completion.chunk" : "text_completion"),
            ("created", JSONValue(p.created)), ("model", .string(p.model.id)), ("system_fingerprint", "shard"),
            ("choices", [choice]),
        ]
        if p.request.includeUsage { object.append(("usage", .null)) }
        return .object(object)
    }

    /// The last chunk with `stream_options.include_usage`: no choices, the usage.
    static func usageChunk(_ p: APIServer.Prepared, _ o: Outcome) -> JSONValue {
        ["id": .string(p.id), "object": p.request.kind == .chat ? "chat.completion.chunk" : "text_completion",
         "created": JSONValue(p.created), "model": .string(p.model.id), "system_fingerprint": "shard",
         "choices": [], "usage": usage(o)]
    }

    static func bytes(_ b: [UInt8]) -> JSONValue { .array(b.map { JSONValue(Int($0)) }) }

    /// Chat: `{"content": [{token, logprob, bytes, top_logprobs: [...]}]}`.
    /// Completions: `{"tokens", "token_logprobs", "top_logprobs": [{token: logprob}], "text_offset"}`.
    static func logprobs(_ p: APIServer.Prepared, _ events: [TokenEvent], textOffset: Int) -> JSONValue {
        let tok = p.model.tokenizer
        func text(_ id: Int32) -> (String, [UInt8]) {
            let b = tok.piece(id)
            return (String(decoding: b, as: UTF8.self), b)
        }
        switch p.request.kind {
        case .chat:
            return ["content": .array(events.map { e in
                let (t, b) = text(e.token)
                return ["token": .string(t), "logprob": JSONValue(e.logprob), "bytes": bytes(b),
                        "top_logprobs": .array(e.top.map { alt in
                            let (at, ab) = text(alt.token)
                            return ["token": .string(at), "logprob": JSONValue(alt.logprob), "bytes": bytes(ab)]
                        })]
            })]
        case .completion:
            var offsets: [JSONValue] = []
            var offset = textOffset
            for e in events {
                offsets.append(JSONValue(offset))
                offset += text(e.token).0.count
            }
            return ["tokens": .array(events.map { .string(text($0.token).0) }),
                    "token_logprobs": .array(events.map { JSONValue($0.logprob) }),
                    "top_logprobs": .array(events.map { e in
                        .object(e.top.map { (key: text($0.token).0, value: JSONValue($0.logprob)) })
                    }),
                    "text_offset": .array(offsets)]
        }
    }
}
