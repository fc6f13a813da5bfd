import Foundation
import Testing
import Coordinator
import ShardRuntime
@testable import Wire

/// Shards as `shard-worker` processes: same results for any shard count, faults reported cleanly,
/// no process left behind.
@Suite(.serialized) struct MultiProcessTests {
    let smol = CLI.model("SmolLM2-135M-Instruct.Q4_1.gguf")

    /// shard-worker processes on this machine started by any coordinator, or (`coordinator`) by that one:
    /// its workers' sockets are in /tmp/shard-PID-…, so other sessions' tests on a shared machine don't count.
    func workerCount(of coordinator: Int32? = nil) -> Int {
        let pids = (try? Self.pgrep(["-f", "shard-worker --listen ipc:///tmp/shard-" + (coordinator.map { "\($0)-" } ?? "")])) ?? []
        return pids.filter { !Self.isOthersWorker($0) }.count
    }

    /// The process ids `pgrep ARGS` lists.
    static func pgrep(_ arguments: [String]) throws -> [String] {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/pgrep")
        p.arguments = arguments
        let out = Pipe()
        p.standardOutput = out
        try p.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return String(decoding: data, as: UTF8.self).split(separator: "\n").map(String.init)
    }

    /// A worker that is not ours to count: its parent is neither init (an orphan: always counted) nor a
    /// `shardctl` of this build other than `serve` — e.g. a `shardctl serve` of ServerTests, the test
    /// process itself (engine tests), or another checkout's tests on the same machine.
    static func isOthersWorker(_ pid: String) -> Bool {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let close = stat.lastIndex(of: ")") else { return false }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        guard fields.count > 1, fields[1] != "1", let cmdline = FileManager.default.contents(atPath: "/proc/\(fields[1])/cmdline") else { return false }
        let args = cmdline.split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
        guard let program = args.first else { return false }
        let ourFolder = String(CLI.binary.dropLast("shardctl".count))
        let ours = program.hasSuffix("shardctl") && program.hasPrefix(ourFolder) && !(args.count > 1 && args[1] == "serve")
        return !ours
    }

    @Test func shardCountsGiveIdenticalTokensAndLogits() throws {
        var tokens: [String] = [], logits: [String] = []
        for n in [1, 2, 3, 4] {
            let g = try CLI.run(["generate", "--model", smol, "--prompt", "Once upon a time, in a small village,",
                                 "--temperature", "0", "--max-tokens", "16", "--json", "--shards", "\(n)", "--backend", "cpu"])
            #expect(g.status == 0, "\(n) shards: \(g.stderr)")
            tokens.append(g.lines.dropLast().joined(separator: "\n"))
            let l = try CLI.run(["logits", "--model", smol, "--prompt", "The capital of France is", "--top", "20",
                                 "--shards", "\(n)", "--backend", "cpu"])
            #expect(l.status == 0, "\(n) shards: \(l.stderr)")
            logits.append(l.stdout)
        }
        #expect(Set(tokens).count == 1, "tokens differ between shard counts")
        #expect(Set(logits).count == 1, "logits differ between shard counts")
        #expect(workerCount() == 0, "shard-worker processes left behind")
    }

    /// The activation hops between processes on this host take the same-host link (`FrameLink`) by
    /// default and ZeroMQ with SHARD_LINK=zmq; 2 and 3 shards give 1 shard's greedy tokens either way.
    @Test func sameHostLinkAndForcedZeroMQGiveOneShardsTokens() throws {
        func generate(_ shards: Int, _ env: [String: String]) throws -> String {
            try greedyLines(shards: shards, maxTokens: 24, environment: env)
        }
        let one = try generate(1, [:])
        #expect(!one.isEmpty)
        for shards in [2, 3] {
            #expect(try generate(shards, [:]) == one, "\(shards) shards over the link")
            #expect(try generate(shards, ["SHARD_LINK": "zmq"]) == one, "\(shards) shards over ZeroMQ")
        }
        // Which transport the coordinator's hop took (bench reports it).
        for (env, expected) in [([String: String](), "link"), (["SHARD_LINK": "zmq"], "zmq")] {
            let b = try CLI.run(["bench", "--model", smol, "--backend", "cpu", "--shards", "2", "--prompt-tokens", "8",
                                 "--gen-tokens", "4", "--json"], environment: env)
            #expect(b.status == 0, "\(b.stderr)")
            #expect(b.stdout.contains("\"activation_link\":\"\(expected)\""), "\(env): \(b.stdout)")
        }
        #expect(workerCount() == 0, "shard-worker processes left behind")
    }

