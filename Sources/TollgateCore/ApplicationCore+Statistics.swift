import TollgateEngine
import TollgateModel

/// Counters reported by STATS. Guarded by the core's lock.
struct CoreCounters {
    var checks: UInt64 = 0
    var checksDenied: UInt64 = 0
    var meters: UInt64 = 0
    var meterDuplicates: UInt64 = 0
    var durableWrites: UInt64 = 0
    var durableFailures: UInt64 = 0
    var snapshots: UInt64 = 0
    var snapshotFailures: UInt64 = 0
    var usageDropped: UInt64 = 0
    /// Denied checks by reason, indexed by `DenyReason.rawValue` (a fixed array: one add on a denial, no hashing).
    var denials = [UInt64](repeating: 0, count: CoreCounters.reasonSlots)

    static let reasonSlots = 64
}

/// STATS and systemd's STATUS= line.
extension ApplicationCore {
    /// Adds counters kept outside the core (connections) to STATS.
    public func setExtraStatistics(_ provider: @escaping @Sendable () -> [KeyValue]) {
        lock.withLock { extraStatistics = provider }
    }

    /// One line for systemd's STATUS=: sizes, the check rate since the previous call, the journal's health.
    public func statusLine() -> String {
        let now = clock.now()
        let journalStats = currentJournal.statistics
        return lock.withLock {
            var rate = 0.0
            if let last = lastStatus, now.nanoseconds > last.at.nanoseconds {
                rate = Double(counters.checks &- last.checks) * 1e9 / Double(now.nanoseconds - last.at.nanoseconds)
            }
            lastStatus = (now, counters.checks)
            let journalState = journalStats.failed ? "FAILED" : (recovery.tornTailRepaired ? "ok (torn tail repaired at start)" : "ok")
            return "tokens=\(state.tokens.count) licenses=\(state.licenses.count) checks/s=\(Int(rate.rounded())) journal=\(journalState) seq=\(journalStats.lastSequence)"
        }
    }

    public func statistics() -> [KeyValue] {
        let journalStats = currentJournal.statistics
        let now = clock.now()
        let extra = lock.withLock { extraStatistics }?() ?? []
        return extra + lock.withLock {
            let active = state.tokens.count { revokedAt, _ in revokedAt == 0 }
            return [
                KeyValue("tokens", "\(state.tokens.count)"),
                KeyValue("tokens_active", "\(active)"),
                KeyValue("licenses", "\(state.licenses.count)"),
                KeyValue("plans", "\(state.plans.count)"),
                KeyValue("checks_total", "\(counters.checks)"),
                KeyValue("checks_denied", "\(counters.checksDenied)"),
                KeyValue("meters_total", "\(counters.meters)"),
                KeyValue("meters_duplicate", "\(counters.meterDuplicates)"),
                KeyValue("durable_writes", "\(counters.durableWrites)"),
                KeyValue("durable_failures", "\(counters.durableFailures)"),
                KeyValue("usage_pending", "\(pendingUsage.count)"),
                KeyValue("usage_dropped", "\(counters.usageDropped)"),
                KeyValue("snapshots", "\(counters.snapshots)"),
                KeyValue("journal_last_seq", "\(journalStats.lastSequence)"),
                KeyValue("journal_durable_seq", "\(journalStats.durableSequence)"),
                KeyValue("journal_bytes", "\(journalStats.segmentBytes)"),
                KeyValue("journal_fsyncs", "\(journalStats.fsyncCount)"),
                KeyValue("journal_batches", "\(journalStats.batches)"),
                KeyValue("journal_pending", "\(journalStats.pendingRecords)"),
                KeyValue("journal_failed", journalStats.failed ? "1" : "0"),
                KeyValue("journal_repairs", recovery.tornTailRepaired ? "1" : "0"),
                KeyValue("journal_repaired_bytes", "\(recovery.truncatedBytes)"),
                KeyValue("journal_replayed_records", "\(recovery.recordsReplayed)"),
                KeyValue("decision_watchers", "\(decisionWatchers.load(ordering: .relaxed))"),
                KeyValue("uptime_seconds", "\((now.nanoseconds - startedAt.nanoseconds) / 1_000_000_000)"),
            ]
        }
    }
}
