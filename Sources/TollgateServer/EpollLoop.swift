import CEpoll
import HeapModule
import Logging
import NIOConcurrencyHelpers
import NIOCore
import Synchronization
import TollgateCore
import TollgateProtocol

#if canImport(Glibc)
import Glibc
#endif

/// One thread serving api connections with a level-triggered epoll instance of its own: it accepts from the shared
/// listening socket (registered `EPOLLEXCLUSIVE` in every loop, so that one loop wakes per connection), reads,
/// hands the bytes to each connection's `ConnectionStateMachine` and performs the actions it returns, writing each
/// read burst's answers with one write (see `send`).
///
/// Why it exists: at one request in flight, ~15.7 k of the ~29.5 k instructions of a CHECK over NIO were NIO's
/// channel pipeline, read, flush and epoll path (callgrind, Benchmarks/SCALE.md). This loop does three system calls
/// per lone request (epoll_wait, read, write) and nothing general-purpose around them; the protocol logic is the
/// machine's, shared with the NIO front end that still serves the admin socket.
///
/// Work from other threads (a durable answer on the journal's writer thread, room in the daemon-wide backlog,
/// control) arrives through `post`: a queue under a lock and an eventfd, written only when the queue was empty, so
/// that a batch of answers costs one wake-up.
final class EpollLoop: @unchecked Sendable {
    /// Work handed to the loop from another thread.
    enum Job: Sendable {
        case durableAnswered(UInt64, DurableTicket, Response)
        case backlogHasRoom(UInt64)
        case run(@Sendable (EpollLoop) -> Void)
    }

    private struct Inbox {
        var jobs: [Job] = []
        /// The eventfd was written and the loop has not drained the queue since.
        var wakePending = false
        /// The loop has exited: nothing posted will run.
        var finished = false
        var onFinish: [@Sendable () -> Void] = []
    }

    private static let wakeTag: UInt64 = .max
    private static let listenerTag: UInt64 = .max - 1
    /// Reports taken per epoll_wait.
    private static let batch: Int32 = 64
    /// Reads per readiness before other connections get a turn (NIO's `maxMessagesPerRead` for this socket).
    private static let readsPerTurn = 16
    /// The loop's read buffer: one per loop, not per connection (a connection keeps only an unfinished frame's
    /// bytes, in the machine).
    private static let readCapacity = 16 << 10
    /// Output storage above this is not kept once written (a big answer does not pin memory for the connection's life).
    private static let maxRecycledOutput = 16 << 10

    let registry: ConnectionRegistry
    private let core: ApplicationCore
    private let logger: Logger
    private let maxFrameSize: Int
    private let listener: CInt
    private let epoll: CInt
    private let wake: CInt
    /// Under a pthread mutex (`NIOLockedValueBox`) rather than `Synchronization.Mutex`: ThreadSanitizer does not see
    /// the latter's futex as a lock, and reported the journal's threads posting answers at once as a race.
    private let inbox = NIOLockedValueBox(Inbox())
    /// The watchdog's probe: the last probe the loop answered, and the last one sent (see `answeredLastProbe`).
    private let probeAnswered = Atomic<UInt64>(0)
    private let probeSent = Atomic<UInt64>(0)
    private let allocator = ByteBufferAllocator()

    // Confined to the loop's thread from here on.
    private var connections: [EpollConnection?] = []
    private var generations: [UInt32] = []
    private var freeSlots: [Int] = []
    private var dirty: [EpollConnection] = []
    /// The inbox's storage between drains (see `drainInbox`), kept up to `maxSpareJobs` jobs.
    private var spareJobs: [Job] = []
    private static let maxSpareJobs = 1024
    private var timers = Heap<TimerEntry>()
    private var readBuffer: ByteBuffer
    private var now = NIODeadline.now()
    private var running = true
    private var listening = false
    /// Set while the inbox is drained: answers are gathered per connection and written at the end of the iteration.
    private var gatherWrites = false

    private struct TimerEntry: Comparable {
        var deadline: NIODeadline
        var tag: UInt64
        var frame: Bool
        static func < (a: Self, b: Self) -> Bool { a.deadline < b.deadline }
        static func == (a: Self, b: Self) -> Bool { a.deadline == b.deadline && a.tag == b.tag && a.frame == b.frame }
    }

