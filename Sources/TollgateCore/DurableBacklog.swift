import NIOConcurrencyHelpers

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

    private struct State {
        var waiting = 0
        var peak = 0
        var holds: UInt64 = 0
        var waiters: [Waiter] = []
    }

    /// The most data-plane requests waiting for the journal at once.
    public let limit: Int
    /// Waiting connections are called back when the backlog falls below this (a quarter of the limit below it),
    /// so that they resume in a group rather than one request at a time.
    public let resumeBelow: Int
    private let state = NIOLockedValueBox(State())

    public init(limit: Int) {
        self.limit = max(1, limit)
        self.resumeBelow = max(1, self.limit - self.limit / 4)
    }

    /// Counts one more waiting request and returns true when there is room; false at the bound.
    public func tryEnter() -> Bool {
        state.withLockedValue { s in
            guard s.waiting < limit else { return false }
            s.waiting += 1
            s.peak = max(s.peak, s.waiting)
            return true
        }
    }

    /// After `tryEnter` refused: keeps `waiter`, to be called (once) when the backlog has drained, and returns
    /// true; or returns false when there is room again already (the caller tries to enter again). Checking under
    /// the same lock as `leave` means no wake-up is lost between the refusal and the registration.
    public func notifyWhenRoom(_ waiter: @escaping Waiter) -> Bool {
        state.withLockedValue { s in
            guard s.waiting >= limit else { return false }
            s.holds &+= 1
            s.waiters.append(waiter)
            return true
        }
    }

    /// One request that entered has been answered (durable, failed, or answered without a record).
    public func leave() {
        let woken: [Waiter] = state.withLockedValue { s in
            s.waiting -= 1
            guard s.waiting < resumeBelow, !s.waiters.isEmpty else { return [] }
            defer { s.waiters = [] }
            return s.waiters
        }
        for waiter in woken { waiter() }
    }

    /// Requests waiting now, the most there ever were at once, and how often a connection had to wait.
    public var statistics: (waiting: Int, peak: Int, holds: UInt64) {
        state.withLockedValue { ($0.waiting, $0.peak, $0.holds) }
    }
}
