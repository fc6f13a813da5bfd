#if canImport(Glibc)
import Glibc
#endif
import Compute
import GGUF
import ShardRuntime
import Wire

/// The shards as worker processes linked by ZeroMQ: coordinator → worker 0 → … → last worker →
/// coordinator. Each worker is told its layer range and where to push its output; a step sends the
/// token ids to worker 0 and waits for the logits from the last worker. A worker's Error, or no
/// answer within `stepTimeout`, fails the step with a message naming the worker.
///
/// Chained greedy decode (`ChainingPipeline`, `chainEnabled`): the last worker is also told worker 0's
/// data endpoint (`LoadShard.chain_endpoint`); `submitChain` sends one frame with a step budget and stop
/// tokens, worker 0 then starts each following step on the last worker's pick, and `collect` returns
/// the steps' results in order until the budget, a stop token, or `endChain` (a `chain_stop` frame).
public final class RemotePipeline: ChainingPipeline {
    public struct WorkerInfo: Sendable {
        public var endpoint: String
        public var registration: Register
        public var layers: Range<Int>
    }

    public let vocabSize: Int
    public let maxBatchRows: Int
    public let contextLength: Int
    public private(set) var workers: [WorkerInfo] = []
    /// The layer range of each worker, in pipeline order.
    public private(set) var plan: [Range<Int>] = []
    /// Each worker's KV pool as its Ready reported it, and the one they can all honour.
    public private(set) var workerPools: [KVPoolInfo] = []
    public private(set) var kvPool = KVPoolInfo(pageSize: 32, pages: 1)
    /// One micro-batch per shard keeps every worker busy. CPU shards get one more on the wire: their step
    /// time grows with its rows, so smaller micro-batches cost little and the extra one hides the
    /// coordinator's turnaround. GPU shards do not: their step time hardly depends on its rows up to
    /// dozens (each step reads the shard's weights once), so an extra micro-batch adds a weight pass per
    /// round (2 × H200, 7B: 2 in flight decode 765 / 1494 tok/s at 16 / 64 streams, 3 in flight 453 / 1422).
    public var maxInFlight: Int { workers.count + (workers.allSatisfy { $0.registration.backend == .cpu } ? 1 : 0) }
    /// Steps sent and not yet collected, oldest first, with what they asked the last shard for.
    private var inFlight: [(id: UInt64, sampling: LogitSampling, logitRows: Int)] = []
    public var stepTimeout: Duration = .seconds(120)
    /// Greedy steps are picked on the last worker (false: the logits come back and are picked here, as
    /// before; SHARD_WORKER_SAMPLING=0 sets it, for A/B measurements).
    public var workerSampling = getenv("SHARD_WORKER_SAMPLING").map { String(cString: $0) } != "0"
    /// Chained greedy decode (`ChainingPipeline`): the last worker also sends a chained step's pick to
    /// worker 0 (init's `chain`; `LoadOptions.defaultChain` says when; SHARD_CHAIN=0 / 1 for A/B).
    public let chainEnabled: Bool
    /// Every worker reported that it chains (Ready.chains).
    private var workersChain = false
    /// The last step of the chain in flight, until it is collected or the chain ends.
    private var chainLast: UInt64?
    /// `collect` polls for results without sleeping for this long after the last result (see
    /// `ShardServer.Options.idleSpin`); zero: it blocks.
    public var idleSpin: Duration = .zero
    private var lastResult = ContinuousClock.now
    /// Called while waiting for a step; a non-nil message fails the step at once (e.g. a worker process died).
    public var healthCheck: (() -> String?)?

    private let limits: WireLimits
    private let context: ZmqContext
    private var controls: [ZmqSocket] = []
    /// How this coordinator's frames reach worker 0: the same-host link or ZeroMQ (`FrameLink`).
    public var activationTransport: ActivationSender.Transport? { input?.transport }
    /// Frames to worker 0 (the same-host link when it offers one: `FrameLink`), results from the last.
    private var input: ActivationSender?
    private let results: ActivationInbox
    private var nextStep: UInt64 = 1
    private var nextRequest: UInt64 = 1
    private var closed = false
    private var resultSocketPath: String?
    /// Workers this coordinator started: they get Shutdown at the end. Running services (`--workers`) stay up.
    private let ownsWorkers: Bool