    @Test func deadWorkerFailsTheRequestCleanly() throws {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: CLI.binary)
        p.arguments = ["generate", "--model", smol, "--prompt", "Tell me a long story.", "--temperature", "0",
                       "--max-tokens", "4000", "--ctx", "4096", "--shards", "2", "--backend", "cpu", "--json"]
        let err = Pipe()
        p.standardError = err
        p.standardOutput = FileHandle.nullDevice
        try p.run()
        // A failed expectation below must not leave the coordinator and its workers to the next test.
        defer { if p.isRunning { p.terminate(); p.waitUntilExit() } }
        // Wait for both workers (they start one after the other), then kill one mid-generation.
        var victims: [String] = []
        for _ in 0..<100 where victims.count < 2 {
            Thread.sleep(forTimeInterval: 0.1)
            victims = try Self.pgrep(["-P", "\(p.processIdentifier)", "shard-worker"])
        }
        try #require(victims.count == 2, "workers did not start")
        Thread.sleep(forTimeInterval: 1.5)
        kill(pid_t(victims[1])!, SIGKILL)
        p.waitUntilExit()
        let message = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(p.terminationStatus != 0)
        #expect(message.hasPrefix("error: ") && message.contains("shard-worker"), "stderr: \(message)")
        #expect(message.split(separator: "\n").count == 1)
        Thread.sleep(forTimeInterval: 0.5)
        #expect(workerCount(of: p.processIdentifier) == 0, "shard-worker processes left behind")
    }

    @Test func killedCoordinatorLeavesNoWorkers() throws {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: CLI.binary)
        p.arguments = ["generate", "--model", smol, "--prompt", "Tell me a long story.", "--temperature", "0",
                       "--max-tokens", "4000", "--ctx", "4096", "--shards", "3", "--backend", "cpu"]
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        try p.run()
        let pid = p.processIdentifier
        for _ in 0..<100 where workerCount(of: pid) < 3 { Thread.sleep(forTimeInterval: 0.1) }
        #expect(workerCount(of: pid) == 3)
        kill(pid, SIGKILL)
        p.waitUntilExit()
        for _ in 0..<50 where workerCount(of: pid) > 0 { Thread.sleep(forTimeInterval: 0.1) }
        #expect(workerCount(of: pid) == 0, "workers outlived their coordinator")
    }

    /// Running workers that offer different memory (`shard-worker --memory`) get layers in proportion;
    /// a worker too small for its share makes the coordinator refuse the plan before loading anything.
    @Test func splitFollowsWorkerMemoryAndRefusesWhatDoesNotFit() throws {
        // Not under /tmp/shard-*: other tests count the workers there.
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("memsplit-\(getpid())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let env = ["SHARD_STATE_DIR": dir.path]
        func worker(_ name: String, memory: String) throws -> Process {
            let w = Process()
            w.executableURL = URL(fileURLWithPath: CLI.binary).deletingLastPathComponent().appendingPathComponent("shard-worker")
            w.arguments = ["--listen", "ipc://\(dir.path)/\(name)", "--backend", "cpu", "--threads", "1", "--memory", memory, "--worker-id", name]
            try w.run()
            return w
        }
        let big = try worker("big", memory: "600MiB"), small = try worker("small", memory: "200MiB")
        defer { for w in [big, small] where w.isRunning { w.terminate(); w.waitUntilExit() } }
        let workers = "ipc://\(dir.path)/big,ipc://\(dir.path)/small"
        let launch = try CLI.run(["launch", "--model", smol, "--workers", workers, "--ctx", "1024"], environment: env)
        #expect(launch.status == 0, "\(launch.stderr)")
        // SmolLM2 has 30 layers; the 600 MiB worker takes clearly more than half of them.
        let firstEnd = launch.stdout.range(of: " 0..<").map { Int(launch.stdout[$0.upperBound...].prefix { $0.isNumber }) ?? 0 } ?? 0
        #expect(firstEnd >= 20 && firstEnd < 30, "\(launch.stdout)")
        let g = try CLI.run(["generate", "--prompt", "The capital of France is", "--temperature", "0", "--max-tokens", "8", "--json"],
                            environment: env)
        let expected = try CLI.run(["generate", "--model", smol, "--prompt", "The capital of France is", "--temperature", "0",
                                    "--max-tokens", "8", "--json", "--backend", "cpu"])
        #expect(g.status == 0 && g.lines.dropLast() == expected.lines.dropLast(), "\(g.stderr)")
        let stop = try CLI.run(["stop"], environment: env)
        #expect(stop.status == 0 && stop.stdout.contains("left running"), "\(stop.stdout)")
        #expect(big.isRunning && small.isRunning, "stop must leave workers it did not start running")

        // 40 MiB cannot hold the last shard's logits buffer and head: refused, naming shard and bytes short.
        let tiny = try worker("tiny", memory: "40MiB")
        defer { if tiny.isRunning { tiny.terminate(); tiny.waitUntilExit() } }
        let refused = try CLI.run(["generate", "--model", smol, "--workers", "ipc://\(dir.path)/big,ipc://\(dir.path)/tiny",
                                   "--prompt", "Hi", "--max-tokens", "2", "--split", "15,15"], environment: env)
        #expect(refused.status != 0)
        #expect(refused.stderr.hasPrefix("error: ") && refused.stderr.contains("shard 1 (layers 15..<30) does not fit worker tiny")
                && refused.stderr.contains("short"), "\(refused.stderr)")
        #expect(big.isRunning && tiny.isRunning, "a refused plan must not take the workers down")
    }

    /// Workers whose host lacks the model (here: `--model-dir` points elsewhere) get the header and their
    /// own tensors streamed by the coordinator, and give the same tokens as workers that read the file.
    @Test func workersWithoutTheModelGetItStreamed() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("stream-\(getpid())")
        let empty = dir.appendingPathComponent("models"), weights = dir.appendingPathComponent("weights")
        try FileManager.default.createDirectory(at: empty, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        var workers: [Process] = []
        defer { for w in workers where w.isRunning { w.terminate(); w.waitUntilExit() } }
        for name in ["a", "b"] {
            let w = Process()
            w.executableURL = URL(fileURLWithPath: CLI.binary).deletingLastPathComponent().appendingPathComponent("shard-worker")
            w.arguments = ["--listen", "ipc://\(dir.path)/\(name)", "--backend", "cpu", "--threads", "1", "--model-dir", empty.path]
            var env = ProcessInfo.processInfo.environment
            env["TMPDIR"] = weights.path
            w.environment = env
            try w.run()
            workers.append(w)
        }
        let args = ["generate", "--model", smol, "--prompt", "The capital of France is", "--temperature", "0", "--max-tokens", "8", "--json"]
        let streamed = try CLI.run(args + ["--workers", "ipc://\(dir.path)/a,ipc://\(dir.path)/b"])
        let local = try CLI.run(args + ["--backend", "cpu"])
        #expect(streamed.status == 0, "\(streamed.stderr)")
        #expect(streamed.lines.count == 9 && streamed.lines.dropLast() == local.lines.dropLast(), "\(streamed.stdout)")
        // The copies were sparse and are gone once mapped.
        let left = (try? FileManager.default.contentsOfDirectory(atPath: weights.appendingPathComponent("shard-weights-\(getuid())").path)) ?? []
        #expect(left.isEmpty, "streamed copies left on disk: \(left)")
    }

    /// Two worker processes on different backends (CPU, then Vulkan on lavapipe): the single-process
    /// Vulkan tokens.
    @Test func cpuWorkerAndVulkanWorkerGiveTheVulkanTokens() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("mixed-\(getpid()).gguf").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        #expect(try CLI.run(["synth", "--arch", "llama", "--preset", "tiny", "--quant", "q4_k_m", "--out", path]).status == 0)
        let args = ["generate", "--model", path, "--prompt", "the quick brown fox", "--temperature", "0", "--max-tokens", "12", "--json"]
        let vulkan = try CLI.run(args + ["--backend", "vulkan"])
        let mixed = try CLI.run(args + ["--backend", "cpu,vulkan", "--shards", "2"])
        #expect(vulkan.status == 0 && mixed.status == 0, "\(vulkan.stderr) \(mixed.stderr)")
        #expect(vulkan.lines.count >= 4 && mixed.lines.dropLast() == vulkan.lines.dropLast(), "\(vulkan.stdout)\n\(mixed.stdout)")
        #expect(workerCount() == 0, "shard-worker processes left behind")
    }

    /// A worker driven by hand over the wire: it registers, loads, rejects a malformed frame with an
    /// Error and keeps serving, computes a real step, and exits on Shutdown.
    @Test func workerSurvivesMalformedFramesAndShutsDownCleanly() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("shard-wire-\(getpid())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let (worker, listen) = try startWorkerByHand(in: dir)
        defer { if worker.isRunning { worker.terminate() } }

        let limits = WireLimits.forModel(embeddingLength: 576, vocabSize: 49152, maxBatchRows: 64)
        let ctx = try ZmqContext()
        let control = try ZmqSocket(ctx, .dealer, options: .control(limits, receiveTimeout: .seconds(20)))
        try control.connect(listen)
        let results = try ZmqSocket(ctx, .pull, options: .activations(limits, receiveTimeout: .seconds(20)))
        let resultEndpoint = try results.bind("ipc://\(dir.path)/results")
        let data = try ZmqSocket(ctx, .push, options: .activations(limits))
        try data.connect(try Endpoints.data(forControl: listen))
        defer { control.close(); results.close(); data.close(); ctx.shutdown() }

        let (hello, loaded) = try helloAndLoad(control, limits: limits, next: resultEndpoint)
        guard case .register(let r) = hello.body else { Issue.record("expected Register, got \(hello.body)"); return }
        #expect(r.workerID == "w0" && hello.requestID == 1)
        guard case .ready(let ready) = loaded.body else { Issue.record("expected Ready, got \(loaded.body)"); return }
        #expect(ready.layerStart == 0 && ready.layerEnd == 30)

        // Garbage on the data channel: reported, not fatal.
        try data.send(ZmqMessage([UInt8](repeating: 0xFF, count: 64)))
        let tokens: [Int32] = [504, 3575, 282, 4649, 314]
        let rows = tokens.indices.map { ActivationFrame.Row(sequence: 9, position: UInt32($0)) }
        // A frame whose token id is outside the vocabulary: a step error, also reported.
        try data.send(ActivationFrame.tokens(step: 1, rows: [rows[0]], logitRows: [0], tokens: [99_999]))
        var errors: [String] = []
        while errors.count < 2, let c = try control.receive(Control.self, limits: limits) {
            if case .error(let e) = c.body { errors.append(e.message) }
        }
        #expect(errors.count == 2)
        #expect(errors.contains { $0.contains("rejected a frame") }, "\(errors)")
        #expect(errors.contains { $0.contains("outside the vocabulary") }, "\(errors)")
        try data.send(ActivationFrame.tokens(step: 2, rows: rows, logitRows: [4], tokens: tokens))
        let frame = try #require(try results.receive(ActivationFrame.self, limits: limits))
        #expect(frame.stepID == 2 && frame.kind == .logits)
        let logits = try frame.floats()
        #expect(logits.count == 49152)
        #expect(logits.indices.max { logits[$0] < logits[$1] } == 7042)

        try shutDown(worker, control, limits: limits)
    }
}

