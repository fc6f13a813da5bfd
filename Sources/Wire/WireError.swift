/// Everything that can go wrong on the wire. Decoders and sockets throw only this type.
public enum WireError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The bytes are not a valid message: bad protobuf, inconsistent fields (rows × cols × dtype ≠ payload,
    /// positions ≠ rows, unknown enum value, empty oneof, invalid UTF-8...).
    case malformed(String)
    /// Well-formed but over a `WireLimits` maximum (checked before anything is allocated).
    case limitExceeded(String)
    /// A receive or send timed out (the socket's timeout option); the socket stays usable.
    case timedOut
    /// The context was shut down or terminated (ETERM): stop using the socket.
    case closed
    /// Any other libzmq failure: the call and its errno.
    case zmq(call: String, errno: Int32)

    public var description: String {
        switch self {
        case .malformed(let m): return "malformed frame: \(m)"
        case .limitExceeded(let m): return "frame over limit: \(m)"
        case .timedOut: return "timed out"
        case .closed: return "ZeroMQ context closed"
        case .zmq(let call, let errno): return "\(call): \(zmqErrorString(errno)) (errno \(errno))"
        }
    }
}
