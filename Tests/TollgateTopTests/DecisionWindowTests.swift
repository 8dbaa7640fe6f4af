import Foundation
import TollgateModel
import TollgateTop
import XCTest

/// `tollgate top`'s arithmetic: rates over the window, busiest first, denials by reason, percentiles, drops, and the
/// screen drawn from them.
final class DecisionWindowTests: XCTestCase {
    private var sequence: UInt64 = 0

    private func event(_ license: String, token: String, reason: DenyReason = .none, latency: UInt32 = 1_000) -> DecisionEvent {
        sequence += 1
        return DecisionEvent(
            sequence: sequence, at: 0, latencyNanoseconds: latency, source: .socket, reason: reason, tokenID: token,
            licenseID: license, subject: "svc", route: "read")
    }

    func testRatesAndBusiestLicensesAndTokensOverAFullWindow() {
        var window = DecisionWindow(seconds: 5)
        // 5 seconds: each second acme 30 (3 of them rate limited), globex 10 allowed.
        for second in 0..<5 {
            var events: [DecisionEvent] = []
            for i in 0..<30 { events.append(event("acme", token: i < 20 ? "tok_a1" : "tok_a2", reason: i < 3 ? .rateLimited : .none)) }
            for _ in 0..<10 { events.append(event("globex", token: "tok_g1")) }
            window.add(events, dropped: 0, nowMillis: Int64(second) * 1000)
        }
        // At 5.000 s second 0 has left the window: seconds 1 to 4 whole, and nothing yet of second 5.
        let summary = window.summary(nowMillis: 5000)
        XCTAssertEqual(summary.spanSeconds, 4)
        XCTAssertEqual(summary.requestsPerSecond, 40, accuracy: 0.001)
        XCTAssertEqual(summary.deniedPerSecond, 3, accuracy: 0.001)
        XCTAssertEqual(summary.allowedPerSecond, 37, accuracy: 0.001)
        XCTAssertEqual(summary.licenses.map(\.id), ["acme", "globex"])
        XCTAssertEqual(summary.licenses[0].requestsPerSecond, 30, accuracy: 0.001)
        XCTAssertEqual(summary.licenses[0].deniedPerSecond, 3, accuracy: 0.001)
        XCTAssertEqual(summary.licenses[1].deniedPerSecond, 0)
        XCTAssertEqual(summary.tokens.map(\.id), ["tok_a1", "tok_a2", "tok_g1"])
        XCTAssertEqual(summary.tokens[0].license, "acme")
        XCTAssertEqual(summary.tokens[0].deniedPerSecond, 3, accuracy: 0.001)
        XCTAssertEqual(summary.tokens[1].deniedPerSecond, 0)
        XCTAssertEqual(summary.reasons.map(\.reason), [.rateLimited])
        XCTAssertEqual(summary.reasons[0].count, 12)
    }

    func testSecondsOlderThanTheWindowAreForgotten() {
        var window = DecisionWindow(seconds: 3)
        window.add([event("old", token: "tok_o")], dropped: 0, nowMillis: 0)
        window.add((0..<6).map { _ in event("new", token: "tok_n", reason: .quotaExceeded) }, dropped: 0, nowMillis: 3_500)
        let summary = window.summary(nowMillis: 3_500)
        XCTAssertEqual(summary.licenses.map(\.id), ["new"], "the decision of second 0 left a 3-second window at second 3")
        XCTAssertEqual(summary.spanSeconds, 2.5, accuracy: 0.001)
        XCTAssertEqual(summary.requestsPerSecond, 6 / 2.5, accuracy: 0.001)
        // Long after: nothing left.
        let later = window.summary(nowMillis: 60_000)
        XCTAssertEqual(later.requestsPerSecond, 0)
        XCTAssertTrue(later.licenses.isEmpty)
        XCTAssertNil(later.latencyP50Nanoseconds)
    }

    func testAPartialWindowRatesOverTheTimeSinceTheFirstBatch() {
        var window = DecisionWindow(seconds: 10)
        window.add((0..<10).map { _ in event("acme", token: "tok_a") }, dropped: 0, nowMillis: 100_000)
        let summary = window.summary(nowMillis: 102_000)
        XCTAssertEqual(summary.spanSeconds, 2)
        XCTAssertEqual(summary.requestsPerSecond, 5, accuracy: 0.001)
    }

    func testTopNKeepsTheBusiest() {
        var window = DecisionWindow(seconds: 2)
        var events: [DecisionEvent] = []
        for license in 0..<20 { for _ in 0...license { events.append(event("lic_\(license)", token: "tok_\(license)")) } }
        window.add(events, dropped: 0, nowMillis: 0)
        let summary = window.summary(nowMillis: 1_000, top: 3)
        XCTAssertEqual(summary.licenses.map(\.id), ["lic_19", "lic_18", "lic_17"])
        XCTAssertEqual(summary.tokens.count, 3)
    }

