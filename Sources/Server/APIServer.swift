#if canImport(Glibc)
import Glibc
#endif
import Coordinator
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import NIOHTTP1
import ServiceLifecycle
import Synchronization
import Tokenizer
import Wire

/// How the server listens and what it accepts.
public struct ServerConfiguration: Sendable {
    public var host = "127.0.0.1"
    /// 0 picks a free port (the listening line tells which).
    public var port = 8080
    /// Request bodies above this many bytes are refused with 413.
    public var maxBodyBytes = 4 << 20
    /// Requests waiting beyond this many are refused with 503 (the client retries).
    public var maxQueue = 64
    /// Seconds a connection may stay silent while a request is being read (or before one is sent).
    public var idleTimeoutSeconds = 60
    public init() {}
}

/// The model a server answers with: an engine over the loaded shards and the tokenizer.
public struct ServedModel: Sendable {
    public var id: String
    public var engine: any InferenceEngine
    public var tokenizer: Tokenizer
    public var chatTemplate: ChatTemplate
    /// Unix time the model was loaded (/v1/models' `created`).
    public var created: Int
    /// The worker processes behind the engine, when there are any.
    public var monitor: ShardMonitor?
    /// Shards computing in this process, when there are any: steps, rows and busy seconds of each.
    public var localShards: (@Sendable () -> [(steps: UInt64, rows: UInt64, busySeconds: Double)])?

    public init(id: String, engine: any InferenceEngine, tokenizer: Tokenizer, monitor: ShardMonitor? = nil) {
        self.id = id
        self.engine = engine
        self.tokenizer = tokenizer
        chatTemplate = tokenizer.chatRenderer
        created = Int(time(nil))
        self.monitor = monitor
    }
}

/// OpenAI-compatible HTTP API over an `InferenceEngine` (Hummingbird 2):
/// GET /v1/models, POST /v1/completions and /v1/chat/completions (JSON or server-sent events),
/// GET /health and GET /metrics (Prometheus text format).
///
/// The server starts listening before the model is loaded: until `attach` it answers /health and the
/// API with 503, so a load balancer or a test can wait on /health.
public final class APIServer: Sendable {
    enum ModelState: Sendable {
        case loading
        case ready(ServedModel)
        case failed(String)
    }

    public let configuration: ServerConfiguration
    public let metrics: ServerMetrics
    let logger: Logger
    private let model = Mutex<ModelState>(.loading)
    /// Requests being generated, cancelled together at shutdown.
    private let active = Mutex<[UInt64: RequestHandle]>([:])

    public init(configuration: ServerConfiguration, metrics: ServerMetrics = ServerMetrics(), logger: Logger) {
        self.configuration = configuration
        self.metrics = metrics
        self.logger = logger
    }

    /// Starts answering with `served`.
    public func attach(_ served: ServedModel) { model.withLock { $0 = .ready(served) } }

    /// The model could not be loaded: /health and the API answer 503 with this message.
    public func fail(_ message: String) { model.withLock { $0 = .failed(message) } }

    var served: ServedModel? {
        model.withLock { if case .ready(let m) = $0 { return m } else { return nil } }
    }

    /// Cancels every request in flight (their clients see the stream end).
    public func cancelAll() {
        for h in active.withLock({ Array($0.values) }) { h.cancel() }
    }

    // MARK: running

