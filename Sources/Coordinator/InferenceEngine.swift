#if canImport(Glibc)
import Glibc
#endif
import Synchronization
import ShardRuntime

/// One completion to compute: prompt tokens in, sampled tokens out.
public struct GenerationRequest: Sendable {
    public var prompt: [Int32]
    public var maxTokens: Int
    public var sampling: SamplingParams
    /// Token ids that end the generation (EOS and friends); they are not emitted.
    public var stopTokens: Set<Int32>
    /// How many top alternatives (with log-probabilities) each token event carries; 0 = none.
    public var topLogprobs: Int
    /// Whether token events must carry the sampled token's log-probability (and the alternatives). False
    /// lets the HybridScheduler skip a log-sum-exp over the vocabulary per token (its largest per-row
    /// cost): its events then have logprob 0 and no alternatives. (The SerialEngine, the reference,
    /// always computes them.)
    public var logprobs: Bool
    public init(prompt: [Int32], maxTokens: Int, sampling: SamplingParams = .greedy,
                stopTokens: Set<Int32> = [], topLogprobs: Int = 0, logprobs: Bool = true) {
        self.prompt = prompt
        self.maxTokens = maxTokens
        self.sampling = sampling
        self.stopTokens = stopTokens
        self.topLogprobs = topLogprobs
        self.logprobs = logprobs || topLogprobs > 0
    }
}

/// A sampled token as an engine reports it.
public struct TokenEvent: Sendable {
    public var token: Int32
    /// log-softmax of the (unpenalized, untempered) logits at the sampled token.
    public var logprob: Float
    /// The `topLogprobs` most likely tokens with their log-probabilities, most likely first.
    public var top: [(token: Int32, logprob: Float)]
}

/// How a request ended.
public struct GenerationSummary: Sendable {
    public var reason: StopReason
    public var promptTokens: Int
    public var generatedTokens: Int
    /// Seconds from submission to the first token (queueing included).
    public var timeToFirstToken: Double
    /// Seconds from submission to the end.
    public var totalSeconds: Double
}

public enum GenerationEvent: Sendable {
    case token(TokenEvent)
    /// The last event of a request that ran (to length, EOS, or cancellation: reason `.cancelled`).
    case finished(GenerationSummary)
    /// The last event of a request that could not run or failed while running.
    case failed(String)
}

/// Cancels a submitted request. Cancelling frees its KV pages at the engine's next step; the request
/// ends with `.finished` (reason `.cancelled`) unless it had already ended.
public final class RequestHandle: Sendable {
    public let id: UInt64
    private let flag = Atomic<Bool>(false)
    public init(id: UInt64) { self.id = id }
    public func cancel() { flag.store(true, ordering: .relaxed) }
    public var isCancelled: Bool { flag.load(ordering: .relaxed) }
}

/// What the engine is doing, for metrics and /health.
public struct EngineStats: Sendable {
    public var waiting: Int
    public var running: Int
    public var kvPagesUsed: Int
    public var kvPagesTotal: Int
    public init(waiting: Int = 0, running: Int = 0, kvPagesUsed: Int = 0, kvPagesTotal: Int = 0) {
        self.waiting = waiting
        self.running = running
        self.kvPagesUsed = kvPagesUsed
        self.kvPagesTotal = kvPagesTotal
    }
}

/// Runs many requests against one loaded model. Implementations own the pipeline: no one else may
/// step it while the engine runs. `events` is called from the engine's thread, in order for each
/// request, and must return quickly (hand work off rather than block).
public protocol InferenceEngine: AnyObject, Sendable {
    var contextLength: Int { get }
    /// Queues a request. Throws only for a request that can never run (e.g. longer than the context).
    func submit(_ request: GenerationRequest, events: @escaping @Sendable (GenerationEvent) -> Void) throws -> RequestHandle
    func stats() -> EngineStats
    /// Stops the engine thread after the running requests fail with "shutting down".
    func shutdown()
}

extension InferenceEngine {
    /// Checks what every engine refuses up front.
    public func validate(_ r: GenerationRequest) throws {
        guard !r.prompt.isEmpty else { throw GenerationError("the prompt has no tokens") }
        guard r.maxTokens >= 0 else { throw GenerationError("max_tokens must be ≥ 0") }
        guard r.prompt.count < contextLength else {
            throw GenerationError("the prompt has \(r.prompt.count) tokens; the context holds \(contextLength)")
        }
    }
}

/// log Σ exp(logits) (see `GreedyPick.logSumExp`).
public func logSumExp(_ logits: UnsafeBufferPointer<Float>) -> Float { GreedyPick.logSumExp(logits) }

/// log-softmax at `token` and the `k` most likely tokens, from raw logits (the same arithmetic as a
/// last shard that samples greedily itself: `GreedyPick`).
public func logprobs(_ logits: UnsafeBufferPointer<Float>, token: Int32, top k: Int) -> TokenEvent {
    TokenEvent(GreedyPick.logprobs(logits, token: token, top: k))
}

extension TokenEvent {
    public init(_ pick: GreedyPick) {
        self.init(token: pick.token, logprob: pick.logprob, top: pick.top.map { ($0.token, $0.logprob) })
    }
}

