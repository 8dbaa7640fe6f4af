import TollgateJournal
import TollgateModel

/// Everything the metrics read from the core, copied in one acquisition of the lock at scrape time. The request
/// path keeps only the plain counters it always kept (and one add per denial, by reason); turning them into
/// Prometheus series is the scraper's work, not the CHECK's.
public struct CoreMetricsSnapshot: Sendable {
    public var checks: UInt64
    /// Denied checks by reason (`DenyReason.rawValue` as the index); allowed checks are `checks` minus their sum.
    public var denialsByReason: [UInt64]
    public var meters: UInt64
    public var meterDuplicates: UInt64
    public var durableWrites: UInt64
    /// Records whose journal write failed (each is answered with an error, or kept for recovery).
    public var durableFailures: UInt64
    public var snapshots: UInt64
    public var snapshotFailures: UInt64
    public var usagePending: Int
    public var usageDropped: UInt64
    public var tokens: Int
    public var licenses: Int
    public var plans: Int
    public var journal: JournalStatistics
    /// False once `close` has begun (shutting down).
    public var journalOpen: Bool
    public var recordsReplayed: Int
    public var tornTailRepaired: Bool
    /// When the core started, in nanoseconds since the Unix epoch (the wall clock).
    public var startedAtNanoseconds: Int64

    /// Allowed checks: every check that no reason denied.
    public var allowed: UInt64 { checks &- denialsByReason.reduce(0, &+) }
}

extension ApplicationCore {
    /// One CHECK batch in this many is timed for `observeCheckLatency`.
    public static let checkLatencySampleInterval: UInt64 = 16

    /// Sets the receiver of sampled check latencies: nanoseconds per CHECK of a timed batch, and its size. Called
    /// once at start-up by the composition root; the call happens off the lock, after the batch is decided.
    public func observeCheckLatency(_ observer: @escaping @Sendable (_ nanosecondsPerCheck: Int64, _ checks: Int) -> Void) {
        lock.withLock { checkLatencyObserver = observer }
    }

    /// The counters and sizes the metrics expose. O(1) in the number of tokens: the lock is held for a copy.
    public func metricsSnapshot() -> CoreMetricsSnapshot {
        let journal = currentJournal
        let journalStats = journal.statistics
        let open = journal.isOpen
        return lock.withLock {
            CoreMetricsSnapshot(
                checks: counters.checks, denialsByReason: counters.denials, meters: counters.meters,
                meterDuplicates: counters.meterDuplicates, durableWrites: counters.durableWrites, durableFailures: counters.durableFailures,
                snapshots: counters.snapshots, snapshotFailures: counters.snapshotFailures, usagePending: pendingUsage.count,
                usageDropped: counters.usageDropped, tokens: state.tokens.count, licenses: state.licenses.count, plans: state.plans.count,
                journal: journalStats, journalOpen: open, recordsReplayed: recovery.recordsReplayed,
                tornTailRepaired: recovery.tornTailRepaired, startedAtNanoseconds: startedAt.nanoseconds)
        }
    }
}