    /// Builds the Hummingbird application: routes, error middleware and the shutdown service.
    /// `onListening` gets the bound port.
    public func application(onListening: @escaping @Sendable (Int) async -> Void = { _ in })
        -> some ApplicationProtocol {
        let router = Router(context: BasicRequestContext.self)
        router.add(middleware: ErrorMiddleware(server: self))
        router.get("/health") { _, _ in self.health() }
        router.get("/metrics") { _, _ in self.metricsResponse() }
        router.get("/v1/models") { _, _ in try self.models() }
        router.get("/v1/models/{id}") { _, context in try self.model(id: context.parameters.get("id") ?? "") }
        router.post("/v1/completions") { request, _ in try await self.complete(request, kind: .completion) }
        router.post("/v1/chat/completions") { request, _ in try await self.complete(request, kind: .chat) }
        var config = ApplicationConfiguration(address: .hostname(configuration.host, port: configuration.port), serverName: "shard")
        config.reuseAddress = true
        // A client that stops sending in the middle of a request (or never sends one) is dropped after
        // idleTimeout; an SSE stream the server is writing is not affected.
        var app = Application(router: router, server: .http1(configuration: .init(idleTimeout: .seconds(Int64(configuration.idleTimeoutSeconds)))),
                              configuration: config,
                              onServerRunning: { channel in await onListening(channel.localAddress?.port ?? 0) },
                              logger: logger)
        app.addServices(ShutdownService(server: self))
        return app
    }

    /// Runs until SIGINT or SIGTERM; in-flight requests are cancelled at shutdown.
    public func run(onListening: @escaping @Sendable (Int) async -> Void = { _ in }) async throws {
        try await application(onListening: onListening).runService()
    }

    // MARK: simple endpoints

    func health() -> Response {
        switch model.withLock({ $0 }) {
        case .loading:
            return json(["status": "loading"], status: 503)
        case .failed(let message):
            return json(["status": "failed", "message": .string(message)], status: 503)
        case .ready(let m):
            var body: [(key: String, value: JSONValue)] = [("status", "ok"), ("model", .string(m.id))]
            var ok = true
            if let monitor = m.monitor {
                let now = ContinuousClock.now
                let workers = monitor.workers
                ok = workers.allSatisfy(\.ready)
                body[0].value = ok ? "ok" : "unavailable"
                body.append(("shards", .array(workers.enumerated().map { i, w in
                    ["shard": JSONValue(i), "endpoint": .string(w.endpoint), "ready": .bool(w.ready),
                     "heartbeat_age_seconds": w.lastSeen.map { .number((now - $0).seconds) } ?? .null,
                     "problem": JSONValue(w.problem)]
                })))
            }
            return json(.object(body), status: ok ? 200 : 503)
        }
    }

