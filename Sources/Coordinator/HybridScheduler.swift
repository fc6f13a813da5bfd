#if canImport(Glibc)
import Glibc
#endif
import Synchronization
import ShardRuntime

/// Settings of the `HybridScheduler`.
public struct SchedulerOptions: Sendable {
    /// Most sequences holding KV pages at once (`--max-sequences`); more wait in the queue.
    public var maxSequences: Int = 16
    /// Prompt tokens per step, over all prefilling sequences (`--prefill-chunk`): a long prompt is
    /// cut into chunks interleaved with the decode steps of running sequences.
    public var prefillChunk: Int = 256
    /// Requests waiting beyond this are refused at `submit` (backpressure).
    public var maxQueued: Int = 4096
    /// Reuse the KV pages of a running sequence's common prompt prefix (whole pages).
    public var prefixSharing: Bool = true
    /// Finished sequences whose KV pages are kept as a prefix cache (most recently used last), so that
    /// a later request with the same system prompt starts on them; they are let go first whenever pages
    /// are short, before any running sequence is preempted. 0: pages go back when a sequence ends.
    public var prefixCache: Int = 8
    /// Steps in flight at most (nil: the pipeline's `maxInFlight`).
    public var maxInFlight: Int?
    public init() {}
}

/// The engine for many requests at once (`serve`, `bench --concurrency`).
///
/// - Continuous batching: sequences join and leave between steps; every step carries the decode
///   rows of running sequences plus prefill chunks of new ones (at most `prefillChunk` prompt tokens),
///   as one batch per shard.
/// - Micro-batches: with a pipeline of S worker processes, up to S + 1 steps are in flight, each with a
///   different subset of the sequences, so shard i works on one while shard i + 1 works on another.
/// - KV accounting: the scheduler keeps a `StreamingKVCache` identical to the shards' (the smallest
///   pool of any shard; the same releases, forks and reservations in the same order, sent with the
///   steps), so it never sends a step a shard cannot hold.
/// - Admission and preemption: requests are admitted in arrival order while pages and
///   `maxSequences` allow; a request that could never fit the pool is refused at `submit`. When a
///   running sequence needs a page and none is free, the most recently admitted idle sequence is
///   preempted: its pages are freed, its tokens kept, and it is recomputed when readmitted (ahead of
///   newer requests). No output is lost or truncated.
/// - Prefix sharing: a new sequence whose prompt starts with whole pages another running sequence
///   has computed (a shared system prompt) starts on those pages instead of recomputing them.
/// - Each request has its own `Sampler` (seed, penalties); sampling happens here, on the coordinator.
public final class HybridScheduler: InferenceEngine, @unchecked Sendable {
    public let options: SchedulerOptions
    private let pipeline: any ShardPipeline
    private let pool: KVPoolInfo
    private let maxRows: Int
    private let inFlightLimit: Int
    public let contextLength: Int

    private struct Pending {
        var request: GenerationRequest
        var handle: RequestHandle
        var events: @Sendable (GenerationEvent) -> Void
        var submitted: ContinuousClock.Instant
    }
    private struct Shared {
        var queue: [Pending] = []
        var stopped = false
        var stats = EngineStats()
        var peakPagesUsed = 0
        var cachedSequences = 0
        var preemptions = 0
        var sharedPrefixPages = 0
    }
    private let state = Mutex<Shared>(Shared())
    private let nextID = Atomic<UInt64>(1)
    private let wake = Semaphore()
    private var thread: pthread_t?

