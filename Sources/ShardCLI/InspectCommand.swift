import ArgumentParser
import GGUF
import Model

extension Shardctl {
    struct Inspect: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Show a model's metadata, tensors, quant types and memory per layer.")
        @OptionGroup var model: ModelOption

        func run() throws {
            let f = try GGUFFile(path: model.model)
            var out = "file      \(model.model)\nformat    GGUF v\(f.version), \(f.tensors.count) tensors, \(f.metadataKeys.count) metadata keys, alignment \(f.alignment)\n\nmetadata\n"
            for key in f.metadataKeys {
                out += "  \(key) = \(Inspect.summary(f.metadata[key]!))\n"
            }
            var byType: [String: (count: Int, bytes: Int)] = [:]
            for t in f.tensors {
                let e = byType[t.type.description] ?? (0, 0)
                byType[t.type.description] = (e.count + 1, e.bytes + t.byteCount)
            }
            out += "\nquant types\n"
            for (type, e) in byType.sorted(by: { $0.value.bytes > $1.value.bytes }) {
                out += "  \(type.padding(6)) \(String(e.count).leftPadding(5)) tensors  \(Inspect.bytes(e.bytes))\n"
            }
            // Memory per layer: tensors named blk.N.*, and the rest (embedding, output head, final norm).
            var perLayer: [Int: Int] = [:]
            var other = 0
            for t in f.tensors {
                if t.name.hasPrefix("blk."), let n = Int(t.name.dropFirst(4).prefix { $0 != "." }) {
                    perLayer[n, default: 0] += t.byteCount
                } else {
                    other += t.byteCount
                }
            }
            out += "\nmemory per layer (weights)\n"
            for (layer, bytes) in perLayer.sorted(by: { $0.key < $1.key }) {
                out += "  layer \(String(layer).leftPadding(3))  \(Inspect.bytes(bytes))\n"
            }
            out += "  other       \(Inspect.bytes(other))  (embedding, output head, final norm)\n"
            out += "  total       \(Inspect.bytes(perLayer.values.reduce(other, +)))\n"
            if let config = try? ModelConfig(gguf: f) {
                let kvPerToken = config.layerCount * 2 * config.kvDim * 2
                out += "\nKV cache (f16) per token: \(Inspect.bytes(kvPerToken)); at \(config.contextLength) context: \(Inspect.bytes(kvPerToken * config.contextLength))\n"
            }
            out += "\ntensors\n"
            for t in f.tensors {
                out += "  \(t.name.padding(36)) \(t.type.description.padding(6)) \(t.shape.map(String.init).joined(separator: " × "))\n"
            }
            Terminal.write(out)
        }

        static func summary(_ v: GGUFValue) -> String {
            switch v {
            case .string(let s): return s.count > 80 ? JSON.string(String(s.prefix(80))) + "… (\(s.utf8.count) bytes)" : JSON.string(s)
            case .array(let type, let items):
                let head = items.prefix(4).map(summary).joined(separator: ", ")
                return "[\(type)] × \(items.count)" + (items.isEmpty ? "" : ": " + head + (items.count > 4 ? ", …" : ""))
            default:
                return v.doubleValue.map { v.intValue != nil ? String($0 == $0.rounded() ? String(Int($0)) : "\($0)") : "\($0)" } ?? "\(v)"
            }
        }

        static func bytes(_ n: Int) -> String {
            if n >= 1 << 30 { return fixed(Double(n) / Double(1 << 30), 2) + " GiB" }
            if n >= 1 << 20 { return fixed(Double(n) / Double(1 << 20), 2) + " MiB" }
            if n >= 1 << 10 { return fixed(Double(n) / Double(1 << 10), 1) + " KiB" }
            return "\(n) B"
        }
    }
}

extension String {
    func padding(_ width: Int) -> String { count >= width ? self : self + String(repeating: " ", count: width - count) }
    func leftPadding(_ width: Int) -> String { count >= width ? self : String(repeating: " ", count: width - count) + self }
}
