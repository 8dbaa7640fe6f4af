import NIOCore
import TollgateEngine
import TollgateModel

/// The decision stream (issue 15; WATCH, `Protocol/PROTOCOL.md` 6.22): every CHECK decision, allows too, copied into
/// a bounded ring while at least one subscription exists. With none, a batch of checks pays one relaxed atomic load
/// and a branch; with one, each check writes a fixed-size slot (no allocation, no lock besides the one it already
/// holds, no wait on any reader). A reader that falls behind loses the oldest decisions and counts them.
extension ApplicationCore {
    /// Slots of the ring (576 bytes each: 4.5 MiB, allocated with the first subscription). At the 50 ms pace the
    /// server drains a WATCH at, a watcher keeps up with about 160 000 decisions a second.
    public static let decisionRingCapacity = 8192

    /// Starts a subscription to the decisions made from now on, of `licenseID` only when it is not empty. Cancel
    /// it (or let it go) to stop: the core stops writing decisions once none is left.
    public func watchDecisions(licenseID: String = "") -> DecisionSubscription {
        lock.withLock {
            let ring = decisionRing ?? DecisionRing(capacity: Self.decisionRingCapacity)
            decisionRing = ring
            // Incremented after the ring is in place (under the lock the checks record under): a check that sees a
            // watcher always finds the ring.
            decisionWatchers.add(1, ordering: .relaxed)
            return ring.subscribe(licenseID: licenseID) { [weak self] in
                self?.decisionWatchers.subtract(1, ordering: .relaxed)
            }
        }
    }

    /// How many subscriptions are open (tests, STATS).
    public var decisionWatcherCount: Int { decisionWatchers.load(ordering: .relaxed) }

    /// Writes one decision into the ring. Called with the lock held, only while someone watches. `started`: the
    /// monotonic time the batch was taken up, so the latency covers the wait for the lock and the checks before
    /// this one in the batch.
    func recordDecisionLocked(_ request: borrowing CheckRequest, _ result: borrowing CheckResult, at now: Timestamp, started: UInt64, route: String?) {
        guard let ring = decisionRing else { return }
        let elapsed = NIODeadline.now().uptimeNanoseconds &- started
        ring.record(
            at: now.millis, latencyNanoseconds: UInt32(clamping: elapsed), source: route == nil ? .socket : .forwardAuth,
            result: result, route: route, scopes: request.scopes)
    }
}
