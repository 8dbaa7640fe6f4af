@testable import TollgateServer
import XCTest

/// Freed heap is given back after a burst, once the daemon is quiet, at most once per interval.
final class MemoryTrimPolicyTests: XCTestCase {
    func testTrimsOnceQuietAfterABurstAndNotMoreOftenThanTheInterval() {
        var policy = MemoryTrimPolicy(minimumIntervalNanoseconds: 10_000, bytesThreshold: 1_000, closedThreshold: 5)
        XCTAssertFalse(policy.shouldTrim(nowNanoseconds: 0, journalBytesWritten: 10, connectionsClosed: 1, quiet: true), "no burst yet")
        XCTAssertFalse(policy.shouldTrim(nowNanoseconds: 1, journalBytesWritten: 5_000, connectionsClosed: 1, quiet: false), "not while the journal is busy")
        XCTAssertTrue(policy.shouldTrim(nowNanoseconds: 2, journalBytesWritten: 5_000, connectionsClosed: 1, quiet: true))
        XCTAssertFalse(policy.shouldTrim(nowNanoseconds: 3, journalBytesWritten: 5_000, connectionsClosed: 1, quiet: true), "the burst was trimmed")
        XCTAssertFalse(policy.shouldTrim(nowNanoseconds: 5_000, journalBytesWritten: 9_000, connectionsClosed: 1, quiet: true), "within the interval")
        XCTAssertTrue(policy.shouldTrim(nowNanoseconds: 10_002, journalBytesWritten: 9_000, connectionsClosed: 1, quiet: true))
        XCTAssertTrue(policy.shouldTrim(nowNanoseconds: 20_002, journalBytesWritten: 9_000, connectionsClosed: 6, quiet: true), "closed connections are a burst too")
    }
}