    func metricsResponse() -> Response {
        if let m = served {
            metrics.record(m.engine.stats())
            m.monitor?.updateAges()
            if let local = m.localShards { metrics.recordLocalShards(local()) }
        }
        var headers = HTTPFields()
        headers[.contentType] = "text/plain; version=0.0.4; charset=utf-8"
        return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: metrics.render())))
    }

    func requireModel() throws -> ServedModel {
        switch model.withLock({ $0 }) {
        case .ready(let m): return m
        case .loading: throw APIError.unavailable("the model is still loading", code: "model_loading")
        case .failed(let message): throw APIError.unavailable("the model failed to load: \(message)", code: "model_failed")
        }
    }

    func modelObject(_ m: ServedModel) -> JSONValue {
        ["id": .string(m.id), "object": "model", "created": JSONValue(m.created), "owned_by": "shard",
         "context_length": JSONValue(m.engine.contextLength)]
    }

    func models() throws -> Response {
        let m = try requireModel()
        return json(["object": "list", "data": [modelObject(m)]])
    }

    func model(id: String) throws -> Response {
        let m = try requireModel()
        guard id == m.id else { throw APIError.notFound("The model '\(id)' does not exist; this server serves '\(m.id)'") }
        return json(modelObject(m))
    }

    // MARK: completions

    /// A checked request, tokenized, ready for the engine.
    struct Prepared: Sendable {
        var request: CompletionRequest
        var model: ServedModel
        var prompt: [Int32]
        var maxTokens: Int
        var id: String
        var created: Int
        var started: ContinuousClock.Instant
    }

    func prepare(_ r: CompletionRequest, model m: ServedModel, started: ContinuousClock.Instant) throws -> Prepared {
        let tokenizer = m.tokenizer
        let ids: [Int32]
        let param: String
        switch r.prompt {
        case .text(let text):
            ids = tokenizer.encode(text, addSpecial: true, parseSpecial: true)
            param = "prompt"
        case .tokens(let t):
            if let bad = t.first(where: { Int($0) >= tokenizer.vocabSize }) {
                throw APIError.invalid("token id \(bad) is outside the vocabulary (\(tokenizer.vocabSize) tokens)", param: "prompt")
            }
            ids = t
            param = "prompt"
        case .chat(let messages):
            ids = tokenizer.encode(m.chatTemplate.render(messages, addGenerationPrompt: true), addSpecial: true, parseSpecial: true)
            param = "messages"
        }
        guard !ids.isEmpty else { throw APIError.invalid("the prompt has no tokens", param: param) }
        let ctx = m.engine.contextLength
        guard ids.count < ctx else {
            throw APIError.invalid("This model's maximum context length is \(ctx) tokens. However, your \(param) has \(ids.count) tokens. Please shorten it.",
                                   param: param, code: "context_length_exceeded")
        }
        let maxTokens: Int
        if let requested = r.maxTokens {
            guard ids.count + requested <= ctx else {
                throw APIError.invalid("This model's maximum context length is \(ctx) tokens. However, you requested \(ids.count + requested) tokens (\(ids.count) in the \(param), \(requested) in the completion). Please reduce the length of the \(param) or the completion.",
                                       param: r.maxTokens == nil ? param : "max_tokens", code: "context_length_exceeded")
            }
            maxTokens = requested
        } else {
            maxTokens = ctx - ids.count
        }
        let prefix = r.kind == .chat ? "chatcmpl-" : "cmpl-"
        return Prepared(request: r, model: m, prompt: ids, maxTokens: maxTokens,
                        id: prefix + String(UInt64.random(in: 0...UInt64.max), radix: 16), created: Int(time(nil)), started: started)
    }

    func complete(_ request: Request, kind: CompletionRequest.Kind) async throws -> Response {
        let started = ContinuousClock.now
        var request = request
        let body = try await request.collectBody(upTo: configuration.maxBodyBytes)
        let json: JSONValue
        do {
            json = try JSONValue.parse(body.readableBytesView)
        } catch {
            throw APIError.invalid("We could not parse the JSON body of your request: \(error)", code: "invalid_json")
        }
        let r = try CompletionRequest(kind: kind, body: json)
        let m = try requireModel()
        if let monitor = m.monitor, let down = monitor.workers.firstIndex(where: { !$0.ready }) {
            // A request now would wait out the pipeline's step timeout: refuse it while /health says 503.
            throw APIError.unavailable("shard \(down) (\(monitor.workers[down].endpoint)) is not answering its heartbeat", code: "shard_unavailable")
        }
        let p = try prepare(r, model: m, started: started)
        guard m.engine.stats().waiting < configuration.maxQueue else {
            throw APIError.unavailable("the server is busy: \(configuration.maxQueue) requests are waiting; retry later", code: "queue_full")
        }
        let run = try Generation(p, server: self)
        let inbound = request.body
        // Watching for the client's close consumes the connection's inbound stream: Hummingbird closes
        // the connection after the response, so say so (clients open a new one rather than reuse it).
        if r.stream {
            var headers = HTTPFields()
            headers[.contentType] = "text/event-stream; charset=utf-8"
            headers[.cacheControl] = "no-cache"
            headers[.connection] = "close"
            return Response(status: .ok, headers: headers, body: ResponseBody { writer in
                try await inbound.consumeWithInboundCloseHandler({ _ in
                    try await self.stream(run, p, into: &writer)
                }, onInboundClosed: { run.clientGone() })
            })
        }
        let outcome = try await inbound.consumeWithInboundCloseHandler({ _ in
            try await run.collect()
        }, onInboundClosed: { run.clientGone() })
        var response = self.json(Responses.complete(p, outcome))
        response.headers[.connection] = "close"
        return response
    }

    /// Writes the generation as server-sent events: one chunk per piece of text, the finish chunk,
    /// the usage chunk when asked for, then `data: [DONE]`.
    func stream(_ run: Generation, _ p: Prepared, into writer: inout any ResponseBodyWriter) async throws {
        func send(_ v: JSONValue) async throws {
            var line = "data: "
            v.write(into: &line)
            line += "\n\n"
            try await writer.write(ByteBuffer(string: line))
        }
        do {
            if p.request.kind == .chat { try await send(Responses.chunk(p, role: true, text: "", logprobs: [], finish: nil)) }
            let outcome = try await run.forEach { text, lps in
                try await send(Responses.chunk(p, role: false, text: text, logprobs: lps, finish: nil))
            }
            guard let finish = outcome.finishReason else { return }  // the client went away
            try await send(Responses.chunk(p, role: false, text: "", logprobs: outcome.trailingLogprobs, finish: finish))
            if p.request.includeUsage { try await send(Responses.usageChunk(p, outcome)) }
        } catch let e as APIError {
            try await send(e.json)
        }
        try await writer.write(ByteBuffer(string: "data: [DONE]\n\n"))
        try await writer.finish(nil)
    }

    func track(_ handle: RequestHandle) { active.withLock { $0[handle.id] = handle } }
    func untrack(_ handle: RequestHandle) { _ = active.withLock { $0.removeValue(forKey: handle.id) } }

    func json(_ v: JSONValue, status: Int = 200) -> Response {
        var headers = HTTPFields()
        headers[.contentType] = "application/json"
        return Response(status: .init(code: status), headers: headers, body: .init(byteBuffer: ByteBuffer(string: v.text)))
    }
}

