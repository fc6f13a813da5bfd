import CShardProto
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// One pipeline step for a batch of rows, on the data channel (PUSH → PULL).
///
/// Row i is token `positions` of sequence `rows[i].sequence`. `logitRows` (ascending row indices) travels
/// with every frame of the step so the last shard knows which rows to return. The payload's shape is fixed
/// by `kind`: tokens/hidden have `rows.count` rows; logits/sampled have `logitRows.count` rows; tokens and
/// sampled ids are I32 with one column; hidden and logits are F32 or F16.
public struct ActivationFrame: ProtoBacked {
    public struct Row: Sendable, Equatable {
        public var sequence: UInt64
        public var position: UInt32
        public init(sequence: UInt64, position: UInt32) {
            self.sequence = sequence
            self.position = position
        }
    }

    public struct Shape: Sendable, Equatable {
        public var rows: Int
        public var cols: Int
        public init(rows: Int, cols: Int) {
            self.rows = rows
            self.cols = cols
        }
    }

    public var stepID: UInt64
    public var kind: PayloadKind
    public var rows: [Row]
    public var logitRows: [UInt32]
    public var shape: Shape
    public var dtype: DType
    /// rows × cols × dtype.byteSize bytes, row-major, little-endian.
    public var payload: [UInt8]
    /// KV page operations every shard applies before the step: release these sequences, then the forks.
    public var releaseIDs: [UInt64] = []
    public var forks: [Fork] = []
    /// How the last shard returns the logit rows; every shard forwards it.
    public var sample: SampleMode = .logits
    /// Alternatives per row with `.greedyLogprobs` (≤ `WireLimits.maxTopLogprobs`).
    public var topLogprobs: Int = 0
    /// A `.sampled` frame with `.greedyLogprobs`: per logit row, the log-probability of its token; and
    /// `topLogprobs` alternatives per row, row after row, most likely first. Empty otherwise.
    public var logprobs: [Float] = []
    public var topTokens: [Int32] = []
    public var topValues: [Float] = []
    /// Chained greedy decode (one row, one logit row, a greedy sample mode): after this step the first
    /// shard may run up to this many more steps of the row's sequence on its own, each on the previous
    /// step's pick, unless the pick is one of `stopTokens`. Every shard forwards both.
    public var chainBudget: Int = 0
    public var stopTokens: [Int32] = []
    /// Coordinator → first shard: end the chain now (a frame with no rows and nothing else).
    public var chainStop = false

    /// `sequence` starts on the first `length` positions (whole pages) of `source`'s KV, shared.
    public struct Fork: Sendable, Equatable {
        public var sequence: UInt64
        public var source: UInt64
        public var length: UInt32
        public init(sequence: UInt64, source: UInt64, length: UInt32) {
            self.sequence = sequence
            self.source = source
            self.length = length
        }
    }

    /// Fields as given; `validate(limits:)` checks them the way `decode` does.
    public init(stepID: UInt64, kind: PayloadKind, rows: [Row], logitRows: [UInt32], shape: Shape, dtype: DType,
                payload: [UInt8]) {
        self.stepID = stepID
        self.kind = kind
        self.rows = rows
        self.logitRows = logitRows
        self.shape = shape
        self.dtype = dtype
        self.payload = payload
    }

    // MARK: building frames

    /// Coordinator → first shard: one token per row.
    public static func tokens(step: UInt64, rows: [Row], logitRows: [UInt32], tokens: [Int32]) -> ActivationFrame {
        precondition(tokens.count == rows.count, "one token per row")
        return ActivationFrame(stepID: step, kind: .tokens, rows: rows, logitRows: logitRows,
                               shape: Shape(rows: rows.count, cols: 1), dtype: .i32, payload: bytes(of: tokens))
    }

