import Coordinator
import Metrics
import Prometheus
import Synchronization

/// The server's metrics, recorded through swift-metrics into a Prometheus registry of its own (so
/// several servers, e.g. in tests, never share counters) and rendered for GET /metrics.
///
/// Names (all prefixed `shard_`):
/// - `requests_total{endpoint,status}`, `requests_cancelled_total` (client went away)
/// - `prompt_tokens_total`, `generation_tokens_total`
/// - `time_to_first_token_seconds`, `inter_token_latency_seconds`, `request_duration_seconds` (histograms)
/// - `queue_length`, `requests_running`, `kv_pages_used`, `kv_pages_free` (from the engine's stats, at scrape time)
/// - per worker process (`shard` label): `worker_up`, `worker_heartbeat_age_seconds`,
///   `worker_heartbeat_rtt_seconds`, `worker_step_seconds` (mean over the last poll interval),
///   `worker_steps_total`, `worker_tokens_total`, `worker_busy_seconds_total`
public final class ServerMetrics: Sendable {
    public let registry: PrometheusCollectorRegistry
    let factory: PrometheusMetricsFactory

    let promptTokens: Metrics.Counter
    let generationTokens: Metrics.Counter
    let cancelled: Metrics.Counter
    let timeToFirstToken: Metrics.Timer
    let interTokenLatency: Metrics.Timer
    let requestDuration: Metrics.Timer
    let queueLength: Metrics.Gauge
    let running: Metrics.Gauge
    let kvUsed: Metrics.Gauge
    let kvFree: Metrics.Gauge
    private let requestCounters = Mutex<[String: Metrics.Counter]>([:])

    public init() {
        registry = PrometheusCollectorRegistry()
        var f = PrometheusMetricsFactory(registry: registry)
        let ms: (Int) -> Duration = { .milliseconds($0) }
        f.durationHistogramBuckets = [
            "shard_time_to_first_token_seconds": [10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000].map(ms),
            "shard_inter_token_latency_seconds": [1, 2, 5, 10, 20, 30, 50, 75, 100, 250, 500, 1000].map(ms),
            "shard_request_duration_seconds": [50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000].map(ms),
        ]
        factory = f
        promptTokens = Metrics.Counter(label: "shard_prompt_tokens_total", factory: f)
        generationTokens = Metrics.Counter(label: "shard_generation_tokens_total", factory: f)
        cancelled = Metrics.Counter(label: "shard_requests_cancelled_total", factory: f)
        timeToFirstToken = Metrics.Timer(label: "shard_time_to_first_token_seconds", factory: f)
        interTokenLatency = Metrics.Timer(label: "shard_inter_token_latency_seconds", factory: f)
        requestDuration = Metrics.Timer(label: "shard_request_duration_seconds", factory: f)
        queueLength = Metrics.Gauge(label: "shard_queue_length", factory: f)
        running = Metrics.Gauge(label: "shard_requests_running", factory: f)
        kvUsed = Metrics.Gauge(label: "shard_kv_pages_used", factory: f)
        kvFree = Metrics.Gauge(label: "shard_kv_pages_free", factory: f)
        queueLength.record(0)
        running.record(0)
        kvUsed.record(0)
        kvFree.record(0)
    }

    /// Counts one finished HTTP request by endpoint and status code.
    func request(endpoint: String, status: Int) {
        let key = "\(endpoint) \(status)"
        let c = requestCounters.withLock { counters in
            if let c = counters[key] { return c }
            let c = Metrics.Counter(label: "shard_requests_total", dimensions: [("endpoint", endpoint), ("status", "\(status)")], factory: factory)
            counters[key] = c
            return c
        }
        c.increment()
    }

    private let localShards = LocalShardMetrics()
    /// In-process shards' step counters (see `LocalShardMetrics`).
    func recordLocalShards(_ shards: [(steps: UInt64, rows: UInt64, busySeconds: Double)]) {
        localShards.record(shards, factory: factory)
    }

    func record(_ stats: EngineStats) {
        queueLength.record(stats.waiting)
        running.record(stats.running)
        kvUsed.record(stats.kvPagesUsed)
        kvFree.record(max(stats.kvPagesTotal - stats.kvPagesUsed, 0))
    }

    /// The Prometheus text exposition of every metric.
    public func render() -> [UInt8] { registry.emitToBuffer() }
}

/// Per-worker gauges and counters, labelled with the shard index.
final class WorkerMetrics: Sendable {
    let up: Metrics.Gauge
    let heartbeatAge: Metrics.Gauge
    let heartbeatRTT: Metrics.Gauge
    let stepSeconds: Metrics.Gauge
    let steps: Metrics.Counter
    let tokens: Metrics.Counter
    let busy: Metrics.FloatingPointCounter

    init(shard: Int, factory: PrometheusMetricsFactory) {
        let d = [("shard", "\(shard)")]
        up = Metrics.Gauge(label: "shard_worker_up", dimensions: d, factory: factory)
        heartbeatAge = Metrics.Gauge(label: "shard_worker_heartbeat_age_seconds", dimensions: d, factory: factory)
        heartbeatRTT = Metrics.Gauge(label: "shard_worker_heartbeat_rtt_seconds", dimensions: d, factory: factory)
        stepSeconds = Metrics.Gauge(label: "shard_worker_step_seconds", dimensions: d, factory: factory)
        steps = Metrics.Counter(label: "shard_worker_steps_total", dimensions: d, factory: factory)
        tokens = Metrics.Counter(label: "shard_worker_tokens_total", dimensions: d, factory: factory)
        busy = Metrics.FloatingPointCounter(label: "shard_worker_busy_seconds_total", dimensions: d, factory: factory)
        up.record(0)
    }
}

/// In-process shards, exported with the workers' names (`shard_worker_*`, `shard` label): they are
/// always up and have no heartbeat.
final class LocalShardMetrics: Sendable {
    private let last = Mutex<[(steps: UInt64, rows: UInt64, busySeconds: Double)]>([])
    private let workers = Mutex<[WorkerMetrics]>([])

    func record(_ shards: [(steps: UInt64, rows: UInt64, busySeconds: Double)], factory: PrometheusMetricsFactory) {
        let metrics = workers.withLock { w -> [WorkerMetrics] in
            while w.count < shards.count { w.append(WorkerMetrics(shard: w.count, factory: factory)) }
            return w
        }
        last.withLock { last in
            while last.count < shards.count { last.append((0, 0, 0)) }
            for (i, s) in shards.enumerated() {
                let m = metrics[i], before = last[i]
                m.up.record(1)
                if s.steps > before.steps {
                    m.steps.increment(by: Int64(s.steps - before.steps))
                    m.tokens.increment(by: Int64(s.rows &- before.rows))
                    m.busy.increment(by: max(0, s.busySeconds - before.busySeconds))
                    m.stepSeconds.record((s.busySeconds - before.busySeconds) / Double(s.steps - before.steps))
                }
                last[i] = s
            }
        }
    }
}