extension MultiProcessTests {
    /// A worker's same-host link, driven by hand: hostile bytes on it (a frame that does not decode, a
    /// length over the limit, a connection that ends inside a frame) are reported as Errors, the worker
    /// keeps serving frames over the link and ZeroMQ, pushes its result over our link, and leaves no file.
    @Test func workerSurvivesHostileBytesOnTheLink() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("shard-link-\(getpid())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        var env = ProcessInfo.processInfo.environment
        env.removeValue(forKey: "SHARD_LINK")
        let (worker, listen) = try startWorkerByHand(in: dir, environment: env)
        defer { if worker.isRunning { worker.terminate() } }

        let limits = WireLimits.forModel(embeddingLength: 576, vocabSize: 49152, maxBatchRows: 64)
        let ctx = try ZmqContext()
        let control = try ZmqSocket(ctx, .dealer, options: .control(limits, receiveTimeout: .seconds(20)))
        try control.connect(listen)
        let results = try ActivationInbox(ctx, bind: "ipc://\(dir.path)/results", limits: limits, link: true)
        defer { control.close(); results.close(); ctx.shutdown() }
        func result() throws -> ActivationFrame? { try results.next(within: .seconds(20)) }
        let (_, loaded) = try helloAndLoad(control, limits: limits, next: results.endpoint)
        guard case .ready = loaded.body else { Issue.record("expected Ready, got \(loaded.body)"); return }

        let data = try Endpoints.data(forControl: listen)
        let link = try ActivationSender(ctx, endpoint: data, limits: limits, link: true)
        defer { link.close() }
        #expect(link.transport == .link, "the worker offers no link")
        func raw(_ bytes: [UInt8], close closing: Bool) throws {
            let fd = try #require(FrameLink.connect(data))
            let n = bytes.withUnsafeBytes { Foundation.write(fd, $0.baseAddress, $0.count) }
            #expect(n == bytes.count)
            if closing { close(fd) } else { Thread.sleep(forTimeInterval: 0.2); close(fd) }
        }
        func header(_ n: UInt32) -> [UInt8] { withUnsafeBytes(of: n.littleEndian) { Array($0) } }
        try link.send(ZmqMessage([UInt8](repeating: 0xFF, count: 64)))              // does not decode
        try raw(header(UInt32.max) + [1, 2, 3], close: false)                       // length over the limit
        try raw(header(1000) + [UInt8](repeating: 0x08, count: 10), close: true)    // ends inside a frame
        var errors: [String] = []
        while errors.count < 3, let c = try control.receive(Control.self, limits: limits) {
            if case .error(let e) = c.body { errors.append(e.message) }
        }
        #expect(errors.count == 3, "\(errors)")
        #expect(errors.allSatisfy { $0.contains("rejected a frame") }, "\(errors)")
        #expect(errors.contains { $0.contains("connection closed") } && errors.contains { $0.contains("ended inside a frame") }, "\(errors)")

        let tokens: [Int32] = [504, 3575, 282, 4649, 314]
        let rows = tokens.indices.map { ActivationFrame.Row(sequence: 9, position: UInt32($0)) }
        try link.send(ActivationFrame.tokens(step: 2, rows: rows, logitRows: [4], tokens: tokens))
        let frame = try #require(try result())
        #expect(frame.stepID == 2 && frame.kind == .logits)
        let logits = try frame.floats()
        #expect(logits.indices.max { logits[$0] < logits[$1] } == 7042)
        // ZeroMQ into the same worker still works (a sender with SHARD_LINK=zmq).
        let zmq = try ActivationSender(ctx, endpoint: data, limits: limits, link: false)
        defer { zmq.close() }
        try zmq.send(ActivationFrame.tokens(step: 3, rows: [ActivationFrame.Row(sequence: 9, position: 5)], logitRows: [0], tokens: [7042]))
        #expect(try result()?.stepID == 3)

        try shutDown(worker, control, limits: limits)
        let left = (try? FileManager.default.contentsOfDirectory(atPath: dir.path)) ?? []
        #expect(Set(left).isSubset(of: ["results"]), "files left by the worker: \(left)")
    }
}

