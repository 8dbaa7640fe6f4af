import CSystemd

#if canImport(Glibc)
import Glibc
#endif

/// Listening sockets passed by systemd socket activation (`LISTEN_FDS`, `LISTEN_FDNAMES`), by name.
///
/// When two socket units feed one service, the descriptors arrive ordered by unit name, not by intent: they are
/// looked up by their `FileDescriptorName=`, never by position.
public struct ListenDescriptors: Sendable, Equatable {
    public var byName: [String: [CInt]]

    public init(byName: [String: [CInt]]) { self.byName = byName }

    /// Takes the descriptors passed to this process, or returns nil when it was not socket-activated. The
    /// environment variables are unset so that children do not inherit them.
    public static func takeFromEnvironment() -> ListenDescriptors? {
        var names: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?
        let count = sd_listen_fds_with_names(1, &names)
        guard count > 0 else { return nil }
        var byName: [String: [CInt]] = [:]
        for index in 0..<Int(count) {
            let name = names?[index].map { String(cString: $0) } ?? "unknown"
            byName[name, default: []].append(SD_LISTEN_FDS_START + CInt(index))
            free(names?[index])
        }
        free(names)
        return ListenDescriptors(byName: byName)
    }

    /// The single descriptor named `name`, or an error that says what was passed instead.
    public func descriptor(named name: String) throws -> CInt {
        guard let fds = byName[name], fds.count == 1 else {
            let passed = byName.map { "\($0.key)×\($0.value.count)" }.sorted().joined(separator: ", ")
            throw SystemdError("socket activation passed [\(passed)]; expected exactly one socket named '\(name)' (FileDescriptorName=\(name))")
        }
        guard sd_is_socket_unix(fds[0], SOCK_STREAM_VALUE, 1, nil, 0) > 0 else {
            throw SystemdError("the socket named '\(name)' is not a listening AF_UNIX stream socket")
        }
        return fds[0]
    }
}

extension ListenDescriptors {
    /// The descriptor named `name` when one was passed (an optional listener such as `http`), nil when none was.
    /// `unix: false` accepts a listening TCP socket (`http-tcp`) instead of an AF_UNIX one.
    public func optionalDescriptor(named name: String, unix: Bool = true) throws -> CInt? {
        guard byName[name] != nil else { return nil }
        if unix { return try descriptor(named: name) }
        guard let fds = byName[name], fds.count == 1 else {
            throw SystemdError("socket activation passed more than one socket named '\(name)'; expected one (FileDescriptorName=\(name))")
        }
        guard sd_is_socket(fds[0], AF_UNSPEC, SOCK_STREAM_VALUE, 1) > 0 else {
            throw SystemdError("the socket named '\(name)' is not a listening stream socket")
        }
        return fds[0]
    }
}

let SOCK_STREAM_VALUE = CInt(SOCK_STREAM.rawValue)

public struct SystemdError: Error, CustomStringConvertible, Equatable {
    public var description: String
    public init(_ description: String) { self.description = description }
}
