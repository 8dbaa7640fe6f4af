import Logging
import NIOCore
import TollgateCore
import TollgateModel
import TollgateProtocol

#if canImport(Glibc)
import Glibc
#endif

/// Serves one connection: cuts frames out of the bytes read, checks the peer against the socket's allow-list,
/// validates headers, dispatches requests to the core, and writes responses in request order even when a durable
/// request is answered later than a check pipelined behind it. Enforces the connection limits: idle and
/// stalled-frame timeouts, and backpressure (stop reading) when too many requests wait for the journal or too many
/// answers wait for a client that does not read.
///
/// It takes whole inbound buffers rather than one pipeline message per frame (no `ByteToMessageHandler` in front):
/// every complete frame of a read is cut out in one loop with `FrameDecoder`'s rules, and consecutive CHECKs are
/// decided together under one acquisition of the core's lock (`ApplicationCore.checkBatch`), their answers written
/// straight into the output buffer, which is flushed once per read burst. A pipelining client thus pays the
/// pipeline traversal, the lock and the clock once per read instead of once per request.
///
/// Inbound only: outbound operations (the channel's reads, other writers' writes) do not pass through it.
final class RequestChannelHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let core: ApplicationCore
    private let role: SocketRole
    private let registry: ConnectionRegistry
    private let logger: Logger
    /// The frame cutting rules (shared with the client's decoder); it also remembers a framing error that poisoned
    /// the stream, after which nothing more is served.
    private var cutter: FrameCutter

    /// Bytes of an unfinished frame, kept from one read to the next. Never more than a frame: `FrameDecoder` refuses
    /// a declared length above the limit as soon as the 4 bytes of the prefix are here.
    private var unfinished: ByteBuffer?
    private var poisoned: Bool { cutter.poisoned }
    /// Whether bytes of an unfinished frame wait in `unfinished` (the frame timer runs while they do).
    private var partial = false
    /// A durable request cut from the stream but not yet let through: this connection already has `max_pipelined`
    /// requests waiting for the journal, or the daemon-wide `DurableBacklog` is full. While one is held, nothing
    /// else is read or served on the connection (answers keep request order); the bytes after it wait in
    /// `unfinished` without the frame timer (the client is not the one stalling).
    private var held: Frame?
    /// The held request waits for room in the daemon-wide backlog (not only for this connection's own answers).
    private var waitingForBacklog = false

    /// CHECKs cut from the current read and not yet decided, with their request ids; decided together by
    /// `flushChecks` before anything else is answered, so that answers keep request order. Kept (emptied) between
    /// reads so that their storage is reused.
    private var checks: [CheckRequest] = []
    private var checkIDs: [UInt32] = []
    private var checkResults: [CheckResult] = []
    /// The scope and feature lists and meter name of the connection's last CHECK (its secret is not kept): shared
    /// by the next CHECK that repeats them.
    private var lastLists = CheckRequest(token: "")
    /// The allow-list's verdict for this peer, looked up once per read (a reload applies from the next read).
    private var permittedThisRead: Bool?

    /// Responses not yet written because an earlier response is still waiting for the journal.
    private var queue: CircularBuffer<Slot> = CircularBuffer(initialCapacity: 4)
    /// Responses gathered during one read burst, written with one flush.
    private var output: ByteBuffer
    private var wantsFlush = false
    private var closeAfterFlush = false
    private var counted = false
    private var peer: PeerCredentials?
    private var refusalLogged = false
    private var frameTimer: Scheduled<Void>?
    private var idleTimer: Scheduled<Void>?
    /// When the connection last read a frame (or opened): the idle timer, armed once, compares against it when it
    /// fires instead of being cancelled and scheduled again on every read. On the event loop's clock (`now`), so
    /// that tests on an `EmbeddedEventLoop` drive the timeouts by advancing its time, waiting for nothing.
    private var lastActivity = NIODeadline.uptimeNanoseconds(0)
    private var readingPaused = false
    /// Between `channelActive` (once the connection is admitted) and `channelInactive`.
    private var active = false
    private var pendingDurable = 0

    private struct Slot {
        var token: UInt64
        var bytes: ByteBuffer?
    }

    private var nextToken: UInt64 = 0
    /// Leases taken on this connection and not released: the connection's end releases them.
    private var leases: Set<UInt64> = []

    /// The completion of requests that never wait for the journal.
    private static let answeredAtOnce: @Sendable (Response) -> Void = { _ in }

    init(core: ApplicationCore, role: SocketRole, registry: ConnectionRegistry, logger: Logger, maxFrameSize: Int) {
        self.core = core
        self.role = role
        self.registry = registry
        self.logger = logger
        self.cutter = FrameCutter(maxFrameSize: maxFrameSize)
        self.output = ByteBufferAllocator().buffer(capacity: 0)
    }

    func handlerAdded(context: ChannelHandlerContext) {
        output = context.channel.allocator.buffer(capacity: 1024)
    }

    func channelActive(context: ChannelHandlerContext) {
        guard registry.open(role: role) else {
            logger.warning("connection refused: too many connections", metadata: ["tollgate.socket": "\(role.name)", "tollgate.limit": "\(registry.limits.maxConnections)"])
            var refusal = context.channel.allocator.buffer(capacity: 64)
            refusal.writeResponse(.error(.unavailable, "too many connections (the limit is \(registry.limits.maxConnections)); retry later"), opcode: 0, requestID: 0)
            context.writeAndFlush(wrapOutboundOut(refusal)).whenComplete { _ in context.close(promise: nil) }
            return
        }
        counted = true
        active = true
        readPeerCredentials(context: context)
        lastActivity = context.eventLoop.now
        rearmIdleTimer(context: context)
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        active = false
        if counted {
            registry.close(role: role)
            counted = false
        }
        frameTimer?.cancel()
        idleTimer?.cancel()
        // A partial frame at EOF is simply dropped: the client went away. So is a held request: never answered.
        unfinished = nil
        held = nil
        if !leases.isEmpty {
            core.releaseLeases(leases)
            leases.removeAll()
        }
        context.fireChannelInactive()
    }

    /// `SO_PEERCRED` and `SO_PEERGROUPS`: the kernel's word on who connected, read once per connection. (Reading
    /// /proc/<pid>/status instead would fail under `ProtectProc=invisible` and race with pid reuse.)
    private func readPeerCredentials(context: ChannelHandlerContext) {
        guard let provider = context.channel as? SocketOptionProvider else { return }
        let credentials: EventLoopFuture<KernelPeerCredentials> = provider.unsafeGetSocketOption(level: SocketOptionLevel(SOL_SOCKET), name: SocketOptionName(SO_PEERCRED))
        let groups: EventLoopFuture<KernelPeerGroups> = provider.unsafeGetSocketOption(level: SocketOptionLevel(SOL_SOCKET), name: KernelPeerGroups.option)
        credentials.whenSuccess { [self] credentials in
            self.peer = PeerCredentials(pid: credentials.pid, uid: credentials.uid, gid: credentials.gid)
            // More than 64 groups (ERANGE) leaves the primary group only: allow-lists may then refuse, never admit wrongly.
            groups.whenSuccess { [self] groups in self.peer?.groups = groups.list }
        }
    }

    /// Starts the frame timer when an unfinished frame starts waiting, stops it when none waits. Called with false
    /// for every frame cut (so each new unfinished frame gets the whole timeout) and with the state left at the end
    /// of each read.
    private func setPartial(_ now: Bool, context: ChannelHandlerContext) {
        guard now != partial else { return }
        partial = now
        frameTimer?.cancel()
        frameTimer = nil
        let timeout = registry.limits.frameTimeoutMilliseconds
        if now, timeout > 0 {
            frameTimer = context.eventLoop.scheduleTask(in: .milliseconds(timeout)) { [self] in
                logger.info("closing a connection that left a frame unfinished", metadata: ["tollgate.socket": "\(role.name)", "tollgate.peer": "\(peer?.description ?? "unknown")", "tollgate.timeout_ms": "\(timeout)"])
                context.close(promise: nil)
            }
        }
    }

    /// Arms the idle timer to fire `idle_timeout` after the last activity. When it fires early (there was activity
    /// since it was armed), it arms itself again for the remainder; a connection with answers still queued for the
    /// journal is not idle.
    private func rearmIdleTimer(context: ChannelHandlerContext) {
        idleTimer?.cancel()
        let timeout = registry.limits.idleTimeoutMilliseconds
        guard timeout > 0 else { return }
        idleTimer = context.eventLoop.scheduleTask(deadline: lastActivity + .milliseconds(timeout)) { [self] in
            guard queue.isEmpty, held == nil else {
                lastActivity = context.eventLoop.now
                return rearmIdleTimer(context: context)
            }
            guard context.eventLoop.now >= lastActivity + .milliseconds(timeout) else { return rearmIdleTimer(context: context) }
            logger.debug("closing an idle connection", metadata: ["tollgate.socket": "\(role.name)"])
            context.close(promise: nil)
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        // Not active: a connection over the limit, answered `unavailable` and closing; nothing it sends is served.
        guard active, !poisoned else { return }
        var incoming = unwrapInboundIn(data)
        // Reads already under way when reading paused: kept behind the held request, served when it is.
        if held != nil {
            if unfinished == nil { unfinished = incoming } else { unfinished!.writeBuffer(&incoming) }
            return
        }
        permittedThisRead = nil
        if var buffered = unfinished {
            unfinished = nil
            buffered.writeBuffer(&incoming)
            serve(&buffered, context: context)
        } else {
            serve(&incoming, context: context)
        }
    }

    /// Serves the complete frames of `buffer` and keeps the rest for the next read. Activity is a whole frame
    /// (bytes of an unfinished one are the frame timer's business); the idle timer is not rescheduled per read:
    /// it checks `lastActivity` when it fires.
    private func serve(_ buffer: inout ByteBuffer, context: ChannelHandlerContext) {
        if cutFrames(context: context, from: &buffer) { lastActivity = context.eventLoop.now }
        keepUnfinished(buffer, context: context)
    }

    /// Serves every complete frame in `buffer`, in order, leaving the bytes of an unfinished frame unread. Returns
    /// whether it found any (a frame or a framing error).
    private func cutFrames(context: ChannelHandlerContext, from buffer: inout ByteBuffer) -> Bool {
        var cut = false
        // A held request stops the loop (its `break` leaves only the switch): the rest stays unread behind it.
        while held == nil, let event = cutter.next(from: &buffer) {
            cut = true
            setPartial(false, context: context)
            switch event {
            case .frame(let frame):
                if !batchCheck(frame) {
                    flushChecks(context: context)
                    guard let admission = admit(frame, context: context) else {
                        held = frame
                        break
                    }
                    handle(context: context, frame: frame, inBacklog: admission == .inBacklog)
                }
            case .framingError(let status, let message, let close):
                flushChecks(context: context)
                logger.debug("framing error", metadata: ["tollgate.status": "\(status.name)", "tollgate.error": "\(message)"])
                emit(context: context, .error(status, message), opcode: 0, requestID: 0)
                if close { closeAfterFlush = true }
            }
        }
        flushChecks(context: context)
        if held != nil { updateReading(context: context) }
        return cut
    }

    private enum Admission { case outsideBacklog, inBacklog }

    /// Whether `frame` may be served now. A request that waits for the journal is let through only while this
    /// connection has fewer than `max_pipelined` such requests and, on the api socket, while the daemon-wide
    /// backlog has room (it then counts there: `.inBacklog`); otherwise nil, and the caller holds the frame.
    /// Anything else (reads, checks, requests refused by their header) is always let through. REVOKE does not
    /// count in the daemon-wide backlog: a revocation must never queue behind usage.
    private func admit(_ frame: Frame, context: ChannelHandlerContext) -> Admission? {
        guard Self.headerRefusal(frame.header) == nil, let opcode = Opcode(rawValue: frame.header.opcode) else { return .outsideBacklog }
        let operation = Operation.of(opcode)
        guard operation.timing == .afterJournal else { return .outsideBacklog }
        guard pendingDurable < registry.limits.maxPipelined else { return nil }  // resumed by `complete`
        guard role == .api, operation.countsInBacklog else { return .outsideBacklog }
        let backlog = registry.backlog
        while !backlog.tryEnter() {
            let loop = context.eventLoop
            let boundContext = NIOLoopBound(context, eventLoop: loop)
            let bound = NIOLoopBound(self, eventLoop: loop)
            if backlog.notifyWhenRoom({ loop.execute { bound.value.backlogHasRoom(context: boundContext.value) } }) {
                waitingForBacklog = true
                return nil
            }
        }
        return .inBacklog
    }

    private func backlogHasRoom(context: ChannelHandlerContext) {
        waitingForBacklog = false
        resumeHeld(context: context)
    }

    /// Serves the held request when it may now be let through, then what was read behind it, and reads again.
    private func resumeHeld(context: ChannelHandlerContext) {
        guard active, !poisoned, !waitingForBacklog, let frame = held else { return }
        guard let admission = admit(frame, context: context) else { return }
        held = nil
        permittedThisRead = nil
        handle(context: context, frame: frame, inBacklog: admission == .inBacklog)
        if var rest = unfinished {
            unfinished = nil
            serve(&rest, context: context)
        }
        flushIfNeeded(context: context)
        updateReading(context: context)
    }

    /// Keeps what is left of a read for the next one, and runs the frame timer while it waits.
    private func keepUnfinished(_ buffer: ByteBuffer, context: ChannelHandlerContext) {
        guard !poisoned, buffer.readableBytes > 0 else { return setPartial(false, context: context) }
        var rest = buffer
        // Drop the frames already served in front of the rest when they are most of the storage, so that a
        // connection does not pin a large read buffer for a few bytes.
        if rest.readerIndex > rest.readableBytes { rest.discardReadBytes() }
        unfinished = rest
        setPartial(held == nil, context: context)
    }

    /// Takes `frame` into the pending batch when it is a CHECK that `handle` would pass to the engine: a valid
    /// header, a body that decodes, a permitted peer, no refusal by the core. Anything else returns false and goes
    /// through `handle`, which then answers with the error (decoding the body again on that rare path).
    private func batchCheck(_ frame: Frame) -> Bool {
        let header = frame.header
        guard header.opcode == Opcode.check.rawValue, Self.headerRefusal(header) == nil,
            let request = try? decodeCheckRequest(body: frame.body, reusingListsOf: lastLists),
            ApplicationCore.admits(request)
        else { return false }
        if permittedThisRead == nil { permittedThisRead = registry.allows(peer, role: role) }
        guard permittedThisRead == true else { return false }
        lastLists.scopes = request.scopes
        lastLists.meter = request.meter
        lastLists.features = request.features
        checks.append(consume request)
        checkIDs.append(header.requestID)
        return true
    }

    /// Decides the pending CHECKs under one lock and writes their answers in order.
    private func flushChecks(context: ChannelHandlerContext) {
        guard !checks.isEmpty else { return }
        core.checkBatch(checks, caller: peer?.uid, into: &checkResults)
        // Through a buffer pointer: each result is read in place, not copied out of the array.
        checkResults.withUnsafeBufferPointer { results in
            for index in results.indices {
                let leaseID = results[index].leaseID
                if leaseID != 0 { leases.insert(leaseID) }
                if queue.isEmpty {
                    output.writeCheckResponse(results[index], requestID: checkIDs[index])
                    wantsFlush = true
                } else {
                    emit(context: context, .check(results[index]), opcode: Opcode.check.rawValue, requestID: checkIDs[index])
                }
            }
        }
        checks.removeAll(keepingCapacity: true)
        checkIDs.removeAll(keepingCapacity: true)
        checkResults.removeAll(keepingCapacity: true)
    }

    /// The answer to a request whose header this server does not serve (another protocol version, non-zero
    /// flags, status or reserved bytes, an unknown opcode), or nil: the one rule for lone requests and batches.
    private static func headerRefusal(_ header: FrameHeader) -> Response? {
        guard header.version == tollgateProtocolVersion else {
            return .error(.unsupportedVersion, "frame version \(header.version) is not served; this server speaks version \(tollgateProtocolVersion)")
        }
        guard header.flags == 0, header.status == 0, header.reserved == 0 else {
            return .error(.malformed, "a request must have flags, status and reserved bytes set to 0")
        }
        guard Opcode(rawValue: header.opcode) != nil else {
            return .error(.unknownOpcode, "unknown opcode 0x\(String(header.opcode, radix: 16))")
        }
        return nil
    }

    /// Serves one request. `inBacklog`: it entered the daemon-wide `DurableBacklog`, which it leaves when it is
    /// answered, at once or after the journal.
    private func handle(context: ChannelHandlerContext, frame: Frame, inBacklog: Bool) {
        var counted = inBacklog
        let backlog = registry.backlog
        defer { if counted { backlog.leave() } }
        let header = frame.header
        if let refusal = Self.headerRefusal(header) {
            return emit(context: context, refusal, opcode: header.opcode, requestID: header.requestID)
        }
        let opcode = Opcode(rawValue: header.opcode)!
        let request: Request
        do {
            request = try decodeRequest(opcode: opcode, body: frame.body)
        } catch {
            return emit(context: context, .error(.malformed, "\(error)"), opcode: header.opcode, requestID: header.requestID)
        }
        guard registry.permits(peer, role: role) else {
            if !refusalLogged {
                refusalLogged = true
                logger.warning("request refused: the peer is not on the socket's allow-list", metadata: [
                    "tollgate.socket": "\(role.name)", "tollgate.peer": "\(peer?.description ?? "unknown")", "tollgate.opcode": "\(opcode.name)",
                ])
            }
            return emit(context: context, .error(.notPermitted, "this peer (\(peer?.description ?? "credentials unknown")) is not allowed on the \(role.name) socket"), opcode: header.opcode, requestID: header.requestID)
        }

        let caller = Caller(role: role, uid: peer?.uid)
        // Reads (CHECK above all) are answered at once: no completion closure is allocated for them.
        guard Operation.of(opcode).timing == .afterJournal else {
            let response = core.handle(request, from: caller, completion: Self.answeredAtOnce)
            if case .check(let result)? = response, result.leaseID != 0 { leases.insert(result.leaseID) }
            if case .release(let id) = request { leases.remove(id) }
            return emit(context: context, response ?? .error(.internal, "no answer"), opcode: header.opcode, requestID: header.requestID)
        }
        let token = nextToken
        nextToken &+= 1
        let loop = context.eventLoop
        let boundContext = NIOLoopBound(context, eventLoop: loop)
        let bound = NIOLoopBound(self, eventLoop: loop)
        let leaves = counted
        counted = false
        let immediate = core.handle(request, from: caller) { response in
            if leaves { backlog.leave() }
            loop.execute {
                bound.value.complete(context: boundContext.value, token: token, response, opcode: header.opcode, requestID: header.requestID)
            }
        }
        if let immediate {
            if leaves { backlog.leave() }
            emit(context: context, immediate, opcode: header.opcode, requestID: header.requestID)
        } else {
            queue.append(Slot(token: token, bytes: nil))
            pendingDurable += 1
            updateReading(context: context)
        }
    }

    /// Writes a response now if nothing is waiting ahead of it, or parks it in order.
    private func emit(context: ChannelHandlerContext, _ response: Response, opcode: UInt8, requestID: UInt32) {
        if queue.isEmpty {
            output.writeResponse(response, opcode: opcode, requestID: requestID)
            wantsFlush = true
        } else {
            queue.append(Slot(token: nextToken, bytes: encoded(context: context, response, opcode: opcode, requestID: requestID)))
            nextToken &+= 1
        }
    }

    /// A response in a buffer of its own, to wait in the queue for the answers ahead of it.
    private func encoded(context: ChannelHandlerContext, _ response: Response, opcode: UInt8, requestID: UInt32) -> ByteBuffer {
        // 128: a METER's or a REVOKE's answer fits without growing the buffer.
        var bytes = context.channel.allocator.buffer(capacity: 128)
        bytes.writeResponse(response, opcode: opcode, requestID: requestID)
        return bytes
    }

    /// A durable response arrived: fill its slot and write every completed slot at the head of the queue. The
    /// usual case, its slot at the head, is written straight into the output (no buffer of its own, no copy).
    private func complete(context: ChannelHandlerContext, token: UInt64, _ response: Response, opcode: UInt8, requestID: UInt32) {
        pendingDurable -= 1
        guard let index = queue.firstIndex(where: { $0.token == token }) else { return }
        if index == queue.startIndex {
            queue.removeFirst()
            output.writeResponse(response, opcode: opcode, requestID: requestID)
            wantsFlush = true
        } else {
            queue[index].bytes = encoded(context: context, response, opcode: opcode, requestID: requestID)
        }
        while let head = queue.first, var ready = head.bytes {
            queue.removeFirst()
            output.writeBuffer(&ready)
            wantsFlush = true
        }
        flushIfNeeded(context: context)
        updateReading(context: context)
        if held != nil && !waitingForBacklog { resumeHeld(context: context) }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        flushIfNeeded(context: context)
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        updateReading(context: context)
        context.fireChannelWritabilityChanged()
    }

    /// Backpressure: stop reading while too many requests wait for the journal or while the client does not read
    /// its answers (the outbound buffer is above its high-water mark); resume when both clear.
    private func updateReading(context: ChannelHandlerContext) {
        let shouldPause = held != nil || pendingDurable >= registry.limits.maxPipelined || !context.channel.isWritable
        guard shouldPause != readingPaused else { return }
        readingPaused = shouldPause
        context.channel.setOption(ChannelOptions.autoRead, value: !shouldPause).whenComplete { _ in }
        if !shouldPause { context.read() }
    }

    private func flushIfNeeded(context: ChannelHandlerContext) {
        // Our own flag rather than `channel.isActive`, which costs a walk through the channel's state per flush.
        guard active else { return }
        if wantsFlush {
            wantsFlush = false
            if closeAfterFlush && queue.isEmpty {
                context.writeAndFlush(wrapOutboundOut(output)).whenComplete { _ in context.close(promise: nil) }
                recycleOutput(context: context)
                return
            }
            context.writeAndFlush(wrapOutboundOut(output), promise: nil)
            recycleOutput(context: context)
        } else if closeAfterFlush && queue.isEmpty {
            context.close(promise: nil)
        }
    }

    /// Empties the output buffer for the next burst. A write the socket took at once has released the bytes, and
    /// the storage is reused without an allocation; otherwise (the socket is full, the bytes wait in the channel)
    /// a small new one is allocated, so that the output limit, which counts bytes written, is not defeated by the
    /// capacity behind them. Storage grown large by a big answer is not kept for the connection's lifetime.
    private func recycleOutput(context: ChannelHandlerContext) {
        if output.capacity > Self.maxRecycledOutputCapacity {
            output = context.channel.allocator.buffer(capacity: 1024)
        } else {
            output.clear(minimumCapacity: 128)
        }
    }

    private static let maxRecycledOutputCapacity = 16 << 10

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        logger.debug("connection error", metadata: ["tollgate.error": "\(error)"])
        context.close(promise: nil)
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
