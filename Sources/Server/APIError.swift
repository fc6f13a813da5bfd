/// An error as OpenAI's API reports it: an HTTP status and
/// `{"error": {"message": …, "type": …, "param": …, "code": …}}`.
public struct APIError: Error, CustomStringConvertible, Sendable, Equatable {
    public var status: Int
    public var message: String
    public var type: String
    public var param: String?
    public var code: String?

    public init(status: Int, message: String, type: String, param: String? = nil, code: String? = nil) {
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
    }

    public var description: String { message }

    public var json: JSONValue {
        ["error": ["message": .string(message), "type": .string(type), "param": JSONValue(param), "code": JSONValue(code)]]
    }

    /// 400: the request is malformed or asks for something this server refuses.
    public static func invalid(_ message: String, param: String? = nil, code: String? = nil) -> APIError {
        APIError(status: 400, message: message, type: "invalid_request_error", param: param, code: code)
    }

    /// 400: a field has the wrong JSON type.
    public static func wrongType(_ param: String, expected: String, got: JSONValue) -> APIError {
        invalid("'\(param)' must be \(expected), not \(got.typeName)", param: param, code: "invalid_type")
    }

    public static func notFound(_ message: String) -> APIError {
        APIError(status: 404, message: message, type: "invalid_request_error", code: "not_found")
    }

    public static let bodyTooLarge = APIError(status: 413, message: "the request body is too large (see --max-body-bytes)", type: "invalid_request_error",
                                              code: "request_too_large")

    /// 503: the model is still loading, the engine is shutting down, or the queue is full.
    public static func unavailable(_ message: String, code: String = "unavailable") -> APIError {
        APIError(status: 503, message: message, type: "server_error", code: code)
    }

    public static func server(_ message: String) -> APIError {
        APIError(status: 500, message: message, type: "server_error", code: "internal_error")
    }
}
