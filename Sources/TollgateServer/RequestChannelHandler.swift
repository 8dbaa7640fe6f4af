import Logging
import NIOCore
import TollgateCore
import TollgateModel
import TollgateProtocol

#if canImport(Glibc)
import Glibc
#endif

/// Serves one connection: the I/O side of `ConnectionStateMachine`, which holds the protocol logic. It admits the
/// connection (the registry's count), reads the peer's credentials, hands every event to the machine (with the event
/// loop's time) and performs the actions it returns: write and flush, pause or resume reading, arm or cancel the
/// frame and idle timers, close, release the connection's leases.
///
/// It takes whole inbound buffers rather than one pipeline message per frame (no `ByteToMessageHandler` in front):
/// the machine cuts every complete frame of a read itself. Inbound only: outbound operations (the channel's reads,
/// other writers' writes) do not pass through it.
///
/// Confined to its channel's event loop: the durable answers and backlog wake-ups that come from other threads hop
/// back to it (`ChannelConnectionServices`), and timer and future callbacks run there (`assumeIsolated`).
final class RequestChannelHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    let core: ApplicationCore
    let registry: ConnectionRegistry
    private let logger: Logger
    private var machine: ConnectionStateMachine
    private var counted = false
    private var frameTimer: Scheduled<Void>?
    private var idleTimer: Scheduled<Void>?
    /// Paces a WATCH stream while one is open on the connection.
    private var watchTimer: Scheduled<Void>?

    init(core: ApplicationCore, role: SocketRole, registry: ConnectionRegistry, logger: Logger, maxFrameSize: Int) {
        self.core = core
        self.registry = registry
        self.logger = logger
        self.machine = ConnectionStateMachine(role: role, limits: registry.limits, logger: logger, maxFrameSize: maxFrameSize)
    }

    func handlerAdded(context: ChannelHandlerContext) {
        machine.useAllocator(context.channel.allocator)
    }

    func channelActive(context: ChannelHandlerContext) {
        guard registry.open(role: machine.role) else {
            logger.warning("connection refused: too many connections", metadata: ["tollgate.socket": "\(machine.role.name)", "tollgate.limit": "\(registry.limits.maxConnections)"])
            var refusal = context.channel.allocator.buffer(capacity: 64)
            refusal.writeResponse(.error(.unavailable, "too many connections (the limit is \(registry.limits.maxConnections)); retry later"), opcode: 0, requestID: 0)
            context.writeAndFlush(wrapOutboundOut(refusal)).assumeIsolated().whenComplete { _ in context.close(promise: nil) }
            return
        }
        counted = true
        readPeerCredentials(context: context)
        perform(machine.activate(now: context.eventLoop.now), context: context)
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        if counted {
            registry.close(role: machine.role)
            counted = false
        }
        frameTimer?.cancel()
        frameTimer = nil
        idleTimer?.cancel()
        idleTimer = nil
        watchTimer?.cancel()
        watchTimer = nil
        let leases = machine.deactivate()
        if !leases.isEmpty { core.releaseLeases(leases) }
        context.fireChannelInactive()
    }

    /// `SO_PEERCRED` and `SO_PEERGROUPS`: the kernel's word on who connected, read once per connection. (Reading
    /// /proc/<pid>/status instead would fail under `ProtectProc=invisible` and race with pid reuse.)
    private func readPeerCredentials(context: ChannelHandlerContext) {
        guard let provider = context.channel as? SocketOptionProvider else { return }
        let credentials: EventLoopFuture<KernelPeerCredentials> = provider.unsafeGetSocketOption(level: SocketOptionLevel(SOL_SOCKET), name: SocketOptionName(SO_PEERCRED))
        let groups: EventLoopFuture<KernelPeerGroups> = provider.unsafeGetSocketOption(level: SocketOptionLevel(SOL_SOCKET), name: KernelPeerGroups.option)
        credentials.assumeIsolated().whenSuccess { credentials in
            self.machine.peerIdentified(PeerCredentials(pid: credentials.pid, uid: credentials.uid, gid: credentials.gid))
            // More than 64 groups (ERANGE) leaves the primary group only: allow-lists may then refuse, never admit wrongly.
            groups.assumeIsolated().whenSuccess { groups in self.machine.peerGroupsRead(groups.list) }
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var incoming = unwrapInboundIn(data)
        let actions = machine.read(&incoming, now: context.eventLoop.now, services: ChannelConnectionServices(handler: self, context: context))
        perform(actions, context: context)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        perform(machine.readComplete(), context: context)
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        perform(machine.writabilityChanged(isWritable: context.channel.isWritable), context: context)
        context.fireChannelWritabilityChanged()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        logger.debug("connection error", metadata: ["tollgate.error": "\(error)"])
        context.close(promise: nil)
    }

    /// A durable request's answer, back on the event loop.
    fileprivate func durableAnswered(context: ChannelHandlerContext, _ ticket: DurableTicket, _ response: Response) {
        let loop = context.eventLoop
        let actions = machine.durableAnswered(ticket, response, now: { loop.now }, services: ChannelConnectionServices(handler: self, context: context))
        perform(actions, context: context)
    }

    /// Room in the daemon-wide backlog, back on the event loop.
    fileprivate func backlogHasRoom(context: ChannelHandlerContext) {
        perform(machine.backlogHasRoom(now: context.eventLoop.now, services: ChannelConnectionServices(handler: self, context: context)), context: context)
    }

    /// Carries out what the machine decided. Writing may call back into the handler (writability changes, or the
    /// channel closing); the machine is not being mutated then, and the nested event's actions are performed first.
    @inline(__always)
    private func perform(_ actions: ConnectionActions, context: ChannelHandlerContext) {
        // Most events only write (or do nothing): reading and the timers change rarely.
        if !actions.onlyOutput { performChanges(actions, context: context) }
        if actions.flush {
            if actions.close {
                context.writeAndFlush(wrapOutboundOut(machine.output)).assumeIsolated().whenComplete { _ in context.close(promise: nil) }
            } else {
                context.writeAndFlush(wrapOutboundOut(machine.output), promise: nil)
            }
            machine.outputWritten()
        } else if actions.close {
            context.close(promise: nil)
        }
    }

    /// The next pacing tick of the WATCH stream; each tick arms the next while the stream is open.
    private func armWatchTimer(context: ChannelHandlerContext) {
        watchTimer = context.eventLoop.assumeIsolated().scheduleTask(in: ConnectionStateMachine.watchInterval) {
            self.watchTimer = nil
            self.perform(self.machine.watchTick(now: context.eventLoop.now), context: context)
            if self.machine.isWatching, self.watchTimer == nil { self.armWatchTimer(context: context) }
        }
    }

    /// Pauses or resumes reading, and arms or cancels the timers.
    private func performChanges(_ actions: ConnectionActions, context: ChannelHandlerContext) {
        switch actions.reading {
        case .unchanged: break
        case .pause: context.channel.setOption(ChannelOptions.autoRead, value: false).whenComplete { _ in }
        case .resume:
            context.channel.setOption(ChannelOptions.autoRead, value: true).whenComplete { _ in }
            context.read()
        }
        switch actions.frameTimer {
        case .unchanged: break
        case .cancel:
            frameTimer?.cancel()
            frameTimer = nil
        case .arm(let deadline):
            frameTimer?.cancel()
            frameTimer = context.eventLoop.assumeIsolated().scheduleTask(deadline: deadline) {
                self.perform(self.machine.frameTimerFired(), context: context)
            }
        }
        switch actions.watch {
        case .unchanged: break
        case .stop:
            watchTimer?.cancel()
            watchTimer = nil
        case .start:
            watchTimer?.cancel()
            armWatchTimer(context: context)
        }
        switch actions.idleTimer {
        case .unchanged: break
        case .cancel:
            idleTimer?.cancel()
            idleTimer = nil
        case .arm(let deadline):
            idleTimer?.cancel()
            idleTimer = context.eventLoop.assumeIsolated().scheduleTask(deadline: deadline) {
                self.perform(self.machine.idleTimerFired(now: context.eventLoop.now), context: context)
            }
        }
    }
}