extension MultiProcessTests {
    /// A shard-worker started by hand (CPU, worker id w0), listening at ipc://`dir`/w.
    func startWorkerByHand(in dir: URL, environment: [String: String]? = nil) throws -> (worker: Process, listen: String) {
        let listen = "ipc://\(dir.path)/w"
        let worker = Process()
        worker.executableURL = URL(fileURLWithPath: CLI.binary).deletingLastPathComponent().appendingPathComponent("shard-worker")
        worker.arguments = ["--listen", listen, "--backend", "cpu", "--worker-id", "w0"]
        if let environment { worker.environment = environment }
        try worker.run()
        return (worker, listen)
    }

    /// Heartbeat (request 1), then LoadShard (request 2) of all SmolLM2's 30 layers with results to
    /// `next`: the worker's two answers.
    func helloAndLoad(_ control: ZmqSocket, limits: WireLimits, next: String, chain: String = "") throws -> (hello: Control, loaded: Control) {
        try control.send(Control(requestID: 1, .heartbeat(Heartbeat(workerID: "test", monotonicNanoseconds: 0, load: 0))))
        let hello = try #require(try control.receive(Control.self, limits: limits))
        var load = LoadShard(modelPath: smol, layerStart: 0, layerEnd: 30, contextLength: 128, kvType: .f16, maxBatchRows: 64,
                             backend: .cpu, nextEndpoint: next)
        load.chainEndpoint = chain
        try control.send(Control(requestID: 2, .loadShard(load)))
        let loaded = try #require(try control.receive(Control.self, limits: limits))
        return (hello, loaded)
    }