/// Requests one at a time, in arrival order, on one thread: the engine before the HybridScheduler,
/// and the reference the scheduler's batched results are compared with.
public final class SerialEngine: InferenceEngine, @unchecked Sendable {
    private struct Pending {
        var request: GenerationRequest
        var handle: RequestHandle
        var events: @Sendable (GenerationEvent) -> Void
        var submitted: ContinuousClock.Instant
    }
    private let generator: Generator
    private let state = Mutex<(queue: [Pending], running: Int, stopped: Bool)>(([], 0, false))
    private let nextID = Atomic<UInt64>(1)
    private let wake = Semaphore()
    private var thread: pthread_t?

    public init(generator: Generator) {
        self.generator = generator
        let box = Unmanaged.passRetained(self)
        var t = pthread_t()
        pthread_create(&t, nil, { arg in
            let engine = Unmanaged<SerialEngine>.fromOpaque(arg!).takeRetainedValue()
            engine.loop()
            return nil
        }, box.toOpaque())
        thread = t
    }

    public var contextLength: Int { generator.pipeline.contextLength }

    public func submit(_ request: GenerationRequest, events: @escaping @Sendable (GenerationEvent) -> Void) throws -> RequestHandle {
        try validate(request)
        let handle = RequestHandle(id: nextID.add(1, ordering: .relaxed).oldValue)
        let accepted = state.withLock { s -> Bool in
            guard !s.stopped else { return false }
            s.queue.append(Pending(request: request, handle: handle, events: events, submitted: .now))
            return true
        }
        guard accepted else { throw GenerationError("the engine is shutting down") }
        wake.signal()
        return handle
    }

    public func stats() -> EngineStats {
        state.withLock { EngineStats(waiting: $0.queue.count, running: $0.running) }
    }

    public func shutdown() {
        let dropped = state.withLock { s -> [Pending] in
            s.stopped = true
            defer { s.queue.removeAll() }
            return s.queue
        }
        for p in dropped { p.events(.failed("shutting down")) }
        wake.signal()
        if let t = thread { pthread_join(t, nil); thread = nil }
    }

    private func loop() {
        while true {
            wake.wait()
            while let p = state.withLock({ s -> Pending? in
                guard !s.stopped, !s.queue.isEmpty else { return nil }
                s.running = 1
                return s.queue.removeFirst()
            }) {
                run(p)
                state.withLock { $0.running = 0 }
            }
            if state.withLock({ $0.stopped }) { return }
        }
    }

    private func run(_ p: Pending) {
        if p.handle.isCancelled {
            p.events(.finished(GenerationSummary(reason: .cancelled, promptTokens: p.request.prompt.count,
                                                 generatedTokens: 0, timeToFirstToken: 0, totalSeconds: 0)))
            return
        }
        var first: Double?
        var count = 0
        do {
            let result = try generator.generate(
                prompt: p.request.prompt, maxTokens: p.request.maxTokens, sampling: p.request.sampling,
                topLogprobs: p.request.topLogprobs, isEndOfGeneration: { p.request.stopTokens.contains($0) },
                stopTokens: Array(p.request.stopTokens).sorted(),
                onEvent: { event in
                    if first == nil { first = (ContinuousClock.now - p.submitted).seconds }
                    count += 1
                    p.events(.token(event))
                    return !p.handle.isCancelled
                })
            let total = (ContinuousClock.now - p.submitted).seconds
            let reason: StopReason = result.stopReason == .stop && p.handle.isCancelled ? .cancelled : result.stopReason
            p.events(.finished(GenerationSummary(reason: reason, promptTokens: p.request.prompt.count,
                                                 generatedTokens: count, timeToFirstToken: first ?? total, totalSeconds: total)))
        } catch {
            p.events(.failed("\(error)"))
        }
    }
}

/// A counting semaphore on a mutex and condition variable (no Foundation).
final class Semaphore: @unchecked Sendable {
    private var mutex = pthread_mutex_t()
    private var cond = pthread_cond_t()
    private var count = 0
    init() {
        pthread_mutex_init(&mutex, nil)
        pthread_cond_init(&cond, nil)
    }
    deinit {
        pthread_cond_destroy(&cond)
        pthread_mutex_destroy(&mutex)
    }
    func signal() {
        pthread_mutex_lock(&mutex)
        count += 1
        pthread_cond_signal(&cond)
        pthread_mutex_unlock(&mutex)
    }
    func wait() {
        pthread_mutex_lock(&mutex)
        while count == 0 { pthread_cond_wait(&cond, &mutex) }
        count -= 1
        pthread_mutex_unlock(&mutex)
    }
    /// Waits for a signal, or `ms` milliseconds at most.
    func timedWait(_ ms: Int) {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        var deadline = now
        deadline.tv_nsec += ms * 1_000_000
        deadline.tv_sec += deadline.tv_nsec / 1_000_000_000
        deadline.tv_nsec %= 1_000_000_000
        pthread_mutex_lock(&mutex)
        while count == 0 {
            if pthread_cond_timedwait(&cond, &mutex, &deadline) != 0 { break }
        }
        if count > 0 { count -= 1 }
        pthread_mutex_unlock(&mutex)
    }
}