    // Engine-thread state.
    private final class Sequence {
        let id: SequenceID
        let pending: Pending
        var tokens: [Int32]
        let promptCount: Int
        /// Positions whose KV has been sent to the shards (steps in flight included).
        var computed = 0
        var generated = 0
        var sampler: Sampler
        var inFlight = false
        var firstToken: Double?
        /// Arrival order (fairness) and admission order (preemption picks the latest).
        let arrival: UInt64
        var admission: UInt64 = 0
        var lastServed: UInt64 = 0
        init(id: SequenceID, pending: Pending, arrival: UInt64) {
            self.id = id
            self.pending = pending
            tokens = pending.request.prompt
            promptCount = pending.request.prompt.count
            sampler = Sampler(pending.request.sampling)
            for t in pending.request.prompt { sampler.accept(t) }
            self.arrival = arrival
        }
        var remaining: Int { tokens.count - computed }
    }
    private struct InFlightEntry {
        var sequence: Sequence
        var rows: Int
        /// Index of this sequence's row among the step's logit rows, if it ends its pending tokens.
        var logitIndex: Int?
    }
    private var kv: StreamingKVCache
    private var waiting: [Sequence] = []
    private var running: [Sequence] = []
    /// The prefix cache: finished sequences that still hold their pages, least recently used first.
    private var cached: [Sequence] = []
    private var inFlight: [(step: UInt64, entries: [InFlightEntry])] = []
    private var pendingRelease: [SequenceID] = []
    private var pendingForks: [PrefixFork] = []
    private var arrivals: UInt64 = 0
    private var admissions: UInt64 = 0
    private var stepCounter: UInt64 = 0

    public init(pipeline: any ShardPipeline, options: SchedulerOptions = SchedulerOptions()) {
        self.pipeline = pipeline
        var o = options
        o.maxSequences = max(1, o.maxSequences)
        o.prefillChunk = max(1, o.prefillChunk)
        self.options = o
        pool = pipeline.kvPool
        maxRows = pipeline.maxBatchRows
        inFlightLimit = max(1, min(options.maxInFlight ?? pipeline.maxInFlight, pipeline.maxInFlight))
        contextLength = pipeline.contextLength
        kv = StreamingKVCache(pool, contextLength: pipeline.contextLength)
        state.withLock { $0.stats.kvPagesTotal = pool.pages }
        let box = Unmanaged.passRetained(self)
        var t = pthread_t()
        pthread_create(&t, nil, { arg in
            let engine = Unmanaged<HybridScheduler>.fromOpaque(arg!).takeRetainedValue()
            engine.loop()
            return nil
        }, box.toOpaque())
        thread = t
    }

    // MARK: InferenceEngine

    public func submit(_ request: GenerationRequest, events: @escaping @Sendable (GenerationEvent) -> Void) throws -> RequestHandle {
        try validate(request)
        // The most the request can hold: prompt + generated tokens, up to the context.
        let longest = min(request.prompt.count + request.maxTokens, contextLength)
        let pages = (longest + pool.pageSize - 1) / pool.pageSize
        guard pages <= pool.pages else {
            throw GenerationError("the request needs up to \(pages) KV pages (\(request.prompt.count) prompt + \(request.maxTokens) "
                                  + "generated tokens, \(pool.pageSize) per page); the KV pool holds \(pool.pages): "
                                  + "raise --kv-memory or lower max_tokens")
        }
        let handle = RequestHandle(id: nextID.add(1, ordering: .relaxed).oldValue)
        let refusal = state.withLock { s -> String? in
            if s.stopped { return "the engine is shutting down" }
            if s.queue.count + s.stats.waiting >= options.maxQueued {
                return "the engine is busy: \(options.maxQueued) requests are already waiting"
            }
            s.queue.append(Pending(request: request, handle: handle, events: events, submitted: .now))
            return nil
        }
        if let refusal { throw GenerationError(refusal) }
        wake.signal()
        return handle
    }

    public func stats() -> EngineStats {
        state.withLock { s in
            var st = s.stats
            st.waiting += s.queue.count
            return st
        }
    }

