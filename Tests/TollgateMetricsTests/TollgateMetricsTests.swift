import Foundation
import Logging
import TollgateBuildInfo
import TollgateCore
import TollgateEngine
import TollgateJournal
@testable import TollgateMetrics
import TollgateModel
import TollgateProtocol
import XCTest

/// The metrics against a real core and journal in a temporary directory: names and labels by Prometheus'
/// conventions, counters folded by difference, the sampled latency, the journal's observer, readiness.
final class TollgateMetricsTests: XCTestCase {
    private var directory: String!
    private var core: ApplicationCore!
    private var metrics: TollgateMetrics!

    override func setUp() async throws {
        directory = NSTemporaryDirectory() + "tollgate-metrics-tests-" + UUID().uuidString
        let metrics = TollgateMetrics()
        self.metrics = metrics
        var options = JournalOptions(fsync: true)
        options.batchObserver = { metrics.observe($0) }
        let (journal, recovered) = try Journal.open(directory: directory, options: options)
        core = ApplicationCore(
            state: try ApplicationCore.rebuildState(from: recovered), journal: journal, recovery: recovered.report, clock: SystemWallClock(),
            options: .init(), logger: Logger(label: "metrics-tests") { _ in SwiftLogNoOpLogHandler() })
        core.observeCheckLatency { metrics.observeCheckLatency(nanosecondsPerCheck: $0, checks: $1) }
    }

    override func tearDown() async throws {
        try? core.currentJournal.close()
        try? FileManager.default.removeItem(atPath: directory)
    }

    private func scrape() -> String { String(decoding: metrics.scrape(core.metricsSnapshot()), as: UTF8.self) }

    /// The value of the sample whose name and labels are exactly `series` (as rendered), or nil.
    private func value(_ series: String, in text: String) -> Double? {
        for line in text.split(separator: "\n") where line.hasPrefix(series + " ") {
            return Double(line.dropFirst(series.count + 1))
        }
        return nil
    }

    private func send(_ request: Request) async -> Response {
        await withCheckedContinuation { continuation in
            if let now = core.handle(request, from: Caller(role: .admin, uid: 0), completion: { continuation.resume(returning: $0) }) {
                continuation.resume(returning: now)
            }
        }
    }

    func testEveryFamilyHasHelpTypeAndConventionalName() {
        let text = scrape()
        var families: [String: String] = [:]
        for line in text.split(separator: "\n") where line.hasPrefix("# TYPE ") {
            let parts = line.split(separator: " ")
            families[String(parts[2])] = String(parts[3])
        }
        let expected: [String: String] = [
            "tollgate_build_info": "gauge", "tollgate_checks_total": "counter", "tollgate_check_duration_seconds": "histogram",
            "tollgate_meter_events_total": "counter", "tollgate_meter_duplicates_total": "counter",
            "tollgate_journal_fsync_duration_seconds": "histogram", "tollgate_journal_batch_records": "histogram",
            "tollgate_journal_written_bytes_total": "counter", "tollgate_journal_record_failures_total": "counter",
            "tollgate_journal_failed": "gauge", "tollgate_snapshots_total": "counter", "tollgate_snapshot_failures_total": "counter",
            "tollgate_tokens": "gauge", "tollgate_licenses": "gauge", "tollgate_plans": "gauge",
        ]
        for (name, type) in expected {
            XCTAssertEqual(families[name], type, "\(name) is exposed as a \(type)")
        }
        for (name, type) in families {
            XCTAssertTrue(name.hasPrefix("tollgate_"), name)
            XCTAssertTrue(text.contains("# HELP \(name) "), "\(name) has help text")
            XCTAssertEqual(type == "counter", name.hasSuffix("_total"), "\(name): _total on counters, and only on them")
            XCTAssertFalse(name.contains("milliseconds") || name.contains("_ms"), "\(name): base units")
        }
        // No label whose values are unbounded.
        for forbidden in ["token", "license", "subject", "org"] {
            XCTAssertFalse(text.contains("{\(forbidden)=") || text.contains(",\(forbidden)="), "no \(forbidden) label")
        }
        XCTAssertNotNil(value("tollgate_build_info{version=\"\(BuildInfo.version)\",commit=\"\(BuildInfo.commit)\"}", in: text))
    }