/// Turns every error into OpenAI's JSON error shape and counts requests by endpoint and status.
struct ErrorMiddleware: RouterMiddleware {
    typealias Context = BasicRequestContext
    let server: APIServer

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let path = request.uri.path
        let endpoint = ["/v1/completions", "/v1/chat/completions", "/v1/models", "/health", "/metrics"].contains(path) ? path : "other"
        let response: Response
        do {
            response = try await next(request, context)
        } catch {
            let e = APIError(error)
            if e.status >= 500 { server.logger.error("request failed", metadata: ["path": "\(path)", "error": "\(e.message)"]) }
            else { server.logger.debug("request refused", metadata: ["path": "\(path)", "status": "\(e.status)", "error": "\(e.message)"]) }
            response = server.json(e.json, status: e.status)
        }
        server.metrics.request(endpoint: endpoint, status: response.status.code)
        return response
    }
}

extension APIError {
    /// Any error as an API error: HTTP errors from Hummingbird keep their status.
    init(_ error: any Error) {
        switch error {
        case let e as APIError: self = e
        case let e as HTTPError:
            switch e.status.code {
            case 404: self = .notFound(e.body ?? "no such endpoint; this server has /v1/models, /v1/completions, /v1/chat/completions, /health and /metrics")
            case 405: self = APIError(status: 405, message: "method not allowed", type: "invalid_request_error", code: "method_not_allowed")
            case 413: self = .bodyTooLarge
            case 400..<500: self = .invalid(e.body ?? e.status.reasonPhrase)
            default: self = .server(e.body ?? e.status.reasonPhrase)
            }
        case is NIOTooManyBytesError: self = .bodyTooLarge
        case let e as HTTPParserError: self = .invalid("malformed HTTP request: \(e)")
        case let e as GenerationError: self = .invalid(e.description)
        default: self = .server("\(error)")
        }
    }
}

/// Cancels the requests in flight when the service group shuts down (SIGINT/SIGTERM), so a graceful
/// shutdown does not wait for long generations.
struct ShutdownService: Service {
    let server: APIServer
    func run() async throws {
        try? await gracefulShutdown()
        server.logger.info("shutting down: cancelling requests in flight")
        server.cancelAll()
    }
}
