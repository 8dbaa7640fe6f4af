import Logging
import NIOCore
import TollgateCore
import TollgateModel
import TollgateProtocol

/// The protocol logic of one connection, apart from the channel: cuts frames out of the bytes read (with the
/// `FrameCutter` the client's decoder shares), checks the peer against the socket's allow-list, validates headers,
/// dispatches requests through `ConnectionServices`, and keeps answers in request order even when a durable request
/// is answered later than a check pipelined behind it. It decides the connection limits: idle and stalled-frame
/// deadlines, and backpressure (stop reading) when too many requests wait for the journal, when the daemon-wide
/// backlog is full, or when the client does not read its answers.
///
/// A value type in swift-nio's manner (`HTTPServerPipelineHandler`, NIOSSH): every event is a `mutating` method
/// that returns the `ConnectionActions` the channel handler performs (write and flush `output`, pause or resume
/// reading, arm or cancel a timer, close). It reads no clock (times are passed in) and touches no channel, so tests
/// drive it event by event.
///
/// Whole inbound buffers rather than one pipeline message per frame: every complete frame of a read is cut in one
/// loop, and consecutive CHECKs are decided together under one acquisition of the core's lock, their answers written
/// straight into `output`, which is flushed once per read burst. A pipelining client thus pays the pipeline
/// traversal, the lock and the clock once per read instead of once per request.
struct ConnectionStateMachine {
    let role: SocketRole
    let limits: ConnectionLimits
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
    /// Responses gathered during one read burst, written with one flush (the handler writes it when an event's
    /// actions say `flush`, then calls `outputWritten`).
    private(set) var output: ByteBuffer
    private var allocator: ByteBufferAllocator
    private var wantsFlush = false
    private var closeAfterFlush = false
    private(set) var peer: PeerCredentials?
    private var refusalLogged = false
    /// When the connection last read a frame (or opened): the idle timer, armed once, compares against it when it
    /// fires instead of being cancelled and armed again on every read.
    private var lastActivity = NIODeadline.uptimeNanoseconds(0)
    /// The time of the event being handled (passed in by the handler; the machine reads no clock).
    private var now = NIODeadline.uptimeNanoseconds(0)
    /// Whether reading should be paused (decided from the state at the end of each event) and whether it is (the
    /// last decision handed to the handler).
    private var readingPaused = false
    /// The channel's writability, as last reported: answers wait above the output high-water mark.
    private var writable = true
    /// Between `activate` (once the connection is admitted) and `deactivate`.
    private(set) var active = false
    private var pendingDurable = 0

    private struct Slot {
        var token: UInt64
        var bytes: ByteBuffer?
    }

    private var nextToken: UInt64 = 0
    /// Leases taken on this connection and not released: the connection's end releases them.
    private(set) var leases: Set<UInt64> = []
    /// What the event being handled asks of the handler; handed out (and reset) by `takeActions`.
    private var actions = ConnectionActions()

    /// The WATCH stream open on the connection (6.22), if any. Any frame read after the WATCH ends it.
    private var watch: WatchStream?
    private let maxFrameSize: Int

    private struct WatchStream {
        let subscription: DecisionSubscription
        let requestID: UInt32
        /// The `dropped` count the client last received.
        var reportedDropped: UInt64 = 0
        var lastFrame: NIODeadline
    }

    /// How often a WATCH stream is drained into frames.
    static let watchInterval = TimeAmount.milliseconds(50)
    /// A WATCH frame is sent at least this often, empty if need be, so the client sees the stream alive.
    static let watchHeartbeat = TimeAmount.seconds(1)

    /// Whether a WATCH stream is open (the handler keeps its pacing timer running while it is).
    var isWatching: Bool { watch != nil }

    init(role: SocketRole, limits: ConnectionLimits, logger: Logger, maxFrameSize: Int, allocator: ByteBufferAllocator = ByteBufferAllocator()) {
        self.role = role
        self.limits = limits
        self.logger = logger
        self.cutter = FrameCutter(maxFrameSize: maxFrameSize)
        self.maxFrameSize = maxFrameSize
        self.allocator = allocator
        self.output = allocator.buffer(capacity: 0)
    }