    /// Shutdown (request 3): acknowledged, and the worker exits with status 0.
    func shutDown(_ worker: Process, _ control: ZmqSocket, limits: WireLimits) throws {
        try control.send(Control(requestID: 3, .shutdown(Shutdown())))
        let bye = try #require(try control.receive(Control.self, limits: limits))
        guard case .shutdown = bye.body else { Issue.record("expected Shutdown, got \(bye.body)"); return }
        worker.waitUntilExit()
        #expect(worker.terminationStatus == 0)
    }
}

extension MultiProcessTests {
    /// `generate --json` of a fixed prompt, greedy, on SmolLM2 through `shards` CPU shards: its token lines
    /// (the summary line dropped).
    func greedyLines(shards: Int, maxTokens: Int, environment: [String: String]) throws -> String {
        let g = try CLI.run(["generate", "--model", smol, "--prompt", "Once upon a time, in a small village,",
                             "--temperature", "0", "--max-tokens", "\(maxTokens)", "--json", "--shards", "\(shards)", "--backend", "cpu"],
                            environment: environment)
        #expect(g.status == 0, "\(shards) shards, \(environment): \(g.stderr)")
        return g.lines.dropLast().joined(separator: "\n")
    }

    /// Chained greedy decode (`ChainingPipeline`) through 2, 3 and 4 worker processes, over the
    /// same-host link and ZeroMQ, gives 1 shard's tokens, as SHARD_CHAIN=0 does.
    @Test func chainedDecodeGivesOneShardsTokens() throws {
        func generate(_ shards: Int, _ env: [String: String]) throws -> String {
            try greedyLines(shards: shards, maxTokens: 20, environment: env)
        }
        let one = try generate(1, [:])
        #expect(!one.isEmpty)
        // SHARD_CHAIN=1: on this (small) host the default leaves the chain off (`LoadOptions.defaultChain`).
        let chain = ["SHARD_CHAIN": "1"], zmq = ["SHARD_CHAIN": "1", "SHARD_LINK": "zmq"]
        for (shards, env) in [(2, chain), (3, chain), (4, chain), (2, zmq), (4, zmq), (2, ["SHARD_CHAIN": "0"])] {
            #expect(try generate(shards, env) == one, "\(shards) shards, \(env)")
        }
        #expect(workerCount() == 0, "shard-worker processes left behind")
    }

