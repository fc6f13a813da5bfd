/// The protocol version a worker states in `Register`; bump on any incompatible change to shard.proto.
public let wireProtocolVersion: UInt32 = 1

/// Compute backend on the wire. `name` matches `Compute.BackendKind.rawValue` ("cpu", "vulkan"), so
/// `BackendKind(rawValue: backend.name)` converts; `.unspecified` means "worker chooses" (auto).
public enum WireBackend: UInt32, Sendable, CaseIterable {
    case unspecified = 0, cpu = 1, vulkan = 2

    public var name: String {
        switch self {
        case .unspecified: return "auto"
        case .cpu: return "cpu"
        case .vulkan: return "vulkan"
        }
    }

    public init?(name: String) {
        guard let b = Self.allCases.first(where: { $0.name == name }) else { return nil }
        self = b
    }
}

/// Element type of a shard's KV cache.
public enum KVType: UInt32, Sendable, CaseIterable {
    case unspecified = 0, f16 = 1, f32 = 2, q8_0 = 3

    public var name: String {
        switch self {
        case .unspecified: return "unspecified"
        case .f16: return "f16"
        case .f32: return "f32"
        case .q8_0: return "q8_0"
        }
    }
    public init?(name: String) {
        guard let t = Self.allCases.first(where: { $0.name == name }) else { return nil }
        self = t
    }
}

/// Element type of an ActivationFrame payload (little-endian).
public enum DType: UInt32, Sendable, CaseIterable {
    case f32 = 1, f16 = 2, i32 = 3

    public var byteSize: Int { self == .f16 ? 2 : 4 }
    public var isFloat: Bool { self != .i32 }
}

/// What an ActivationFrame's payload holds; fixes which shape and dtype are legal.
public enum PayloadKind: UInt32, Sendable, CaseIterable {
    /// Coordinator → first shard: one I32 token id per row; shape (rows, 1).
    case tokens = 1
    /// Shard → next shard: hidden states, shape (rows, embedding length), F32 or F16.
    case hidden = 2
    /// Last shard → coordinator: shape (logitRows.count, vocab size), F32 or F16.
    case logits = 3
    /// Last shard → coordinator: sampled I32 token ids, shape (logitRows.count, 1).
    case sampled = 4
}

/// What the last shard returns for a step's logit rows (`ActivationFrame.sample`).
public enum SampleMode: UInt32, Sendable, CaseIterable {
    /// The logits (a `.logits` frame); the coordinator samples.
    case logits = 0
    /// The argmax token of each row (a `.sampled` frame): a greedy sampler without penalties.
    case greedy = 1
    /// As `greedy`, plus each row's log-probability of that token and its `topLogprobs` alternatives.
    case greedyLogprobs = 2
}

/// An Error message's code. Open (any value decodes) so that newer workers' codes reach older coordinators.
public struct ErrorCode: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public var rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    public static let unspecified = ErrorCode(rawValue: 0)
    public static let malformedFrame = ErrorCode(rawValue: 1)
    public static let unsupportedVersion = ErrorCode(rawValue: 2)
    public static let badRequest = ErrorCode(rawValue: 3)
    public static let loadFailed = ErrorCode(rawValue: 4)
    public static let outOfMemory = ErrorCode(rawValue: 5)
    public static let unknownSequence = ErrorCode(rawValue: 6)
    public static let internalError = ErrorCode(rawValue: 7)
    public static let modelUnavailable = ErrorCode(rawValue: 20)

    public var description: String {
        let names = ["unspecified", "malformed frame", "unsupported version", "bad request", "load failed",
                     "out of memory", "unknown sequence", "internal error"]
        if self == .modelUnavailable { return "model unavailable" }
        return rawValue < names.count ? names[Int(rawValue)] : "error \(rawValue)"
    }
}