    /// The channel's allocator, once the handler is in a pipeline: the output buffer comes from it.
    mutating func useAllocator(_ allocator: ByteBufferAllocator) {
        self.allocator = allocator
        output = allocator.buffer(capacity: 1024)
    }

    // MARK: - Events

    /// The connection was admitted (it counts in the registry): serving starts, and so does the idle deadline.
    mutating func activate(now: NIODeadline) -> ConnectionActions {
        active = true
        lastActivity = now
        let timeout = limits.idleTimeoutMilliseconds
        if timeout > 0 { actions.idleTimer = .arm(lastActivity + .milliseconds(timeout)) }
        return takeActions()
    }

    /// The kernel's word on who connected (`SO_PEERCRED`), read once per connection.
    mutating func peerIdentified(_ credentials: PeerCredentials) {
        peer = credentials
    }

    /// The peer's supplementary groups (`SO_PEERGROUPS`), read after its credentials.
    mutating func peerGroupsRead(_ groups: [UInt32]) {
        peer?.groups = groups
    }

    /// Bytes read from the client. Complete frames are served at once (answers gathered in `output`, flushed at
    /// `readComplete`); the bytes of an unfinished frame are kept for the next read.
    mutating func read(_ incoming: inout ByteBuffer, now: NIODeadline, services: some ConnectionServices) -> ConnectionActions {
        // Not active: a connection over the limit, answered `unavailable` and closing; nothing it sends is served.
        guard active, !poisoned else { return takeActions() }
        // Reads already under way when reading paused: kept behind the held request, served when it is.
        if held != nil {
            if unfinished == nil { unfinished = incoming } else { unfinished!.writeBuffer(&incoming) }
            return takeActions()
        }
        self.now = now
        permittedThisRead = nil
        if var buffered = unfinished {
            unfinished = nil
            buffered.writeBuffer(&incoming)
            serve(&buffered, services: services)
        } else {
            serve(&incoming, services: services)
        }
        return takeActions()
    }

    /// The end of a read burst: the answers gathered are written with one flush.
    mutating func readComplete() -> ConnectionActions {
        flushIfNeeded()
        return takeActions()
    }

    /// A durable request's answer (its record is on disk, or the journal failed): fill its slot and write every
    /// completed slot at the head of the queue; then serve a held request if it may now go through. `now` is asked
    /// only when a held request resumes.
    mutating func durableAnswered(
        _ ticket: DurableTicket, _ response: Response, now: () -> NIODeadline, services: some ConnectionServices
    ) -> ConnectionActions {
        pendingDurable -= 1
        guard let index = queue.firstIndex(where: { $0.token == ticket.token }) else { return takeActions() }
        if index == queue.startIndex {
            // The usual case, its slot at the head: written straight into the output (no buffer of its own).
            queue.removeFirst()
            output.writeResponse(response, opcode: ticket.opcode, requestID: ticket.requestID)
            wantsFlush = true
        } else {
            queue[index].bytes = encoded(response, opcode: ticket.opcode, requestID: ticket.requestID)
        }
        while let head = queue.first, var ready = head.bytes {
            queue.removeFirst()
            output.writeBuffer(&ready)
            wantsFlush = true
        }
        flushIfNeeded()
        if held != nil && !waitingForBacklog {
            self.now = now()
            resumeHeld(services: services)
        }
        return takeActions()
    }

    /// The daemon-wide backlog has room again (after `notifyWhenBacklogHasRoom`): the held request may go through.
    mutating func backlogHasRoom(now: NIODeadline, services: some ConnectionServices) -> ConnectionActions {
        waitingForBacklog = false
        self.now = now
        resumeHeld(services: services)
        return takeActions()
    }

    /// The channel went above its output high-water mark (the client does not read its answers) or back below it.
    mutating func writabilityChanged(isWritable: Bool) -> ConnectionActions {
        writable = isWritable
        return takeActions()
    }

