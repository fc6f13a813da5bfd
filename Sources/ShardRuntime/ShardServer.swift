import Compute
import GGUF
import Model
import Synchronization
import Wire
#if canImport(Glibc)
import Glibc
#endif

/// Set by SIGTERM/SIGINT: the serving loop finishes the frame in hand and exits.
let stopRequested = Atomic<Bool>(false)

/// What `shard-worker` runs: serves one `ModelShard` over ZeroMQ.
///
/// Control (a ROUTER bound at the `--listen` endpoint): Heartbeat → Register (the hello),
/// LoadShard → Ready or Error, ReleaseSequence, Shutdown → Shutdown (acknowledged, then exit).
/// Data (an `ActivationInbox` at `Endpoints.data(forControl:)`: a PULL, and for ipc:// the same-host
/// link, see `FrameLink`): ActivationFrames of token ids or hidden states; the results (hidden states,
/// or logits from the last shard) go to LoadShard's `nextEndpoint` (the link if it offers one, else a PUSH).
/// A malformed frame or a failing step is reported to the coordinator as an Error; the worker keeps serving.
/// Chained greedy decode: the last shard also sends the pick of a frame with `chainBudget` > 0 (not a stop
/// token) to LoadShard's `chainEndpoint` (the first shard), and the first shard runs the next step on it
/// (`continuation(of:)`) until the budget is spent, a stop token comes, or a `chainStop` frame or any other
/// coordinator frame ends the chain; picks of an ended chain are dropped.
public final class ShardServer {
    public struct Options {
        public var listen: String
        public var workerID: String
        public var backend: BackendKind
        public var device: Int?
        public var threads: Int = Parallel.defaultThreads
        /// Between steps, CPU worker threads keep spinning and the serving loop polls without sleeping
        /// for this long (`--idle-spin-ms`): on a host with cores to spare, waking up at every step costs
        /// more than the spinning. Zero: sleep (the default).
        public var idleSpin: Duration = .zero
        /// Exit when the process that started this worker exits (workers that `shardctl` starts itself).
        public var exitWithParent = false
        /// Memory this worker offers (`--memory`): reported as its free memory instead of what the
        /// backend has, so that the coordinator plans (and refuses) against it.
        public var memoryLimit: Int?
        /// Folders whose models this worker may open (`--model-dir`); nil: any path. A model outside
        /// them (or missing, or different) is streamed from the coordinator instead.
        public var modelDirectories: [String]?
        /// Where streamed model copies are written.
        public var weightsDirectory: String = (getenv("TMPDIR").map { String(cString: $0) } ?? "/tmp") + "/shard-weights-\(getuid())"
        public init(listen: String, workerID: String, backend: BackendKind, device: Int?) {
            self.listen = listen
            self.workerID = workerID
            self.backend = backend
            self.device = device
        }
    }

    let options: Options
    let limits = WireLimits()
    private let context: ZmqContext
    private let control: ZmqSocket
    private let data: ActivationInbox
    private var next: ActivationSender?
    /// The last shard of a chaining pipeline: the first shard's data endpoint, for chained steps' picks.
    private var chainNext: ActivationSender?
    /// The first shard during a chained greedy decode: the sequence and the step whose pick it waits for.
    private var chain: (sequence: UInt64, step: UInt64)?
    private var shard: ModelShard?
    private var coordinator: PeerID?
    private var stats = (tokens: UInt64(0), steps: UInt64(0), busy: 0.0)
    private var loadedRequest: LoadShard?
    private var loadedBytes: UInt64 = 0
    private lazy var receiver = WeightReceiver(directory: options.weightsDirectory)

    public init(_ options: Options) throws {
        self.options = options
        context = try ZmqContext()
        control = try ZmqSocket(context, .router, options: .control(limits))
        _ = try control.bind(options.listen)
        data = try ActivationInbox(context, bind: try Endpoints.data(forControl: options.listen), limits: limits)
    }