    /// Connects to the workers at `endpoints` (control endpoints), asks each for its Register, lets
    /// `plan` cut the layers knowing what the workers reported (it throws for a plan that does not fit),
    /// loads `plan[i]` of `modelPath` on
    /// worker i and links them. `resultEndpoint` is where the last worker pushes logits (bound here).
    public init(endpoints: [String], model: GGUFFile, plan makePlan: ([Register]) throws -> [Range<Int>], embeddingLength: Int, vocabSize: Int,
                contextLength: Int, maxBatchRows: Int, backends: (Int) -> BackendKind, devices: [Int]?,
                resultEndpoint: String, ownsWorkers: Bool = true, kv: KVLoadOptions = KVLoadOptions(),
                loadTimeout: Duration = .seconds(600), chain: Bool = getenv("SHARD_CHAIN").map { String(cString: $0) } != "0") throws {
        self.ownsWorkers = ownsWorkers
        chainEnabled = chain
        precondition(!endpoints.isEmpty)
        self.vocabSize = vocabSize
        self.maxBatchRows = maxBatchRows
        self.contextLength = contextLength
        limits = WireLimits.forModel(embeddingLength: embeddingLength, vocabSize: vocabSize, maxBatchRows: maxBatchRows)
        context = try ZmqContext()
        results = try ActivationInbox(context, bind: resultEndpoint, limits: limits)
        let resultAddress = results.endpoint
        resultSocketPath = resultAddress.hasPrefix("ipc://") ? String(resultAddress.dropFirst(6)) : nil
        do {
            for e in endpoints {
                let s = try ZmqSocket(context, .dealer, options: .control(limits))
                try s.connect(e)
                controls.append(s)
            }
            // Hello: each worker answers a Heartbeat with its Register.
            var registrations: [Register] = []
            for i in controls.indices {
                let r = try registration(i, endpoint: endpoints[i])
                guard r.protocolVersion == wireProtocolVersion else {
                    throw GenerationError("worker \(r.workerID) speaks protocol \(r.protocolVersion), this coordinator \(wireProtocolVersion)")
                }
                registrations.append(r)
            }
            let plan = try makePlan(registrations)
            guard plan.count == endpoints.count else {
                throw GenerationError("the plan has \(plan.count) shards for \(endpoints.count) workers")
            }
            self.plan = plan
            // Load, last worker first, so that each one's next hop is already listening.
            let dataEndpoints = try endpoints.map { try Endpoints.data(forControl: $0) }
            let digest = model.digest, layerCount = plan.last!.upperBound
            var chainReports: [Bool] = []
            for i in plan.indices.reversed() {
                let next = i + 1 < plan.count ? dataEndpoints[i + 1]
                    : RemotePipeline.advertised(resultAddress, toward: endpoints[i])
                var load = LoadShard(modelPath: model.path, layerStart: UInt32(plan[i].lowerBound), layerEnd: UInt32(plan[i].upperBound),
                                     contextLength: UInt32(contextLength), kvType: kv.type == .q8_0 ? .q8_0 : .f16,
                                     maxBatchRows: UInt32(maxBatchRows),
                                     backend: WireBackend(name: backends(i).rawValue) ?? .unspecified,
                                     deviceIndex: UInt32(devices.map { $0[i % $0.count] } ?? 0), nextEndpoint: next)
                switch kv.memory {
                case .bytes(let b)?: load.kvMemoryBytes = UInt64(b)
                case .fraction(let f)?: load.kvMemoryFraction = Float(f)
                case nil: break
                }
                load.kvPageSize = UInt32(kv.pageSize)
                load.maxSequences = UInt32(kv.maxSequences)
                if chainEnabled && i == plan.count - 1 { load.chainEndpoint = dataEndpoints[0] }
                load.modelSize = UInt64(model.fileSize)
                load.modelDigest = digest
                var answer = try request(i, .loadShard(load), timeout: loadTimeout, endpoint: endpoints[i])
                if case .error(let e) = answer, e.code == .modelUnavailable {
                    // Not on the worker's host: send it the header and its tensors, then load from those.
                    try streamWeights(to: i, model: model, digest: digest, layers: plan[i], layerCount: layerCount,
                                      endpoint: endpoints[i], timeout: loadTimeout)
                    load.streamedWeights = true
                    answer = try request(i, .loadShard(load), timeout: loadTimeout, endpoint: endpoints[i])
                }
                switch answer {
                case .ready(let r):
                    guard r.kvPages > 0, r.kvPageSize > 0 else {
                        throw GenerationError("worker \(registrations[i].workerID) did not report its KV pool (an older shard-worker?)")
                    }
                    workers.insert(WorkerInfo(endpoint: endpoints[i], registration: registrations[i], layers: plan[i]), at: 0)
                    chainReports.append(r.chains)
                    workerPools.insert(KVPoolInfo(pageSize: Int(r.kvPageSize), pages: Int(r.kvPages), window: Int(r.kvWindow),
                                                  ringPages: Int(r.kvRingPages), windowPages: Int(r.kvWindowPages)), at: 0)
                case .error(let e): throw GenerationError("worker \(registrations[i].workerID) could not load layers \(plan[i]): \(e.message)")
                default: throw GenerationError("worker \(registrations[i].workerID) answered LoadShard unexpectedly")
                }
            }
            guard let common = KVPoolInfo.common(workerPools) else {
                throw GenerationError("the workers' KV pools disagree (page sizes or windows): \(workerPools)")
            }
            kvPool = common
            workersChain = chainEnabled && chainReports.allSatisfy { $0 }
            // Ask again: a loaded worker reports the device its backend runs on.
            for i in workers.indices { workers[i].registration = try registration(i, endpoint: endpoints[i]) }
            input = try ActivationSender(context, endpoint: dataEndpoints[0], limits: limits)
        } catch {
            close()
            throw error
        }
    }

