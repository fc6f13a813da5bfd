import Foundation
import Testing
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
            let g = try CLI.run(["generate", "--model", smol, "--prompt", "Once upon a time, in a small village,",
                                 "--temperature", "0", "--max-tokens", "24", "--json", "--shards", "\(shards)", "--backend", "cpu"],
                                environment: env)
            #expect(g.status == 0, "\(shards) shards, \(env): \(g.stderr)")
            return g.lines.dropLast().joined(separator: "\n")
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
    func helloAndLoad(_ control: ZmqSocket, limits: WireLimits, next: String) throws -> (hello: Control, loaded: Control) {
        try control.send(Control(requestID: 1, .heartbeat(Heartbeat(workerID: "test", monotonicNanoseconds: 0, load: 0))))
        let hello = try #require(try control.receive(Control.self, limits: limits))
        try control.send(Control(requestID: 2, .loadShard(LoadShard(modelPath: smol, layerStart: 0, layerEnd: 30, contextLength: 128,
                                                                     kvType: .f16, maxBatchRows: 64, backend: .cpu,
                                                                     nextEndpoint: next))))
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
