#if canImport(Glibc)
import Glibc
#endif

/// A datagram socket standing in for systemd's notification socket (`NOTIFY_SOCKET`).
public final class NotifySocket {
    public let path: String
    let fd: CInt

    /// Binds `path` (default: a fresh name under /tmp). Each receive waits at most `receiveBound` seconds, so a
    /// test that expects a message that never comes fails instead of hanging.
    public init(path: String? = nil, receiveBound seconds: Int = 10) throws {
        self.path = path ?? "/tmp/tg-notify-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).sock"
        fd = socket(AF_UNIX, CInt(SOCK_DGRAM.rawValue) | CInt(SOCK_CLOEXEC.rawValue), 0)
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(self.path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: address.sun_path) else { throw TestSupportError("socket path too long: \(self.path)") }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: bytes)
            raw[bytes.count] = 0
        }
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard result == 0 else { throw TestSupportError("cannot bind \(self.path): errno \(errno)") }
        var timeout = timeval(tv_sec: seconds, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    }

    /// The next datagram, or nil after the receive bound.
    public func receive() -> String? {
        var buffer = [UInt8](repeating: 0, count: 4096)
        let count = recv(fd, &buffer, buffer.count, 0)
        guard count > 0 else { return nil }
        return String(decoding: buffer.prefix(count), as: UTF8.self)
    }

    /// Receives datagrams until one matches, or nil after the receive bound.
    public func receive(until matches: (String) -> Bool) -> String? {
        while let message = receive() {
            if matches(message) { return message }
        }
        return nil
    }

    deinit {
        close(fd)
        unlink(path)
    }
}

/// A fresh directory under /tmp with a short path (a socket path must fit in 107 bytes).
public func makeTemporaryDirectory() throws -> String {
    var template = Array("/tmp/tg-XXXXXX".utf8CString)
    guard let result = mkdtemp(&template) else { throw TestSupportError("mkdtemp failed: errno \(errno)") }
    return String(cString: result)
}

public struct TestSupportError: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}
