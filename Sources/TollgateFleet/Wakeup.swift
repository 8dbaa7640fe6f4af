import NIOConcurrencyHelpers

/// A wake-up flag one task waits on and any thread raises: raised while nobody waits, the next wait returns at once;
/// raised many times, one wait. Unlike an AsyncStream, a waiter that is cancelled (its connection failed) leaves it
/// usable by the next one.
final class Wakeup: Sendable {
    private struct State {
        var raised = false
        var waiter: CheckedContinuation<Void, Never>?
    }
    private let state = NIOLockedValueBox(State())

    func raise() {
        let waiter = state.withLockedValue { s -> CheckedContinuation<Void, Never>? in
            guard let waiter = s.waiter else {
                s.raised = true
                return nil
            }
            s.waiter = nil
            return waiter
        }
        waiter?.resume()
    }

    /// Returns when raised (lowering it), or when the task is cancelled.
    func wait() async {
        await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                let now = state.withLockedValue { s -> Bool in
                    if s.raised || Task.isCancelled {
                        s.raised = false
                        return true
                    }
                    s.waiter = continuation
                    return false
                }
                if now { continuation.resume() }
            }
        } onCancel: {
            raise()
        }
    }
}
