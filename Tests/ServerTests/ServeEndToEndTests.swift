import Foundation
import Testing

/// Starts the real `shardctl serve` on SmolLM2 on a free port and drives it with the real `openai`
/// Python package, curl and prometheus_client (tests/server/openai_e2e.py); then stops it with SIGINT
/// and checks that it exits cleanly and leaves no worker behind.
@Suite(.serialized) struct ServeEndToEndTests {
    static let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    static var binary: String {
        let dir = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        for candidate in [dir, dir.deletingLastPathComponent()] {
            let p = candidate.appendingPathComponent("shardctl").path
            if FileManager.default.isExecutableFile(atPath: p) { return p }
        }
        return packageRoot.appendingPathComponent(".build/debug/shardctl").path
    }

    static var smol: String {
        let dir = ProcessInfo.processInfo.environment["SHARD_MODELS_DIR"] ?? packageRoot.appendingPathComponent("models").path
        return dir + "/SmolLM2-135M-Instruct.Q4_1.gguf"
    }

    /// A running server; `stop()` sends SIGINT and waits.
    final class Served {
        let process = Process()
        let log: URL
        var port = 0

        init(_ extra: [String], environment: [String: String] = [:], model: String? = ServeEndToEndTests.smol) throws {
            log = FileManager.default.temporaryDirectory.appendingPathComponent("serve-\(UUID().uuidString).log")
            FileManager.default.createFile(atPath: log.path, contents: nil)
            process.executableURL = URL(fileURLWithPath: ServeEndToEndTests.binary)
            process.arguments = ["serve"] + (model.map { ["--model", $0, "--backend", "cpu", "--ctx", "2048"] } ?? []) + ["--port", "0"] + extra
            var env = ProcessInfo.processInfo.environment
            env["SHARD_THREADS"] = "2"
            env.merge(environment) { $1 }
            process.environment = env
            process.standardOutput = FileHandle.nullDevice
            process.standardError = try FileHandle(forWritingTo: log)
            try process.run()
            // The listening line comes before the model loads.
            let deadline = Date().addingTimeInterval(60)
            while Date() < deadline && port == 0 && process.isRunning {
                if let text = try? String(contentsOf: log, encoding: .utf8),
                   let r = text.range(of: #"listening on http://127\.0\.0\.1:(\d+)"#, options: .regularExpression) {
                    port = Int(text[r].split(separator: ":").last!)!
                } else {
                    Thread.sleep(forTimeInterval: 0.1)
                }
            }
        }

        var output: String { (try? String(contentsOf: log, encoding: .utf8)) ?? "" }

        func stop() -> Int32 {
            if process.isRunning { process.interrupt() }
            let deadline = Date().addingTimeInterval(30)
            while process.isRunning && Date() < deadline { Thread.sleep(forTimeInterval: 0.1) }
            if process.isRunning { kill(process.processIdentifier, SIGKILL); process.waitUntilExit() }
            try? FileManager.default.removeItem(at: log)
            return process.terminationStatus
        }
    }

