import CMemory
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import TollgateCore
import TollgateProtocol

#if canImport(Glibc)
import Glibc
#endif

/// Where a listening socket comes from: a path to bind, or a descriptor handed over already listening
/// (systemd socket activation).
public enum ListenerSource: Sendable, Hashable {
    case path(String, mode: mode_t)
    case descriptor(CInt)
}

/// The binary protocol's front of the daemon: the api and admin listeners over AF_UNIX. The admin socket's
/// connections are served by a `RequestChannelHandler` on one of the NIO event loops; the api socket's too, or by
/// the epoll loops of `EpollAPIListener` (`APISocketIO`). Both drive the same `ConnectionStateMachine`.
///
/// Sendable: its configuration is immutable, and what `start` sets up and `stopAccepting` tears down (the listening
/// channels, the repeated tasks) is kept under a lock.
public final class TollgateServer: Sendable {
    public struct Listeners: Sendable {
        public var api: ListenerSource
        public var admin: ListenerSource
        public init(api: ListenerSource, admin: ListenerSource) {
            self.api = api
            self.admin = admin
        }
    }

    let core: ApplicationCore
    let group: EventLoopGroup
    let logger: Logger
    let registry: ConnectionRegistry
    let apiIO: APISocketIO
    private let running = NIOLockedValueBox(Running())
    /// The api socket's epoll loops, from `start` until `shutdown` (nil on NIO).
    private let epoll = NIOLockedValueBox<EpollAPIListener?>(nil)

    /// What runs between `start` and `stopAccepting`.
    private struct Running {
        var listeners: [Channel] = []
        var flushTask: RepeatedTask?
        var housekeepingTask: RepeatedTask?
    }

    public init(core: ApplicationCore, group: EventLoopGroup, access: AccessPolicy, limits: ConnectionLimits, apiIO: APISocketIO = .nio, logger: Logger) {
        self.core = core
        self.apiIO = apiIO
        self.group = group
        self.logger = logger
        self.registry = ConnectionRegistry(policy: access, limits: limits)
    }

    /// Replaces the allow-lists (reload); every connection applies them from its next request.
    public func updateAccess(_ policy: AccessPolicy) {
        registry.policy = policy
    }

    /// Open connections, refused connections, refused requests.
    public var connectionStatistics: (connections: Int, refusedConnections: UInt64, refusedRequests: UInt64) {
        registry.statistics
    }

    /// The same by socket (the metrics' `socket` label).
    public var socketStatistics: (api: SocketConnectionCounts, admin: SocketConnectionCounts) {
        registry.socketStatistics
    }

    /// The daemon-wide backlog of data-plane requests waiting for the journal: now, at most, and how often a
    /// connection had to stop reading for it.
    public var backlogStatistics: (waiting: Int, peak: Int, holds: UInt64) {
        registry.backlog.statistics
    }

    /// Binds (or adopts) both listeners and starts the periodic usage flush. When this returns, both sockets
    /// accept connections.
    public func start(_ listeners: Listeners) async throws {
        var channels: [Channel] = []
        switch apiIO {
        case .nio: channels.append(try await listen(listeners.api, role: .api))
        case .epoll(let threads):
            let listener = try EpollAPIListener(source: listeners.api, threads: threads, core: core, registry: registry, logger: logger)
            epoll.withLockedValue { $0 = listener }
        }
        do {
            channels.append(try await listen(listeners.admin, role: .admin))
        } catch {
            for channel in channels { try? await channel.close() }
            await shutdown()
            throw error
        }
        let core = self.core
        let flushTask = group.next().scheduleRepeatedTask(initialDelay: core.options.usageFlushInterval, delay: core.options.usageFlushInterval) { _ in
            core.recoverJournalIfFailed()
            core.flushPendingUsage()
            core.maybeSnapshot()
        }
        // Reservations expire to the second; the journaled sweep runs every `sweepInterval`.
        let sweepEvery = max(1, core.options.sweepInterval.nanoseconds / 1_000_000_000)
        let ticks = NIOLockedValueBox<Int64>(0)
        let trim = NIOLockedValueBox(MemoryTrimPolicy())
        let registry = self.registry
        let logger = self.logger
        let housekeepingTask = group.next().scheduleRepeatedTask(initialDelay: .seconds(1), delay: .seconds(1)) { _ in
            let tick = ticks.withLockedValue { value -> Int64 in
                value += 1
                return value
            }
            core.housekeeping(sweep: tick % sweepEvery == 0)
            let journal = core.currentJournal.statistics
            let nothingWaiting = journal.pendingRecords == 0 && registry.backlog.statistics.waiting == 0
            let due = trim.withLockedValue {
                $0.shouldTrim(
                    nowNanoseconds: Int64(NIODeadline.now().uptimeNanoseconds), journalBytesWritten: journal.bytesWritten,
                    connectionsClosed: registry.closedConnections, nothingWaiting: nothingWaiting)
            }
            if due {
                let before = HeapStatistics.current
                let released = tollgate_malloc_trim(0) == 1
                logger.debug("gave freed heap back after a burst", metadata: [
                    "tollgate.released": "\(released)", "tollgate.heap_in_use_bytes": "\(before.inUse)",
                    "tollgate.heap_kept_free_bytes": "\(before.keptFree)",
                ])
            }
        }
        running.withLockedValue { $0 = Running(listeners: channels, flushTask: flushTask, housekeepingTask: housekeepingTask) }
    }