    /// Shard → next shard: `rows.count` × `cols` hidden states, sent as `dtype` (F16 halves the bytes).
    public static func hidden(step: UInt64, rows: [Row], logitRows: [UInt32], values: [Float], cols: Int,
                              dtype: DType = .f32) -> ActivationFrame {
        precondition(values.count == rows.count * cols, "hidden states must be rows × cols")
        return ActivationFrame(stepID: step, kind: .hidden, rows: rows, logitRows: logitRows,
                               shape: Shape(rows: rows.count, cols: cols), dtype: dtype,
                               payload: floatPayload(values, dtype))
    }

    /// Last shard → coordinator: `logitRows.count` × `vocabSize` logits.
    public static func logits(step: UInt64, rows: [Row], logitRows: [UInt32], values: [Float], vocabSize: Int,
                              dtype: DType = .f32) -> ActivationFrame {
        precondition(values.count == logitRows.count * vocabSize, "logits must be logitRows × vocabSize")
        return ActivationFrame(stepID: step, kind: .logits, rows: rows, logitRows: logitRows,
                               shape: Shape(rows: logitRows.count, cols: vocabSize), dtype: dtype,
                               payload: floatPayload(values, dtype))
    }

    /// Coordinator → first shard: ends a chained greedy decode.
    public static func chainStop(step: UInt64) -> ActivationFrame {
        var f = ActivationFrame(stepID: step, kind: .tokens, rows: [], logitRows: [], shape: Shape(rows: 0, cols: 1), dtype: .i32, payload: [])
        f.chainStop = true
        return f
    }

    /// Last shard → coordinator: one sampled token per logit row.
    public static func sampled(step: UInt64, rows: [Row], logitRows: [UInt32], tokens: [Int32]) -> ActivationFrame {
        precondition(tokens.count == logitRows.count, "one sampled token per logit row")
        return ActivationFrame(stepID: step, kind: .sampled, rows: rows, logitRows: logitRows,
                               shape: Shape(rows: logitRows.count, cols: 1), dtype: .i32, payload: bytes(of: tokens))
    }

    // MARK: reading payloads

    /// The payload as Float (F32 copied, F16 widened); throws for an I32 payload.
    public func floats() throws(WireError) -> [Float] {
        let n = shape.rows * shape.cols
        guard dtype.isFloat, payload.count == n * dtype.byteSize else {
            throw .malformed("payload is not \(n) floats (dtype \(dtype), \(payload.count) bytes)")
        }
        return payload.withUnsafeBytes { src in
            [Float](unsafeUninitializedCapacity: n) { dst, count in
                if dtype == .f32 {
                    if n > 0 { memcpy(dst.baseAddress!, src.baseAddress!, n * 4) }
                } else {
                    let h = src.bindMemory(to: UInt16.self)
                    for i in 0..<n { dst[i] = Float(Float16(bitPattern: h[i])) }
                }
                count = n
            }
        }
    }

    /// The payload as Int32 token ids; throws unless dtype is I32.
    public func int32s() throws(WireError) -> [Int32] {
        let n = shape.rows * shape.cols
        guard dtype == .i32, payload.count == n * 4 else {
            throw .malformed("payload is not \(n) int32 values (dtype \(dtype), \(payload.count) bytes)")
        }
        return payload.withUnsafeBytes { src in
            [Int32](unsafeUninitializedCapacity: n) { dst, count in
                if n > 0 { memcpy(dst.baseAddress!, src.baseAddress!, n * 4) }
                count = n
            }
        }
    }

    /// The checks `decode` applies, for a frame built by hand before it is sent.
    public func validate(limits: WireLimits = WireLimits()) throws(WireError) {
        guard shape.rows >= 0, shape.cols >= 0 else { throw .malformed("negative shape \(shape)") }
        let r: Result<Void, WireError> = logitRows.withUnsafeBufferPointer { lr in
            Result { () throws(WireError) in
                try Self.checkLayout(kind: kind, dtype: dtype, rowCount: rows.count, positionCount: rows.count,
                                     logitRows: lr, shapeRows: UInt64(shape.rows), shapeCols: UInt64(shape.cols),
                                     payloadBytes: payload.count, limits: limits)
            }
        }
        try r.get()
        try Self.checkSampling(kind: kind, sample: sample, topLogprobs: topLogprobs, logitRowCount: logitRows.count,
                               logprobs: logprobs.count, topTokens: topTokens.count, topValues: topValues.count, limits: limits)
        try Self.checkChain(kind: kind, rowCount: rows.count, logitRows: logitRows, sample: sample, budget: UInt64(max(0, chainBudget)),
                            stopTokens: stopTokens, chainStop: chainStop, pageOperations: releaseIDs.count + forks.count, limits: limits)
        guard chainBudget >= 0 else { throw .malformed("negative chain budget \(chainBudget)") }
    }

