import CoreMetrics
import NIOConcurrencyHelpers
import Prometheus
import TollgateBuildInfo
import TollgateModel

/// Every instrument, created once with its help text. swift-metrics' API (`Counter`, `Gauge`, `Timer`, `Recorder`)
/// over handlers made by swift-prometheus's registry, rather than through `PrometheusMetricsFactory`: the factory
/// registers every series without help text, and `promtool check metrics` flags a family without `# HELP`.
/// Labelled families whose label values appear at run time (sockets, HTTP statuses) are made on first use.
final class Instruments: Sendable {
    /// Check latency buckets, seconds: a CHECK is decided in microseconds, so the range starts at 1 µs.
    static let checkDurationBuckets: [Duration] = [
        .microseconds(1), .microseconds(2), .microseconds(5), .microseconds(10), .microseconds(20), .microseconds(50),
        .microseconds(100), .microseconds(200), .microseconds(500), .milliseconds(1), .milliseconds(5), .milliseconds(25),
    ]
    /// fdatasync buckets: from a fast NVMe (tens of µs) to a struggling disk (seconds).
    static let fsyncDurationBuckets: [Duration] = [
        .microseconds(50), .microseconds(100), .microseconds(250), .microseconds(500), .milliseconds(1), .milliseconds(2),
        .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100), .milliseconds(250),
        .seconds(1),
    ]
    /// Records per group commit: powers of two up to the journal's default batch bound (4096).
    static let batchRecordBuckets: [Double] = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096]

    let registry: PrometheusCollectorRegistry

    let checksAllowed: CoreMetrics.Counter
    let checksDenied: [DenyReason: CoreMetrics.Counter]
    let checkDuration: CoreMetrics.Timer
    let meterEvents: CoreMetrics.Counter
    let meterDuplicates: CoreMetrics.Counter
    let durableWrites: CoreMetrics.Counter
    let journalFsyncDuration: CoreMetrics.Timer
    let journalBatchRecords: CoreMetrics.Recorder
    let journalWrittenBytes: CoreMetrics.Counter
    let journalBatches: CoreMetrics.Counter
    let journalFsyncs: CoreMetrics.Counter
    let journalRecordFailures: CoreMetrics.Counter
    let journalRepairs: CoreMetrics.Counter
    let journalSegmentBytes: CoreMetrics.Gauge
    let journalPendingRecords: CoreMetrics.Gauge
    let journalFailed: CoreMetrics.Gauge
    let journalLastSequence: CoreMetrics.Gauge
    let journalDurableSequence: CoreMetrics.Gauge
    let journalReplayedRecords: CoreMetrics.Gauge
    let snapshots: CoreMetrics.Counter
    let snapshotFailures: CoreMetrics.Counter
    let usagePending: CoreMetrics.Gauge
    let usageDropped: CoreMetrics.Counter
    let tokens: CoreMetrics.Gauge
    let licenses: CoreMetrics.Gauge
    let plans: CoreMetrics.Gauge
    let startTime: CoreMetrics.Gauge
    let buildInfo: CoreMetrics.Gauge
    private let labelled = NIOLockedValueBox<[String: CoreMetrics.Counter]>([:])
    private let labelledGauges = NIOLockedValueBox<[String: CoreMetrics.Gauge]>([:])

    init(registry: PrometheusCollectorRegistry) {
        self.registry = registry
        func counter(_ name: String, _ help: String, _ labels: [(String, String)] = []) -> CoreMetrics.Counter {
            CoreMetrics.Counter(label: name, dimensions: labels, handler: registry.makeCounter(descriptor: Self.descriptor(name, help), labels: labels))
        }
        func gauge(_ name: String, _ help: String, _ labels: [(String, String)] = []) -> CoreMetrics.Gauge {
            CoreMetrics.Gauge(label: name, dimensions: labels, aggregate: false, handler: registry.makeGauge(descriptor: Self.descriptor(name, help), labels: labels))
        }
        func timer(_ name: String, _ help: String, _ buckets: [Duration]) -> CoreMetrics.Timer {
            CoreMetrics.Timer(label: name, dimensions: [], handler: registry.makeDurationHistogram(descriptor: Self.descriptor(name, help), buckets: buckets))
        }

        buildInfo = gauge("tollgate_build_info", Help.buildInfo, [("version", BuildInfo.version), ("commit", BuildInfo.commit)])
        buildInfo.record(1)
        checksAllowed = counter("tollgate_checks_total", Help.checks, [("decision", "allow"), ("reason", DenyReason.none.name)])
        var denied: [DenyReason: CoreMetrics.Counter] = [:]
        for reason in TollgateMetrics.denyReasons {
            denied[reason] = counter("tollgate_checks_total", Help.checks, [("decision", "deny"), ("reason", reason.name)])
        }
        checksDenied = denied
        checkDuration = timer("tollgate_check_duration_seconds", Help.checkDuration, Self.checkDurationBuckets)
        meterEvents = counter("tollgate_meter_events_total", Help.meterEvents)
        meterDuplicates = counter("tollgate_meter_duplicates_total", Help.meterDuplicates)
        durableWrites = counter("tollgate_durable_writes_total", Help.durableWrites)
        journalFsyncDuration = timer("tollgate_journal_fsync_duration_seconds", Help.fsyncDuration, Self.fsyncDurationBuckets)
        journalBatchRecords = CoreMetrics.Recorder(
            label: "tollgate_journal_batch_records", dimensions: [], aggregate: true,
            handler: registry.makeValueHistogram(descriptor: Self.descriptor("tollgate_journal_batch_records", Help.batchRecords), buckets: Self.batchRecordBuckets))
        journalWrittenBytes = counter("tollgate_journal_written_bytes_total", Help.writtenBytes)
        journalBatches = counter("tollgate_journal_batches_total", Help.batches)
        journalFsyncs = counter("tollgate_journal_fsyncs_total", Help.fsyncs)
        journalRecordFailures = counter("tollgate_journal_record_failures_total", Help.recordFailures)
        journalRepairs = counter("tollgate_journal_repairs_total", Help.repairs)
        journalSegmentBytes = gauge("tollgate_journal_segment_bytes", Help.segmentBytes)
        journalPendingRecords = gauge("tollgate_journal_pending_records", Help.pendingRecords)
        journalFailed = gauge("tollgate_journal_failed", Help.journalFailed)
        journalLastSequence = gauge("tollgate_journal_last_sequence", Help.lastSequence)
        journalDurableSequence = gauge("tollgate_journal_durable_sequence", Help.durableSequence)
        journalReplayedRecords = gauge("tollgate_journal_replayed_records", Help.replayedRecords)
        snapshots = counter("tollgate_snapshots_total", Help.snapshots)
        snapshotFailures = counter("tollgate_snapshot_failures_total", Help.snapshotFailures)
        usagePending = gauge("tollgate_usage_pending_entries", Help.usagePending)
        usageDropped = counter("tollgate_usage_dropped_entries_total", Help.usageDropped)
        tokens = gauge("tollgate_tokens", Help.tokens)
        licenses = gauge("tollgate_licenses", Help.licenses)
        plans = gauge("tollgate_plans", Help.plans)
        startTime = gauge("tollgate_start_time_seconds", Help.startTime)
    }

    /// A gauge without labels made on first use (series that only some daemons have, such as fleet mode's).
    func plainGauge(_ name: String, _ help: String) -> CoreMetrics.Gauge {
        labelledGauges.withLockedValue { gauges in
            if let gauge = gauges["plain|" + name] { return gauge }
            let gauge = CoreMetrics.Gauge(label: name, dimensions: [], aggregate: false, handler: registry.makeGauge(descriptor: Self.descriptor(name, help), labels: []))
            gauges["plain|" + name] = gauge
            return gauge
        }
    }

    func connections(_ socket: String) -> CoreMetrics.Gauge {
        labelledGauges.withLockedValue { gauges in
            if let gauge = gauges[socket] { return gauge }
            let labels = [("socket", socket)]
            let gauge = CoreMetrics.Gauge(
                label: "tollgate_connections", dimensions: labels, aggregate: false,
                handler: registry.makeGauge(descriptor: Self.descriptor("tollgate_connections", Help.connections), labels: labels))
            gauges[socket] = gauge
            return gauge
        }
    }

    func refusedConnections(_ socket: String) -> CoreMetrics.Counter {
        labelledCounter("tollgate_connections_refused_total", Help.refusedConnections, [("socket", socket)])
    }

    func refusedRequests(_ socket: String) -> CoreMetrics.Counter {
        labelledCounter("tollgate_requests_refused_total", Help.refusedRequests, [("socket", socket)])
    }

    func httpAnswers(_ status: UInt) -> CoreMetrics.Counter {
        labelledCounter("tollgate_http_answers_total", Help.httpAnswers, [("status", "\(status)")])
    }

    private func labelledCounter(_ name: String, _ help: String, _ labels: [(String, String)]) -> CoreMetrics.Counter {
        let key = name + labels.map { "|\($0.0)=\($0.1)" }.joined()
        return labelled.withLockedValue { counters in
            if let counter = counters[key] { return counter }
            let counter = CoreMetrics.Counter(
                label: name, dimensions: labels, handler: registry.makeCounter(descriptor: Self.descriptor(name, help), labels: labels))
            counters[key] = counter
            return counter
        }
    }

    /// A descriptor for a full name: swift-prometheus joins its parts with `_`, so the whole name is the metric name.
    static func descriptor(_ name: String, _ help: String) -> MetricNameDescriptor {
        MetricNameDescriptor(metricName: name, unitName: "", helpText: help)
    }
}

