#if canImport(Glibc)
import Glibc
#endif
import Coordinator
import Foundation
import Synchronization
import Wire  // Duration.seconds

/// Watches the shard-worker processes behind the engine: every `interval` it sends each worker a
/// Heartbeat and a Stats request on a socket of its own (the engine's sockets are never touched), and
/// keeps what came back for /health and /metrics. It runs on a thread of its own because the
/// ZeroMQ calls block.
public final class ShardMonitor: Sendable {
    public struct WorkerState: Sendable {
        public var endpoint: String
        public var ready = false
        public var lastSeen: ContinuousClock.Instant?
        public var roundTrip: Duration?
        public var problem: String?
        var steps: UInt64 = 0
        var tokens: UInt64 = 0
        var busy: Double = 0
    }

    public let endpoints: [String]
    let interval: Duration
    let staleAfter: Duration
    private let state: Mutex<(workers: [WorkerState], stopped: Bool)>
    private let metrics: [WorkerMetrics]

    public init(endpoints: [String], metrics: ServerMetrics, interval: Duration = .seconds(2), staleAfter: Duration = .seconds(10)) {
        self.endpoints = endpoints
        self.interval = interval
        self.staleAfter = staleAfter
        state = Mutex((endpoints.map { WorkerState(endpoint: $0) }, false))
        self.metrics = endpoints.indices.map { WorkerMetrics(shard: $0, factory: metrics.factory) }
    }

    /// Polls once now, then every `interval` on a background thread until `stop()`.
    public func start() {
        poll()
        let t = Thread { [self] in
            while !state.withLock({ $0.stopped }) {
                var slept = Duration.zero
                while slept < interval && !state.withLock({ $0.stopped }) {
                    usleep(100_000)
                    slept += .milliseconds(100)
                }
                if state.withLock({ $0.stopped }) { return }
                poll()
            }
        }
        t.name = "shard-monitor"
        t.start()
    }

    public func stop() { state.withLock { $0.stopped = true } }

    public var workers: [WorkerState] { state.withLock { $0.workers } }

    /// True when every worker answered a heartbeat within `staleAfter`.
    public var allReady: Bool { state.withLock { $0.workers.allSatisfy(\.ready) } }

    func poll() {
        let answers = Cluster.status(of: endpoints, timeout: .seconds(1))
        let now = ContinuousClock.now
        state.withLock { s in
            for (i, a) in answers.enumerated() where i < s.workers.count {
                var w = s.workers[i]
                let m = metrics[i]
                // A worker answers between steps, so one long step (a big prefill chunk) can miss a
                // heartbeat: it is down only after `staleAfter` without an answer.
                w.ready = a.registration != nil || w.lastSeen.map { now - $0 < staleAfter } ?? false
                w.problem = a.problem
                if a.registration != nil {
                    w.lastSeen = now
                    w.roundTrip = a.roundTrip
                    m.heartbeatRTT.record((a.roundTrip ?? .zero).seconds)
                }
                if let st = a.stats {
                    let dSteps = st.stepCount &- w.steps, dTokens = st.tokensProcessed &- w.tokens
                    let dBusy = st.busySeconds - w.busy
                    if st.stepCount >= w.steps {
                        if dSteps > 0 {
                            m.steps.increment(by: Int64(dSteps))
                            m.stepSeconds.record(dBusy / Double(dSteps))
                        }
                        if dTokens > 0 { m.tokens.increment(by: Int64(dTokens)) }
                        if dBusy > 0 { m.busy.increment(by: dBusy) }
                    }
                    w.steps = st.stepCount
                    w.tokens = st.tokensProcessed
                    w.busy = st.busySeconds
                }
                m.up.record(w.ready ? 1 : 0)
                s.workers[i] = w
            }
        }
    }

    /// Refreshes the heartbeat-age gauges (called when /metrics is scraped).
    func updateAges() {
        let now = ContinuousClock.now
        for (i, w) in workers.enumerated() {
            metrics[i].heartbeatAge.record(w.lastSeen.map { (now - $0).seconds } ?? -1)
        }
    }
}