    static func python(_ args: [String]) throws -> (status: Int32, output: String) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["timeout", "900", "python3"] + args  // a hung check fails instead of hanging the suite
        let out = Pipe()
        p.standardOutput = out
        p.standardError = out
        try p.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return (p.terminationStatus, String(decoding: data, as: UTF8.self))
    }

    static func pythonHasClients() -> Bool {
        (try? python(["-c", "import openai, prometheus_client"]))?.status == 0
    }

    func workerCount(parent: Int32) -> Int {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/pgrep")
        p.arguments = ["-P", "\(parent)", "shard-worker"]
        let out = Pipe()
        p.standardOutput = out
        try? p.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return String(decoding: data, as: UTF8.self).split(separator: "\n").count
    }

    @Test func openAIClientAgainstOneShard() throws {
        try #require(Self.pythonHasClients(), "python3 needs openai and prometheus-client (scripts/install-deps.sh installs them)")
        let server = try Served(["--log-level", "debug"])
        try #require(server.port > 0, "no listening line: \(server.output)")
        let script = Self.packageRoot.appendingPathComponent("tests/server/openai_e2e.py").path
        let r = try Self.python([script, "--base", "http://127.0.0.1:\(server.port)", "--suite", "full"])
        let log = server.output
        let status = server.stop()
        #expect(r.status == 0, "\(r.output)\n--- server log ---\n\(log.suffix(4000))")
        #expect(r.output.contains("ok:"), "\(r.output)")
        #expect(status == 0, "serve exit status \(status)\n\(log.suffix(2000))")
    }

    @Test func openAIClientAgainstTwoWorkerProcesses() throws {
        try #require(Self.pythonHasClients(), "python3 needs openai and prometheus-client (scripts/install-deps.sh installs them)")
        // settings from the environment and a config file, flags winning
        let config = FileManager.default.temporaryDirectory.appendingPathComponent("shard-\(UUID().uuidString).conf")
        try "# test config\nshards = 2\nport = 1\nlog-level = \"warning\"\n".write(to: config, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(at: config) }
        let server = try Served(["--config", config.path], environment: ["SHARD_LOG_LEVEL": "info"])
        try #require(server.port > 0, "no listening line: \(server.output)")
        #expect(server.port != 1, "--port beats the config file")
        let script = Self.packageRoot.appendingPathComponent("tests/server/openai_e2e.py").path
        let r = try Self.python([script, "--base", "http://127.0.0.1:\(server.port)", "--suite", "basic", "--shards", "2"])
        let workers = workerCount(parent: server.process.processIdentifier)
        let log = server.output
        let status = server.stop()
        #expect(r.status == 0, "\(r.output)\n--- server log ---\n\(log.suffix(4000))")
        #expect(workers == 2, "2 shard-worker processes while serving")
        #expect(log.contains("info"), "SHARD_LOG_LEVEL=info beats the file's warning: \(log)")
        #expect(status == 0, "serve exit status \(status)")
        Thread.sleep(forTimeInterval: 0.5)
        #expect(workerCount(parent: server.process.processIdentifier) == 0, "workers left behind")
    }

    @Test func servesALaunchedCluster() throws {
        try #require(Self.pythonHasClients(), "python3 needs openai and prometheus-client (scripts/install-deps.sh installs them)")
        // A private state folder outside /tmp/shard-*, so that other suites' worker counts never see these workers.
        let state = FileManager.default.temporaryDirectory.appendingPathComponent("serve-cluster-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: state, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: state) }
        func shardctl(_ args: [String]) throws -> Int32 {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: Self.binary)
            p.arguments = args
            p.environment = ProcessInfo.processInfo.environment.merging(["SHARD_STATE_DIR": state, "SHARD_THREADS": "1"]) { $1 }
            p.standardOutput = FileHandle.nullDevice
            p.standardError = FileHandle.nullDevice
            try p.run()
            p.waitUntilExit()
            return p.terminationStatus
        }
        try #require(try shardctl(["launch", "--model", Self.smol, "--shards", "2", "--backend", "cpu", "--ctx", "2048"]) == 0)
        defer { _ = try? shardctl(["stop"]) }
        let server = try Served(["--cluster"], environment: ["SHARD_STATE_DIR": state], model: nil)
        try #require(server.port > 0, "no listening line: \(server.output)")
        let script = Self.packageRoot.appendingPathComponent("tests/server/openai_e2e.py").path
        let r = try Self.python([script, "--base", "http://127.0.0.1:\(server.port)", "--suite", "basic", "--shards", "2"])
        let log = server.output
        let status = server.stop()
        #expect(r.status == 0, "\(r.output)\n--- server log ---\n\(log.suffix(4000))")
        #expect(status == 0, "serve exit status \(status)")
        // the cluster's workers outlive the server
        #expect(try shardctl(["status"]) == 0)
    }

    @Test func badSettingsGiveOneErrorLine() throws {
        for (args, env, needle) in [
            (["--port", "70000"], [:], "--port"),
            (["--log-level", "loud"], [:], "--log-level"),
            ([], ["SHARD_PORT": "abc"], "SHARD_PORT"),
            (["--config", "/nonexistent/shard.conf"], [:], "config file"),
        ] as [([String], [String: String], String)] {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: Self.binary)
            p.arguments = ["serve", "--model", Self.smol] + args
            var e = ProcessInfo.processInfo.environment
            e.merge(env) { $1 }
            p.environment = e
            let err = Pipe()
            p.standardError = err
            p.standardOutput = FileHandle.nullDevice
            try p.run()
            let text = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            p.waitUntilExit()
            #expect(p.terminationStatus != 0, "\(args) \(env)")
            #expect(text.hasPrefix("error: ") && text.contains(needle) && text.split(separator: "\n").count == 1, "\(args): \(text)")
        }
        // a missing model: listening first, then one error line and a non-zero exit
        let p = Process()
        p.executableURL = URL(fileURLWithPath: Self.binary)
        p.arguments = ["serve", "--model", "/nonexistent.gguf", "--port", "0"]
        let err = Pipe()
        p.standardError = err
        p.standardOutput = FileHandle.nullDevice
        try p.run()
        let text = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        #expect(p.terminationStatus != 0)
        // the listening line may come before or after it (the server starts while the model loads)
        #expect(text.split(separator: "\n").filter { $0.hasPrefix("error: ") }.count == 1, "\(text)")
    }
}