    /// Serves until Shutdown, SIGTERM/SIGINT, or (with `exitWithParent`) the parent's exit.
    public func run() throws {
        signal(SIGTERM) { _ in stopRequested.store(true, ordering: .relaxed) }
        signal(SIGINT) { _ in stopRequested.store(true, ordering: .relaxed) }
        // A process inherits its starter's blocked-signal mask (seen: a test runner's), so unblock ours.
        var termination = sigset_t()
        sigemptyset(&termination)
        sigaddset(&termination, SIGTERM)
        sigaddset(&termination, SIGINT)
        pthread_sigmask(SIG_UNBLOCK, &termination, nil)
        let parent = getppid()
        defer { close() }
        while !stopRequested.load(ordering: .relaxed) {
            if options.exitWithParent && getppid() != parent { return }
            let ready = try waitReadable()
            if ready.control, try !serveControl() { return }
            if ready.frames {
                let polled = StepTrace.now()
                shard?.backend.prepareForStep()  // the pool's threads wake while the frame is decoded
                try serveData(polledAt: polled)
                lastStep = ContinuousClock.now
                // Not spinning between steps (an oversubscribed host): the pool's threads sleep now
                // rather than after their spin, leaving the cores to the shard that computes next.
                if parkAfterStep { cpu?.parkThreads() }
            }
        }
    }

    private var lastStep = ContinuousClock.now
    private var cpu: CPUBackend? { shard?.backend as? CPUBackend }
    /// SHARD_POOL_PARK=0 (or an idle spin) keeps the pool's threads spinning briefly after a step.
    private lazy var parkAfterStep = options.idleSpin == .zero && getenv("SHARD_POOL_PARK").map { String(cString: $0) } != "0"

    /// Which of [control, data] have a message. Within `idleSpin` of the last step it polls without
    /// sleeping (the next frame is then seen without a thread wake-up); otherwise it blocks up to 200 ms.
    private func waitReadable() throws -> (control: Bool, frames: Bool) {
        if options.idleSpin > .zero {
            let clock = ContinuousClock()
            while clock.now - lastStep < options.idleSpin {
                let ready = try pollReadable([control], inbox: data, timeout: .zero)
                if ready.sockets[0] || ready.frames { return (ready.sockets[0], ready.frames) }
                sched_yield()  // on a busy core, let the others run
            }
        }
        let ready = try pollReadable([control], inbox: data, timeout: .milliseconds(200))
        return (ready.sockets[0], ready.frames)
    }

    private func close() {
        StepTrace.shared.flush(role: "w-\(options.workerID)")
        next?.close()
        chainNext?.close()
        data.close()
        control.close()
        context.shutdown()
        if options.listen.hasPrefix("ipc://") {
            unlink(String(options.listen.dropFirst(6)))
            unlink(String(options.listen.dropFirst(6)) + ".data")
        }
    }

    /// Handles one control message; false after Shutdown.
    private func serveControl() throws -> Bool {
        guard let routed = try control.receiveRouted(Control.self, limits: limits) else { return true }
        coordinator = routed.peer
        let request: Control
        switch routed.message {
        case .success(let c): request = c
        case .failure(let e):
            try reply(Control(ErrorReport(code: .malformedFrame, message: "\(e)").asBody), to: routed.peer)
            return true
        }
        switch request.body {
        case .heartbeat:
            try reply(Control(requestID: request.requestID, .register(registration())), to: routed.peer)
        case .loadShard(let load):
            do {
                let ready = try self.load(load)
                try reply(Control(requestID: request.requestID, .ready(ready)), to: routed.peer)
            } catch {
                let code: ErrorCode = error is ModelUnavailable ? .modelUnavailable : .loadFailed
                try reply(Control(requestID: request.requestID, .error(ErrorReport(code: code, message: "\(error)"))), to: routed.peer)
            }
        case .weightChunk(let chunk):
            do {
                try receiver.receive(chunk)
                try reply(Control(requestID: request.requestID, .weightChunk(WeightChunk(
                    modelDigest: chunk.modelDigest, fileSize: chunk.fileSize, offset: chunk.offset))), to: routed.peer)
            } catch {
                receiver.discard()
                try reply(Control(requestID: request.requestID, .error(ErrorReport(code: .loadFailed, message: "\(error)"))), to: routed.peer)
            }
        case .releaseSequence(let r):
            for s in r.sequenceIDs { shard?.release(s) }
        case .stats:
            let used = shard.map { UInt64($0.kvBytes) } ?? 0
            try reply(Control(requestID: request.requestID, .stats(Stats(tokensProcessed: stats.tokens, stepCount: stats.steps,
                                                                         busySeconds: stats.busy, memoryUsedBytes: loadedBytes + used))),
                      to: routed.peer)
        case .shutdown:
            try reply(Control(requestID: request.requestID, .shutdown(Shutdown())), to: routed.peer)
            return false
        default:
            try reply(Control(requestID: request.requestID, .error(ErrorReport(code: .badRequest, message: "unexpected \(request.body)"))), to: routed.peer)
        }
        return true
    }

