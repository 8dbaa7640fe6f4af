import NIOCore

/// What one event of `ConnectionStateMachine` asks the channel handler to do, in this order: change reading, arm or
/// cancel the timers (the WATCH pacing timer too), write `output` and flush, close (after the write completes, when there is one). Plain values,
/// so that handing them out allocates nothing.
struct ConnectionActions: Equatable {
    enum Reading: Equatable { case unchanged, pause, resume }
    enum Timer: Equatable {
        case unchanged
        case cancel
        /// Cancel the timer if it runs, and arm it to fire at the deadline.
        case arm(NIODeadline)
    }

    /// The WATCH stream's pacing timer: start it (every `ConnectionStateMachine.watchInterval`, calling
    /// `watchTick`) or stop it.
    enum Watch: Equatable { case unchanged, start, stop }

    var reading = Reading.unchanged
    var frameTimer = Timer.unchanged
    var idleTimer = Timer.unchanged
    var watch = Watch.unchanged
    /// Write the machine's `output` and flush, then call its `outputWritten`.
    var flush = false
    var close = false

    /// Nothing but a write or a close: reading and both timers stay as they are (most events; a tag compare each).
    var onlyOutput: Bool {
        guard case .unchanged = reading, case .unchanged = frameTimer, case .unchanged = idleTimer, case .unchanged = watch else { return false }
        return true
    }
}