    /// The frame timer fired: a frame begun was not finished within `frame_timeout`. The connection is closed
    /// silently (no answer: the client is not reading a frame it has not finished sending).
    mutating func frameTimerFired() -> ConnectionActions {
        logger.info("closing a connection that left a frame unfinished", metadata: [
            "tollgate.socket": "\(role.name)", "tollgate.peer": "\(peer?.description ?? "unknown")",
            "tollgate.timeout_ms": "\(limits.frameTimeoutMilliseconds)",
        ])
        actions.close = true
        return takeActions()
    }

    /// The idle timer fired. It is armed once rather than on every read: when it fires early (a frame was read since)
    /// it is armed again for the remainder; a connection with answers still waiting for the journal is not idle.
    mutating func idleTimerFired(now: NIODeadline) -> ConnectionActions {
        let timeout = TimeAmount.milliseconds(limits.idleTimeoutMilliseconds)
        if !queue.isEmpty || held != nil || watch != nil {
            lastActivity = now
            actions.idleTimer = .arm(lastActivity + timeout)
        } else if now < lastActivity + timeout {
            actions.idleTimer = .arm(lastActivity + timeout)
        } else {
            logger.debug("closing an idle connection", metadata: ["tollgate.socket": "\(role.name)"])
            actions.close = true
        }
        return takeActions()
    }

    /// The channel closed. A partial frame is dropped (the client went away), so is a held request (never answered);
    /// returns the leases taken on the connection and not released, for the core to release. The handler cancels
    /// its timers.
    mutating func deactivate() -> Set<UInt64> {
        active = false
        unfinished = nil
        held = nil
        watch?.subscription.cancel()
        watch = nil
        defer { leases.removeAll() }
        return leases
    }

    /// The handler wrote `output` (after an action with `flush`): empties it for the next burst. A write the socket
    /// took at once has released the bytes, and the storage is reused without an allocation; otherwise (the socket
    /// is full, the bytes wait in the channel) a small new one is allocated, so that the output limit, which counts
    /// bytes written, is not defeated by the capacity behind them. Storage grown large by a big answer is not kept
    /// for the connection's lifetime.
    mutating func outputWritten() {
        if output.capacity > Self.maxRecycledOutputCapacity {
            output = allocator.buffer(capacity: 1024)
        } else {
            output.clear(minimumCapacity: 128)
        }
    }

    private static let maxRecycledOutputCapacity = 16 << 10

    // MARK: - Serving

    /// The actions gathered during the event, with the reading decision taken from the state it leaves: paused while
    /// a request is held, while `max_pipelined` requests wait for the journal, or while the client does not read.
    private mutating func takeActions() -> ConnectionActions {
        let shouldPause = held != nil || pendingDurable >= limits.maxPipelined || !writable
        if shouldPause != readingPaused {
            readingPaused = shouldPause
            actions.reading = shouldPause ? .pause : .resume
        }
        defer { actions = ConnectionActions() }
        return actions
    }

    /// Serves the complete frames of `buffer` and keeps the rest for the next read. Activity is a whole frame
    /// (bytes of an unfinished one are the frame timer's business).
    private mutating func serve(_ buffer: inout ByteBuffer, services: some ConnectionServices) {
        if cutFrames(from: &buffer, services: services) { lastActivity = now }
        keepUnfinished(buffer)
    }

    /// Serves every complete frame in `buffer`, in order, leaving the bytes of an unfinished frame unread. Returns
    /// whether it found any (a frame or a framing error).
    private mutating func cutFrames(from buffer: inout ByteBuffer, services: some ConnectionServices) -> Bool {
        var cut = false
        // A held request stops the loop (its `break` leaves only the switch): the rest stays unread behind it.
        while held == nil, let event = cutter.next(from: &buffer) {
            cut = true
            setPartial(false)
            // The client's way to stop a WATCH: any further frame. The stream ends before that frame is answered.
            if watch != nil { endWatch() }
            switch event {
            case .frame(let frame):
                if !batchCheck(frame, services: services) {
                    flushChecks(services: services)
                    guard let admission = admit(frame, services: services) else {
                        held = frame
                        break
                    }
                    handle(frame, inBacklog: admission == .inBacklog, services: services)
                }
            case .framingError(let status, let message, let close):
                flushChecks(services: services)
                logger.debug("framing error", metadata: ["tollgate.status": "\(status.name)", "tollgate.error": "\(message)"])
                emit(.error(status, message), opcode: 0, requestID: 0)
                if close { closeAfterFlush = true }
            }
        }
        flushChecks(services: services)
        return cut
    }