    /// Chain fields: a chained frame has one row, logit row 0 and a greedy sample mode (and is not a
    /// logits frame); a chain stop is a tokens frame with nothing else; stop tokens are valid ids.
    static func checkChain(kind: PayloadKind, rowCount: Int, logitRows: some Collection<UInt32>, sample: SampleMode, budget: UInt64,
                           stopTokens: some Collection<Int32>, chainStop: Bool, pageOperations: Int,
                           limits: WireLimits) throws(WireError) {
        guard stopTokens.count <= limits.maxStopTokens else {
            throw .limitExceeded("\(stopTokens.count) stop tokens, limit \(limits.maxStopTokens)")
        }
        guard budget <= UInt64(limits.maxChainBudget) else {
            throw .limitExceeded("chain budget \(budget), limit \(limits.maxChainBudget)")
        }
        if let bad = stopTokens.first(where: { $0 < 0 }) { throw .malformed("stop token \(bad)") }
        if chainStop {
            guard kind == .tokens, rowCount == 0, logitRows.isEmpty, budget == 0, stopTokens.isEmpty, pageOperations == 0 else {
                throw .malformed("a chain stop frame with rows, a budget, stop tokens or page operations")
            }
        } else if budget > 0 || !stopTokens.isEmpty {
            guard kind != .logits, rowCount == 1, logitRows.count == 1, logitRows.first == 0, sample != .logits else {
                throw .malformed("a chained \(kind) frame of \(rowCount) rows, \(logitRows.count) logit rows, sample mode \(sample) "
                                 + "(one row, logit row 0, greedy)")
            }
        }
    }

    /// A `.sampled` frame carries its log-probabilities exactly when asked (`.greedyLogprobs`): one per
    /// logit row and `topLogprobs` alternatives per row; every other frame carries none.
    static func checkSampling(kind: PayloadKind, sample: SampleMode, topLogprobs: Int, logitRowCount: Int, logprobs: Int,
                              topTokens: Int, topValues: Int, limits: WireLimits) throws(WireError) {
        guard topLogprobs >= 0, topLogprobs <= limits.maxTopLogprobs else {
            throw .limitExceeded("\(topLogprobs) top log-probabilities per row, limit \(limits.maxTopLogprobs)")
        }
        guard topTokens == topValues else { throw .malformed("\(topTokens) top tokens for \(topValues) top values") }
        if kind == .sampled && sample == .greedyLogprobs {
            guard logprobs == logitRowCount, topTokens == logitRowCount * topLogprobs else {
                throw .malformed("a sampled frame of \(logitRowCount) rows with \(logprobs) log-probabilities and \(topTokens) "
                                 + "alternatives (expected \(logitRowCount) and \(logitRowCount) × \(topLogprobs))")
            }
        } else {
            guard logprobs == 0, topTokens == 0 else {
                throw .malformed("log-probabilities in a \(kind) frame (sample mode \(sample))")
            }
        }
    }

    // MARK: checks shared by decode and validate