    init(core: ApplicationCore, registry: ConnectionRegistry, logger: Logger, maxFrameSize: Int, listener: CInt) throws {
        self.core = core
        self.registry = registry
        self.logger = logger
        self.maxFrameSize = maxFrameSize
        self.listener = listener
        self.readBuffer = allocator.buffer(capacity: Self.readCapacity)
        epoll = tollgate_epoll_create()
        guard epoll >= 0 else { throw EpollError("epoll_create1", errno) }
        wake = tollgate_eventfd()
        guard wake >= 0 else {
            let code = errno
            Glibc.close(epoll)
            throw EpollError("eventfd", code)
        }
        guard tollgate_epoll_add(epoll, wake, TOLLGATE_EPOLLIN, Self.wakeTag) == 0,
            tollgate_epoll_add(epoll, listener, TOLLGATE_EPOLLIN | TOLLGATE_EPOLLEXCLUSIVE, Self.listenerTag) == 0
        else {
            let code = errno
            Glibc.close(epoll)
            Glibc.close(wake)
            throw EpollError("epoll_ctl", code)
        }
        listening = true
    }

    // MARK: - From any thread

    /// Hands `job` to the loop; false when the loop has exited (the job will not run).
    @discardableResult
    func post(_ job: Job) -> Bool {
        let (accepted, needsWake) = inbox.withLockedValue { inbox -> (Bool, Bool) in
            guard !inbox.finished else { return (false, false) }
            inbox.jobs.append(job)
            defer { inbox.wakePending = true }
            return (true, !inbox.wakePending)
        }
        if needsWake {
            var one: UInt64 = 1
            _ = Glibc.write(wake, &one, 8)
        }
        return accepted
    }

