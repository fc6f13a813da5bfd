import Testing
@testable import Wire

@Suite struct MessageRoundTripTests {
    static let controls: [Control] = [
        Control(requestID: 1, .register(Register(workerID: "worker-0", backend: .vulkan, deviceName: "NVIDIA H100 80GB HBM3",
                                                 freeMemoryBytes: 80 << 30, host: "gpu-node-7.example"))),
        Control(requestID: 2, .loadShard(LoadShard(modelPath: "/models/llama-3.2-1b-q4_k_m.gguf", streamedWeights: true,
                                                   layerStart: 8, layerEnd: 16, contextLength: 8192, kvType: .f16,
                                                   maxBatchRows: 512, backend: .cpu, deviceIndex: 3))),
        Control(requestID: 2, .ready(Ready(workerID: "worker-0", layerStart: 8, layerEnd: 16, memoryUsedBytes: 1_234_567_890))),
        Control(.heartbeat(Heartbeat(workerID: "w1", monotonicNanoseconds: .max, load: 0.75))),
        Control(requestID: 9, .stats(Stats(tokensProcessed: 1 << 40, stepCount: 99, busySeconds: 12.5, memoryUsedBytes: 7))),
        Control(.releaseSequence(ReleaseSequence(sequenceIDs: [1, 2, .max, 0]))),
        Control(.releaseSequence(ReleaseSequence(sequenceIDs: []))),
        Control(requestID: .max, .shutdown(Shutdown())),
        Control(requestID: 2, .error(ErrorReport(code: .outOfMemory, message: "KV pool: 4096 pages do not fit (ünïcode ✓)"))),
        Control(.error(ErrorReport(code: ErrorCode(rawValue: 4242), message: ""))),
        Control(.register(Register(workerID: "", protocolVersion: 0, backend: .unspecified, deviceName: "",
                                   freeMemoryBytes: 0, host: ""))),
        Control(requestID: 3, .loadShard({
            var l = LoadShard(modelPath: "/m.gguf", layerStart: 0, layerEnd: 4, contextLength: 64, maxBatchRows: 8)
            l.modelSize = 4_080_936_192
            l.modelDigest = .max
            return l
        }())),
        Control(requestID: 77, .weightChunk(WeightChunk(modelDigest: 0xfeed, fileSize: 1 << 33, offset: (1 << 33) - 4096,
                                                        data: (0..<4096).map { UInt8($0 & 0xff) }))),
        Control(requestID: 77, .weightChunk(WeightChunk(modelDigest: 0xfeed, fileSize: 10, offset: 10))),
        Control(requestID: 4, .error(ErrorReport(code: .modelUnavailable, message: "not on this host"))),
    ]

    @Test(arguments: controls) func controlRoundTrip(_ c: Control) throws {
        let bytes = c.encode()
        #expect(try Control.decode(bytes) == c)
        let message = c.encodeMessage()
        #expect(message.array == bytes)
    }

    @Test func everyBodyStandalone() throws {
        for c in Self.controls {
            switch c.body {
            case .register(let m): #expect(try Register.decode(m.encode()) == m)
            case .loadShard(let m): #expect(try LoadShard.decode(m.encode()) == m)
            case .ready(let m): #expect(try Ready.decode(m.encode()) == m)
            case .heartbeat(let m): #expect(try Heartbeat.decode(m.encode()) == m)
            case .stats(let m): #expect(try Stats.decode(m.encode()) == m)
            case .releaseSequence(let m): #expect(try ReleaseSequence.decode(m.encode()) == m)
            case .shutdown(let m): #expect(try Shutdown.decode(m.encode()) == m)
            case .error(let m): #expect(try ErrorReport.decode(m.encode()) == m)
            case .weightChunk(let m): #expect(try WeightChunk.decode(m.encode()) == m)
            }
        }
    }

    @Test func tokensAndSampled() throws {
        let r = rows(5)
        let t = ActivationFrame.tokens(step: 42, rows: r, logitRows: [1, 4], tokens: [1, -2, 3, 128_000, 5])
        let t2 = try ActivationFrame.decode(t.encode())
        #expect(t2 == t)
        #expect(try t2.int32s() == [1, -2, 3, 128_000, 5])
        #expect(t2.shape == .init(rows: 5, cols: 1))

        let s = ActivationFrame.sampled(step: 42, rows: r, logitRows: [1, 4], tokens: [17, 18])
        let s2 = try ActivationFrame.decode(s.encode())
        #expect(s2 == s)
        #expect(try s2.int32s() == [17, 18])
        #expect(throws: WireError.self) { try s2.floats() }
    }