    private enum Admission { case outsideBacklog, inBacklog }

    /// Whether `frame` may be served now. A request that waits for the journal is let through only while this
    /// connection has fewer than `max_pipelined` such requests and, on the api socket, while the daemon-wide
    /// backlog has room (it then counts there: `.inBacklog`); otherwise nil, and the caller holds the frame.
    /// Anything else (reads, checks, requests refused by their header) is always let through. REVOKE does not
    /// count in the daemon-wide backlog: a revocation must never queue behind usage.
    private mutating func admit(_ frame: Frame, services: some ConnectionServices) -> Admission? {
        guard Self.headerRefusal(frame.header) == nil, let opcode = Opcode(rawValue: frame.header.opcode) else { return .outsideBacklog }
        let operation = Operation.of(opcode)
        guard operation.timing == .afterJournal else { return .outsideBacklog }
        guard pendingDurable < limits.maxPipelined else { return nil }  // resumed by `durableAnswered`
        guard role == .api, operation.countsInBacklog else { return .outsideBacklog }
        while !services.tryEnterBacklog() {
            if services.notifyWhenBacklogHasRoom() {  // resumed by `backlogHasRoom`
                waitingForBacklog = true
                return nil
            }
        }
        return .inBacklog
    }

    /// Serves the held request when it may now be let through, then what was read behind it.
    private mutating func resumeHeld(services: some ConnectionServices) {
        guard active, !poisoned, !waitingForBacklog, let frame = held else { return }
        guard let admission = admit(frame, services: services) else { return }
        held = nil
        permittedThisRead = nil
        handle(frame, inBacklog: admission == .inBacklog, services: services)
        if var rest = unfinished {
            unfinished = nil
            serve(&rest, services: services)
        }
        flushIfNeeded()
    }

    /// Keeps what is left of a read for the next one, and runs the frame timer while it waits (not behind a held
    /// request).
    private mutating func keepUnfinished(_ buffer: ByteBuffer) {
        guard !poisoned, buffer.readableBytes > 0 else { return setPartial(false) }
        var rest = buffer
        // Drop the frames already served in front of the rest when they are most of the storage, so that a
        // connection does not pin a large read buffer for a few bytes.
        if rest.readerIndex > rest.readableBytes { rest.discardReadBytes() }
        unfinished = rest
        setPartial(held == nil)
    }

    /// Starts the frame timer when an unfinished frame starts waiting, stops it when none waits. Called with false
    /// for every frame cut (so each new unfinished frame gets the whole timeout) and with the state left at the end
    /// of each read.
    private mutating func setPartial(_ waiting: Bool) {
        guard waiting != partial else { return }
        partial = waiting
        let timeout = limits.frameTimeoutMilliseconds
        actions.frameTimer = waiting && timeout > 0 ? .arm(now + .milliseconds(timeout)) : .cancel
    }

    /// Takes `frame` into the pending batch when it is a CHECK that `handle` would pass to the engine: a valid
    /// header, a body that decodes, a permitted peer, no refusal by the core. Anything else returns false and goes
    /// through `handle`, which then answers with the error (decoding the body again on that rare path). A CHECK with
    /// the `details` option goes through `handle` too: its answer carries a block the batch's results do not.
    private mutating func batchCheck(_ frame: Frame, services: some ConnectionServices) -> Bool {
        let header = frame.header
        guard header.opcode == Opcode.check.rawValue, Self.headerRefusal(header) == nil,
            let request = try? decodeCheckRequest(body: frame.body, reusingListsOf: lastLists),
            ApplicationCore.admits(request), !request.options.contains(.details)
        else { return false }
        if permittedThisRead == nil { permittedThisRead = services.allows(peer, role: role) }
        guard permittedThisRead == true else { return false }
        lastLists.scopes = request.scopes
        lastLists.meter = request.meter
        lastLists.features = request.features
        checks.append(consume request)
        checkIDs.append(header.requestID)
        return true
    }