    /// Through 2 worker processes with the chain: max-token budgets and stop tokens give exactly the
    /// tokens of one process (nothing past them reaches the caller); a request stopped mid-chain (a stop
    /// string or a cancellation: its callback says stop) leaves nothing that changes the next requests,
    /// the same prompt again or one that extends the stopped sequence.
    @Test func chainedDecodeStopsExactlyAndLeavesNoTrace() throws {
        let reference = try LocalModel(path: smol, options: options(shards: 1))
        var o = options(shards: 2)
        o.chain = true
        let model = try LocalModel(path: smol, options: o)
        let remote = try #require(model.pipeline as? RemotePipeline)
        #expect(remote.chains(.greedy(logprobs: false, top: 0)) && !remote.chains(.logits))
        let prompt: [Int32] = [1, 504, 3575, 282, 4649, 314, 1345]
        func run(_ m: LocalModel, _ prompt: [Int32], max: Int, stops: [Int32] = [], stopAfter: Int = .max,
                 known: Bool = true) throws -> (tokens: [Int32], reason: StopReason) {
            var seen = 0
            let r = try m.generator.generate(prompt: prompt, maxTokens: max, sampling: .greedy, isEndOfGeneration: { stops.contains($0) },
                                             stopTokens: known ? stops : [], onToken: { _ in seen += 1; return seen < stopAfter })
            return (r.generated, r.stopReason)
        }
        let full = try run(reference, prompt, max: 24).tokens
        #expect(full.count == 24)
        #expect(try run(model, prompt, max: 24).tokens == full)
        for n in [1, 2, 5] {
            let r = try run(model, prompt, max: n)
            #expect(r.tokens == Array(full.prefix(n)) && r.reason == .length, "max \(n)")
        }
        // A stop token, told to the workers or only known to the coordinator: the tokens before it.
        let stop = full[6]
        let before = Array(full.prefix { $0 != stop })
        for known in [true, false] {
            let r = try run(model, prompt, max: 24, stops: [stop], known: known)
            #expect(r.tokens == before && r.reason == .eos, "stop token known to the workers: \(known)")
        }
        for k in [1, 3, 9] {
            let r = try run(model, prompt, max: 24, stopAfter: k)
            #expect(r.tokens == Array(full.prefix(k)) && r.reason == .stop, "stopped after \(k)")
            #expect(try run(model, prompt, max: 24).tokens == full, "after a stop at \(k)")
            let extended = prompt + full.prefix(k)
            #expect(try run(model, extended, max: 10).tokens == run(reference, extended, max: 10).tokens, "extended after a stop at \(k)")
        }
    }

