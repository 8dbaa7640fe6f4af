import CEpoll
import Logging
import Synchronization
import TollgateCore

#if canImport(Glibc)
import Glibc
#endif

/// Which I/O serves the api socket: SwiftNIO's channel pipeline, or the purpose-built epoll loops
/// (`EpollAPIListener`). The admin socket and the HTTP listener are always on NIO.
public enum APISocketIO: Sendable, Hashable {
    case nio
    /// `threads` loops (0: `EpollAPIListener.defaultLoopCount`, half the CPUs the process may run on).
    case epoll(threads: Int)
}

/// The api socket on `EpollLoop`s: binds (or adopts, under socket activation) the listening socket, starts the
/// loops that accept from it and serve their connections, stops accepting, and closes what is left at shutdown.
/// The listening socket is shared: every loop registers it (`EPOLLEXCLUSIVE`) and accepts for itself, so that no
/// connection is handed between threads.
final class EpollAPIListener: Sendable {
    private let listener: CInt
    private let loops: [EpollLoop]
    private let closed = Atomic<Bool>(false)

    init(source: ListenerSource, threads: Int, core: ApplicationCore, registry: ConnectionRegistry, logger: Logger) throws {
        listener = try Self.listeningSocket(source, logger: logger)
        var loops: [EpollLoop] = []
        do {
            for _ in 0..<(threads > 0 ? threads : Self.defaultLoopCount(allowedCPUs: Int(tollgate_allowed_cpus()))) {
                loops.append(try EpollLoop(core: core, registry: registry, logger: logger, maxFrameSize: core.options.maxFrameSize, listener: listener))
            }
            for loop in loops { try loop.startThread() }
        } catch {
            Glibc.close(listener)
            throw error
        }
        self.loops = loops
    }

    /// Loops when the configuration leaves it to the daemon: half the CPUs it may run on, at least one. A sidecar
    /// shares its host with the services that call it, and every request they send costs them CPU too: on a 2-CPU
    /// host one loop answered 8 connections 1.3–1.5× faster than two, with half the p99 (Benchmarks/RESULTS.md,
    /// 2026-12-03), because two loops and the callers contend for the same two cores.
    static func defaultLoopCount(allowedCPUs: Int) -> Int {
        max(1, allowedCPUs / 2)
    }

    /// A non-blocking listening socket: bound at `path` (an old socket file there is replaced; the daemon has
    /// checked nothing serves it) with the file mode set, or the descriptor systemd handed over.
    private static func listeningSocket(_ source: ListenerSource, logger: Logger) throws -> CInt {
        switch source {
        case .descriptor(let fd):
            let flags = fcntl(fd, F_GETFL)
            guard flags >= 0, fcntl(fd, F_SETFL, flags | O_NONBLOCK) == 0 else { throw EpollError("fcntl", errno) }
            logger.info("listening on an inherited socket", metadata: ["tollgate.socket": "api", "tollgate.fd": "\(fd)", "tollgate.io": "epoll"])
            return fd
        case .path(let path, let mode):
            let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            guard fd >= 0 else { throw EpollError("socket", errno) }
            var address = sockaddr_un()
            address.sun_family = sa_family_t(AF_UNIX)
            let bytes = Array(path.utf8)
            guard bytes.count < MemoryLayout.size(ofValue: address.sun_path) else {
                Glibc.close(fd)
                throw EpollError("bind", ENAMETOOLONG)
            }
            withUnsafeMutableBytes(of: &address.sun_path) { raw in
                raw.copyBytes(from: bytes)
                raw[bytes.count] = 0
            }
            var status = stat()
            if lstat(path, &status) == 0, status.st_mode & S_IFMT == S_IFSOCK { unlink(path) }
            let bound = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
            }
            guard bound == 0 else {
                let code = errno
                Glibc.close(fd)
                throw EpollError("bind \(path)", code)
            }
            guard chmod(path, mode) == 0 else {
                let code = errno
                Glibc.close(fd)
                throw ServerError(.socketMode, "cannot set the mode of \(path): \(String(cString: strerror(code)))")
            }
            guard listen(fd, 1024) == 0 else {
                let code = errno
                Glibc.close(fd)
                throw EpollError("listen", code)
            }
            logger.info("listening", metadata: ["tollgate.socket": "api", "tollgate.path": "\(path)", "tollgate.io": "epoll"])
            return fd
        }
    }

    /// Stops accepting: every loop lets go of the listening socket (on its own thread), then it is closed.
    /// Connections already open keep being served.
    func stopAccepting() async {
        guard !closed.exchange(true, ordering: .relaxed) else { return }
        for loop in loops { await loop.run { $0.stopListening() } }
        Glibc.close(listener)
    }

    /// Whether every loop ran the probe sent at the last call (the watchdog's; see `EpollLoop.answeredLastProbe`).
    func loopsAnswered() -> Bool {
        loops.map { $0.answeredLastProbe() }.allSatisfy { $0 }
    }

    /// Closes every connection (after the answers each has gathered are written) and stops the loops.
    func shutdown() async {
        await stopAccepting()
        for loop in loops { await loop.stop() }
    }
}