    /// Decides the pending CHECKs under one lock and writes their answers in order.
    private mutating func flushChecks(services: some ConnectionServices) {
        guard !checks.isEmpty else { return }
        services.checkBatch(checks, caller: peer?.uid, into: &checkResults)
        // Nothing waits ahead (the usual case): straight into the output. Otherwise every answer waits in the queue
        // (an answer queued here keeps the queue non-empty for the rest of the batch).
        if queue.isEmpty {
            Self.writeCheckAnswers(checkResults, requestIDs: checkIDs, into: &output, leases: &leases)
            wantsFlush = true
        } else {
            for index in checkResults.indices {
                let result = checkResults[index]
                if result.leaseID != 0 { leases.insert(result.leaseID) }
                emit(.check(result), opcode: Opcode.check.rawValue, requestID: checkIDs[index])
            }
        }
        checks.removeAll(keepingCapacity: true)
        checkIDs.removeAll(keepingCapacity: true)
        checkResults.removeAll(keepingCapacity: true)
    }

    /// Writes CHECK answers and notes their leases. Static, over the stored properties it needs (disjoint parts of
    /// the machine), so that each result is read in place through a buffer pointer, not copied out of the array.
    private static func writeCheckAnswers(_ results: [CheckResult], requestIDs: [UInt32], into output: inout ByteBuffer, leases: inout Set<UInt64>) {
        results.withUnsafeBufferPointer { results in
            for index in results.indices {
                let leaseID = results[index].leaseID
                if leaseID != 0 { leases.insert(leaseID) }
                output.writeCheckResponse(results[index], requestID: requestIDs[index])
            }
        }
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
    private mutating func handle(_ frame: Frame, inBacklog: Bool, services: some ConnectionServices) {
        var counted = inBacklog
        defer { if counted { services.leaveBacklog() } }
        let header = frame.header
        if let refusal = Self.headerRefusal(header) {
            return emit(refusal, opcode: header.opcode, requestID: header.requestID)
        }
        let opcode = Opcode(rawValue: header.opcode)!
        let request: Request
        do {
            request = try decodeRequest(opcode: opcode, body: frame.body)
        } catch {
            return emit(.error(.malformed, "\(error)"), opcode: header.opcode, requestID: header.requestID)
        }
        guard services.permits(peer, role: role) else {
            if !refusalLogged {
                refusalLogged = true
                logger.warning("request refused: the peer is not on the socket's allow-list", metadata: [
                    "tollgate.socket": "\(role.name)", "tollgate.peer": "\(peer?.description ?? "unknown")", "tollgate.opcode": "\(opcode.name)",
                ])
            }
            return emit(.error(.notPermitted, "this peer (\(peer?.description ?? "credentials unknown")) is not allowed on the \(role.name) socket"), opcode: header.opcode, requestID: header.requestID)
        }

        let caller = Caller(role: role, uid: peer?.uid)
        if case .watch(let licenseID) = request, Operation.of(opcode).permits(role) {
            return startWatch(licenseID: licenseID, requestID: header.requestID, services: services)
        }
        // Reads (CHECK above all) are answered at once: no completion is arranged for them.
        guard Operation.of(opcode).timing == .afterJournal else {
            let response = services.answerAtOnce(request, from: caller)
            if case .check(let result)? = response, result.leaseID != 0 { leases.insert(result.leaseID) }
            if case .release(let id) = request { leases.remove(id) }
            return emit(response ?? .error(.internal, "no answer"), opcode: header.opcode, requestID: header.requestID)
        }
        let ticket = DurableTicket(token: nextToken, opcode: header.opcode, requestID: header.requestID)
        nextToken &+= 1
        let leaves = counted
        counted = false
        if let immediate = services.submitDurable(request, from: caller, ticket: ticket, leavesBacklog: leaves) {
            emit(immediate, opcode: header.opcode, requestID: header.requestID)
        } else {
            queue.append(Slot(token: ticket.token, bytes: nil))
            pendingDurable += 1
        }
    }

    // MARK: - WATCH

    /// Opens the stream: subscribes, answers at once with an empty frame (the client learns the server streams),
    /// and asks the handler for the pacing timer.
    private mutating func startWatch(licenseID: String, requestID: UInt32, services: some ConnectionServices) {
        watch = WatchStream(subscription: services.watchDecisions(licenseID: licenseID), requestID: requestID, lastFrame: now)
        emit(.watch(WatchBatch(kind: .events, dropped: 0, events: [])), opcode: Opcode.watch.rawValue, requestID: requestID)
        actions.watch = .start
    }

    /// The pacing timer: the decisions made since the last tick, in as many frames as they need. Nothing is taken
    /// from the ring while the client does not read (the channel is above its high-water mark) or while answers
    /// ahead of the stream wait for the journal: the ring then overwrites what this watcher has not taken, and the
    /// loss is counted in `dropped`. The core never waits for a watcher.
    mutating func watchTick(now: NIODeadline) -> ConnectionActions {
        guard active, watch != nil else { return takeActions() }
        self.now = now
        guard writable, queue.isEmpty else { return takeActions() }
        sendWatchFrames(final: false)
        flushIfNeeded()
        return takeActions()
    }

    /// Ends the stream: what is left in the ring for this watcher, then the end frame; the subscription is
    /// cancelled and the pacing timer stopped.
    private mutating func endWatch() {
        guard let stream = watch else { return }
        sendWatchFrames(final: true)
        stream.subscription.cancel()
        watch = nil
        actions.watch = .stop
    }

    /// Emits the decisions waiting for this watcher, cut into frames that fit `max_frame`; an empty frame when the
    /// drop count changed, the heartbeat is due, or the stream ends.
    private mutating func sendWatchFrames(final: Bool) {
        guard var stream = watch else { return }
        let events = stream.subscription.poll(limit: ApplicationCore.decisionRingCapacity)
        let dropped = stream.subscription.dropped
        guard final || !events.isEmpty || dropped != stream.reportedDropped || now >= stream.lastFrame + Self.watchHeartbeat else { return }
        let budget = maxFrameSize - FrameHeader.size - WatchBatch.headerBytes
        var start = 0
        repeat {
            var end = start
            var size = 0
            while end < events.count, size + events[end].wireSize <= budget {
                size += events[end].wireSize
                end += 1
            }
            // An event alone exceeds the budget only below the smallest max_frame; never loop without progress.
            if end == start, start < events.count { end += 1 }
            let kind: WatchBatch.Kind = final && end == events.count ? .end : .events
            emit(.watch(WatchBatch(kind: kind, dropped: dropped, events: Array(events[start..<end]))), opcode: Opcode.watch.rawValue, requestID: stream.requestID)
            start = end
        } while start < events.count
        stream.reportedDropped = dropped
        stream.lastFrame = now
        watch = stream
    }

    /// Writes a response now if nothing is waiting ahead of it, or parks it in order.
    private mutating func emit(_ response: Response, opcode: UInt8, requestID: UInt32) {
        if queue.isEmpty {
            output.writeResponse(response, opcode: opcode, requestID: requestID)
            wantsFlush = true
        } else {
            queue.append(Slot(token: nextToken, bytes: encoded(response, opcode: opcode, requestID: requestID)))
            nextToken &+= 1
        }
    }

    /// A response in a buffer of its own, to wait in the queue for the answers ahead of it.
    private func encoded(_ response: Response, opcode: UInt8, requestID: UInt32) -> ByteBuffer {
        // 128: a METER's or a REVOKE's answer fits without growing the buffer.
        var bytes = allocator.buffer(capacity: 128)
        bytes.writeResponse(response, opcode: opcode, requestID: requestID)
        return bytes
    }

    /// Asks the handler to write what `output` gathered, and to close once it is written if a framing error
    /// poisoned the stream and no answer is still owed.
    private mutating func flushIfNeeded() {
        guard active else { return }
        if wantsFlush {
            wantsFlush = false
            actions.flush = true
        }
        if closeAfterFlush && queue.isEmpty { actions.close = true }
    }
}