    /// A greedy step: the request mode travels on every frame, and the last shard's sampled frame carries
    /// one log-probability per logit row and `topLogprobs` alternatives per row.
    @Test func greedySamplingFields() throws {
        var t = ActivationFrame.tokens(step: 8, rows: rows(3), logitRows: [0, 2], tokens: [4, 5, 6])
        t.sample = .greedyLogprobs
        t.topLogprobs = 2
        try t.validate()
        #expect(try ActivationFrame.decode(t.encode()) == t)

        var s = ActivationFrame.sampled(step: 8, rows: rows(3), logitRows: [0, 2], tokens: [17, 99])
        s.sample = .greedyLogprobs
        s.topLogprobs = 2
        s.logprobs = [-0.25, -1.5]
        s.topTokens = [17, 3, 99, 98]
        s.topValues = [-0.25, -2, -1.5, -1.75]
        try s.validate()
        let d = try ActivationFrame.decode(s.encode())
        #expect(d == s)
        #expect(d.logprobs == [-0.25, -1.5] && d.topTokens == [17, 3, 99, 98] && d.topValues == [-0.25, -2, -1.5, -1.75])

        var plain = ActivationFrame.sampled(step: 9, rows: rows(1), logitRows: [0], tokens: [7])
        plain.sample = .greedy
        #expect(try ActivationFrame.decode(plain.encode()) == plain)
    }

    /// Log-probabilities that do not match the rows, the mode, or the limit are refused on both ends.
    @Test func inconsistentGreedySamplingIsRejected() {
        func sampled(_ edit: (inout ActivationFrame) -> Void) -> ActivationFrame {
            var s = ActivationFrame.sampled(step: 1, rows: rows(2), logitRows: [0, 1], tokens: [1, 2])
            s.sample = .greedyLogprobs
            s.topLogprobs = 1
            s.logprobs = [-1, -2]
            s.topTokens = [1, 2]
            s.topValues = [-1, -2]
            edit(&s)
            return s
        }
        let bad: [ActivationFrame] = [
            sampled { $0.logprobs = [-1] },                                   // one per logit row
            sampled { $0.topTokens = [1] ; $0.topValues = [-1] },             // k per row
            sampled { $0.topValues = [-1] },                                  // tokens ≠ values
            sampled { $0.sample = .greedy },                                  // log-probabilities not asked for
            sampled { $0.topLogprobs = 65; $0.topTokens = Array(repeating: 1, count: 130); $0.topValues = Array(repeating: -1, count: 130) },
            { var h = ActivationFrame.hidden(step: 1, rows: rows(1), logitRows: [0], values: [1, 2], cols: 2)
              h.logprobs = [-1]; return h }(),                                 // only sampled frames carry them
        ]
        for (i, f) in bad.enumerated() {
            #expect(throws: WireError.self, "case \(i)") { try f.validate() }
            #expect(throws: WireError.self, "case \(i)") { try ActivationFrame.decode(f.encode()) }
        }
    }

    /// Chained greedy decode: the budget and stop tokens travel on one-row greedy frames, a chain stop is
    /// a frame with nothing else; anything else with chain fields is refused on both ends.
    @Test func chainFields() throws {
        func chained(_ kind: PayloadKind = .tokens, _ edit: (inout ActivationFrame) -> Void = { _ in }) -> ActivationFrame {
            var f = kind == .tokens ? ActivationFrame.tokens(step: 5, rows: rows(1), logitRows: [0], tokens: [42])
                : kind == .sampled ? ActivationFrame.sampled(step: 5, rows: rows(1), logitRows: [0], tokens: [43])
                : ActivationFrame.hidden(step: 5, rows: rows(1), logitRows: [0], values: [1, 2], cols: 2)
            f.sample = .greedy
            f.chainBudget = 1000
            f.stopTokens = [2, 0, 49151]
            edit(&f)
            return f
        }
        for f in [chained(), chained(.sampled), chained(.hidden), chained { $0.stopTokens = [] }, chained { $0.chainBudget = 0 },
                  ActivationFrame.chainStop(step: 7)] {
            try f.validate()
            let d = try ActivationFrame.decode(f.encode())
            #expect(d == f)
            #expect(d.chainBudget == f.chainBudget && d.stopTokens == f.stopTokens && d.chainStop == f.chainStop)
        }
        #expect(try ActivationFrame.decode(ActivationFrame.chainStop(step: 7).encode()).chainStop)
        var two = ActivationFrame.tokens(step: 5, rows: rows(2), logitRows: [1], tokens: [42, 43])
        two.sample = .greedy
        two.chainBudget = 3
        var stopWithRows = chained { $0.chainBudget = 0; $0.stopTokens = [] }
        stopWithRows.chainStop = true
        var stopWithRelease = ActivationFrame.chainStop(step: 1)
        stopWithRelease.releaseIDs = [3]
        let bad: [ActivationFrame] = [
            two,                                                           // one row only
            chained { $0.sample = .logits },                               // greedy only
            chained { $0.logitRows = [] ; $0.chainBudget = 1 },            // logit row 0
            chained { $0.stopTokens = [-1] },                              // a token id
            chained { $0.stopTokens = Array(repeating: 1, count: 65) },    // limit
            chained { $0.chainBudget = (1 << 20) + 1 },                    // limit
            stopWithRows, stopWithRelease,                                 // a stop carries nothing else
        ]
        for (i, f) in bad.enumerated() {
            #expect(throws: WireError.self, "case \(i)") { try f.validate() }
            #expect(throws: WireError.self, "case \(i)") { try ActivationFrame.decode(f.encode()) }
        }
        var load = LoadShard(modelPath: "/m.gguf", layerStart: 0, layerEnd: 4, contextLength: 64, maxBatchRows: 8)
        load.chainEndpoint = "tcp://10.0.0.2:5556"
        #expect(try Control.decode(Control(requestID: 1, .loadShard(load)).encode()).body == .loadShard(load))
        var ready = Ready(workerID: "w", layerStart: 0, layerEnd: 4, memoryUsedBytes: 1)
        ready.chains = true
        #expect(try Control.decode(Control(requestID: 1, .ready(ready)).encode()).body == .ready(ready))
    }