    /// Scheduler counters for tests and benchmarks.
    public struct Counters: Sendable {
        public var peakPagesUsed: Int
        /// Finished sequences whose pages are kept as the prefix cache now.
        public var cachedSequences: Int
        public var preemptions: Int
        /// Pages new sequences took over from a running sequence instead of computing them.
        public var sharedPrefixPages: Int
        public var steps: Int
    }
    public func counters() -> Counters {
        let steps = stepsDone.load(ordering: .relaxed)
        return state.withLock { Counters(peakPagesUsed: $0.peakPagesUsed, cachedSequences: $0.cachedSequences, preemptions: $0.preemptions,
                                         sharedPrefixPages: $0.sharedPrefixPages, steps: steps) }
    }
    private let stepsDone = Atomic<Int>(0)
    /// The pool the scheduler accounts (the smallest of the shards').
    public var kvPool: KVPoolInfo { pool }

    public func shutdown() {
        state.withLock { $0.stopped = true }
        wake.signal()
        if let t = thread { pthread_join(t, nil); thread = nil }
    }

    // MARK: engine thread

    private func loop() {
        while true {
            let (incoming, stopped) = state.withLock { s -> ([Pending], Bool) in
                defer { s.queue.removeAll() }
                return (s.queue, s.stopped)
            }
            for p in incoming {
                arrivals += 1
                waiting.append(Sequence(id: p.handle.id, pending: p, arrival: arrivals))
            }
            if stopped {
                drainInFlight()
                for s in running + waiting { s.pending.events(.failed("shutting down")) }
                running.removeAll()
                waiting.removeAll()
                return
            }
            handleCancellations()
            admit()
            do {
                while inFlight.count < inFlightLimit, let step = buildStep() {
                    let id = try pipeline.submit(step.step)
                    inFlight.append((id, step.entries))
                    for e in step.entries { e.sequence.inFlight = true }
                }
                // Idle: pages of sequences that ended go back on the shards now, not with the next step.
                if inFlight.isEmpty { flushPageOperations() }
                publishStats()
                if !inFlight.isEmpty {
                    let result = try pipeline.collect()
                    finishStep(result)
                    stepsDone.add(1, ordering: .relaxed)
                } else if running.isEmpty && waiting.isEmpty {
                    wake.wait()
                } else {
                    // Waiting for pages or cancellation with nothing in flight: look again shortly.
                    wake.wait(timeoutMilliseconds: 5)
                }
            } catch {
                failAll("\(error)")
            }
        }
    }

    private func publishStats() {
        let used = kv.usedPageCount
        state.withLock { s in
            s.stats.waiting = waiting.count
            s.stats.running = running.count
            s.stats.kvPagesUsed = used
            s.peakPagesUsed = max(s.peakPagesUsed, used)
            s.cachedSequences = cached.count
        }
    }

    /// A step failed: the pipeline's state is unknown, so every running request fails and every
    /// sequence's pages are let go (on the shards through the control path, here by a fresh pool).
    private func failAll(_ message: String) {
        for s in running {
            s.pending.events(.failed(message))
            try? pipeline.release(s.id)
        }
        // Sequences that ended but whose release had not reached the shards yet, and the prefix cache.
        for id in pendingRelease { try? pipeline.release(id) }
        for c in cached { try? pipeline.release(c.id) }
        cached.removeAll()
        running.removeAll()
        inFlight.removeAll()
        pendingRelease.removeAll()
        pendingForks.removeAll()
        kv = StreamingKVCache(pool, contextLength: contextLength)
    }

    private func drainInFlight() {
        while !inFlight.isEmpty {
            guard let r = try? pipeline.collect() else { inFlight.removeAll(); return }
            inFlight.removeAll { $0.step <= r.step }
        }
    }

    private func seconds(since t: ContinuousClock.Instant) -> Double { (ContinuousClock.now - t).seconds }

    private func finish(_ s: Sequence, _ reason: StopReason) {
        running.removeAll { $0 === s }
        if reason != .cancelled && options.prefixSharing && options.prefixCache > 0 && pool.window == 0 && s.computed >= pool.pageSize {
            cached.append(s)
            while cached.count > options.prefixCache { releasePages(cached.removeFirst()) }
        } else {
            releasePages(s)
        }
        let total = seconds(since: s.pending.submitted)
        s.pending.events(.finished(GenerationSummary(reason: reason, promptTokens: s.promptCount, generatedTokens: s.generated,
                                                     timeToFirstToken: s.firstToken ?? total, totalSeconds: total)))
    }

