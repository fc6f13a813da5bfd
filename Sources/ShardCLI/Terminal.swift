#if canImport(Glibc)
import Glibc
#endif

/// Console output helpers: unbuffered writes, one-line errors, a progress bar.
public enum Terminal {
    public static var stdoutIsTerminal: Bool { isatty(1) == 1 }

    public static func write(_ s: String) {
        var s = s
        s.withUTF8 { buf in
            var off = 0
            while off < buf.count {
                let n = Glibc.write(1, buf.baseAddress! + off, buf.count - off)
                if n <= 0 { if errno == EINTR { continue }; return }
                off += n
            }
        }
    }

    public static func error(_ s: String) {
        var line = s + "\n"
        line.withUTF8 { _ = Glibc.write(2, $0.baseAddress!, $0.count) }
    }

    /// A one-line bar on stderr, drawn only when stdout is a terminal.
    public final class ProgressBar {
        let label: String
        let enabled: Bool
        var lastPercent = -1
        public init(_ label: String) {
            self.label = label
            enabled = Terminal.stdoutIsTerminal && isatty(2) == 1
        }
        public func update(_ done: Int, _ total: Int) {
            guard enabled, total > 0 else { return }
            let percent = done * 100 / total
            guard percent != lastPercent else { return }
            lastPercent = percent
            let width = 30, filled = width * done / total
            let bar = String(repeating: "█", count: filled) + String(repeating: "░", count: width - filled)
            Terminal.errorRaw("\r\(label) \(bar) \(percent)%")
            if done >= total { Terminal.errorRaw("\r\u{1B}[2K") }
        }
    }

    public enum Style: String {
        case bold = "1", red = "31", green = "32", yellow = "33", dim = "2"
    }

    /// `s` wrapped in an ANSI style (only for output that goes to a terminal).
    public static func style(_ s: String, _ style: Style) -> String { "\u{1B}[\(style.rawValue)m\(s)\u{1B}[0m" }

    static func errorRaw(_ s: String) {
        var s = s
        s.withUTF8 { _ = Glibc.write(2, $0.baseAddress!, $0.count) }
    }
}