    func testDropsAreCountedFromTheStreamsCumulativeFigure() {
        var window = DecisionWindow(seconds: 5)
        window.add([], dropped: 100, nowMillis: 0)
        window.add([], dropped: 100, nowMillis: 500)
        window.add([], dropped: 350, nowMillis: 1_000)
        let summary = window.summary(nowMillis: 4_000)
        XCTAssertEqual(summary.droppedTotal, 350)
        XCTAssertEqual(summary.droppedPerSecond, 350.0 / 4, accuracy: 0.001)
        XCTAssertEqual(window.summary(nowMillis: 5_000).droppedPerSecond, 250.0 / 4, accuracy: 0.001, "second 0's 100 left the window")
    }

    func testPercentilesComeFromTheLatencies() {
        var window = DecisionWindow(seconds: 5)
        // 98 fast decisions (10 µs), 2 slow (5 ms): p50 is fast, p99 slow.
        var events = (0..<98).map { _ in event("a", token: "t", latency: 10_000) }
        events += (0..<2).map { _ in event("a", token: "t", latency: 5_000_000) }
        window.add(events, dropped: 0, nowMillis: 0)
        let summary = window.summary(nowMillis: 1_000)
        let p50 = try! XCTUnwrap(summary.latencyP50Nanoseconds)
        let p99 = try! XCTUnwrap(summary.latencyP99Nanoseconds)
        XCTAssertGreaterThanOrEqual(p50, 10_000)
        XCTAssertLessThanOrEqual(Double(p50), 10_000 * 1.125)
        XCTAssertGreaterThanOrEqual(p99, 5_000_000)
        XCTAssertLessThanOrEqual(Double(p99), 5_000_000 * 1.125)
    }

    func testHistogramBucketsBoundEveryValueWithinAnEighth() {
        for value: UInt32 in [0, 1, 7, 8, 9, 15, 16, 17, 100, 1_000, 65_535, 1 << 20, 123_456_789, UInt32.max] {
            var histogram = LatencyHistogram()
            histogram.record(value)
            let bound = try! XCTUnwrap(histogram.percentile(0.5))
            XCTAssertGreaterThanOrEqual(bound, UInt64(value), "\(value)")
            XCTAssertLessThanOrEqual(Double(bound), Double(value) * 1.125 + 1, "\(value)")
        }
    }

    func testScreenShowsTheBusiestLicenseItsRateAndTheDenyReason() {
        var window = DecisionWindow(seconds: 2)
        window.add((0..<40).map { event("lic_busy", token: "tok_busy", reason: $0 < 10 ? .quotaExceeded : .none, latency: 2_500) }, dropped: 7, nowMillis: 1_000)
        window.add((0..<4).map { _ in event("lic_quiet", token: "tok_quiet") }, dropped: 7, nowMillis: 1_500)
        let summary = window.summary(nowMillis: 2_000)
        let journal = TopScreen.Journal(stats: [
            KeyValue("journal_failed", "0"), KeyValue("journal_last_seq", "42"), KeyValue("journal_durable_seq", "41"),
            KeyValue("journal_pending", "1"), KeyValue("journal_bytes", "2097152"),
        ])
        let lines = TopScreen.render(summary, journal: journal, license: "", windowSeconds: 2, rows: 30, columns: 100)
        let screen = lines.joined(separator: "\n")
        XCTAssertTrue(lines[1].hasPrefix("requests 44.0/s   allowed 34.0/s   denied 10.0/s   latency p50 2.6 us  p99 2.6 us"), lines[1])
        XCTAssertTrue(screen.contains("journal ok   seq 42   durable 41   pending 1   2 MiB"), screen)
        XCTAssertTrue(screen.contains("watcher lost 7 decisions"), screen)
        let reason = try! XCTUnwrap(lines.first { $0.hasPrefix("quota_exceeded") })
        XCTAssertEqual(reason.split(separator: " ").map(String.init), ["quota_exceeded", "10.0", "10"])
        let license = try! XCTUnwrap(lines.firstIndex { $0.hasPrefix("lic_busy") })
        XCTAssertLessThan(license, try! XCTUnwrap(lines.firstIndex { $0.hasPrefix("lic_quiet") }), "busiest first")
        XCTAssertEqual(lines[license].split(separator: " ").map(String.init), ["lic_busy", "40.0", "10.0"])
        XCTAssertTrue(lines.allSatisfy { $0.count <= 100 })
        XCTAssertEqual(TopScreen.render(summary, journal: nil, license: "x", windowSeconds: 2, rows: 5, columns: 20).count, 5)
    }

    func testJSONLineIsOneObjectWithEveryField() throws {
        let line = DecisionEvent(
            sequence: 9, at: 1_767_225_600_000, latencyNanoseconds: 1234, source: .forwardAuth, reason: .rateLimited,
            tokenID: "tok_1", licenseID: "lic \"q\"", subject: "svc", route: "GET /v1/items/*"
        ).jsonLine
        let object = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
        XCTAssertEqual(object["decision"] as? String, "deny")
        XCTAssertEqual(object["reason"] as? String, "rate_limited")
        XCTAssertEqual(object["license_id"] as? String, "lic \"q\"")
        XCTAssertEqual(object["route"] as? String, "GET /v1/items/*")
        XCTAssertEqual(object["latency_ns"] as? Int, 1234)
        XCTAssertEqual(object["source"] as? String, "forward_auth")
        XCTAssertEqual(object["sequence"] as? Int, 9)
        XCTAssertFalse(line.contains("\n"))
    }
}
