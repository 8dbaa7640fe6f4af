import Logging
import NIOCore
import TollgateCore
import TollgateModel
import TollgateProtocol

/// One api connection served by an `EpollLoop`: the socket, the same `ConnectionStateMachine` the NIO handler
/// drives (framing, limits, ordering, peer checks and backpressure are decided there, once), and the I/O state the
/// loop keeps for it. Confined to its loop's thread.
final class EpollConnection {
    let fd: CInt
    /// The slot in the loop's table and its generation: the epoll registration's tag, so that a report for a closed
    /// connection whose slot was reused in the same batch is recognised and dropped.
    let tag: UInt64
    var machine: ConnectionStateMachine
    /// Answers not yet taken by the kernel (the socket was full), and the inbox's answers gathered until the end of
    /// the loop iteration: copied out of the machine's `output`, so that the machine clears and reuses its storage
    /// at once (`outputWritten`) instead of allocating a new buffer while the old one waits.
    var outbound: ByteBuffer
    /// The epoll interest registered now (`EPOLLIN` unless reading is paused, `EPOLLOUT` while output waits).
    var interest: UInt32
    var readingPaused = false
    /// False above the output high-water mark (`max_output_bytes`) until the output drains below the low mark.
    var writable = true
    /// In the loop's list of connections to write at the end of the iteration.
    var dirty = false
    /// A close asked for after the answers gathered: done once they are written.
    var closeWhenWritten = false
    var open = true
    /// Whether the connection counts in the registry (it was admitted under `max_connections`).
    var counted = false
    /// The frame and idle deadlines, and the earliest deadline the loop's timer heap holds an entry for (the heap
    /// keeps at most one live entry per timer: it is re-pushed lazily when it fires early, so re-arming the frame
    /// timer on every partial read does not grow the heap).
    var frameDeadline: NIODeadline?
    var frameQueued: NIODeadline?
    var idleDeadline: NIODeadline?
    var idleQueued: NIODeadline?

    init(fd: CInt, tag: UInt64, machine: ConnectionStateMachine, allocator: ByteBufferAllocator) {
        self.fd = fd
        self.tag = tag
        self.machine = machine
        self.outbound = allocator.buffer(capacity: 0)
        self.interest = 0
    }
}

/// `ConnectionServices` for a connection of an `EpollLoop`: the live core and registry (the shared part in
/// `LiveConnectionServices`), with the completions that come from other threads (a durable answer on the journal's
/// writer, room in the daemon-wide backlog) handed back to the connection's loop through its inbox (a lock-protected
/// queue and an eventfd). The completion names the connection by its tag, never by reference, so nothing of the
/// connection crosses threads.
struct EpollConnectionServices: LiveConnectionServices {
    unowned(unsafe) let loop: EpollLoop
    let tag: UInt64
    let core: Unmanaged<ApplicationCore>

    var registry: ConnectionRegistry { loop.registry }

    func submitDurable(_ request: Request, from caller: Caller, ticket: DurableTicket, leavesBacklog: Bool) -> Response? {
        let loop = self.loop
        let tag = self.tag
        let backlog = loop.registry.backlog
        let immediate = core._withUnsafeGuaranteedRef { core in
            core.handle(request, from: caller) { response in
                if leavesBacklog { backlog.leave() }
                loop.post(.durableAnswered(tag, ticket, response))
            }
        }
        if immediate != nil, leavesBacklog { backlog.leave() }
        return immediate
    }

    func notifyWhenBacklogHasRoom() -> Bool {
        let loop = self.loop
        let tag = self.tag
        return loop.registry.backlog.notifyWhenRoom { loop.post(.backlogHasRoom(tag)) }
    }
}