    static func checkLayout(kind: PayloadKind, dtype: DType, rowCount: Int, positionCount: Int,
                            logitRows: UnsafeBufferPointer<UInt32>, shapeRows: UInt64, shapeCols: UInt64,
                            payloadBytes: Int, limits: WireLimits) throws(WireError) {
        guard rowCount <= limits.maxRows else { throw .limitExceeded("\(rowCount) rows, limit \(limits.maxRows)") }
        guard positionCount == rowCount else {
            throw .malformed("\(positionCount) positions for \(rowCount) sequence ids (one each per row)")
        }
        guard logitRows.count <= rowCount else { throw .malformed("\(logitRows.count) logit rows for \(rowCount) rows") }
        var previous: Int64 = -1
        for r in logitRows {
            guard Int64(r) > previous, Int(r) < rowCount else {
                throw .malformed("logit row \(r) out of order or not below \(rowCount)")
            }
            previous = Int64(r)
        }
        let expectedRows = (kind == .tokens || kind == .hidden) ? rowCount : logitRows.count
        guard shapeRows == UInt64(expectedRows) else {
            throw .malformed("\(kind) frame has shape rows \(shapeRows), expected \(expectedRows)")
        }
        guard shapeCols <= UInt64(limits.maxColumns) else {
            throw .limitExceeded("\(shapeCols) columns, limit \(limits.maxColumns)")
        }
        switch kind {
        case .tokens, .sampled:
            guard dtype == .i32, shapeCols == 1 else {
                throw .malformed("\(kind) frame must be I32 with 1 column, not \(dtype) × \(shapeCols)")
            }
        case .hidden, .logits:
            guard dtype.isFloat, shapeCols >= 1 else {
                throw .malformed("\(kind) frame must be F32/F16 with ≥ 1 column, not \(dtype) × \(shapeCols)")
            }
        }
        // Both factors are bounded above (maxRows, maxColumns) but the product may still overflow Int.
        let (elements, o1) = Int(shapeRows).multipliedReportingOverflow(by: Int(shapeCols))
        let (bytes, o2) = elements.multipliedReportingOverflow(by: dtype.byteSize)
        guard !o1, !o2, bytes <= limits.maxPayloadBytes else {
            throw .limitExceeded("\(shapeRows) × \(shapeCols) \(dtype) payload over \(limits.maxPayloadBytes) bytes")
        }
        guard bytes == payloadBytes else {
            throw .malformed("\(shapeRows) × \(shapeCols) × \(dtype.byteSize) = \(bytes) bytes, payload has \(payloadBytes)")
        }
    }

    // MARK: ProtoBacked

    func withCMessage<R>(_ arena: CArena, _ body: (UnsafeMutablePointer<ProtobufCMessage>) -> R) -> R {
        var c = Shard__ActivationFrame()
        shard__activation_frame__init(&c)
        c.step_id = stepID
        c.kind = Shard__PayloadKind(rawValue: kind.rawValue)
        c.n_sequence_ids = rows.count
        c.sequence_ids = arena.array(rows.map(\.sequence))
        c.n_positions = rows.count
        c.positions = arena.array(rows.map(\.position))
        c.n_logit_rows = logitRows.count
        c.logit_rows = arena.array(logitRows)
        c.rows = UInt32(truncatingIfNeeded: shape.rows)
        c.cols = UInt32(truncatingIfNeeded: shape.cols)
        c.dtype = Shard__DType(rawValue: dtype.rawValue)
        c.n_release_ids = releaseIDs.count
        c.release_ids = arena.array(releaseIDs)
        c.n_fork_sequence_ids = forks.count
        c.fork_sequence_ids = arena.array(forks.map(\.sequence))
        c.n_fork_source_ids = forks.count
        c.fork_source_ids = arena.array(forks.map(\.source))
        c.n_fork_lengths = forks.count
        c.fork_lengths = arena.array(forks.map(\.length))
        c.sample = Shard__SampleMode(rawValue: sample.rawValue)
        c.top_logprobs = UInt32(clamping: topLogprobs)
        c.n_logprobs = logprobs.count
        c.logprobs = arena.array(logprobs)
        c.n_top_tokens = topTokens.count
        c.top_tokens = arena.array(topTokens)
        c.n_top_values = topValues.count
        c.top_values = arena.array(topValues)
        c.chain_budget = UInt32(clamping: chainBudget)
        c.n_stop_tokens = stopTokens.count
        c.stop_tokens = arena.array(stopTokens)
        c.chain_stop = chainStop ? 1 : 0
        // The payload is borrowed, not copied: pack reads it straight from the array.
        return payload.withUnsafeBytes { p in
            c.payload = ProtobufCBinaryData(len: p.count, data: UnsafeMutablePointer(
                mutating: p.baseAddress?.assumingMemoryBound(to: UInt8.self)))
            return withUnsafeMutablePointer(to: &c) { body(base($0)) }
        }
    }

