import Foundation
import TollgateJournal
import XCTest

final class JournalTests: JournalTestCase {
    private let fast = JournalOptions(fsync: false)

    func testOpenCreatesDirectoryAndFirstSegment() throws {
        let dir = self.makeDirectory()
        let (journal, state) = try Journal.open(directory: dir)
        XCTAssertNil(state.snapshot)
        XCTAssertEqual(state.records, [])
        XCTAssertEqual(state.report, RecoveryReport())
        XCTAssertEqual(journal.lastSequence, 0)
        try journal.close()
        XCTAssertEqual(self.files(in: dir), ["wal-0000000000000001.log"])
        XCTAssertEqual(self.readBytes(self.segmentPath(dir)), JournalFormat.encodeSegmentHeader(firstSequence: 1))
    }

    func testAppendCloseReopenReplaysTheSameRecords() throws {
        let dir = self.makeDirectory()
        let (journal, _) = try Journal.open(directory: dir)
        var expected: [JournalRecord] = []
        for i in 1...20 {
            let payload = [UInt8](repeating: UInt8(i), count: i * 3)
            let durability: Durability = i % 3 == 0 ? .durable : .buffered
            let sequence = journal.append(type: UInt8(i % 4), payload: payload, durability: durability, completion: nil)
            XCTAssertEqual(sequence, UInt64(i))
            expected.append(JournalRecord(sequence: UInt64(i), type: UInt8(i % 4), payload: payload))
        }
        try journal.close()

        let (reopened, state) = try Journal.open(directory: dir)
        XCTAssertEqual(state.records, expected)
        XCTAssertEqual(state.report.recordsReplayed, 20)
        XCTAssertEqual(state.report.segmentsRead, 1)
        XCTAssertEqual(state.report.lastSequence, 20)
        XCTAssertFalse(state.report.tornTailRepaired)
        XCTAssertEqual(reopened.lastSequence, 20)
        XCTAssertEqual(try self.appendDurably(reopened, payload: [42]), 21)
        try reopened.close()

        let (third, state3) = try Journal.open(directory: dir)
        XCTAssertEqual(state3.records.count, 21)
        XCTAssertEqual(state3.records.last, JournalRecord(sequence: 21, type: 1, payload: [42]))
        try third.close()
    }

    func testDurableCompletionGetsItsSequenceAfterTheFsync() throws {
        let dir = self.makeDirectory()
        let (journal, _) = try Journal.open(directory: dir)
        XCTAssertEqual(try self.appendDurably(journal, payload: [1]), 1)
        XCTAssertEqual(try self.appendDurably(journal, payload: [2]), 2)
        let stats = journal.statistics
        XCTAssertEqual(stats.durableSequence, 2)
        XCTAssertEqual(stats.lastSequence, 2)
        XCTAssertGreaterThanOrEqual(stats.fsyncCount, 2)
        XCTAssertEqual(stats.batches, 2)
        XCTAssertFalse(stats.failed)
        try journal.close()
    }

    func testBufferedRecordCompletesAfterTheFlushInterval() throws {
        let dir = self.makeDirectory()
        let (journal, _) = try Journal.open(directory: dir, options: JournalOptions(flushInterval: .milliseconds(5)))
        XCTAssertEqual(self.appendResult(journal, payload: [7], durability: .buffered).map { try? $0.get() }, 1)
        XCTAssertEqual(journal.statistics.durableSequence, 1)
        try journal.close()
    }

    func testFlushMakesBufferedRecordsDurableWithoutWaitingForTheInterval() throws {
        let dir = self.makeDirectory()
        let (journal, _) = try Journal.open(directory: dir, options: JournalOptions(flushInterval: .seconds(3600)))
        let completed = LockedList<UInt64>()
        for i in 1...5 {
            journal.append(type: 1, payload: [UInt8(i)], durability: .buffered) { result in
                if case .success(let s) = result { completed.append(s) }
            }
        }
        XCTAssertEqual(journal.statistics.durableSequence, 0)
        try journal.flush()
        XCTAssertEqual(journal.statistics.durableSequence, 5)
        // Completions run on the writer thread right after the sync; close waits for the writer.
        try journal.close()
        XCTAssertEqual(completed.all, [1, 2, 3, 4, 5])
    }

