/// Minimal JSON output for the CLI's machine-readable lines (no Foundation in the executables).
public enum JSON {
    public static func string(_ s: String) -> String {
        var out = "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where u.value < 0x20:
                let hex = String(u.value, radix: 16)
                out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            default: out.unicodeScalars.append(u)
            }
        }
        return out + "\""
    }

    public static func number(_ x: Double) -> String {
        x.isFinite ? "\(x)" : "null"
    }
    public static func number(_ x: Float) -> String { x.isFinite ? "\(x)" : "null" }

    /// An object from already-encoded values, keys in the given order.
    public static func object(_ pairs: [(String, String)]) -> String {
        "{" + pairs.map { "\(string($0.0)):\($0.1)" }.joined(separator: ",") + "}"
    }
}

/// Fixed-point formatting ("%.4f") without Foundation.
public func fixed(_ x: Double, _ decimals: Int) -> String {
    guard x.isFinite else { return "\(x)" }
    var scale = 1.0
    for _ in 0..<decimals { scale *= 10 }
    let negative = x < 0
    let scaled = (abs(x) * scale).rounded()
    let whole = Int(scaled / scale)
    let frac = Int(scaled - Double(whole) * scale)
    var fracText = String(frac)
    fracText = String(repeating: "0", count: max(0, decimals - fracText.count)) + fracText
    return (negative ? "-" : "") + String(whole) + (decimals > 0 ? "." + fracText : "")
}
