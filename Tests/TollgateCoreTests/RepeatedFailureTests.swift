import TollgateEngine
@testable import TollgateCore
import XCTest

/// Snapshot retries and their log lines while the disk is full, paced on an injected clock.
final class RepeatedFailureTests: XCTestCase {
    func testFailuresBackOffAndAreLoggedOncePerIntervalWithTheirCount() {
        var pacing = RepeatedFailure(initialBackoffMillis: 1_000, maxBackoffMillis: 8_000, logIntervalMillis: 60_000)
        let start = Timestamp(millis: 1_000_000)
        XCTAssertTrue(pacing.mayAttempt(at: start))
        XCTAssertEqual(pacing.failed(at: start), .log(failures: 1, first: true))
        XCTAssertFalse(pacing.mayAttempt(at: start.adding(millis: 999)))
        XCTAssertTrue(pacing.mayAttempt(at: start.adding(millis: 1_000)))

        // Backoff doubles up to its maximum: 2 s, 4 s, 8 s, 8 s...
        var now = start.adding(millis: 1_000)
        var waits: [Int64] = []
        for _ in 0..<5 {
            XCTAssertEqual(pacing.failed(at: now), .quiet, "within the minute after the first line, failures are counted, not logged")
            var wait: Int64 = 0
            while !pacing.mayAttempt(at: now.adding(millis: wait)) { wait += 250 }
            waits.append(wait)
            now = now.adding(millis: wait)
        }
        XCTAssertEqual(waits, [2_000, 4_000, 8_000, 8_000, 8_000])
        XCTAssertEqual(pacing.streak, 6)

        // A minute after the first line, one line stands for every failure since.
        now = start.adding(millis: 60_000)
        XCTAssertEqual(pacing.failed(at: now), .log(failures: 6, first: false))
        XCTAssertEqual(pacing.failed(at: now.adding(millis: 8_000)), .quiet)

        XCTAssertEqual(pacing.succeeded(), 8)
        XCTAssertEqual(pacing.streak, 0)
        XCTAssertTrue(pacing.mayAttempt(at: now.adding(millis: 8_001)))
        XCTAssertEqual(pacing.failed(at: now.adding(millis: 9_000)), .log(failures: 1, first: true), "a new streak is logged at once")
    }
}