    func testADurableRecordCarriesEarlierBufferedOnesWithIt() throws {
        let dir = self.makeDirectory()
        let (journal, _) = try Journal.open(directory: dir, options: JournalOptions(flushInterval: .seconds(3600)))
        journal.append(type: 1, payload: [1], durability: .buffered, completion: nil)
        journal.append(type: 1, payload: [2], durability: .buffered, completion: nil)
        XCTAssertEqual(try self.appendDurably(journal, payload: [3]), 3)
        XCTAssertEqual(journal.statistics.durableSequence, 3)
        try journal.close()
    }

    func testRecordTooLargeIsRejectedWithoutASequence() throws {
        let dir = self.makeDirectory()
        let (journal, _) = try Journal.open(directory: dir, options: JournalOptions(maxRecordSize: 10, fsync: false))
        let box = ResultBox<Result<UInt64, JournalError>>()
        let done = DispatchSemaphore(value: 0)
        let sequence = journal.append(type: 1, payload: [UInt8](repeating: 0, count: 11), durability: .durable) {
            box.set($0)
            done.signal()
        }
        XCTAssertEqual(sequence, 0)
        XCTAssertEqual(done.wait(timeout: .now() + 10), .success)
        self.assertJournalError(.recordTooLarge) { try box.value!.get() }
        XCTAssertEqual(journal.lastSequence, 0)
        XCTAssertEqual(try self.appendDurably(journal, payload: [UInt8](repeating: 0, count: 10)), 1)
        try journal.close()
    }

    func testAppendAfterCloseIsUnavailable() throws {
        let dir = self.makeDirectory()
        let (journal, _) = try Journal.open(directory: dir, options: self.fast)
        try journal.close()
        try journal.close()  // idempotent
        guard case .failure(let error)? = self.appendResult(journal, payload: [1]) else {
            return XCTFail("expected a failure")
        }
        XCTAssertEqual(error.code, .unavailable)
        self.assertJournalError(.unavailable) { try journal.flush() }
    }

    func testCloseWaitsForQueuedRecords() throws {
        let dir = self.makeDirectory()
        let (journal, _) = try Journal.open(directory: dir, options: JournalOptions(flushInterval: .seconds(3600)))
        for i in 1...100 { journal.append(type: 1, payload: [UInt8(i)], durability: .buffered, completion: nil) }
        try journal.close()
        let (reopened, state) = try Journal.open(directory: dir, options: self.fast)
        XCTAssertEqual(state.records.map(\.sequence), Array(1...100))
        try reopened.close()
    }

    func testConcurrentAppendsGetContiguousSequencesInFileOrder() throws {
        let dir = self.makeDirectory()
        let (journal, _) = try Journal.open(directory: dir, options: self.fast)
        let assigned = LockedList<(UInt64, [UInt8])>()
        DispatchQueue.concurrentPerform(iterations: 4) { thread in
            for i in 0..<250 {
                let payload = [UInt8(thread), UInt8(i % 256)]
                let sequence = journal.append(type: 1, payload: payload, durability: i % 2 == 0 ? .durable : .buffered, completion: nil)
                assigned.append((sequence, payload))
            }
        }
        try journal.close()
        let (reopened, state) = try Journal.open(directory: dir, options: self.fast)
        XCTAssertEqual(state.records.map(\.sequence), Array(1...1000))
        let bySequence = Dictionary(uniqueKeysWithValues: assigned.all.map { ($0.0, $0.1) })
        for record in state.records { XCTAssertEqual(record.payload, bySequence[record.sequence]) }
        try reopened.close()
    }

    func testOpenRemovesLeftoverTemporaryFiles() throws {
        let dir = self.makeDirectory()
        let (journal, _) = try Journal.open(directory: dir, options: self.fast)
        try self.appendDurably(journal, payload: [1])
        try journal.close()
        self.writeBytes([1, 2, 3], to: dir + "/snap-0000000000000009.snap.tmp")
        self.writeBytes([], to: dir + "/wal-0000000000000002.log.tmp")
        let (reopened, state) = try Journal.open(directory: dir, options: self.fast)
        XCTAssertEqual(state.records.count, 1)
        XCTAssertEqual(Set(state.report.removedFiles), ["snap-0000000000000009.snap.tmp", "wal-0000000000000002.log.tmp"])
        XCTAssertEqual(self.files(in: dir), ["wal-0000000000000001.log"])
        try reopened.close()
    }
}