    deinit { shutdown() }

    /// A bound tcp address with a wildcard host becomes this machine's address toward the worker.
    static func advertised(_ bound: String, toward worker: String) -> String {
        guard bound.hasPrefix("tcp://0.0.0.0:") || bound.hasPrefix("tcp://*:"),
              let host = Endpoints.host(of: worker), let local = Endpoints.localAddress(toward: host),
              let colon = bound.lastIndex(of: ":") else { return bound }
        return "tcp://\(local)\(bound[colon...])"
    }

    /// Sends worker i the byte ranges of `model` its shard needs, in `WeightChunk`s, keeping a window of
    /// chunks in flight and waiting for every acknowledgement.
    private func streamWeights(to i: Int, model: GGUFFile, digest: UInt64, layers: Range<Int>, layerCount: Int,
                               endpoint: String, timeout: Duration) throws {
        var pending = Set<UInt64>()
        let window = 16
        let clock = ContinuousClock()
        func awaitReply() throws {
            let deadline = clock.now + .seconds(60)
            while clock.now < deadline {
                guard try pollReadable([controls[i]], timeout: .milliseconds(100))[0] else { continue }
                guard let reply = try controls[i].receive(Control.self, limits: limits) else { continue }
                if case .error(let e) = reply.body {
                    throw GenerationError("worker at \(endpoint) could not take the streamed model: \(e.message)")
                }
                if pending.remove(reply.requestID) != nil { return }
            }
            throw GenerationError("worker at \(endpoint) stopped acknowledging streamed weights")
        }
        for range in model.byteRanges(layers: layers, layerCount: layerCount) {
            var offset = range.lowerBound
            while offset < range.upperBound {
                let end = min(range.upperBound, offset + WeightChunk.standardSize)
                let id = nextRequest
                nextRequest += 1
                let chunk = WeightChunk(modelDigest: digest, fileSize: UInt64(model.fileSize), offset: UInt64(offset),
                                        data: Array(model.bytes(offset..<end)))
                try controls[i].send(Control(requestID: id, .weightChunk(chunk)))
                pending.insert(id)
                offset = end
                while pending.count >= window { try awaitReply() }
            }
        }
        while !pending.isEmpty { try awaitReply() }
    }

    /// Worker i's Register, its answer to a Heartbeat.
    private func registration(_ i: Int, endpoint: String) throws -> Register {
        guard case .register(let r) = try request(i, .heartbeat(Heartbeat(workerID: "coordinator", monotonicNanoseconds: 0, load: 0)),
                                                  timeout: .seconds(30), endpoint: endpoint) else {
            throw GenerationError("worker at \(endpoint) did not register")
        }
        return r
    }

    /// Sends a control request to worker i and waits for the reply with the same request id.
    private func request(_ i: Int, _ body: Control.Body, timeout: Duration, endpoint: String) throws -> Control.Body {
        let id = nextRequest
        nextRequest += 1
        try controls[i].send(Control(requestID: id, body))
        let clock = ContinuousClock()
        let deadline = clock.now + timeout
        while clock.now < deadline {
            guard try pollReadable([controls[i]], timeout: .milliseconds(100))[0] else { continue }
            guard let reply = try controls[i].receive(Control.self, limits: limits) else { continue }
            if reply.requestID == id { return reply.body }
            if case .error(let e) = reply.body { throw GenerationError("worker at \(endpoint): \(e.message)") }
        }
        throw GenerationError("worker at \(endpoint) did not answer within \(timeout)")
    }