    /// Lets prefix-cache entries go, least recently used first, until `enough()` (never `keeping`).
    private func evictCache(keeping: SequenceID? = nil, until enough: () -> Bool) {
        while !enough(), let i = cached.firstIndex(where: { $0.id != keeping }) {
            releasePages(cached.remove(at: i))
        }
    }

    /// Lets the sequence's pages go, here now and on the shards with the next step.
    private func releasePages(_ s: Sequence) {
        if pendingForks.contains(where: { $0.source == s.id }) {
            // The shards apply a step's releases before its forks: send the forks first.
            flushPageOperations()
        }
        kv.release(s.id)
        pendingRelease.append(s.id)
    }

    /// Sends the pending releases and forks in a step of their own.
    private func flushPageOperations() {
        guard !pendingRelease.isEmpty || !pendingForks.isEmpty else { return }
        let step = PipelineStep(tokens: [], rows: [], logitRows: [], release: pendingRelease, forks: pendingForks)
        pendingRelease.removeAll()
        pendingForks.removeAll()
        if let id = try? pipeline.submit(step) { inFlight.append((id, [])) }
    }

    private func handleCancellations() {
        waiting.removeAll { s in
            guard s.pending.handle.isCancelled else { return false }
            if s.computed > 0 || kv.pageTable(s.id).count > 0 { releasePages(s) }
            let total = seconds(since: s.pending.submitted)
            s.pending.events(.finished(GenerationSummary(reason: .cancelled, promptTokens: s.promptCount, generatedTokens: s.generated,
                                                         timeToFirstToken: s.firstToken ?? total, totalSeconds: total)))
            return true
        }
        for s in running where s.pending.handle.isCancelled && !s.inFlight { finish(s, .cancelled) }
    }

    /// Admits waiting sequences in arrival order while there is room; a sequence that shares a prefix
    /// with one still computing it waits for that (then starts on its pages).
    private func admit() {
        while running.count < options.maxSequences, let s = waiting.first {
            if s.pending.request.maxTokens == 0 {
                waiting.removeFirst()
                running.append(s)
                finish(s, .length)
                continue
            }
            var fork: PrefixFork?
            if options.prefixSharing && pool.window == 0 {
                switch prefixSource(for: s) {
                case .wait: return
                case .share(let f): fork = f
                case .none: break
                }
            }
            let shared = fork?.length ?? 0
            // Room for its first chunk (or the shared prefix plus one more token) without preempting,
            // after letting cached prefixes go if need be.
            let first = min(s.tokens.count, shared + max(1, min(options.prefillChunk, maxRows)))
            let need = (first + pool.pageSize - 1) / pool.pageSize - shared / pool.pageSize
            evictCache(keeping: fork?.source) { need <= kv.freePageCount }
            guard need <= kv.freePageCount else { return }
            if let fork, let i = cached.firstIndex(where: { $0.id == fork.source }) {
                cached.append(cached.remove(at: i))  // most recently used
            }
            waiting.removeFirst()
            if let fork {
                do {
                    try kv.fork(fork)
                } catch {
                    fatalError("scheduler page accounting: \(error)")
                }
                // A frame carries at most a step's row limit of forks (the workers' wire limit).
                if pendingForks.count >= maxRows { flushPageOperations() }
                pendingForks.append(fork)
                s.computed = fork.length
                state.withLock { $0.sharedPrefixPages += fork.length / pool.pageSize }
            }
            admissions += 1
            s.admission = admissions
            running.append(s)
        }
    }

    private enum PrefixChoice { case none, wait, share(PrefixFork) }

