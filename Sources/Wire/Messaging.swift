/// Typed send and receive of wire messages over a `ZmqSocket`.
///
/// Data channel (PUSH → PULL): one `ActivationFrame` per single-part message.
/// Control channel: the DEALER sends and receives one `Control` per single-part message; the ROUTER sees
/// two parts, [peer routing id, Control] (no empty delimiter part: these are not REQ/REP sockets).
public struct PeerID: Hashable, Sendable, CustomStringConvertible {
    public var bytes: [UInt8]
    public init(_ bytes: [UInt8]) { self.bytes = bytes }
    public var description: String {
        if let s = String(validating: bytes, as: UTF8.self), s.unicodeScalars.allSatisfy({ $0.value >= 0x20 && $0.value < 0x7f }) {
            return s
        }
        return "0x" + bytes.map { String($0, radix: 16).count == 1 ? "0" + String($0, radix: 16) : String($0, radix: 16) }.joined()
    }
}

/// A message received on a ROUTER: who sent it, and the decoded message or why it did not decode
/// (so the receiver can answer the sender with an `ErrorReport`).
public struct Routed<M: WireMessage> {
    public var peer: PeerID
    public var message: Result<M, WireError>
}

extension ZmqSocket {
    /// Encodes and sends `message` as one part; the encoded buffer is handed to libzmq without a copy.
    public func send<M: WireMessage>(_ message: M) throws(WireError) {
        try send(message.encodeMessage())
    }

    /// Receives and decodes one message; nil on timeout. A malformed message throws `.malformed` or
    /// `.limitExceeded` after it has been consumed, so the next call receives the next message.
    public func receive<M: WireMessage>(_ type: M.Type, limits: WireLimits) throws(WireError) -> M? {
        guard let parts = try receiveMultipart(maxParts: 1) else { return nil }
        return try parts[0].withBytes { (b) throws(WireError) in try M.decode(b, limits: limits) }
    }

    /// ROUTER: sends `message` to `peer` (fails with EHOSTUNREACH if that peer is not connected).
    public func send<M: WireMessage>(_ message: M, to peer: PeerID) throws(WireError) {
        try send(parts: [ZmqMessage(peer.bytes), message.encodeMessage()])
    }

    /// ROUTER: receives one message and its sender; nil on timeout. Throws only for transport failures
    /// (and for a message without a body part); a body that fails to decode comes back as `.failure`.
    public func receiveRouted<M: WireMessage>(_ type: M.Type, limits: WireLimits) throws(WireError) -> Routed<M>? {
        guard let parts = try receiveMultipart(maxParts: 2) else { return nil }
        guard parts.count == 2 else { throw .malformed("routed message of \(parts.count) parts, expected [peer, body]") }
        let peer = PeerID(parts[0].array)
        let result = parts[1].withBytes { b in Result { () throws(WireError) in try M.decode(b, limits: limits) } }
        return Routed(peer: peer, message: result)
    }
}