    /// Runs `body` on the loop and returns once it ran (or at once when the loop has exited).
    func run(_ body: @escaping @Sendable (EpollLoop) -> Void) async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let posted = post(.run { loop in
                body(loop)
                continuation.resume()
            })
            if !posted { continuation.resume() }
        }
    }

    /// Stops the loop: the connections are closed (after their gathered answers are written), the thread exits.
    /// Returns once it has.
    func stop() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let finished = inbox.withLockedValue { inbox -> Bool in
                if !inbox.finished { inbox.onFinish.append { continuation.resume() } }
                return inbox.finished
            }
            if finished {
                continuation.resume()
            } else {
                post(.run { $0.running = false })
            }
        }
    }

    /// Whether the loop ran the probe sent at the previous call, and sends the next one. Called at every watchdog
    /// period, it reports a loop stuck for a whole period without blocking the caller (an idle loop is woken by the
    /// probe itself).
    func answeredLastProbe() -> Bool {
        let sent = probeSent.load(ordering: .relaxed)
        let alive = probeAnswered.load(ordering: .relaxed) == sent
        if alive {
            probeSent.store(sent &+ 1, ordering: .relaxed)
            post(.run { $0.probeAnswered.store(sent &+ 1, ordering: .relaxed) })
        }
        return alive
    }

    /// Starts the loop's thread.
    func startThread() throws {
        var thread = pthread_t()
        let box = Unmanaged.passRetained(self)
        let result = pthread_create(&thread, nil, { argument in
            let loop = Unmanaged<EpollLoop>.fromOpaque(argument!).takeRetainedValue()
            loop.runLoop()
            return nil
        }, box.toOpaque())
        guard result == 0 else {
            box.release()
            throw EpollError("pthread_create", result)
        }
        pthread_detach(thread)
    }

    // MARK: - The loop

    private func runLoop() {
        let events = UnsafeMutablePointer<tollgate_epoll_event>.allocate(capacity: Int(Self.batch))
        defer { events.deallocate() }
        while running {
            let count = tollgate_epoll_wait(epoll, events, Self.batch, timeout())
            now = NIODeadline.now()
            if count < 0 {
                guard errno == EINTR else {
                    logger.critical("epoll_wait failed; the api loop stops", metadata: ["tollgate.errno": "\(errno)"])
                    break
                }
                continue
            }
            for index in 0..<Int(count) {
                let event = events[index]
                switch event.tag {
                case Self.wakeTag: drainInbox()
                case Self.listenerTag: acceptConnections()
                default: connectionEvent(tag: event.tag, events: event.events)
                }
            }
            fireTimers()
            writeDirty()
        }
        finish()
    }

    /// Milliseconds until the earliest timer (rounded up), or -1 (none). Measured from the time taken after the
    /// last wait: a wake-up a little early finds nothing due and waits again.
    private func timeout() -> Int32 {
        guard let first = timers.min else { return -1 }
        let nanoseconds = first.deadline.uptimeNanoseconds > now.uptimeNanoseconds ? first.deadline.uptimeNanoseconds - now.uptimeNanoseconds : 0
        return Int32(clamping: (nanoseconds + 999_999) / 1_000_000)
    }

    private func drainInbox() {
        var counter: UInt64 = 0
        _ = Glibc.read(wake, &counter, 8)
        // The queue is swapped with the loop's spare storage (emptied by the last drain), so that neither side
        // allocates per wake-up, and each job is moved out of it rather than copied: a durable answer's `Response`
        // carries strings, each retained and released per copy (callgrind, issue 19).
        var jobs = spareJobs
        spareJobs = []
        inbox.withLockedValue { inbox in
            inbox.wakePending = false
            swap(&jobs, &inbox.jobs)
        }
        gatherWrites = true
        defer {
            gatherWrites = false
            if jobs.capacity <= Self.maxSpareJobs { spareJobs = jobs }
        }
        jobs.reverse()
        while let job = jobs.popLast() {
            switch job {
            case .durableAnswered(let tag, let ticket, let response):
                guard let connection = lookUp(tag) else { continue }
                let services = services(for: connection)
                let actions = connection.machine.durableAnswered(ticket, response, now: { self.now }, services: services)
                perform(actions, connection)
            case .backlogHasRoom(let tag):
                guard let connection = lookUp(tag) else { continue }
                perform(connection.machine.backlogHasRoom(now: now, services: services(for: connection)), connection)
            case .run(let body):
                body(self)
            }
        }
    }

    /// Stops accepting (on the loop's thread, so that no accept is under way when the caller closes the socket).
    func stopListening() {
        guard listening else { return }
        listening = false
        _ = tollgate_epoll_remove(epoll, listener)
    }

    private func finish() {
        writeDirty()
        for case let connection? in connections { close(connection) }
        let onFinish = inbox.withLockedValue { inbox -> [@Sendable () -> Void] in
            inbox.finished = true
            inbox.jobs = []
            defer { inbox.onFinish = [] }
            return inbox.onFinish
        }
        Glibc.close(epoll)
        Glibc.close(wake)
        for done in onFinish { done() }
    }

    // MARK: - Connections

    private func lookUp(_ tag: UInt64) -> EpollConnection? {
        let slot = Int(truncatingIfNeeded: tag & 0xffff_ffff)
        guard slot < connections.count, let connection = connections[slot], connection.tag == tag else { return nil }
        return connection
    }

    @inline(__always)
    private func services(for connection: EpollConnection) -> EpollConnectionServices {
        EpollConnectionServices(loop: self, tag: connection.tag, core: Unmanaged.passUnretained(core))
    }

    private func acceptConnections() {
        while listening {
            let fd = tollgate_accept(listener)
            guard fd >= 0 else {
                switch errno {
                case EAGAIN, EWOULDBLOCK: return
                case EINTR, ECONNABORTED: continue
                default:
                    // Out of descriptors (EMFILE, ENFILE) or memory: the connection waits in the backlog until a
                    // later turn; logged, the loop serves on.
                    logger.warning("accept failed", metadata: ["tollgate.socket": "api", "tollgate.errno": "\(errno)"])
                    return
                }
            }
            admit(fd)
        }
    }

    private func admit(_ fd: CInt) {
        guard registry.open(role: .api) else {
            logger.warning("connection refused: too many connections", metadata: ["tollgate.socket": "api", "tollgate.limit": "\(registry.limits.maxConnections)"])
            var refusal = allocator.buffer(capacity: 64)
            refusal.writeResponse(.error(.unavailable, "too many connections (the limit is \(registry.limits.maxConnections)); retry later"), opcode: 0, requestID: 0)
            _ = refusal.withUnsafeReadableBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
            Glibc.close(fd)
            return
        }
        let slot: Int
        if let free = freeSlots.popLast() {
            slot = free
        } else {
            slot = connections.count
            connections.append(nil)
            generations.append(0)
        }
        generations[slot] &+= 1
        let tag = UInt64(generations[slot]) << 32 | UInt64(slot)
        var machine = ConnectionStateMachine(role: .api, limits: registry.limits, logger: logger, maxFrameSize: maxFrameSize, allocator: allocator)
        machine.useAllocator(allocator)
        let connection = EpollConnection(fd: fd, tag: tag, machine: machine, allocator: allocator)
        connection.counted = true
        connections[slot] = connection
        // The kernel's word on who connected, read once (see `RequestChannelHandler.readPeerCredentials`).
        var pid: Int32 = 0
        var uid: UInt32 = 0
        var gid: UInt32 = 0
        if tollgate_peer_credentials(fd, &pid, &uid, &gid) == 0 {
            connection.machine.peerIdentified(PeerCredentials(pid: pid, uid: uid, gid: gid))
            // More than 64 groups (ERANGE) leaves the primary group only: allow-lists may then refuse, never admit wrongly.
            var groups = [UInt32](repeating: 0, count: 64)
            let count = groups.withUnsafeMutableBufferPointer { tollgate_peer_groups(fd, $0.baseAddress, 64) }
            if count >= 0 { connection.machine.peerGroupsRead(Array(groups.prefix(Int(count)))) }
        }
        connection.interest = TOLLGATE_EPOLLIN
        guard tollgate_epoll_add(epoll, fd, connection.interest, tag) == 0 else {
            logger.warning("cannot watch a connection", metadata: ["tollgate.socket": "api", "tollgate.errno": "\(errno)"])
            return close(connection)
        }
        perform(connection.machine.activate(now: now), connection)
    }

    private func connectionEvent(tag: UInt64, events: UInt32) {
        guard let connection = lookUp(tag) else { return }
        if events & (TOLLGATE_EPOLLIN | TOLLGATE_EPOLLHUP | TOLLGATE_EPOLLERR) != 0 {
            if !connection.readingPaused {
                read(connection)
            } else if events & (TOLLGATE_EPOLLHUP | TOLLGATE_EPOLLERR) != 0 {
                // The peer is gone while its requests are held: nothing more can reach it.
                return close(connection)
            }
        }
        if connection.open, events & TOLLGATE_EPOLLOUT != 0 { write(connection) }
    }

    /// Reads what the socket has (up to `readsPerTurn` reads) and hands each read to the machine. A read that does
    /// not fill the buffer has emptied the socket: no second read to see EAGAIN (level-triggered epoll reports
    /// anything that arrives later).
    private func read(_ connection: EpollConnection) {
        let fd = connection.fd
        for _ in 0..<Self.readsPerTurn {
            var result = 0
            var room = 0
            readBuffer.clear()
            readBuffer.writeWithUnsafeMutableBytes(minimumWritableBytes: Self.readCapacity) { space in
                room = space.count
                result = Glibc.read(fd, space.baseAddress, space.count)
                return max(result, 0)
            }
            if result > 0 {
                perform(connection.machine.read(&readBuffer, now: now, services: services(for: connection)), connection)
                guard connection.open, !connection.readingPaused, result == room else { break }
            } else if result == 0 {
                // The peer closed: answer what was read, then close (as NIO does without half-closure).
                perform(connection.machine.readComplete(), connection)
                write(connection)
                return close(connection)
            } else {
                let code = errno
                if code == EINTR { continue }
                if code == EAGAIN || code == EWOULDBLOCK { break }
                logger.debug("connection error", metadata: ["tollgate.errno": "\(code)"])
                return close(connection)
            }
        }
        if connection.open { perform(connection.machine.readComplete(), connection) }
    }

    /// Carries out what the machine decided (the same order as `RequestChannelHandler.perform`): reading, timers,
    /// then the answers (copied into the connection's outbound bytes, written at the end of the iteration), then
    /// a close.
    @inline(__always)
    private func perform(_ actions: ConnectionActions, _ connection: EpollConnection) {
        guard connection.open else { return }
        if !actions.onlyOutput { performChanges(actions, connection) }
        if actions.flush { send(connection) }
        if actions.close {
            if actions.flush, connection.outbound.readableBytes > 0 {
                connection.closeWhenWritten = true
            } else {
                write(connection)
                close(connection)
            }
        }
    }

    /// Hands the machine's gathered answers to the kernel. The machine gathers a whole read burst's answers into
    /// one flush already, so they are written at once, straight from its buffer, which it then clears for reuse:
    /// copying them into `outbound` and writing at the end of the iteration instead cost ~800 instructions per
    /// lone CHECK (the copy and the list of connections to write; callgrind). Answers from the inbox (durable ones,
    /// many per wake-up) are gathered in `outbound` and written once per connection at the end of the iteration;
    /// so is anything behind bytes the kernel has not taken yet.
    @inline(__always)
    private func send(_ connection: EpollConnection) {
        if gatherWrites || connection.outbound.readableBytes > 0 {
            connection.outbound.writeImmutableBuffer(connection.machine.output)
            connection.machine.outputWritten()
            if !connection.dirty {
                connection.dirty = true
                dirty.append(connection)
            }
            return
        }
        let length = connection.machine.output.readableBytes
        let written = connection.machine.output.withUnsafeReadableBytes { Glibc.write(connection.fd, $0.baseAddress, $0.count) }
        if written == length { return connection.machine.outputWritten() }
        // The kernel took part or none of it, or the write failed: the rest waits in `outbound`; `write` tries
        // again, arms EPOLLOUT and watches the output bound, or meets the error again and closes.
        var rest = connection.machine.output
        if written > 0 { rest.moveReaderIndex(forwardBy: written) }
        connection.outbound.writeBuffer(&rest)
        connection.machine.outputWritten()
        write(connection)
    }

    private func performChanges(_ actions: ConnectionActions, _ connection: EpollConnection) {
        switch actions.reading {
        case .unchanged: break
        case .pause:
            connection.readingPaused = true
            updateInterest(connection)
        case .resume:
            connection.readingPaused = false
            updateInterest(connection)
        }
        switch actions.frameTimer {
        case .unchanged: break
        case .cancel: connection.frameDeadline = nil
        case .arm(let deadline):
            connection.frameDeadline = deadline
            if connection.frameQueued.map({ deadline < $0 }) ?? true {
                connection.frameQueued = deadline
                timers.insert(TimerEntry(deadline: deadline, tag: connection.tag, frame: true))
            }
        }
        switch actions.idleTimer {
        case .unchanged: break
        case .cancel: connection.idleDeadline = nil
        case .arm(let deadline):
            connection.idleDeadline = deadline
            if connection.idleQueued.map({ deadline < $0 }) ?? true {
                connection.idleQueued = deadline
                timers.insert(TimerEntry(deadline: deadline, tag: connection.tag, frame: false))
            }
        }
    }

    private func updateInterest(_ connection: EpollConnection) {
        let wanted = (connection.readingPaused ? 0 : TOLLGATE_EPOLLIN) | (connection.outbound.readableBytes > 0 ? TOLLGATE_EPOLLOUT : 0)
        guard wanted != connection.interest, connection.open else { return }
        connection.interest = wanted
        _ = tollgate_epoll_modify(epoll, connection.fd, wanted, connection.tag)
    }

    /// Fires the timers that are due. An entry whose timer moved later is queued again for its deadline; one whose
    /// timer was cancelled, or whose connection closed, is dropped.
    private func fireTimers() {
        while let first = timers.min, first.deadline <= now {
            _ = timers.popMin()
            guard let connection = lookUp(first.tag) else { continue }
            if first.frame {
                if connection.frameQueued == first.deadline { connection.frameQueued = nil }
                guard let deadline = connection.frameDeadline else { continue }
                if deadline <= now {
                    connection.frameDeadline = nil
                    perform(connection.machine.frameTimerFired(), connection)
                } else if connection.frameQueued == nil {
                    connection.frameQueued = deadline
                    timers.insert(TimerEntry(deadline: deadline, tag: first.tag, frame: true))
                }
            } else {
                if connection.idleQueued == first.deadline { connection.idleQueued = nil }
                guard let deadline = connection.idleDeadline else { continue }
                if deadline <= now {
                    connection.idleDeadline = nil
                    perform(connection.machine.idleTimerFired(now: now), connection)
                } else if connection.idleQueued == nil {
                    connection.idleQueued = deadline
                    timers.insert(TimerEntry(deadline: deadline, tag: first.tag, frame: false))
                }
            }
        }
    }

    /// Writes the answers gathered during the iteration, one write per connection.
    private func writeDirty() {
        guard !dirty.isEmpty else { return }
        var index = 0
        // Writing may resume reading but adds no connection to the list; indexed all the same, to be safe.
        while index < dirty.count {
            let connection = dirty[index]
            index += 1
            connection.dirty = false
            if connection.open { write(connection) }
        }
        dirty.removeAll(keepingCapacity: true)
    }

    /// Writes the connection's outbound bytes until the kernel takes no more. What remains waits for `EPOLLOUT`;
    /// above `max_output_bytes` the machine is told the connection is not writable (it stops reading), and told
    /// again when the bytes drain below the low-water mark (the NIO front end's channel water marks).
    private func write(_ connection: EpollConnection) {
        guard connection.open else { return }
        while connection.outbound.readableBytes > 0 {
            let written = connection.outbound.withUnsafeReadableBytes { Glibc.write(connection.fd, $0.baseAddress, $0.count) }
            if written > 0 {
                connection.outbound.moveReaderIndex(forwardBy: written)
                continue
            }
            let code = errno
            if code == EINTR { continue }
            if code == EAGAIN || code == EWOULDBLOCK { break }
            logger.debug("connection error", metadata: ["tollgate.errno": "\(code)"])
            return close(connection)
        }
        let waiting = connection.outbound.readableBytes
        if waiting == 0 {
            if connection.outbound.capacity > Self.maxRecycledOutput {
                connection.outbound = allocator.buffer(capacity: 0)
            } else {
                connection.outbound.clear()
            }
            if connection.closeWhenWritten { return close(connection) }
        } else if connection.outbound.readerIndex > waiting {
            connection.outbound.discardReadBytes()
        }
        if connection.interest & TOLLGATE_EPOLLOUT != 0 || waiting > 0 { updateInterest(connection) }
        let limit = registry.limits.maxOutputBytes
        if connection.writable, waiting > limit {
            connection.writable = false
            perform(connection.machine.writabilityChanged(isWritable: false), connection)
        } else if !connection.writable, waiting <= min(32 << 10, limit / 2) {
            connection.writable = true
            perform(connection.machine.writabilityChanged(isWritable: true), connection)
        }
    }

    /// Closes the connection: it leaves the registry, the machine releases its leases, the slot is freed for reuse
    /// (its generation changes, so reports and answers still addressed to it are dropped).
    private func close(_ connection: EpollConnection) {
        guard connection.open else { return }
        connection.open = false
        _ = tollgate_epoll_remove(epoll, connection.fd)
        Glibc.close(connection.fd)
        if connection.counted {
            registry.close(role: .api)
            connection.counted = false
        }
        let leases = connection.machine.deactivate()
        if !leases.isEmpty { core.releaseLeases(leases) }
        let slot = Int(truncatingIfNeeded: connection.tag & 0xffff_ffff)
        connections[slot] = nil
        freeSlots.append(slot)
    }
}

/// A system call the api loop needs failed while it was set up.
struct EpollError: Error, CustomStringConvertible {
    var description: String
    init(_ call: String, _ code: CInt) {
        description = "\(call) failed: \(String(cString: strerror(code)))"
    }
}