    /// The running or cached sequence whose computed tokens share the most whole pages with `s`'s prompt.
    private func prefixSource(for s: Sequence) -> PrefixChoice {
        let ps = pool.pageSize
        // At least the last prompt token is computed by `s` itself (its logits start the generation).
        let limit = (s.tokens.count - 1) / ps * ps
        guard limit >= ps else { return .none }
        var best: (length: Int, source: Sequence)?
        var waitFor = false
        for r in running + cached {
            var lcp = 0
            let n = min(limit, r.tokens.count)
            while lcp < n && r.tokens[lcp] == s.tokens[lcp] { lcp += 1 }
            let want = lcp / ps * ps
            guard want >= ps else { continue }
            let have = min(want, r.computed / ps * ps, kv.pageTable(r.id).count * ps)
            if have < want && r.computed < r.promptCount { waitFor = true }
            if have >= ps, have > (best?.length ?? 0) { best = (have, r) }
        }
        if waitFor && (best?.length ?? 0) < limit { return .wait }
        guard let best else { return .none }
        return .share(PrefixFork(sequence: s.id, source: best.source.id, length: best.length))
    }

    private func preempt(_ v: Sequence) {
        releasePages(v)
        v.computed = 0
        running.removeAll { $0 === v }
        // Back to the queue in arrival order: it goes before newer requests.
        let at = waiting.firstIndex { $0.arrival > v.arrival } ?? waiting.count
        waiting.insert(v, at: at)
        state.withLock { $0.preemptions += 1 }
    }

    /// Makes room for `s` to hold `length` positions: cached prefixes go first, then idle sequences
    /// admitted after it are preempted.
    private func makeRoom(for s: Sequence, length: Int, keeping chosen: [(Sequence, Int)]) -> Bool {
        evictCache { kv.canReserve(s.id, length: length) }
        while !kv.canReserve(s.id, length: length) {
            let victims = running.filter { v in v !== s && !v.inFlight && v.admission > s.admission && !chosen.contains { $0.0 === v } }
                .filter { v in !pendingForks.contains { $0.source == v.id } }
            guard let v = victims.max(by: { $0.admission < $1.admission }) else { return false }
            preempt(v)
        }
        return true
    }

    /// The next micro-batch: decode rows of idle running sequences (least recently served first, at
    /// most a fair share of the running set so that several micro-batches can be in flight), then
    /// prefill chunks in admission order up to `prefillChunk` prompt tokens.
    private func buildStep() -> (step: PipelineStep, entries: [InFlightEntry])? {
        let ready = running.filter { !$0.inFlight && $0.remaining > 0 && !$0.pending.handle.isCancelled }
        guard !ready.isEmpty else {
            return nil
        }
        let share = max(1, (running.count + inFlightLimit - 1) / inFlightLimit)
        var rowsLeft = maxRows
        var chosen: [(Sequence, Int)] = []
        let decoders = ready.filter { $0.remaining == 1 }.sorted { ($0.lastServed, $0.admission) < ($1.lastServed, $1.admission) }
        for s in decoders where chosen.count < share && rowsLeft > 0 && s.remaining == 1 && running.contains(where: { $0 === s }) {
            guard makeRoom(for: s, length: s.computed + 1, keeping: chosen) else { continue }
            chosen.append((s, 1))
            rowsLeft -= 1
            try! kv.reserve(s.id, length: s.computed + 1)
        }
        var prefillLeft = min(options.prefillChunk, rowsLeft)
        let prefillers = ready.filter { $0.remaining > 1 }.sorted { $0.admission < $1.admission }
        for s in prefillers where prefillLeft > 0 && running.contains(where: { $0 === s }) {
            var n = min(s.remaining, prefillLeft)
            if !makeRoom(for: s, length: s.computed + n, keeping: chosen) {
                // Take what fits in the free pages.
                let fits = (kv.pageTable(s.id).count + kv.freePageCount) * pool.pageSize - s.computed
                n = min(n, max(0, fits))
                if n == 0 { continue }
            }
            chosen.append((s, n))
            prefillLeft -= n
            rowsLeft -= n
            try! kv.reserve(s.id, length: s.computed + n)
        }
        guard !chosen.isEmpty else {
            if !pendingRelease.isEmpty || !pendingForks.isEmpty { flushPageOperations() }
            return nil
        }
        stepCounter += 1
        var tokens: [Int32] = [], rows: [StepRow] = [], logitRows: [Int] = [], entries: [InFlightEntry] = []
        for (s, n) in chosen {
            let start = s.computed
            tokens += s.tokens[start..<start + n]
            rows += (start..<start + n).map { StepRow(sequence: s.id, position: $0) }
            var logitIndex: Int?
            if start + n == s.tokens.count {
                logitIndex = logitRows.count
                logitRows.append(rows.count - 1)
            }
            s.computed += n
            s.lastServed = stepCounter
            entries.append(InFlightEntry(sequence: s, rows: n, logitIndex: logitIndex))
        }
        // Every sampled row greedy without penalties: the last shard picks the tokens (with the most
        // alternatives any of them asks for), and no logits cross the wire.
        let sampled = entries.filter { $0.logitIndex != nil }.map(\.sequence)
        let sampling: LogitSampling = !sampled.isEmpty && sampled.allSatisfy({ $0.sampler.isPlainGreedy })
            ? .greedy(logprobs: sampled.contains { $0.pending.request.logprobs }, top: sampled.map(\.pending.request.topLogprobs).max()!)
            : .logits
        let step = PipelineStep(tokens: tokens, rows: rows, logitRows: logitRows, release: pendingRelease, forks: pendingForks,
                                sampling: sampling)
        pendingRelease.removeAll()
        pendingForks.removeAll()
        return (step, entries)
    }