    private func reply(_ message: Control, to peer: PeerID) throws {
        do { try control.send(message, to: peer) } catch { /* the coordinator left: nothing to tell */ }
    }

    private func registration() -> Register {
        let backend = WireBackend(name: options.backend.rawValue) ?? .unspecified
        var host = [CChar](repeating: 0, count: 256)
        gethostname(&host, host.count - 1)
        // What a shard could use here (the CPU: available RAM, page cache included, where mmapped weights
        // live; Vulkan: the device's local heap).
        let free = options.memoryLimit ?? BackendFactory.freeMemory(options.backend, device: options.device)
        return Register(workerID: options.workerID, backend: backend, deviceName: shard?.backend.deviceName ?? options.backend.rawValue,
                        freeMemoryBytes: UInt64(max(0, free)), host: String(cString: host))
    }

    private func load(_ request: LoadShard) throws -> Ready {
        // The same shard again (a new coordinator for a running cluster): keep the weights, forget the
        // old coordinator's sequences, and push to the new next hop.
        if let shard, var same = loadedRequest {
            same.nextEndpoint = request.nextEndpoint
            same.streamedWeights = request.streamedWeights  // however it arrived, it is the same model
            same.chainEndpoint = request.chainEndpoint
            if same == request {
                for s in shard.kv.sequences { shard.release(s) }
                chain = nil
                try connectNext(request.nextEndpoint, chain: request.chainEndpoint)
                loadedRequest = request
                return ready(shard, memoryUsedBytes: loadedBytes)
            }
        }
        let file = try request.streamedWeights ? receiver.open(digest: request.modelDigest) : localModel(request)
        defer { if request.streamedWeights { receiver.discard() } }  // the mapping keeps the data
        let config = try ModelConfig(gguf: file)
        let layers = request.layers
        guard !layers.isEmpty, layers.upperBound <= config.layerCount else {
            throw ModelConfigError("layer range \(layers) is outside the model's \(config.layerCount) layers")
        }
        let kind = BackendKind(rawValue: request.backend.name) ?? options.backend
        let backend = try BackendFactory.make(kind, device: request.backend == .vulkan ? Int(request.deviceIndex) : options.device,
                                              threads: options.threads)
        var shardOptions = ShardOptions(contextLength: Int(request.contextLength), maxBatchRows: Int(request.maxBatchRows))
        if request.kvPageSize > 0 { shardOptions.pageSize = Int(request.kvPageSize) }
        shardOptions.maxSequences = max(1, Int(request.maxSequences))
        if request.kvMemoryBytes > 0 {
            shardOptions.kvMemory = .bytes(Int(min(request.kvMemoryBytes, UInt64(Int.max))))
        } else if request.kvMemoryFraction > 0 {
            shardOptions.kvMemory = .fraction(Double(request.kvMemoryFraction))
        }
        switch request.kvType {
        case .unspecified, .f16: shardOptions.kvType = .f16
        case .q8_0: shardOptions.kvType = .q8_0
        case .f32: throw ComputeError("f32 KV is not supported (use f16 or q8_0)")
        }
        (backend as? CPUBackend)?.idleSpin = options.idleSpin
        self.shard = nil
        let shard = try ModelShard(file: file, config: config, layers: layers, backend: backend, options: shardOptions)
        chain = nil
        try connectNext(request.nextEndpoint, chain: request.chainEndpoint)
        self.shard = shard
        loadedRequest = request
        loadedBytes = UInt64(file.layerMemory.bytes(layers: layers))
        return ready(shard, memoryUsedBytes: loadedBytes)
    }

    private func ready(_ shard: ModelShard, memoryUsedBytes: UInt64) -> Ready {
        var r = Ready(workerID: options.workerID, layerStart: UInt32(shard.layers.lowerBound), layerEnd: UInt32(shard.layers.upperBound),
                      memoryUsedBytes: memoryUsedBytes + UInt64(shard.kvBytes))
        let pool = shard.kv.pool
        r.kvPages = UInt32(pool.pages)
        r.kvPageSize = UInt32(pool.pageSize)
        r.kvWindow = UInt32(pool.window)
        r.kvRingPages = UInt32(pool.ringPages)
        r.kvWindowPages = UInt32(pool.windowPages)
        r.kvBytes = UInt64(shard.kvBytes)
        r.chains = true
        return r
    }