    public func step(tokens: [Int32], rows: [StepRow], logitRows: [Int]) throws -> [Float] {
        try run(PipelineStep(tokens: tokens, rows: rows, logitRows: logitRows)).logits
    }

    /// Pushes the step's frame to worker 0; workers process frames in order, so several steps can be
    /// on their way at once.
    public func submit(_ step: PipelineStep) throws -> UInt64 {
        let id = nextStep
        nextStep += 1
        try send(stepFrame(step, id: id), id: id)
        inFlight.append((id, step.sampling, step.logitRows.count))
        return id
    }

    public func chains(_ sampling: LogitSampling) -> Bool {
        guard workersChain, workerSampling, case .greedy(let logprobs, let top) = sampling else { return false }
        return !logprobs || top <= limits.maxTopLogprobs
    }

    public func submitChain(_ step: PipelineStep, budget: Int, stopTokens: [Int32]) throws -> UInt64 {
        guard chains(step.sampling), step.rows.count == 1, step.logitRows == [0], budget >= 0, budget <= limits.maxChainBudget,
              stopTokens.count <= limits.maxStopTokens else {
            throw GenerationError("a chained step takes one row, logit row 0, greedy sampling and a budget within limits")
        }
        try endChain()
        let id = nextStep
        nextStep += UInt64(budget) + 1
        var frame = stepFrame(step, id: id)
        frame.chainBudget = budget
        frame.stopTokens = stopTokens
        try send(frame, id: id)
        for s in id...(id + UInt64(budget)) { inFlight.append((s, step.sampling, 1)) }
        chainLast = budget > 0 ? id + UInt64(budget) : nil
        return id
    }

    public func endChain() throws {
        guard let last = chainLast else { return }
        chainLast = nil
        inFlight.removeAll { $0.id <= last }
        try input?.send(ActivationFrame.chainStop(step: last))
    }

    /// The step's frame to worker 0.
    private func stepFrame(_ step: PipelineStep, id: UInt64) -> ActivationFrame {
        let wireRows = step.rows.map { ActivationFrame.Row(sequence: $0.sequence, position: UInt32($0.position)) }
        var frame = ActivationFrame.tokens(step: id, rows: wireRows, logitRows: step.logitRows.map(UInt32.init), tokens: step.tokens)
        frame.releaseIDs = releasedSinceLastStep + step.release
        releasedSinceLastStep.removeAll()
        frame.forks = step.forks.map { ActivationFrame.Fork(sequence: $0.sequence, source: $0.source, length: UInt32($0.length)) }
        // A greedy step: the last worker picks the tokens. (More alternatives than a frame may ask for:
        // the logits come back, and `collect` picks from them.)
        if workerSampling, case .greedy(let logprobs, let top) = step.sampling, !logprobs || top <= limits.maxTopLogprobs {
            frame.sample = logprobs ? .greedyLogprobs : .greedy
            frame.topLogprobs = logprobs ? top : 0
        }
        return frame
    }

    private func send(_ frame: ActivationFrame, id: UInt64) throws {
        StepTrace.shared.mark(id, "submit")
        guard let input else { throw GenerationError("the shard pipeline is closed") }
        do {
            try input.send(frame)
        } catch {
            // The link to worker 0 broke: if its process died, say so (as a ZeroMQ hop's health check would).
            if let problem = deadWorker(grace: .milliseconds(200)) { throw GenerationError("step \(id) failed: \(problem)") }
            throw error
        }
        StepTrace.shared.mark(id, "sent")
    }

    /// Waits for the oldest step in flight. A worker's Error, a dead worker or no answer within
    /// `stepTimeout` fails it (and forgets every step in flight: the pipeline's state is unknown).
    public func collect() throws -> StepResult {
        guard let (id, sampling, logitRows) = inFlight.first else { throw GenerationError("collect without a submitted step") }
        let clock = ContinuousClock()
        let deadline = clock.now + stepTimeout
        do {
            while clock.now < deadline {
                if let problem = healthCheck?() { throw GenerationError("step \(id) failed: \(problem)") }
                var ready = (sockets: [Bool](repeating: false, count: controls.count), frames: false)
                while idleSpin > .zero && clock.now - lastResult < idleSpin && !ready.frames && !ready.sockets.contains(true) {
                    ready = try pollReadable(controls, inbox: results, timeout: .zero)
                    sched_yield()
                }
                if !ready.frames && !ready.sockets.contains(true) {
                    ready = try pollReadable(controls, inbox: results, timeout: .milliseconds(200))
                }
                let tPoll = StepTrace.now()
                for (i, r) in ready.sockets.enumerated() where r {
                    if let c = try controls[i].receive(Control.self, limits: limits), case .error(let e) = c.body {
                        // A worker that lost its next hop reports it; a dead process is the cause to name.
                        if let problem = deadWorker(grace: .milliseconds(200)) { throw GenerationError("step \(id) failed: \(problem)") }
                        throw GenerationError("worker \(workers[i].registration.workerID) (layers \(workers[i].layers)): \(e.message)")
                    }
                }
                guard ready.frames, let frame = try results.receive() else { continue }
                guard frame.stepID == id else { continue }  // a late answer to a step that already failed
                inFlight.removeFirst()
                if id == chainLast { chainLast = nil }
                lastResult = clock.now
                StepTrace.shared.mark(id, "poll", at: tPoll)
                let result = try Self.result(of: frame, step: id, sampling: sampling, logitRows: logitRows, vocab: vocabSize)
                StepTrace.shared.mark(id, "decoded")
                return result
            }
            throw GenerationError("no answer from the shard pipeline for step \(id) within \(stepTimeout)")
        } catch {
            inFlight.removeAll()
            throw error
        }
    }

