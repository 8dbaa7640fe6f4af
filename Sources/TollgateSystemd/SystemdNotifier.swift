import CSystemd

#if canImport(Glibc)
import Glibc
#endif

/// Tells the service manager about the daemon's state (`sd_notify(3)`): READY, STATUS, RELOADING, STOPPING,
/// WATCHDOG. Without `NOTIFY_SOCKET` (not run by systemd) every call does nothing, so callers need no branches.
public struct SystemdNotifier: Sendable {
    /// Whether a service manager listens (`NOTIFY_SOCKET` is set).
    public let isActive: Bool

    public init(environment: [String: String] = SystemdEnvironment.current) {
        isActive = environment["NOTIFY_SOCKET"].map { !$0.isEmpty } ?? false
    }

    /// Sends `assignments` (`KEY=value` lines) in one datagram. Returns false when nothing listens or it failed.
    @discardableResult
    public func notify(_ assignments: [String]) -> Bool {
        guard isActive else { return false }
        // Newlines inside a value would start a new assignment.
        let message = assignments.map { $0.replacingNewlines() }.joined(separator: "\n")
        return sd_notify(0, message) > 0
    }

    /// The journal is replayed and the sockets accept.
    public func ready(status: String) { notify(["READY=1", "STATUS=\(status)"]) }

    public func status(_ status: String) { notify(["STATUS=\(status)"]) }

    /// A reload starts now. systemd 253+ needs the monotonic timestamp; 252 ignores it harmlessly.
    public func reloading(status: String) {
        notify(["RELOADING=1", "MONOTONIC_USEC=\(Self.monotonicMicroseconds())", "STATUS=\(status)"])
    }

    public func stopping(status: String) { notify(["STOPPING=1", "STATUS=\(status)"]) }

    public func watchdog() { notify(["WATCHDOG=1"]) }

    static func monotonicMicroseconds() -> UInt64 {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        return UInt64(now.tv_sec) * 1_000_000 + UInt64(now.tv_nsec) / 1000
    }

    /// The watchdog interval systemd expects pings within (`WATCHDOG_USEC`, for this process), or nil.
    public static func watchdogInterval() -> Duration? {
        var usec: UInt64 = 0
        guard sd_watchdog_enabled(0, &usec) > 0, usec > 0 else { return nil }
        return .microseconds(Int64(usec))
    }
}

extension String {
    fileprivate func replacingNewlines() -> String {
        String(unicodeScalars.map { $0 == "\n" ? " " : Character($0) })
    }
}

/// The process environment as a dictionary (Foundation-free).
public enum SystemdEnvironment {
    public static var current: [String: String] {
        var result: [String: String] = [:]
        var pointer = environ
        while let entry = pointer.pointee {
            let string = String(cString: entry)
            if let eq = string.firstIndex(of: "=") { result[String(string[..<eq])] = String(string[string.index(after: eq)...]) }
            pointer += 1
        }
        return result
    }
}