    /// The model at the request's path, if this worker may open it and it is the coordinator's file.
    private func localModel(_ request: LoadShard) throws -> GGUFFile {
        let path = request.modelPath
        if let dirs = options.modelDirectories {
            guard let real = realpath(path, nil) else { throw ModelUnavailable(description: "\(path) is not on this host") }
            let resolved = String(cString: real)
            free(real)
            let allowed = dirs.contains { dir in
                guard let d = realpath(dir, nil) else { return false }
                defer { free(d) }
                let prefix = String(cString: d)
                return resolved.hasPrefix(prefix.hasSuffix("/") ? prefix : prefix + "/")
            }
            guard allowed else { throw ModelUnavailable(description: "\(path) is outside this worker's --model-dir") }
        }
        guard access(path, R_OK) == 0 else { throw ModelUnavailable(description: "\(path) is not on this host") }
        let file = try GGUFFile(path: path)
        if request.modelSize != 0 && UInt64(file.fileSize) != request.modelSize
            || request.modelDigest != 0 && file.digest != request.modelDigest {
            throw ModelUnavailable(description: "\(path) on this host is a different file than the coordinator's")
        }
        return file
    }

    private func connectNext(_ endpoint: String, chain chainEndpoint: String) throws {
        let sender = try ActivationSender(context, endpoint: endpoint, limits: limits)
        let chainSender = chainEndpoint.isEmpty ? nil : try ActivationSender(context, endpoint: chainEndpoint, limits: limits)
        next?.close()
        next = sender
        chainNext?.close()
        chainNext = chainSender
    }

    private func serveData(polledAt tPoll: UInt64) throws {
        let received: ActivationFrame?
        do {
            received = try data.receive()
        } catch {
            // A bad frame is the sender's problem: report it and keep serving. Socket errors end the worker.
            switch error {
            case .malformed(let why), .limitExceeded(let why):
                report(.malformedFrame, "rejected a frame: \(why)")
                return
            default:
                throw error
            }
        }
        guard var frame = received else { return }
        if frame.chainStop {
            chain = nil
            return
        }
        if frame.kind == .sampled && frame.chainBudget > 0 {
            // The last shard's pick of a chained step: the next step, unless the chain has ended.
            guard let continued = continuation(of: frame) else { return }
            frame = continued
        } else if frame.kind == .tokens {
            // A frame from the coordinator ends any chain (it may start a new one).
            chain = frame.chainBudget > 0 ? (frame.rows[0].sequence, frame.stepID) : nil
        }
        StepTrace.shared.mark(frame.stepID, "poll", at: tPoll)
        StepTrace.shared.mark(frame.stepID, "decoded")
        serve(frame)
    }

    /// The step after a chained step whose pick `frame` carries: its pick at the next position, with the
    /// next step id and one less budget; nil if that is not the chain this shard runs now (a stale pick
    /// after a chain stop) or the pick is a stop token.
    private func continuation(of frame: ActivationFrame) -> ActivationFrame? {
        guard let c = chain, frame.rows.count == 1, c.sequence == frame.rows[0].sequence, c.step == frame.stepID,
              let picks = try? frame.int32s(), picks.count == 1, !frame.stopTokens.contains(picks[0]) else { return nil }
        let row = frame.rows[0]
        guard row.position < UInt32.max else { return nil }
        var next = ActivationFrame.tokens(step: frame.stepID + 1, rows: [.init(sequence: row.sequence, position: row.position + 1)],
                                          logitRows: [0], tokens: picks)
        next.sample = frame.sample
        next.topLogprobs = frame.topLogprobs
        next.chainBudget = frame.chainBudget - 1
        next.stopTokens = frame.stopTokens
        chain = next.chainBudget > 0 ? (row.sequence, next.stepID) : nil
        return next
    }

