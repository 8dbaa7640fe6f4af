import Logging
import NIOCore
import NIOPosix
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

/// The SwiftNIO front of the daemon: the api and admin listeners over AF_UNIX, each connection served by a
/// `RequestChannelHandler` on one of the event loops.
public final class TollgateServer: @unchecked Sendable {
    public struct Listeners: Sendable {
        public var api: ListenerSource
        public var admin: ListenerSource
        public init(api: ListenerSource, admin: ListenerSource) {
            self.api = api
            self.admin = admin
        }
    }

    let core: TollgateCore
    let group: EventLoopGroup
    let logger: Logger
    private var listeners: [Channel] = []
    private var flushTask: RepeatedTask?

    public init(core: TollgateCore, group: EventLoopGroup, logger: Logger) {
        self.core = core
        self.group = group
        self.logger = logger
    }

    /// Binds (or adopts) both listeners and starts the periodic usage flush. When this returns, both sockets
    /// accept connections.
    public func start(_ listeners: Listeners) async throws {
        let api = try await listen(listeners.api, role: .api)
        let admin = try await listen(listeners.admin, role: .admin)
        self.listeners = [api, admin]
        let core = self.core
        flushTask = group.next().scheduleRepeatedTask(initialDelay: core.options.usageFlushInterval, delay: core.options.usageFlushInterval) { _ in
            core.flushPendingUsage()
            core.maybeSnapshot()
        }
    }

    private func listen(_ source: ListenerSource, role: SocketRole) async throws -> Channel {
        let core = self.core
        let logger = self.logger
        let maxFrame = core.options.maxFrameSize
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(ChannelOptions.backlog, value: 1024)
            .childChannelOption(ChannelOptions.maxMessagesPerRead, value: 16)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(
                        ByteToMessageHandler(FrameByteDecoder(decoder: FrameDecoder(maxFrameSize: maxFrame)), maximumBufferSize: maxFrame + 4 + 65536))
                    try channel.pipeline.syncOperations.addHandler(RequestChannelHandler(core: core, role: role, logger: logger))
                }
            }
        switch source {
        case .path(let path, let mode):
            let channel = try await bootstrap.bind(unixDomainSocketPath: path, cleanupExistingSocketFile: true).get()
            guard chmod(path, mode) == 0 else {
                let code = errno
                try? await channel.close()
                throw ServerError("cannot set the mode of \(path): \(String(cString: strerror(code)))")
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
        flushTask?.cancel()
        flushTask = nil
        for channel in listeners { try? await channel.close() }
        listeners = []
    }
}

public struct ServerError: Error, CustomStringConvertible {
    public var description: String
    init(_ description: String) { self.description = description }
}