    private func listen(_ source: ListenerSource, role: SocketRole) async throws -> Channel {
        let core = self.core
        let logger = self.logger
        let maxFrame = core.options.maxFrameSize
        let registry = self.registry
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(ChannelOptions.backlog, value: 1024)
            .childChannelOption(ChannelOptions.maxMessagesPerRead, value: 16)
            .childChannelOption(ChannelOptions.writeBufferWaterMark, value: .init(low: min(32 << 10, registry.limits.maxOutputBytes / 2), high: registry.limits.maxOutputBytes))
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    // One handler cuts the frames itself (see `RequestChannelHandler`): no ByteToMessageHandler in front.
                    try channel.pipeline.syncOperations.addHandler(
                        RequestChannelHandler(core: core, role: role, registry: registry, logger: logger, maxFrameSize: maxFrame))
                }
            }
        switch source {
        case .path(let path, let mode):
            let channel = try await bootstrap.bind(unixDomainSocketPath: path, cleanupExistingSocketFile: true).get()
            guard chmod(path, mode) == 0 else {
                let code = errno
                try? await channel.close()
                throw ServerError(.socketMode, "cannot set the mode of \(path): \(String(cString: strerror(code)))")
            }
            logger.info("listening", metadata: ["tollgate.socket": "\(role.name)", "tollgate.path": "\(path)"])
            return channel
        case .descriptor(let fd):
            let channel = try await bootstrap.withBoundSocket(fd).get()
            logger.info("listening on an inherited socket", metadata: ["tollgate.socket": "\(role.name)", "tollgate.fd": "\(fd)"])
            return channel
        }
    }

    /// Stops accepting new connections. Connections already open keep being served until the group shuts down.
    public func stopAccepting() async {
        let stopping = running.withLockedValue { running in
            defer { running = Running() }
            return running
        }
        stopping.flushTask?.cancel()
        stopping.housekeepingTask?.cancel()
        for channel in stopping.listeners { try? await channel.close() }
        let listener = epoll.withLockedValue { $0 }
        await listener?.stopAccepting()
    }

    /// For the watchdog: whether the api socket's epoll loops (if any) each ran the probe sent at the previous call.
    public func apiLoopsAnsweredLastProbe() -> Bool {
        epoll.withLockedValue { $0 }?.loopsAnswered() ?? true
    }

    /// Closes the api socket's connections when epoll loops serve them (the NIO ones close with the event loop
    /// group), after the answers they have gathered are written, and stops the loops. Call after the journal is
    /// closed, so that its last answers reach their connections.
    public func shutdown() async {
        let listener = epoll.withLockedValue { listener in
            defer { listener = nil }
            return listener
        }
        await listener?.shutdown()
    }
}

/// A listener could not be set up. Compare by `code`; the description names the path for the operator.
public struct ServerError: Error, CustomStringConvertible, Hashable {
    public enum Code: Hashable, Sendable {
        /// The socket file's mode could not be set.
        case socketMode
    }

    public var code: Code
    public var description: String
    init(_ code: Code, _ description: String) {
        self.code = code
        self.description = description
    }
}
