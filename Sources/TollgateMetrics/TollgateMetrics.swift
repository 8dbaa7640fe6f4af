import CoreMetrics
import NIOConcurrencyHelpers
import Prometheus
import TollgateBuildInfo
import TollgateCore
import TollgateJournal
import TollgateModel

/// Tollgate's Prometheus metrics: swift-metrics instruments (`Counter`, `Gauge`, `Timer`, `Recorder`) whose handlers
/// are swift-prometheus's, in a registry of our own (not the process-wide default: every daemon a test starts has
/// its own series).
///
/// Most series are folded at scrape time from counters the daemon already keeps (the core's, the journal's, the
/// connection registries'): a scrape copies them and moves the instruments by the difference, so the request path
/// does no metrics work of its own. Two are observed as they happen, off the CHECK's critical cost: the journal's
/// fsync latency and batch size (on the writer thread, once per group commit) and the check latency (one CHECK batch
/// in `ApplicationCore.checkLatencySampleInterval`).
///
/// Names follow Prometheus' conventions: `tollgate_` prefix, base units (seconds, bytes), `_total` on counters. No
/// label carries a token, license or subject: their number is unbounded (per-license traffic is the usage
/// export's and the live view's).
public final class TollgateMetrics: Sendable {
    /// The text exposition format's content type.
    public static let contentType = "text/plain; version=0.0.4; charset=utf-8"

    /// Every deny reason, in wire order: each has its `tollgate_checks_total{decision="deny"}` series from the start,
    /// so that a rate over it is defined before the first denial.
    static let denyReasons = DenyReason.allCases.filter { $0 != .none }

    public let registry: PrometheusCollectorRegistry
    let instruments: Instruments
    /// The values last folded in, so that the next scrape adds the difference; also serialises scrapes.
    private let folded = NIOLockedValueBox(Folded())

    public init() {
        let registry = PrometheusCollectorRegistry()
        self.registry = registry
        self.instruments = Instruments(registry: registry)
    }

    // MARK: Observed as they happen

    /// For `JournalOptions.batchObserver`: one group commit's size and fsync time.
    public func observe(_ batch: JournalBatch) {
        instruments.journalBatchRecords.record(batch.records)
        if let nanoseconds = batch.syncNanoseconds { instruments.journalFsyncDuration.recordNanoseconds(nanoseconds) }
    }

    /// For `ApplicationCore.observeCheckLatency`: the time per CHECK of a sampled batch.
    public func observeCheckLatency(nanosecondsPerCheck: Int64, checks: Int) {
        for _ in 0..<max(1, checks) { instruments.checkDuration.recordNanoseconds(nanosecondsPerCheck) }
    }

    // MARK: Scrape

    /// What the front ends report at scrape time (the daemon gathers it; this module knows no front end).
    public struct FrontEnds: Sendable {
        /// Per socket (`api`, `admin`, `http`): open connections, connections refused over the limit, requests
        /// refused by the socket's allow-list (nil where refusals are answers counted elsewhere: HTTP's are 403s).
        public var sockets: [(socket: String, connections: Int, refusedConnections: UInt64, refusedRequests: UInt64?)]
        /// Forward-auth answers by HTTP status code.
        public var httpAnswers: [UInt: UInt64]
        /// Fleet mode's lag, staleness, position and queue; nil on a single host.
        public var fleet: (lagSeconds: Double, stale: Bool, position: UInt64, queued: Int)?

        public init(sockets: [(socket: String, connections: Int, refusedConnections: UInt64, refusedRequests: UInt64?)] = [], httpAnswers: [UInt: UInt64] = [:]) {
            self.sockets = sockets
            self.httpAnswers = httpAnswers
        }
    }

    /// Folds `core` and `frontEnds` into the instruments, then renders every series in the text format.
    public func scrape(_ core: CoreMetricsSnapshot, _ frontEnds: FrontEnds = FrontEnds()) -> [UInt8] {
        folded.withLockedValue { folded in
            fold(core, frontEnds, into: &folded)
            var buffer: [UInt8] = []
            buffer.reserveCapacity(16 << 10)
            registry.emit(into: &buffer)
            return buffer
        }
    }