/// `ConnectionServices` over the live core and registry (the shared part in `LiveConnectionServices`), for one event
/// of one connection. Built per event from references the handler holds for the event's duration, and routes
/// completions from other threads (the journal's writer, another connection leaving the backlog) back to the
/// connection's event loop. It takes no references (see `LiveConnectionServices` on the core's).
private struct ChannelConnectionServices: LiveConnectionServices {
    unowned(unsafe) let handler: RequestChannelHandler
    unowned(unsafe) let context: ChannelHandlerContext
    let core: Unmanaged<ApplicationCore>

    init(handler: RequestChannelHandler, context: ChannelHandlerContext) {
        self.handler = handler
        self.context = context
        self.core = Unmanaged.passUnretained(handler.core)
    }

    var registry: ConnectionRegistry { handler.registry }

    func submitDurable(_ request: Request, from caller: Caller, ticket: DurableTicket, leavesBacklog: Bool) -> Response? {
        let loop = context.eventLoop
        let boundContext = NIOLoopBound(context, eventLoop: loop)
        let bound = NIOLoopBound(handler, eventLoop: loop)
        let backlog = handler.registry.backlog
        let immediate = core._withUnsafeGuaranteedRef { core in
            core.handle(request, from: caller) { response in
                if leavesBacklog { backlog.leave() }
                loop.execute { bound.value.durableAnswered(context: boundContext.value, ticket, response) }
            }
        }
        if immediate != nil, leavesBacklog { backlog.leave() }
        return immediate
    }

    func notifyWhenBacklogHasRoom() -> Bool {
        let loop = context.eventLoop
        let boundContext = NIOLoopBound(context, eventLoop: loop)
        let bound = NIOLoopBound(handler, eventLoop: loop)
        return handler.registry.backlog.notifyWhenRoom { loop.execute { bound.value.backlogHasRoom(context: boundContext.value) } }
    }
}

/// The layout of Linux's `struct ucred` (pid_t, uid_t, gid_t), which Swift's Glibc module does not export
/// (it needs `_GNU_SOURCE`).
struct KernelPeerCredentials: Sendable {
    var pid: Int32 = 0
    var uid: UInt32 = 0
    var gid: UInt32 = 0
}

/// The peer's supplementary groups (`SO_PEERGROUPS`, Linux 4.13): up to 64 `gid_t`. Slots the kernel did not fill
/// keep the invalid gid (uid_t)-1.
struct KernelPeerGroups: Sendable {
    static let option = SocketOptionName(59)  // SO_PEERGROUPS; not exported by Swift's Glibc module
    var gids = SIMD64<UInt32>(repeating: UInt32.max)

    var list: [UInt32] { (0..<64).map { gids[$0] }.filter { $0 != UInt32.max } }
}