    /// One worker driven by hand, its own data endpoint as the chain endpoint: a chained frame makes it
    /// run the budget's steps on its own picks (the tokens step-by-step decode gives), a stop token or a
    /// chain stop ends that early, a stale pick is dropped, and a malformed chain frame is reported while
    /// the worker keeps serving.
    @Test func workerChainsOnItsOwnPicksAndRejectsMalformedChainFrames() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("shard-chain-\(getpid())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let (worker, listen) = try startWorkerByHand(in: dir)
        defer { if worker.isRunning { worker.terminate() } }
        let limits = WireLimits.forModel(embeddingLength: 576, vocabSize: 49152, maxBatchRows: 64)
        let ctx = try ZmqContext()
        let control = try ZmqSocket(ctx, .dealer, options: .control(limits, receiveTimeout: .seconds(20)))
        try control.connect(listen)
        let results = try ActivationInbox(ctx, bind: "ipc://\(dir.path)/results", limits: limits)
        let dataEndpoint = try Endpoints.data(forControl: listen)
        let data = try ActivationSender(ctx, endpoint: dataEndpoint, limits: limits)
        defer { data.close(); control.close(); results.close(); ctx.shutdown() }
        let (_, loaded) = try helloAndLoad(control, limits: limits, next: results.endpoint, chain: dataEndpoint)
        guard case .ready(let ready) = loaded.body else { Issue.record("expected Ready, got \(loaded.body)"); return }
        #expect(ready.chains)

        let prompt: [Int32] = [504, 3575, 282, 4649, 314]
        func greedy(_ f: ActivationFrame) -> ActivationFrame { var f = f; f.sample = .greedy; return f }
        func result() throws -> ActivationFrame? { try results.next(within: .seconds(20)) }
        func quiet() throws -> Bool { try results.next(within: .milliseconds(1500)) == nil }
        /// Prefills `prompt` as sequence `seq` (releasing the earlier ones: the pool holds one): its pick.
        func prefill(_ seq: UInt64, step: UInt64) throws -> Int32 {
            var f = greedy(.tokens(step: step, rows: prompt.indices.map { .init(sequence: seq, position: UInt32($0)) },
                                   logitRows: [UInt32(prompt.count - 1)], tokens: prompt))
            f.releaseIDs = Array(1..<seq)
            try data.send(f)
            let r = try #require(try result())
            #expect(r.stepID == step && r.kind == .sampled)
            return try r.int32s()[0]
        }
        // Reference: sequence 1 decoded step by step.
        var expected = [try prefill(1, step: 1)]
        for i in 0..<5 {
            try data.send(greedy(.tokens(step: 2 + UInt64(i), rows: [.init(sequence: 1, position: UInt32(prompt.count + i))],
                                         logitRows: [0], tokens: [expected.last!])))
            expected.append(try #require(try result()).int32s()[0])
        }
        // Sequence 2 chained: step 100 and the 4 the budget allows, at consecutive positions.
        let first = try prefill(2, step: 99)
        #expect(first == expected[0])
        var chained = greedy(.tokens(step: 100, rows: [.init(sequence: 2, position: UInt32(prompt.count))], logitRows: [0], tokens: [first]))
        chained.chainBudget = 4
        try data.send(chained)
        for i in 0..<5 {
            let r = try #require(try result())
            #expect(r.stepID == 100 + UInt64(i) && r.kind == .sampled && r.rows == [.init(sequence: 2, position: UInt32(prompt.count + i))])
            #expect(try r.int32s() == [expected[i + 1]], "chained step \(i)")
        }
        #expect(try quiet(), "steps past the budget")
        // A stop token: the chain ends at the step that picks it.
        _ = try prefill(3, step: 199)
        chained.stepID = 200
        chained.rows = [.init(sequence: 3, position: UInt32(prompt.count))]
        chained.chainBudget = 50
        chained.stopTokens = [expected[2]]
        try data.send(chained)
        #expect(try #require(try result()).stepID == 200)
        let last = try #require(try result())
        let lastPick = try last.int32s()
        #expect(last.stepID == 201 && lastPick == [expected[2]])
        #expect(try quiet(), "steps past a stop token")
        // A chain stop: the worker ends the chain within a step or two.
        _ = try prefill(4, step: 299)
        chained.stepID = 300
        chained.rows = [.init(sequence: 4, position: UInt32(prompt.count))]
        chained.stopTokens = []
        try data.send(chained)
        #expect(try #require(try result()).stepID == 300)
        try data.send(ActivationFrame.chainStop(step: 0))
        var after = 0
        while try results.next(within: .milliseconds(1500)) != nil { after += 1 }
        #expect(after <= 3, "\(after) steps after the chain stop")
        // A stale pick (no chain waits for it) is dropped; a malformed chain frame (two rows) is reported.
        var stale = greedy(.sampled(step: 301, rows: [.init(sequence: 4, position: 9)], logitRows: [0], tokens: [expected[1]]))
        stale.chainBudget = 7
        try data.send(stale)
        var bad = greedy(.tokens(step: 400, rows: [.init(sequence: 5, position: 0), .init(sequence: 5, position: 1)],
                                 logitRows: [1], tokens: [504, 3575]))
        bad.chainBudget = 2
        try data.send(bad)
        let report = try #require(try control.receive(Control.self, limits: limits))
        guard case .error(let e) = report.body else { Issue.record("expected Error, got \(report.body)"); return }
        #expect(e.code == .malformedFrame && e.message.contains("chained"), "\(e.message)")
        #expect(try prefill(6, step: 500) == expected[0], "the worker keeps serving")
        #expect(try quiet(), "a stale pick started a step")
        try shutDown(worker, control, limits: limits)
    }
}

/// Workers on separate network "hosts" (namespaces with veth links), the coordinator on a third, tcp:// only.
/// Needs root (CI runs as root) to create the namespaces.
@Suite struct MultiHostTests {
    @Test(.enabled(if: getuid() == 0, "network namespaces need root"))
    func workersInSeparateNetworkNamespacesOverTCP() throws {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/bash")
        let bin = URL(fileURLWithPath: CLI.binary).deletingLastPathComponent().path
        p.arguments = [CLI.packageRoot.appendingPathComponent("scripts/netns-multihost.sh").path, bin,
                       CLI.model("SmolLM2-135M-Instruct.Q4_1.gguf"), "The capital of France is", "8"]
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        try p.run()
        let output = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        let errors = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        #expect(p.terminationStatus == 0, "\(errors)")
        let tokens = output.split(separator: "\n").dropLast().compactMap {
            (try? CLI.json(String($0)) as? [String: Any])?["token"] as? Int
        }
        // The single-process greedy tokens (and llama.cpp's up to its first near-tie).
        #expect(tokens == [7042, 30, 198, 198, 504, 1797, 1918, 553], "\(output)\n\(errors)")
    }
}

/// `shardctl launch` / `generate` (no --model) / `status` / `stop` against a private state folder. In the
/// serialized suite: its workers' sockets are under /tmp/shard-…, which the other tests' worker counts see.
extension MultiProcessTests {
    @Test func launchGenerateStatusStop() throws {
        let state = FileManager.default.temporaryDirectory.appendingPathComponent("cluster-state-\(getpid())").path
        try FileManager.default.createDirectory(atPath: state, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: state) }
        setenv("SHARD_STATE_DIR", state, 1)
        defer { unsetenv("SHARD_STATE_DIR") }
        let smol = CLI.model("SmolLM2-135M-Instruct.Q4_1.gguf")

