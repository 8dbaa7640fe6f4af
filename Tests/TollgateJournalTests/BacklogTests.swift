import Foundation
@testable import TollgateJournal
import XCTest

/// A backlog of records never makes one unbounded write, and a stop never waits for all of it.
final class BacklogTests: JournalTestCase {
    /// Encoding a batch grows its buffer geometrically: the number of reallocations grows with the logarithm of
    /// the number of records, not with the number (each of which copied the whole buffer: quadratic).
    func testEncodingABatchReallocatesLogarithmicallyOften() {
        for count in [10, 1_000, 100_000] {
            var buffer: [UInt8] = []
            var reallocations = 0
            var capacity = buffer.capacity
            let payload = [UInt8](repeating: 7, count: 40)
            for sequence in 1...count {
                JournalFormat.encodeRecord(sequence: UInt64(sequence), type: 1, payload: payload, into: &buffer)
                if buffer.capacity != capacity {
                    reallocations += 1
                    capacity = buffer.capacity
                }
            }
            XCTAssertEqual(buffer.count, count * (JournalFormat.recordHeaderSize + payload.count))
            let bound = Int(log2(Double(buffer.count))) + 2
            XCTAssertLessThanOrEqual(reallocations, bound, "\(count) records: \(reallocations) reallocations")
            // The records are intact: the last one decodes where it should.
            let last = Array(buffer[(buffer.count - JournalFormat.recordHeaderSize - payload.count)...])
            XCTAssertEqual(JournalFormat.decodeRecord(last)?.record.sequence, UInt64(count))
        }
    }

    /// A queue longer than `maxBatchRecords` is written in several group commits, each at most that long, in
    /// sequence order; every record is durable and replays.
    func testABacklogIsWrittenInBoundedGroupCommits() throws {
        let dir = self.makeDirectory()
        let fs = FaultInjectingFileSystem()
        let (journal, _) = try Journal.open(directory: dir, options: JournalOptions(maxBatchRecords: 10), fileSystem: fs)
        let (entered, release) = fs.holdNextFdatasync()
        let completed = LockedList<UInt64>()
        let done = DispatchGroup()
        func append(_ i: Int) {
            done.enter()
            journal.append(type: 1, payload: [UInt8(truncatingIfNeeded: i)], durability: .durable) {
                if case .success(let s) = $0 { completed.append(s) }
                done.leave()
            }
        }
        append(0)
        XCTAssertEqual(entered.wait(timeout: .now() + 10), .success)
        let before = journal.statistics.batches
        for i in 1...95 { append(i) }
        XCTAssertEqual(journal.statistics.pendingRecords, 96)
        release.signal()
        XCTAssertEqual(done.wait(timeout: .now() + 10), .success)
        let stats = journal.statistics
        XCTAssertEqual(completed.all, (1...96).map { UInt64($0) })
        // The first record alone (held in its fdatasync), then 95 in commits of at most 10: ten of them.
        XCTAssertEqual(stats.batches - before, 1 + 10)
        XCTAssertEqual(stats.pendingRecords, 0)
        try journal.close()
        let (reopened, state) = try Journal.open(directory: dir)
        XCTAssertEqual(state.records.map(\.sequence), (1...96).map { UInt64($0) })
        try reopened.close()
    }

    /// The byte cap splits a batch too; a record larger than the cap is written alone.
    func testTheByteCapSplitsBatchesAndALargeRecordGoesAlone() throws {
        let dir = self.makeDirectory()
        let fs = FaultInjectingFileSystem()
        let (journal, _) = try Journal.open(directory: dir, options: JournalOptions(maxBatchBytes: 100), fileSystem: fs)
        let (entered, release) = fs.holdNextFdatasync()
        let done = DispatchGroup()
        func append(_ size: Int) {
            done.enter()
            journal.append(type: 1, payload: [UInt8](repeating: 1, count: size), durability: .durable) { _ in done.leave() }
        }
        append(1)
        XCTAssertEqual(entered.wait(timeout: .now() + 10), .success)
        let before = journal.statistics.batches
        // 40 + 40 fit under 100; the next 40 starts a new commit; 500 goes alone; the last 40 after it.
        for size in [40, 40, 40, 500, 40] { append(size) }
        release.signal()
        XCTAssertEqual(done.wait(timeout: .now() + 10), .success)
        XCTAssertEqual(journal.statistics.batches - before, 1 + 4)
        try journal.close()
    }

    /// `close(.abandonQueued)` drops what the writer has not started: those completions fail `unavailable` (never
    /// acknowledged), the commit being written finishes and is durable, and nothing else is on disk.
    func testClosingAbandonsWhatWasNeverWrittenAndKeepsWhatWasAcknowledged() throws {
        let dir = self.makeDirectory()
        let fs = FaultInjectingFileSystem()
        let (journal, _) = try Journal.open(directory: dir, options: JournalOptions(maxBatchRecords: 5), fileSystem: fs)
        let (entered, release) = fs.holdNextFdatasync()
        let acknowledged = LockedList<UInt64>()
        let refused = LockedList<JournalError.Code>()
        let done = DispatchGroup()
        for i in 0..<50 {
            done.enter()
            journal.append(type: 1, payload: [UInt8(i)], durability: .durable) { result in
                switch result {
                case .success(let s): acknowledged.append(s)
                case .failure(let e): refused.append(e.code)
                }
                done.leave()
            }
            if i == 0 { XCTAssertEqual(entered.wait(timeout: .now() + 10), .success) }
        }
        let closer = Thread { try? journal.close(.abandonQueued) }
        closer.start()
        // The close cannot finish while the first commit is held; let it go once the close is under way.
        while journal.isOpen { usleep(100) }
        release.signal()
        XCTAssertEqual(done.wait(timeout: .now() + 10), .success)
        XCTAssertEqual(acknowledged.all.count + refused.all.count, 50)
        XCTAssertTrue(refused.all.allSatisfy { $0 == .unavailable })
        XCTAssertFalse(acknowledged.all.isEmpty, "the commit in progress finishes")
        XCTAssertEqual(acknowledged.all, (1...UInt64(acknowledged.all.count)).map { $0 }, "what is acknowledged is a prefix")
        while !closer.isFinished { usleep(100) }
        let (reopened, state) = try Journal.open(directory: dir)
        XCTAssertEqual(state.records.map(\.sequence), acknowledged.all, "exactly what was acknowledged is durable")
        try reopened.close()
    }

    /// `flush(timeout:)` gives up when the disk does not finish in time, without losing the queue.
    func testFlushWithATimeoutGivesUpWithoutDroppingAnything() throws {
        let dir = self.makeDirectory()
        let fs = FaultInjectingFileSystem()
        let (journal, _) = try Journal.open(directory: dir, fileSystem: fs)
        let (entered, release) = fs.holdNextFdatasync()
        let done = DispatchSemaphore(value: 0)
        journal.append(type: 1, payload: [1], durability: .durable) { _ in done.signal() }
        XCTAssertEqual(entered.wait(timeout: .now() + 10), .success)
        XCTAssertThrowsError(try journal.flush(timeout: .milliseconds(1))) { error in
            XCTAssertEqual((error as? JournalError)?.code, .timedOut)
        }
        release.signal()
        XCTAssertEqual(done.wait(timeout: .now() + 10), .success)
        try journal.flush(timeout: .seconds(10))
        XCTAssertEqual(journal.statistics.durableSequence, 1)
        try journal.close()
    }
}