    func testChecksByDecisionAndReasonFoldedByDifference() {
        for _ in 0..<3 { _ = core.check(CheckRequest(token: "not-a-token")) }
        let first = scrape()
        XCTAssertEqual(value(#"tollgate_checks_total{decision="deny",reason="malformed_token"}"#, in: first), 3)
        XCTAssertEqual(value(#"tollgate_checks_total{decision="allow",reason="none"}"#, in: first), 0)
        // Every reason has its series from the start.
        XCTAssertEqual(value(#"tollgate_checks_total{decision="deny",reason="quota_exceeded"}"#, in: first), 0)
        // A second scrape adds only what happened since the first.
        _ = core.check(CheckRequest(token: "still-not-a-token"))
        let second = scrape()
        XCTAssertEqual(value(#"tollgate_checks_total{decision="deny",reason="malformed_token"}"#, in: second), 4)
        XCTAssertEqual(value(#"tollgate_checks_total{decision="deny",reason="malformed_token"}"#, in: scrape()), 4)
    }

    func testCheckLatencyIsSampledOneBatchInSixteen() {
        let interval = Int(ApplicationCore.checkLatencySampleInterval)
        for _ in 0..<(interval * 3) { _ = core.check(CheckRequest(token: "x")) }
        let text = scrape()
        XCTAssertEqual(value("tollgate_check_duration_seconds_count", in: text), 3)
        XCTAssertEqual(value(#"tollgate_check_duration_seconds_bucket{le="+Inf"}"#, in: text), 3)
        XCTAssertNotNil(value(#"tollgate_check_duration_seconds_bucket{le="0.000001"}"#, in: text), "buckets in seconds")
    }

    func testJournalBatchesAreObserved() async throws {
        guard case .plan = await send(.planPut(Plan(id: "pro", entitlements: ["read"]))) else { return XCTFail("plan put") }
        let text = scrape()
        XCTAssertGreaterThanOrEqual(value("tollgate_journal_batch_records_count", in: text) ?? 0, 1)
        XCTAssertGreaterThanOrEqual(value("tollgate_journal_fsync_duration_seconds_count", in: text) ?? 0, 1)
        XCTAssertGreaterThan(value("tollgate_journal_written_bytes_total", in: text) ?? 0, 0)
        XCTAssertEqual(value("tollgate_plans", in: text), 1)
        XCTAssertEqual(value("tollgate_journal_failed", in: text), 0)
    }

    func testFrontEndSeriesBySocketAndStatus() {
        let frontEnds = TollgateMetrics.FrontEnds(
            sockets: [("api", 3, 1, 2), ("http", 1, 0, 0)], httpAnswers: [200: 5, 429: 2])
        _ = metrics.scrape(core.metricsSnapshot(), frontEnds)
        let text = String(decoding: metrics.scrape(core.metricsSnapshot(), frontEnds), as: UTF8.self)
        XCTAssertEqual(value(#"tollgate_connections{socket="api"}"#, in: text), 3)
        XCTAssertEqual(value(#"tollgate_connections_refused_total{socket="api"}"#, in: text), 1)
        XCTAssertEqual(value(#"tollgate_requests_refused_total{socket="api"}"#, in: text), 2)
        XCTAssertEqual(value(#"tollgate_connections{socket="http"}"#, in: text), 1)
        XCTAssertEqual(value(#"tollgate_http_answers_total{status="200"}"#, in: text), 5)
        XCTAssertEqual(value(#"tollgate_http_answers_total{status="429"}"#, in: text), 2)
    }

    func testACounterWhoseSourceRestartedKeepsGrowing() {
        var folded = TollgateMetrics.Folded()
        let counter = metrics.instruments.journalWrittenBytes
        folded.advance(counter, "k", to: 100)
        folded.advance(counter, "k", to: 150)
        folded.advance(counter, "k", to: 20)  // the journal reopened after an outage counts from zero
        XCTAssertEqual(value("tollgate_journal_written_bytes_total", in: String(decoding: metrics.registry.emitToBuffer(), as: UTF8.self)), 170)
    }

    func testReadiness() throws {
        XCTAssertEqual(Readiness.evaluate(core.metricsSnapshot(), accepting: true).ready, true)
        let starting = Readiness.evaluate(core.metricsSnapshot(), accepting: false)
        XCTAssertFalse(starting.ready)
        XCTAssertTrue(starting.reason.contains("not accepting"), starting.reason)
        try core.currentJournal.close()
        let closing = Readiness.evaluate(core.metricsSnapshot(), accepting: true)
        XCTAssertFalse(closing.ready)
        XCTAssertTrue(closing.reason.contains("journal is closed"), closing.reason)
    }
}
