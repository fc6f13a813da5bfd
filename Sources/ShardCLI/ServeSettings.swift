import ArgumentParser
#if canImport(Glibc)
import Glibc
#endif

/// `serve`'s settings from three places, flags winning over environment variables, which win over
/// the config file:
///
/// - a flag: `--port 9000`
/// - an environment variable: `SHARD_` + the flag's name in capitals, `-` as `_`: `SHARD_PORT=9000`,
///   `SHARD_LOG_LEVEL=debug`; `SHARD_CONFIG` names the config file
/// - the config file (`--config FILE`): one `key = value` per line, keys the flags' names, `#` starts a
///   comment, quotes around a value are optional:
///
///       # shard.conf
///       model = models/SmolLM2-135M-Instruct.Q4_1.gguf
///       shards = 2
///       port = 9000
///       log-level = info
struct ServeSettings {
    static let keys: Set<String> = [
        "model", "shards", "host", "port", "backend", "split", "kv-memory", "kv-type", "max-sequences", "prefill-chunk",
        "ctx", "threads", "devices", "workers", "in-process", "cluster", "log-level", "max-queue", "max-body-bytes", "model-name",
    ]

    /// Values given as flags, by key.
    var flags: [String: String]
    var environment: [String: String]
    var file: [String: String] = [:]
    var fileName = ""

    init(flags: [String: String], environment: [String: String] = ServeSettings.processEnvironment()) throws {
        self.flags = flags
        self.environment = environment
        if let path = flags["config"] ?? environment["SHARD_CONFIG"] {
            fileName = path
            file = try Self.parseFile(path)
        }
    }

    static func envName(_ key: String) -> String { "SHARD_" + key.uppercased().replacingDashes() }

    /// The winning value of `key` and where it came from (for error messages).
    func raw(_ key: String) -> (value: String, source: String)? {
        if let v = flags[key] { return (v, "--\(key)") }
        if let v = environment[Self.envName(key)] { return (v, Self.envName(key)) }
        if let v = file[key] { return (v, "\(key) in \(fileName)") }
        return nil
    }

    func string(_ key: String) -> String? { raw(key)?.value }

    func int(_ key: String, min: Int) throws -> Int? {
        guard let (v, source) = raw(key) else { return nil }
        guard let n = Int(v.trimmed()), n >= min else { throw ValidationError("\(source) must be an integer ≥ \(min) (got '\(v)')") }
        return n
    }

    func bool(_ key: String) throws -> Bool {
        guard let (v, source) = raw(key) else { return false }
        switch v.trimmed().lowercased() {
        case "1", "true", "yes", "on": return true
        case "0", "false", "no", "off", "": return false
        default: throw ValidationError("\(source) must be true or false (got '\(v)')")
        }
    }

    static func parseFile(_ path: String) throws -> [String: String] {
        guard let f = fopen(path, "r") else { throw ValidationError("cannot read the config file \(path)") }
        defer { fclose(f) }
        var out: [String: String] = [:]
        var line: UnsafeMutablePointer<CChar>? = nil
        var cap = 0
        defer { free(line) }
        var number = 0
        var total = 0
        while getline(&line, &cap, f) > 0 {
            number += 1
            let text = String(cString: line!)
            total += text.utf8.count
            guard total < 1 << 20 else { throw ValidationError("\(path) is too large for a config file") }
            let content = text.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false).first.map(String.init)?.trimmed() ?? ""
            if content.isEmpty { continue }
            guard let eq = content.firstIndex(of: "=") else {
                throw ValidationError("\(path):\(number): expected key = value")
            }
            let key = String(content[..<eq]).trimmed()
            var value = String(content[content.index(after: eq)...]).trimmed()
            if value.count >= 2, let q = value.first, q == "\"" || q == "'", value.last == q { value = String(value.dropFirst().dropLast()) }
            guard keys.contains(key) else {
                throw ValidationError("\(path):\(number): unknown setting '\(key)' (known: \(keys.sorted().joined(separator: ", ")))")
            }
            out[key] = value
        }
        return out
    }

    static func processEnvironment() -> [String: String] {
        var out: [String: String] = [:]
        var p = environ
        while let entry = p.pointee {
            let s = String(cString: entry)
            if s.hasPrefix("SHARD_"), let eq = s.firstIndex(of: "=") {
                out[String(s[..<eq])] = String(s[s.index(after: eq)...])
            }
            p += 1
        }
        return out
    }
}

extension String {
    func trimmed() -> String {
        let u = unicodeScalars
        guard let a = u.firstIndex(where: { !$0.properties.isWhitespace }) else { return "" }
        let b = u.lastIndex(where: { !$0.properties.isWhitespace })!
        return String(u[a...b])
    }
    func replacingDashes() -> String { String(map { $0 == "-" ? "_" : $0 }) }
}
