import ArgumentParser
#if canImport(Glibc)
import Glibc
#endif

/// `shardctl`: the command-line face of Shard (see DESIGN.md's command-line contract).
public struct Shardctl: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "shardctl",
        abstract: "Serve large language models split across processes.",
        subcommands: [Generate.self, Tokenize.self, Logits.self, Perplexity.self, Bench.self, Inspect.self, Synth.self, Launch.self, Status.self, Stop.self, Serve.self, KernelBench.self, WireBench.self]
    )
    public init() {}

    public static func runMain(_ arguments: [String]? = nil) -> Never { runToCompletion(Shardctl.self, arguments) }
}

/// Parses and runs a root command; any failure prints one `error: …` line and exits non-zero.
func runToCompletion<Root: ParsableCommand>(_ root: Root.Type, _ arguments: [String]?) -> Never {
    do {
        var command = try root.parseAsRoot(arguments)
        try command.run()
        exit(0)
    } catch {
        if root.exitCode(for: error) == .success { root.exit(withError: error) }
        let message = root.fullMessage(for: error)
            .split(separator: "\n", omittingEmptySubsequences: true).first.map(String.init) ?? "\(error)"
        Terminal.error("error: " + (message.hasPrefix("Error: ") ? String(message.dropFirst(7)) : message))
        let code = root.exitCode(for: error).rawValue
        exit(code == 0 ? 1 : code)
    }
}