        let noCluster = try CLI.run(["status"])
        #expect(noCluster.status != 0 && noCluster.stderr.contains("no cluster is running"))

        // KV flags go to the workers (in LoadShard) and into the cluster file, for later commands.
        let launch = try CLI.run(["launch", "--model", smol, "--shards", "2", "--backend", "cpu", "--threads", "1",
                                  "--kv-type", "q8_0", "--kv-memory", "64MiB", "--max-sequences", "4"])
        #expect(launch.status == 0, "\(launch.stderr)")
        #expect(launch.stdout.contains("0..<15") && launch.stdout.contains("15..<30"))
        defer { _ = try? CLI.run(["stop"]) }

        // Twice through the running cluster: the same greedy tokens as a one-process run.
        let expected = try CLI.run(["generate", "--model", smol, "--prompt", "The capital of France is", "--temperature", "0",
                                    "--max-tokens", "8", "--json", "--backend", "cpu", "--kv-type", "q8_0"])
        for _ in 0..<2 {
            let g = try CLI.run(["generate", "--prompt", "The capital of France is", "--temperature", "0", "--max-tokens", "8", "--json"])
            #expect(g.status == 0, "\(g.stderr)")
            #expect(g.lines.dropLast() == expected.lines.dropLast())
        }
        let again = try CLI.run(["launch", "--model", smol, "--shards", "2"])
        #expect(again.status != 0 && again.stderr.contains("already running"))

        let status = try CLI.run(["status"])
        #expect(status.status == 0)
        #expect(status.stdout.contains("q8_0, 67108864 bytes, up to 4 sequences"), "\(status.stdout)")
        let rows = status.lines.filter { $0.hasPrefix("0 ") || $0.hasPrefix("1 ") }
        #expect(rows.count == 2, "\(status.stdout)")
        #expect(rows.allSatisfy { $0.contains("cpu/CPU") && $0.contains("now (") }, "\(status.stdout)")

        let stop = try CLI.run(["stop"])
        #expect(stop.status == 0, "\(stop.stderr)")
        #expect(try CLI.run(["status"]).status != 0)
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: state).filter { !$0.hasSuffix(".log") }
        #expect(leftovers.isEmpty, "left in the state folder: \(leftovers)")
        #expect(try Self.pgrep(["-f", "shard-worker --listen ipc://\(state)"]).isEmpty, "workers left behind")
    }
}
