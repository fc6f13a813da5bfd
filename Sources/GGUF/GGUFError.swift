/// Every problem found in a GGUF file, as one line naming the problem (and where it is, when known).
public struct GGUFError: Error, CustomStringConvertible, Sendable, Equatable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}