    private func serve(_ frame: ActivationFrame) {
        guard let shard, let next else {
            report(.badRequest, "frame \(frame.stepID) arrived before LoadShard")
            return
        }
        let clock = ContinuousClock(), start = clock.now
        do {
            let rows = frame.rows.map { StepRow(sequence: $0.sequence, position: Int($0.position)) }
            let input: ShardInput
            switch frame.kind {
            case .tokens: input = .tokens(try frame.int32s())
            case .hidden: input = .hidden(try frame.floats())
            default: throw ComputeError("a shard takes token ids or hidden states, not \(frame.kind)")
            }
            let logitRows = frame.logitRows.map(Int.init)
            var output: ActivationFrame
            let forks = frame.forks.map { PrefixFork(sequence: $0.sequence, source: $0.source, length: Int($0.length)) }
            switch try shard.forward(input, rows: rows, logitRows: shard.ownsHead ? logitRows : [], release: frame.releaseIDs,
                                     forks: forks, picksOnly: frame.sample == .greedy) {
            case .hidden where shard.ownsHead:
                // No logit rows asked for (a prefill chunk that does not end its prompt): nothing to return.
                output = .logits(step: frame.stepID, rows: frame.rows, logitRows: [], values: [],
                                 vocabSize: shard.config.vocabSize, dtype: .f32)
            case .hidden(let h):
                output = .hidden(step: frame.stepID, rows: frame.rows, logitRows: frame.logitRows, values: h,
                                 cols: shard.config.embeddingLength, dtype: .f32)
            case .picks(let ids):
                output = .sampled(step: frame.stepID, rows: frame.rows, logitRows: frame.logitRows, tokens: ids)
                output.sample = frame.sample
            case .logits(let l) where frame.sample != .logits:
                output = Self.sampled(frame, logits: l, vocab: shard.config.vocabSize)
            case .logits(let l):
                output = .logits(step: frame.stepID, rows: frame.rows, logitRows: frame.logitRows, values: l,
                                 vocabSize: shard.config.vocabSize, dtype: .f32)
            }
            StepTrace.shared.mark(frame.stepID, "forward")
            output.releaseIDs = frame.releaseIDs
            output.forks = frame.forks
            if output.kind != .sampled {
                output.sample = frame.sample
                output.topLogprobs = frame.topLogprobs
            }
            if frame.chainBudget > 0 || !frame.stopTokens.isEmpty, output.kind != .logits {
                output.chainBudget = frame.chainBudget
                output.stopTokens = frame.stopTokens
            }
            if output.kind == .sampled, output.chainBudget > 0, let chainNext,
               let pick = try? output.int32s(), pick.count == 1, !output.stopTokens.contains(pick[0]) {
                // A chained step: the first shard starts the next step on this pick at once. (Its own
                // encoding: a ZeroMQ send takes the message's bytes, so one message cannot go twice.)
                try chainNext.send(output.encodeMessage())
            }
            let encoded = output.encodeMessage()
            StepTrace.shared.mark(frame.stepID, "encoded")
            try next.send(encoded)
            StepTrace.shared.mark(frame.stepID, "sent")
            stats.tokens += UInt64(rows.count)
            stats.steps += 1
            stats.busy += (clock.now - start).seconds
        } catch {
            report(.internalError, "step \(frame.stepID): \(error)")
        }
    }

    /// The last shard's answer to a greedy frame: each logit row's argmax token (and, if asked, its
    /// log-probability and alternatives) instead of the logits.
    static func sampled(_ frame: ActivationFrame, logits: [Float], vocab: Int) -> ActivationFrame {
        let withLogprobs = frame.sample == .greedyLogprobs
        let k = withLogprobs ? frame.topLogprobs : 0
        let picks = logits.withUnsafeBufferPointer { all in
            frame.logitRows.indices.map { r in
                GreedyPick.pick(UnsafeBufferPointer(rebasing: all[r * vocab..<(r + 1) * vocab]), logprobs: withLogprobs, top: k)
            }
        }
        var out = ActivationFrame.sampled(step: frame.stepID, rows: frame.rows, logitRows: frame.logitRows, tokens: picks.map(\.token))
        out.sample = frame.sample
        out.topLogprobs = k
        if withLogprobs {
            out.logprobs = picks.map(\.logprob)
            out.topTokens = picks.flatMap { $0.top.map(\.token) }
            out.topValues = picks.flatMap { $0.top.map(\.logprob) }
        }
        return out
    }

    private func report(_ code: ErrorCode, _ message: String) {
        guard let coordinator else { return }
        try? control.send(Control(.error(ErrorReport(code: code, message: message))), to: coordinator)
    }
}

extension ErrorReport {
    var asBody: Control.Body { .error(self) }
}