    private func fold(_ core: CoreMetricsSnapshot, _ frontEnds: FrontEnds, into last: inout Folded) {
        let i = instruments
        last.advance(i.checksAllowed, "checks.allow", to: core.allowed)
        for reason in Self.denyReasons {
            let slot = Int(reason.rawValue)
            let value = slot < core.denialsByReason.count ? core.denialsByReason[slot] : 0
            last.advance(i.checksDenied[reason]!, "checks.deny.\(reason.name)", to: value)
        }
        last.advance(i.meterEvents, "meters", to: core.meters)
        last.advance(i.meterDuplicates, "meters.duplicate", to: core.meterDuplicates)
        last.advance(i.durableWrites, "durable.writes", to: core.durableWrites)
        last.advance(i.journalRecordFailures, "journal.record_failures", to: core.durableFailures)
        last.advance(i.journalWrittenBytes, "journal.bytes", to: UInt64(max(0, core.journal.bytesWritten)))
        last.advance(i.journalBatches, "journal.batches", to: UInt64(max(0, core.journal.batches)))
        last.advance(i.journalFsyncs, "journal.fsyncs", to: UInt64(max(0, core.journal.fsyncCount)))
        last.advance(i.journalRepairs, "journal.repairs", to: UInt64(max(0, core.journal.repairs)))
        last.advance(i.snapshots, "snapshots", to: core.snapshots)
        last.advance(i.snapshotFailures, "snapshots.failed", to: core.snapshotFailures)
        last.advance(i.usageDropped, "usage.dropped", to: core.usageDropped)
        i.journalSegmentBytes.record(core.journal.segmentBytes)
        i.journalPendingRecords.record(core.journal.pendingRecords)
        i.journalFailed.record(core.journal.failed ? 1 : 0)
        i.journalLastSequence.record(Double(core.journal.lastSequence))
        i.journalDurableSequence.record(Double(core.journal.durableSequence))
        i.journalReplayedRecords.record(core.recordsReplayed)
        i.usagePending.record(core.usagePending)
        i.tokens.record(core.tokens)
        i.licenses.record(core.licenses)
        i.plans.record(core.plans)
        i.startTime.record(Double(core.startedAtNanoseconds) / 1e9)
        for socket in frontEnds.sockets {
            i.connections(socket.socket).record(socket.connections)
            last.advance(i.refusedConnections(socket.socket), "refused.connections.\(socket.socket)", to: socket.refusedConnections)
            if let refused = socket.refusedRequests {
                last.advance(i.refusedRequests(socket.socket), "refused.requests.\(socket.socket)", to: refused)
            }
        }
        for (status, count) in frontEnds.httpAnswers {
            last.advance(i.httpAnswers(status), "http.\(status)", to: count)
        }
        // Fleet mode only: a single host has none of these series.
        if let fleet = frontEnds.fleet {
            i.plainGauge("tollgate_fleet_lag_seconds", "Time since this host's last confirmed catch-up with the fleet log (Protocol/FLEET.md 7).")
                .record(fleet.lagSeconds)
            i.plainGauge("tollgate_fleet_stale", "1 while every check is denied fleet_stale (no catch-up for the revocation horizon), else 0.")
                .record(fleet.stale ? 1 : 0)
            i.plainGauge("tollgate_fleet_position", "The fleet log sequence this host has applied up to.").record(Double(fleet.position))
            i.plainGauge("tollgate_fleet_queued_records", "Records applied here and waiting to be committed to the fleet log.").record(fleet.queued)
        }
    }

    /// The values the counters were last moved to, by key.
    struct Folded {
        var values: [String: UInt64] = [:]

        /// Moves `counter` by the growth of `value` since the last scrape. A value below the last one means its
        /// source restarted (the journal reopened after an outage counts from zero): the whole value is new.
        mutating func advance(_ counter: CoreMetrics.Counter, _ key: String, to value: UInt64) {
            let previous = values[key] ?? 0
            let delta = value >= previous ? value - previous : value
            if delta > 0 { counter.increment(by: Int64(truncatingIfNeeded: min(delta, UInt64(Int64.max)))) }
            values[key] = value
        }
    }
}