    /// The health check's complaint, waiting up to `grace` for one (a killed worker's socket closes, and
    /// its neighbour reports that, a moment before the process can be reaped).
    private func deadWorker(grace: Duration) -> String? {
        guard let healthCheck else { return nil }
        let clock = ContinuousClock()
        let deadline = clock.now + grace
        while true {
            if let problem = healthCheck() { return problem }
            if clock.now >= deadline { return nil }
            usleep(5_000)
        }
    }

    /// A step's result from the last worker's frame: logits, or the picks of a `.greedy` step (from a
    /// `.sampled` frame, or from logits if the worker sent those).
    static func result(of frame: ActivationFrame, step id: UInt64, sampling: LogitSampling, logitRows: Int, vocab: Int) throws -> StepResult {
        switch (frame.kind, sampling) {
        case (.logits, .logits):
            return StepResult(step: id, logits: try frame.floats())
        case (.logits, .greedy(let logprobs, let top)):
            let logits = try frame.floats()
            return StepResult(step: id, logits: logits, picks: try StepResult.picks(fromLogits: logits, rows: logitRows, vocab: vocab,
                                                                                    logprobs: logprobs, top: top))
        case (.sampled, .greedy(let logprobs, let top)):
            let tokens = try frame.int32s()
            guard tokens.count == logitRows, !logprobs || (frame.sample == .greedyLogprobs && frame.topLogprobs == top) else {
                throw GenerationError("step \(id): the last shard sampled \(tokens.count) rows (mode \(frame.sample), "
                                      + "\(frame.topLogprobs) alternatives) for \(logitRows) rows (logprobs \(logprobs), \(top) alternatives)")
            }
            let picks = tokens.indices.map { r in
                GreedyPick(token: tokens[r], logprob: logprobs ? frame.logprobs[r] : 0,
                           top: logprobs ? (r * top..<(r + 1) * top).map {
                               GreedyPick.Alternative(token: frame.topTokens[$0], logprob: frame.topValues[$0]) } : [])
            }
            return StepResult(step: id, logits: [], picks: picks)
        default:
            throw GenerationError("step \(id): the last shard returned a \(frame.kind) frame for a \(sampling) step")
        }
    }

    /// Frees the sequence's KV pages on every worker. The IDs also ride on the next step's frame, ahead
    /// of that step's rows: the control message may arrive after a later frame (the same-host link is
    /// faster than ZeroMQ), and a one-sequence pool would then still be full for the next sequence.
    /// (Releasing twice is harmless.)
    public func release(_ sequence: SequenceID) throws {
        releasedSinceLastStep.append(sequence)
        for s in controls { try s.send(Control(.releaseSequence(ReleaseSequence(sequenceIDs: [sequence])))) }
    }
    private var releasedSinceLastStep: [SequenceID] = []

    /// Tells the workers this coordinator started to exit (waiting briefly for their acknowledgements),
    /// and closes the sockets.
    public func shutdown() {
        StepTrace.shared.flush(role: "coordinator")
        guard !closed else { return }
        if ownsWorkers {
            for i in controls.indices {
                _ = try? request(i, .shutdown(Shutdown()), timeout: .seconds(2), endpoint: "#\(i)")
            }
        }
        close()
    }

    private func close() {
        guard !closed else { return }
        closed = true
        controls.forEach { $0.close() }
        input?.close()
        results.close()
        context.shutdown()
        if let resultSocketPath { unlink(resultSocketPath) }
    }
}