    static func unpack(_ a: UnsafeMutablePointer<ProtobufCAllocator>, _ n: Int, _ d: UnsafePointer<UInt8>)
        -> UnsafeMutablePointer<ProtobufCMessage>? { shard__activation_frame__unpack(a, n, d).map(base) }

    static func precheck(_ b: UnsafeRawBufferPointer, limits: WireLimits) throws(WireError) -> Int {
        guard b.count <= limits.maxFrameBytes else {
            throw .limitExceeded("frame of \(b.count) bytes, limit \(limits.maxFrameBytes)")
        }
        let scan = try ProtoScan(b, maxField: 21,
                                 packedVarints: 1 << 3 | 1 << 4 | 1 << 5 | 1 << 10 | 1 << 11 | 1 << 12 | 1 << 13 | 1 << 17 | 1 << 20)
        for (field, name) in [(3, "sequence ids"), (4, "positions"), (5, "logit rows"), (11, "fork sequence ids"),
                              (12, "fork source ids"), (13, "fork lengths")] {
            guard scan[field].elements <= limits.maxRows else {
                throw .limitExceeded("\(scan[field].elements) \(name), limit \(limits.maxRows) rows")
            }
        }
        guard scan[10].elements <= limits.maxReleaseIDs else {
            throw .limitExceeded("\(scan[10].elements) release ids, limit \(limits.maxReleaseIDs)")
        }
        guard scan[9].maxLength <= limits.maxPayloadBytes else {
            throw .limitExceeded("payload of \(scan[9].maxLength) bytes, limit \(limits.maxPayloadBytes)")
        }
        guard scan[9].occurrences <= 1 else { throw .malformed("payload occurs \(scan[9].occurrences) times") }
        // Log-probabilities: packed floats (4 bytes each on the wire and in memory: the frame's size bounds
        // them) and varint alternatives (counted here).
        guard scan[17].elements <= limits.maxRows * limits.maxTopLogprobs else {
            throw .limitExceeded("\(scan[17].elements) top tokens, limit \(limits.maxRows) rows × \(limits.maxTopLogprobs)")
        }
        guard scan[20].elements <= limits.maxStopTokens else {
            throw .limitExceeded("\(scan[20].elements) stop tokens, limit \(limits.maxStopTokens)")
        }
        let elements = (3...5).map { scan[$0].elements }.reduce(0, +) + (10...13).map { scan[$0].elements }.reduce(0, +)
            + scan[17].elements + scan[20].elements
        return 2 * b.count + 8 * elements + 64 * scan.unknown + 4096
    }