    /// A step's result is back: sample each sequence that finished its pending tokens (or take the
    /// last shard's picks).
    private func finishStep(_ result: StepResult) {
        guard let at = inFlight.firstIndex(where: { $0.step == result.step }) else { return }
        let entries = inFlight.remove(at: at).entries
        let vocab = pipeline.vocabSize
        let logits = result.logits
        for e in entries {
            let s = e.sequence
            s.inFlight = false
            guard running.contains(where: { $0 === s }) else { continue }
            if s.pending.handle.isCancelled { finish(s, .cancelled); continue }
            guard let li = e.logitIndex else { continue }
            let event: TokenEvent
            if let picks = result.picks, li < picks.count {
                var pick = picks[li]
                pick.top = Array(pick.top.prefix(s.pending.request.topLogprobs))
                if !s.pending.request.logprobs { pick.logprob = 0 }   // computed for another row of the step
                event = TokenEvent(pick)
            } else if logits.count >= (li + 1) * vocab {
                event = logits.withUnsafeBufferPointer { all in
                    let row = UnsafeBufferPointer(rebasing: all[li * vocab..<(li + 1) * vocab])
                    let token = s.sampler.sample(row)
                    return s.pending.request.logprobs ? logprobs(row, token: token, top: s.pending.request.topLogprobs)
                        : TokenEvent(token: token, logprob: 0, top: [])
                }
            } else {
                s.pending.events(.failed("the pipeline returned \(logits.count) logits for \(li + 1) rows"))
                releasePages(s)
                running.removeAll { $0 === s }
                continue
            }
            let token = event.token
            s.sampler.accept(token)
            if s.pending.request.stopTokens.contains(token) { finish(s, .eos); continue }
            s.tokens.append(token)
            s.generated += 1
            if s.firstToken == nil { s.firstToken = seconds(since: s.pending.submitted) }
            s.pending.events(.token(event))
            if s.generated >= s.pending.request.maxTokens { finish(s, .length); continue }
            if s.tokens.count - 1 >= contextLength { finish(s, .length); continue }
        }
    }
}

extension Semaphore {
    /// Waits for a signal or `ms` milliseconds, whichever first.
    func wait(timeoutMilliseconds ms: Int) {
        timedWait(ms)
    }
}