/// The help text of each family, which README's "Observability" table repeats.
enum Help {
    static let buildInfo = "Always 1; the labels name the version and git commit of the running tollgated."
    static let checks = "CHECKs decided since start, by decision (allow, deny) and reason (none when allowed)."
    static let checkDuration = "Time to decide one CHECK in the core, lock wait included; sampled: one CHECK batch in 16 is timed."
    static let meterEvents = "METER events applied since start (duplicates included)."
    static let meterDuplicates = "METER events answered as duplicates of an idempotency key already applied."
    static let durableWrites = "Changes written to the journal that were answered only once fsynced."
    static let fsyncDuration = "Time of one fdatasync of the journal (one group commit)."
    static let batchRecords = "Records per group commit of the journal."
    static let writtenBytes = "Bytes written to journal segments since start (record headers included)."
    static let batches = "Group commits of the journal (one write and one fdatasync each)."
    static let fsyncs = "fsync and fdatasync calls on journal segments, snapshots and the directory."
    static let recordFailures = "Journal records whose write or fsync failed."
    static let repairs = "Times the journal cut a segment back after a failed write."
    static let segmentBytes = "Size of the current journal segment in bytes."
    static let pendingRecords = "Records queued for the journal's writer, not yet written."
    static let journalFailed = "1 while the journal cannot write (an outage: changes are refused until it recovers), else 0."
    static let lastSequence = "Sequence number of the last journal record appended."
    static let durableSequence = "Every journal record up to this sequence number is durable."
    static let replayedRecords = "Journal records replayed at start (after the snapshot)."
    static let snapshots = "Snapshots written since start."
    static let snapshotFailures = "Snapshots that failed since start."
    static let usagePending = "Check consumption entries waiting for the next journal batch."
    static let usageDropped = "Check consumption entries dropped during a long journal outage (bounded memory)."
    static let tokens = "Tokens in the state (revoked and expired ones until the sweep forgets them)."
    static let licenses = "Licenses in the state."
    static let plans = "Plans in the state."
    static let startTime = "Start time of the daemon, seconds since the Unix epoch."
    static let connections = "Open connections, by socket (api, admin, http)."
    static let refusedConnections = "Connections refused for being over the socket's connection limit, by socket."
    static let refusedRequests = "Requests refused by the socket's allow-list (peer credentials), by socket."
    static let httpAnswers = "Forward-auth answers of the HTTP listener by status code (refusals included; /metrics and health not)."
}