    @Test(arguments: [DType.f32, .f16]) func hiddenStates(_ dtype: DType) throws {
        let cols = 2048
        let r = rows(8)
        // Values exactly representable in f16, so both dtypes round-trip exactly.
        let values = (0..<(r.count * cols)).map { Float(($0 % 2001) - 1000) / 64 }
        let f = ActivationFrame.hidden(step: 3, rows: r, logitRows: [7], values: values, cols: cols, dtype: dtype)
        #expect(f.payload.count == values.count * dtype.byteSize)
        try f.validate()
        let d = try ActivationFrame.decode(f.encode())
        #expect(d == f)
        #expect(try d.floats() == values)
    }

    @Test(arguments: [DType.f32, .f16]) func largeLogits(_ dtype: DType) throws {
        let vocab = 128_256
        let r = rows(4)
        var rng = SplitMix(1)
        let values = (0..<(2 * vocab)).map { _ in Float(Float16(Float.random(in: -30...30, using: &rng))) }
        let f = ActivationFrame.logits(step: .max, rows: r, logitRows: [0, 3], values: values, vocabSize: vocab, dtype: dtype)
        let bytes = f.encode()
        #expect(bytes.count > values.count * dtype.byteSize)
        let d = try ActivationFrame.decode(bytes, limits: .forModel(embeddingLength: 4096, vocabSize: vocab, maxBatchRows: 512))
        #expect(d == f)
        #expect(try d.floats() == values)
    }

    @Test func emptyStep() throws {
        let f = ActivationFrame.hidden(step: 0, rows: [], logitRows: [], values: [], cols: 4096)
        #expect(try ActivationFrame.decode(f.encode()) == f)
    }

    @Test func limitsForModelAdmitWhatTheModelSends() throws {
        let limits = WireLimits.forModel(embeddingLength: 4096, vocabSize: 32000, maxBatchRows: 64)
        let values = [Float](repeating: 1, count: 64 * 32000)
        let logits = ActivationFrame.logits(step: 1, rows: rows(64), logitRows: (0..<64).map { UInt32($0) },
                                            values: values, vocabSize: 32000)
        try logits.validate(limits: limits)
        #expect(try ActivationFrame.decode(logits.encode(), limits: limits) == logits)
        #expect(logits.encode().count <= limits.maxFrameBytes)
    }
}

extension Control: CustomTestStringConvertible {
    public var testDescription: String { "\(body)".prefix(40).description }
}

@Suite struct WeightChunkLimitTests {
    @Test func chunksOutsideTheFileOrTooLargeAreRejected() throws {
        // Past the end of the file.
        let outside = WeightChunk(modelDigest: 1, fileSize: 100, offset: 90, data: [UInt8](repeating: 1, count: 20))
        #expect(throws: WireError.self) { try WeightChunk.decode(outside.encode()) }
        #expect(throws: WireError.self) { try Control.decode(Control(.weightChunk(outside)).encode()) }
        // Larger than the limit (the whole Control is also bounded).
        let big = WeightChunk(modelDigest: 1, fileSize: 1 << 30, offset: 0, data: [UInt8](repeating: 1, count: (768 << 10) + 1))
        #expect(throws: WireError.self) { try WeightChunk.decode(big.encode()) }
        let fine = WeightChunk(modelDigest: 1, fileSize: 1 << 30, offset: 0, data: [UInt8](repeating: 1, count: WeightChunk.standardSize))
        #expect(try Control.decode(Control(.weightChunk(fine)).encode()) == Control(.weightChunk(fine)))
    }
}
