#if canImport(Glibc)
import Glibc
#endif

/// Endpoint conventions of a shard worker: `--listen` names its control endpoint; its activation
/// frames arrive on the data endpoint next to it (tcp port + 1, or the ipc path + ".data").
public enum Endpoints {
    public static func data(forControl control: String) throws(WireError) -> String {
        if control.hasPrefix("ipc://") { return control + ".data" }
        guard control.hasPrefix("tcp://"), let colon = control.lastIndex(of: ":"),
              let port = Int(control[control.index(after: colon)...]), port > 0, port < 65535 else {
            throw .malformed("endpoint \(control) is not ipc://PATH or tcp://HOST:PORT with a port below 65535")
        }
        return String(control[...colon]) + String(port + 1)
    }

    /// The host part of a tcp:// endpoint ("h1" of tcp://h1:5600), nil for ipc://.
    public static func host(of endpoint: String) -> String? {
        guard endpoint.hasPrefix("tcp://"), let colon = endpoint.lastIndex(of: ":") else { return nil }
        return String(endpoint[endpoint.index(endpoint.startIndex, offsetBy: 6)..<colon])
    }

    /// This machine's IPv4 address on the route toward `host` (a UDP socket's connect picks the route;
    /// nothing is sent). Used to tell remote workers where to push results.
    public static func localAddress(toward host: String) -> String? {
        var hints = addrinfo()
        hints.ai_family = AF_INET
        hints.ai_socktype = Int32(SOCK_DGRAM.rawValue)
        var result: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(host, "9", &hints, &result) == 0, let info = result else { return nil }
        defer { freeaddrinfo(result) }
        let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        guard connect(fd, info.pointee.ai_addr, info.pointee.ai_addrlen) == 0 else { return nil }
        var local = sockaddr_in()
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let ok = withUnsafeMutablePointer(to: &local) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        guard ok == 0 else { return nil }
        var buffer = [CChar](repeating: 0, count: Int(INET_ADDRSTRLEN))
        var address = local.sin_addr
        guard inet_ntop(AF_INET, &address, &buffer, socklen_t(buffer.count)) != nil else { return nil }
        return String(cString: buffer)
    }
}
