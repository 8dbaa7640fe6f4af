import NIOConcurrencyHelpers
import NIOCore

/// Decides whether the daemon is alive enough to ping the systemd watchdog: every event loop must run a task
/// within the deadline, and `extraProbe` (taking the state lock) must return. A stuck loop or a stuck lock
/// therefore stops the pings, and systemd restarts the daemon.
public struct LivenessProbe: Sendable {
    let group: any EventLoopGroup
    let extraProbe: @Sendable () -> Bool

    public init(group: any EventLoopGroup, extraProbe: @escaping @Sendable () -> Bool = { true }) {
        self.group = group
        self.extraProbe = extraProbe
    }

    /// True when every loop answered within `deadline` and the extra probe passed. The deadline does not rely on
    /// any event loop (a stuck loop could not fire it).
    public func isAlive(deadline: Duration) async -> Bool {
        let futures = group.makeIterator().map { loop in loop.submit { () } }
        let allAnswered = EventLoopFuture.andAllSucceed(futures, on: group.any())
        let decided = NIOLockedValueBox(false)
        let answered: Bool = await withCheckedContinuation { continuation in
            let finish: @Sendable (Bool) -> Void = { value in
                let first = decided.withLockedValue { done -> Bool in
                    defer { done = true }
                    return !done
                }
                if first { continuation.resume(returning: value) }
            }
            allAnswered.whenComplete { finish((try? $0.get()) != nil) }
            Task {
                try? await Task.sleep(for: deadline)
                finish(false)
            }
        }
        return answered && extraProbe()
    }
}