    init(unpacked m: UnsafePointer<ProtobufCMessage>, limits: WireLimits) throws(WireError) {
        let c = cast(m, to: Shard__ActivationFrame.self).pointee
        let kind = try decodeEnum(c.kind.rawValue, PayloadKind.self, "ActivationFrame.kind")
        let dtype = try decodeEnum(c.dtype.rawValue, DType.self, "ActivationFrame.dtype")
        let logitRows = UnsafeBufferPointer(start: c.logit_rows, count: c.logit_rows == nil ? 0 : c.n_logit_rows)
        guard (c.n_sequence_ids == 0 || c.sequence_ids != nil), (c.n_positions == 0 || c.positions != nil),
              logitRows.count == c.n_logit_rows
        else { throw .malformed("repeated field count without data") }
        try Self.checkLayout(kind: kind, dtype: dtype, rowCount: c.n_sequence_ids, positionCount: c.n_positions,
                             logitRows: logitRows, shapeRows: UInt64(c.rows), shapeCols: UInt64(c.cols),
                             payloadBytes: c.payload.len, limits: limits)
        // Everything is consistent and within limits: now allocate.
        let ids = UnsafeBufferPointer(start: c.sequence_ids, count: c.n_sequence_ids)
        let positions = UnsafeBufferPointer(start: c.positions, count: c.n_positions)
        let rows = (0..<ids.count).map { Row(sequence: ids[$0], position: positions[$0]) }
        let payload = copyBytes(c.payload)
        guard c.n_release_ids <= limits.maxReleaseIDs, c.n_fork_sequence_ids <= limits.maxRows,
              c.n_fork_sequence_ids == c.n_fork_source_ids, c.n_fork_sequence_ids == c.n_fork_lengths,
              c.n_release_ids == 0 || c.release_ids != nil,
              c.n_fork_sequence_ids == 0 || (c.fork_sequence_ids != nil && c.fork_source_ids != nil && c.fork_lengths != nil)
        else { throw .malformed("release/fork fields: \(c.n_release_ids) releases, \(c.n_fork_sequence_ids)/\(c.n_fork_source_ids)/\(c.n_fork_lengths) fork fields") }
        self.init(stepID: c.step_id, kind: kind, rows: rows, logitRows: Array(logitRows),
                  shape: Shape(rows: Int(c.rows), cols: Int(c.cols)), dtype: dtype, payload: payload)
        let sample = try decodeEnum(c.sample.rawValue, SampleMode.self, "ActivationFrame.sample")
        guard c.n_logprobs == 0 || c.logprobs != nil, c.n_top_tokens == 0 || c.top_tokens != nil,
              c.n_top_values == 0 || c.top_values != nil
        else { throw .malformed("repeated field count without data") }
        try Self.checkSampling(kind: kind, sample: sample, topLogprobs: Int(c.top_logprobs), logitRowCount: logitRows.count,
                               logprobs: c.n_logprobs, topTokens: c.n_top_tokens, topValues: c.n_top_values, limits: limits)
        self.sample = sample
        topLogprobs = Int(c.top_logprobs)
        logprobs = Array(UnsafeBufferPointer(start: c.logprobs, count: c.n_logprobs))
        topTokens = Array(UnsafeBufferPointer(start: c.top_tokens, count: c.n_top_tokens))
        topValues = Array(UnsafeBufferPointer(start: c.top_values, count: c.n_top_values))
        guard c.n_stop_tokens == 0 || c.stop_tokens != nil else { throw .malformed("repeated field count without data") }
        let stops = UnsafeBufferPointer(start: c.stop_tokens, count: c.n_stop_tokens)
        try Self.checkChain(kind: kind, rowCount: rows.count, logitRows: logitRows, sample: sample, budget: UInt64(c.chain_budget),
                            stopTokens: stops, chainStop: c.chain_stop != 0,
                            pageOperations: c.n_release_ids + c.n_fork_sequence_ids, limits: limits)
        chainBudget = Int(c.chain_budget)
        stopTokens = Array(stops)
        chainStop = c.chain_stop != 0
        releaseIDs = Array(UnsafeBufferPointer(start: c.release_ids, count: c.n_release_ids))
        forks = (0..<c.n_fork_sequence_ids).map { Fork(sequence: c.fork_sequence_ids[$0], source: c.fork_source_ids[$0], length: c.fork_lengths[$0]) }
    }
}

private func bytes<T>(of values: [T]) -> [UInt8] {
    values.withUnsafeBytes { Array($0) }
}

private func floatPayload(_ values: [Float], _ dtype: DType) -> [UInt8] {
    switch dtype {
    case .f32: return bytes(of: values)
    case .f16:
        guard !values.isEmpty else { return [] }
        return [UInt8](unsafeUninitializedCapacity: values.count * 2) { dst, count in
            let h = UnsafeMutableRawPointer(dst.baseAddress!).bindMemory(to: UInt16.self, capacity: values.count)
            for i in values.indices { h[i] = Float16(values[i]).bitPattern }
            count = values.count * 2
        }
    case .i32: preconditionFailure("float values cannot be sent as I32")
    }
}
