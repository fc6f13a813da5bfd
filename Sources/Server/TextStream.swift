import Coordinator
import Tokenizer

/// Cuts generated text at the first stop sequence, even one that spans token boundaries: text that
/// could be the start of a stop sequence is held back until the next tokens show whether it is.
///
/// Works on UTF-8 bytes, so "e" never matches inside "é". Input is complete UTF-8 (from
/// `StreamingDecoder`), and every cut falls where a stop sequence would start (a lead byte), so every
/// piece of output is complete UTF-8 too.
public struct StopSequenceFilter: Sendable {
    public let stops: [[UInt8]]
    private var pending: [UInt8] = []
    public private(set) var stopped = false

    public init(_ stops: [String]) { self.stops = stops.filter { !$0.isEmpty }.map { Array($0.utf8) } }

    /// Adds text; returns what is safe to emit. After a stop sequence is found, `stopped` is set and
    /// all further input is dropped.
    public mutating func push(_ text: String) -> String {
        guard !stopped else { return "" }
        if stops.isEmpty { return text }
        pending.append(contentsOf: text.utf8)
        // The earliest match of any stop sequence ends the text there.
        var cut: Int?
        for s in stops where s.count <= pending.count {
            var i = 0
            while i + s.count <= pending.count, i < (cut ?? Int.max) {
                if pending[i] == s[0] && pending[i..<i + s.count].elementsEqual(s) { cut = i; break }
                i += 1
            }
        }
        if let cut {
            stopped = true
            defer { pending.removeAll() }
            return String(decoding: pending[..<cut], as: UTF8.self)
        }
        // Hold back the longest suffix that is a proper prefix of some stop sequence.
        var hold = 0
        for s in stops {
            var k = min(s.count - 1, pending.count)
            while k > hold {
                if pending[(pending.count - k)...].elementsEqual(s[..<k]) { hold = k; break }
                k -= 1
            }
        }
        let emit = pending.count - hold
        guard emit > 0 else { return "" }
        let out = String(decoding: pending[..<emit], as: UTF8.self)
        pending.removeFirst(emit)
        return out
    }

    /// The held-back text at the end of the generation (it turned out not to be a stop sequence).
    public mutating func flush() -> String {
        defer { pending.removeAll() }
        return stopped || pending.isEmpty ? "" : String(decoding: pending, as: UTF8.self)
    }
}

/// Token ids in, text out, for one request: streaming detokenization (no partial UTF-8) followed by
/// the stop-sequence filter.
public struct TextAssembler: Sendable {
    private var decoder: StreamingDecoder
    private var filter: StopSequenceFilter
    public var stopped: Bool { filter.stopped }

    public init(tokenizer: Tokenizer, stops: [String]) {
        decoder = StreamingDecoder(tokenizer: tokenizer)
        filter = StopSequenceFilter(stops)
    }

    /// The text that one more token makes safe to emit (possibly empty).
    public mutating func append(_ token: Int32) -> String { filter.push(decoder.append(token)) }

    /// What is left at the end of the generation.
    public mutating func finish() -> String {
        let tail = filter.push(decoder.flush())
        return tail + filter.flush()
    }
}
