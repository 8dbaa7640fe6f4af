import Foundation
@testable import TollgateServer
import XCTest

/// Freed heap is given back after a burst, once the daemon has been quiet for a whole tick, at most once per interval.
final class MemoryTrimPolicyTests: XCTestCase {
    private func policy() -> MemoryTrimPolicy {
        MemoryTrimPolicy(minimumIntervalNanoseconds: 10_000, bytesThreshold: 1_000, closedThreshold: 5, quietBytesPerTick: 100)
    }

    func testTrimsOnlyAfterATickWithoutActivityOnceABurstHappened() {
        var policy = policy()
        XCTAssertFalse(policy.shouldTrim(nowNanoseconds: 0, journalBytesWritten: 10, connectionsClosed: 1, nothingWaiting: true), "no burst yet")
        XCTAssertFalse(policy.shouldTrim(nowNanoseconds: 1, journalBytesWritten: 5_000, connectionsClosed: 1, nothingWaiting: false), "not while the journal is busy")
        // The burst's backlog is empty for a moment, but the journal took 3 000 bytes since the last tick: still busy.
        XCTAssertFalse(policy.shouldTrim(nowNanoseconds: 2, journalBytesWritten: 8_000, connectionsClosed: 1, nothingWaiting: true), "an empty queue between two commits is not quiet")
        XCTAssertFalse(policy.shouldTrim(nowNanoseconds: 3, journalBytesWritten: 8_000, connectionsClosed: 20, nothingWaiting: true), "the clients are leaving")
        XCTAssertTrue(policy.shouldTrim(nowNanoseconds: 4, journalBytesWritten: 8_050, connectionsClosed: 20, nothingWaiting: true), "a trickle below the quiet rate is quiet")
        XCTAssertFalse(policy.shouldTrim(nowNanoseconds: 5, journalBytesWritten: 8_050, connectionsClosed: 20, nothingWaiting: true), "the burst was trimmed")
    }

    func testNotMoreOftenThanTheInterval() {
        var policy = policy()
        _ = policy.shouldTrim(nowNanoseconds: 0, journalBytesWritten: 5_000, connectionsClosed: 0, nothingWaiting: true)
        XCTAssertTrue(policy.shouldTrim(nowNanoseconds: 1, journalBytesWritten: 5_000, connectionsClosed: 0, nothingWaiting: true))
        _ = policy.shouldTrim(nowNanoseconds: 2, journalBytesWritten: 9_000, connectionsClosed: 0, nothingWaiting: true)
        XCTAssertFalse(policy.shouldTrim(nowNanoseconds: 5_000, journalBytesWritten: 9_000, connectionsClosed: 0, nothingWaiting: true), "within the interval")
        XCTAssertTrue(policy.shouldTrim(nowNanoseconds: 10_002, journalBytesWritten: 9_000, connectionsClosed: 0, nothingWaiting: true))
        _ = policy.shouldTrim(nowNanoseconds: 10_003, journalBytesWritten: 9_000, connectionsClosed: 6, nothingWaiting: true)
        XCTAssertTrue(policy.shouldTrim(nowNanoseconds: 20_003, journalBytesWritten: 9_000, connectionsClosed: 6, nothingWaiting: true), "closed connections are a burst too")
    }
}

/// The C shim reaches glibc's allocator. It once compiled its no-op fallback (the glibc macro was tested before any C
/// library header defined it), so trimming never happened and RSS kept each burst's peak.
final class HeapShimTests: XCTestCase {
    func testTheShimSeesGlibcsHeap() throws {
        #if canImport(Glibc)
        XCTAssertTrue(HeapStatistics.shimIsGlibc, "the shim compiled its fallbacks: malloc_trim would never run")
        // Under a sanitizer its runtime owns malloc, and glibc's mallinfo2 sees nothing: the branch test above is
        // what matters there.
        let sanitized = ProcessInfo.processInfo.environment["TSAN_OPTIONS"] != nil || ProcessInfo.processInfo.environment["ASAN_OPTIONS"] != nil
        guard !sanitized else { return }
        let blocks = (0..<64).map { _ in [UInt8](repeating: 1, count: 4096) }
        let heap = HeapStatistics.current
        XCTAssertGreaterThan(heap.inUse, 64 * 4096, "mallinfo2 through the shim reports the heap in use")
        XCTAssertEqual(blocks.count, 64)
        #else
        throw XCTSkip("glibc only")
        #endif
    }
}
