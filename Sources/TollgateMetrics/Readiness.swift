import TollgateCore

/// `/healthz` and `/readyz`. Health says only that the process answers (an event loop ran the request): restart
/// it when this fails. Readiness says whether to send it traffic now: the journal replayed (the listener is only
/// started after the replay, and `accepting` is raised once every socket is bound), the journal open and writable
/// (not in an outage, not closing), the sockets accepting (not starting, not stopping).
public enum Readiness {
    public struct Verdict: Sendable, Hashable {
        public var ready: Bool
        /// One line for the body: why not, or what was checked.
        public var reason: String
    }

    public static func evaluate(_ core: CoreMetricsSnapshot, accepting: Bool) -> Verdict {
        guard accepting else {
            return Verdict(ready: false, reason: "not ready: the sockets are not accepting (starting or stopping)")
        }
        guard core.journalOpen else {
            return Verdict(ready: false, reason: "not ready: the journal is closed (shutting down)")
        }
        guard !core.journal.failed else {
            return Verdict(
                ready: false,
                reason: "not ready: journal outage: writes are failing (disk full or I/O error); changes are refused until a retry succeeds")
        }
        return Verdict(ready: true, reason: "ready: journal replayed (\(core.recordsReplayed) records) and writable; sockets accepting")
    }

    /// `/healthz`'s body.
    public static let healthy = "ok: tollgated answers"
}
