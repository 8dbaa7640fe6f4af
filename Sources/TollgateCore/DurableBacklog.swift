import NIOConcurrencyHelpers
import Synchronization

/// Bounds the data-plane requests that wait for the journal across the whole daemon, not only per connection.
///
/// Without it, each of many pipelining clients could queue up to `max_pipelined` requests (and a read burst more),
/// and a backlog of 10⁵ records kept durable writes, including a revocation on the admin socket, waiting behind
/// it. A connection asks to `tryEnter` before it lets a durable request through to the core; at the bound it is told
/// to wait: it stops reading (its request and everything behind it stay unread), and is called back once the
/// backlog has drained below `resumeBelow`. Checks on other connections are not affected; control-plane changes
/// (admin socket) do not enter: they are few, and must not queue behind usage.
///
/// Thread-safe: the event loops enter, the journal's writer thread leaves.
public final class DurableBacklog: Sendable {
    /// A connection to call back when there is room: it resumes on its own event loop.
    public typealias Waiter = @Sendable () -> Void

    /// The most data-plane requests waiting for the journal at once.
    public let limit: Int
    /// Waiting connections are called back when the backlog falls below this (a quarter of the limit below it),
    /// so that they resume in a group rather than one request at a time.
    public let resumeBelow: Int

    // Every durable METER enters and leaves once: with a lock that was two lock round trips per METER (+3.8 %
    // instructions per durable METER, callgrind). Counting is atomic; only waiting connections take the lock.
    private let waiting = Atomic<Int>(0)
    private let peak = Atomic<Int>(0)
    /// Set (under `waiters`' lock) while a connection waits: `leave` looks at the lock only then.
    private let hasWaiters = Atomic<Bool>(false)
    /// A pthread mutex (NIO's lock), not Synchronization's `Mutex`: ThreadSanitizer cannot see the futex under the
    /// latter and reported the two writes to the list under it as a race (`make sanitize`); this lock is taken only
    /// while connections wait, so its cost does not matter.
    private let waiters = NIOLockedValueBox<(list: [Waiter], holds: UInt64)>(([], 0))

    public init(limit: Int) {
        self.limit = max(1, limit)
        self.resumeBelow = max(1, self.limit - self.limit / 4)
    }

    /// Counts one more waiting request and returns true when there is room; false at the bound.
    public func tryEnter() -> Bool {
        var current = waiting.load(ordering: .relaxed)
        while current < limit {
            let (exchanged, seen) = waiting.compareExchange(expected: current, desired: current + 1, ordering: .sequentiallyConsistent)
            if exchanged {
                if current + 1 > peak.load(ordering: .relaxed) { raisePeak(to: current + 1) }
                return true
            }
            current = seen
        }
        return false
    }

    private func raisePeak(to value: Int) {
        var known = peak.load(ordering: .relaxed)
        while value > known {
            let (exchanged, seen) = peak.compareExchange(expected: known, desired: value, ordering: .relaxed)
            if exchanged { return }
            known = seen
        }
    }

    /// After `tryEnter` refused: keeps `waiter`, to be called (once) when the backlog has drained, and returns
    /// true; or returns false when there is room again already (the caller tries to enter again).
    ///
    /// No wake-up is lost between the refusal and the registration: the flag is raised before the count is read
    /// again, and `leave` lowers the count before it reads the flag (both sequentially consistent), so either this
    /// sees the room `leave` made, or `leave` sees the flag and wakes the waiter under the same lock.
    public func notifyWhenRoom(_ waiter: @escaping Waiter) -> Bool {
        waiters.withLockedValue { w in
            hasWaiters.store(true, ordering: .sequentiallyConsistent)
            guard waiting.load(ordering: .sequentiallyConsistent) >= limit else {
                if w.list.isEmpty { hasWaiters.store(false, ordering: .sequentiallyConsistent) }
                return false
            }
            w.holds &+= 1
            w.list.append(waiter)
            return true
        }
    }

    /// One request that entered has been answered (durable, failed, or answered without a record).
    public func leave() {
        let left = waiting.wrappingSubtract(1, ordering: .sequentiallyConsistent).newValue
        guard left < resumeBelow, hasWaiters.load(ordering: .sequentiallyConsistent) else { return }
        let woken: [Waiter] = waiters.withLockedValue { w in
            guard !w.list.isEmpty else { return [] }
            hasWaiters.store(false, ordering: .sequentiallyConsistent)
            defer { w.list = [] }
            return w.list
        }
        for waiter in woken { waiter() }
    }

    /// Requests waiting now, the most there ever were at once, and how often a connection had to wait.
    public var statistics: (waiting: Int, peak: Int, holds: UInt64) {
        (waiting.load(ordering: .relaxed), peak.load(ordering: .relaxed), waiters.withLockedValue { $0.holds })
    }
}
