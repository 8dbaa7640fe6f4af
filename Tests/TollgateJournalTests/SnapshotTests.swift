import Foundation
import TollgateJournal
import XCTest

final class SnapshotTests: JournalTestCase {
    private let options = JournalOptions(fsync: false)

    func testSnapshotThenReopenGivesTheSnapshotAndOnlyLaterRecords() throws {
        let dir = self.makeDirectory()
        let (journal, _) = try Journal.open(directory: dir)
        for i in 1...5 { try self.appendDurably(journal, payload: [UInt8(i)]) }
        let upTo = journal.lastSequence
        guard case .success? = self.snapshotResult(journal, upTo: upTo, payload: Array("state@5".utf8)) else {
            return XCTFail("snapshot failed")
        }
        XCTAssertEqual(journal.statistics.lastSnapshotSequence, 5)
        for i in 6...8 { try self.appendDurably(journal, payload: [UInt8(i)]) }
        try journal.close()
        // The segment holding 1...5 was deleted once the snapshot was durable.
        XCTAssertEqual(self.files(in: dir), ["snap-0000000000000005.snap", "wal-0000000000000006.log"])

        let (reopened, state) = try Journal.open(directory: dir)
        XCTAssertEqual(state.snapshot?.sequence, 5)
        XCTAssertEqual(state.snapshot?.payload, Array("state@5".utf8))
        XCTAssertEqual(state.records.map(\.sequence), [6, 7, 8])
        XCTAssertEqual(state.records.map(\.payload), [[6], [7], [8]])
        XCTAssertEqual(state.report.snapshotSequence, 5)
        XCTAssertEqual(state.report.recordsReplayed, 3)
        XCTAssertEqual(reopened.lastSequence, 8)
        try reopened.close()
    }

    func testASecondSnapshotDeletesTheFirst() throws {
        let dir = self.makeDirectory()
        let (journal, _) = try Journal.open(directory: dir, options: self.options)
        for i in 1...3 { try self.appendDurably(journal, payload: [UInt8(i)]) }
        XCTAssertNotNil(try self.snapshotResult(journal, upTo: 3, payload: [3])?.get())
        for i in 4...6 { try self.appendDurably(journal, payload: [UInt8(i)]) }
        XCTAssertNotNil(try self.snapshotResult(journal, upTo: 6, payload: [6])?.get())
        try journal.close()
        XCTAssertEqual(self.files(in: dir), ["snap-0000000000000006.snap", "wal-0000000000000007.log"])
        let (reopened, state) = try Journal.open(directory: dir, options: self.options)
        XCTAssertEqual(state.snapshot?.payload, [6])
        XCTAssertEqual(state.records, [])
        XCTAssertEqual(try self.appendDurably(reopened, payload: [7]), 7)
        try reopened.close()
    }

    func testSnapshotOfAnEmptySegmentDoesNotRotateAgain() throws {
        let dir = self.makeDirectory()
        let (journal, _) = try Journal.open(directory: dir, options: self.options)
        try self.appendDurably(journal, payload: [1])
        XCTAssertNotNil(try self.snapshotResult(journal, upTo: 1, payload: [1])?.get())
        XCTAssertNotNil(try self.snapshotResult(journal, upTo: 1, payload: [1])?.get())
        try journal.close()
        XCTAssertEqual(self.files(in: dir), ["snap-0000000000000001.snap", "wal-0000000000000002.log"])
    }

    func testAppendsFlowWhileTheSnapshotIsBeingEncoded() throws {
        let dir = self.makeDirectory()
        let (journal, _) = try Journal.open(directory: dir, options: self.options)
        for i in 1...3 { try self.appendDurably(journal, payload: [UInt8(i)]) }
        let encoding = DispatchSemaphore(value: 0)
        let release = DispatchSemaphore(value: 0)
        let done = DispatchSemaphore(value: 0)
        journal.snapshot(upTo: 3, encode: {
            encoding.signal()
            release.wait()
            return [1, 2, 3]
        }, completion: { _ in done.signal() })
        XCTAssertEqual(encoding.wait(timeout: .now() + 10), .success)
        // encode() is blocked; durable appends must still complete.
        for i in 4...6 { XCTAssertEqual(try self.appendDurably(journal, payload: [UInt8(i)]), UInt64(i)) }
        release.signal()
        XCTAssertEqual(done.wait(timeout: .now() + 10), .success)
        try journal.close()
        let (reopened, state) = try Journal.open(directory: dir, options: self.options)
        XCTAssertEqual(state.snapshot?.payload, [1, 2, 3])
        XCTAssertEqual(state.records.map(\.payload), [[4], [5], [6]])
        try reopened.close()
    }

    func testSnapshotOfASequenceAlreadyFollowedByWrittenRecordsKeepsTheSegment() throws {
        let dir = self.makeDirectory()
        let (journal, _) = try Journal.open(directory: dir, options: self.options)
        for i in 1...4 { try self.appendDurably(journal, payload: [UInt8(i)]) }
        XCTAssertNotNil(try self.snapshotResult(journal, upTo: 2, payload: [1, 2])?.get())
        try journal.close()
        XCTAssertEqual(self.files(in: dir), ["snap-0000000000000002.snap", "wal-0000000000000001.log", "wal-0000000000000005.log"])
        let (reopened, state) = try Journal.open(directory: dir, options: self.options)
        XCTAssertEqual(state.snapshot?.payload, [1, 2])
        XCTAssertEqual(state.records.map(\.payload), [[3], [4]])
        try reopened.close()
    }

    func testSnapshotBeyondLastSequenceOrBehindTheLastSnapshotIsRejected() throws {
        let dir = self.makeDirectory()
        let (journal, _) = try Journal.open(directory: dir, options: self.options)
        try self.appendDurably(journal, payload: [1])
        try self.appendDurably(journal, payload: [2])
        self.assertJournalError(.invalidArgument) { try self.snapshotResult(journal, upTo: 3, payload: [])?.get() }
        XCTAssertNotNil(try self.snapshotResult(journal, upTo: 2, payload: [])?.get())
        self.assertJournalError(.invalidArgument) { try self.snapshotResult(journal, upTo: 1, payload: [])?.get() }
        try journal.close()
    }

    func testNeedsSnapshotFollowsBytesWrittenSinceTheLastSnapshot() throws {
        let dir = self.makeDirectory()
        let (journal, _) = try Journal.open(directory: dir, options: JournalOptions(segmentTargetBytes: 1000, fsync: false))
        XCTAssertFalse(journal.needsSnapshot)
        for _ in 1...10 { try self.appendDurably(journal, payload: [UInt8](repeating: 7, count: 100)) }
        XCTAssertTrue(journal.needsSnapshot)
        XCTAssertNotNil(try self.snapshotResult(journal, upTo: journal.lastSequence, payload: [1])?.get())
        XCTAssertFalse(journal.needsSnapshot)
        try journal.close()
        // Reopening counts the bytes of the live segments.
        let (reopened, _) = try Journal.open(directory: dir, options: JournalOptions(segmentTargetBytes: 1000, fsync: false))
        XCTAssertFalse(reopened.needsSnapshot)
        for _ in 1...10 { try self.appendDurably(reopened, payload: [UInt8](repeating: 7, count: 100)) }
        XCTAssertTrue(reopened.needsSnapshot)
        try reopened.close()
    }

    /// snap-1 + wal-1 (1...3) + wal-4 (4, 5) + a damaged snap-5: recovery falls back to snap-1.
    func testAnInvalidNewestSnapshotFallsBackToAnOlderOneWhoseSegmentsExist() throws {
        let dir = self.makeDirectory()
        let (journal, _) = try Journal.open(directory: dir, options: self.options)
        for i in 1...3 { try self.appendDurably(journal, payload: [UInt8(i)]) }
        XCTAssertNotNil(try self.snapshotResult(journal, upTo: 1, payload: [1])?.get())
        for i in 4...5 { try self.appendDurably(journal, payload: [UInt8(i)]) }
        try journal.close()
        var damaged = JournalFormat.encodeSnapshot(sequence: 5, payload: [1, 2, 3, 4, 5])
        damaged[damaged.count - 1] ^= 0xFF
        self.writeBytes(damaged, to: dir + "/snap-0000000000000005.snap")

        let (reopened, state) = try Journal.open(directory: dir, options: self.options)
        XCTAssertEqual(state.snapshot?.sequence, 1)
        XCTAssertEqual(state.records.map(\.payload), [[2], [3], [4], [5]])
        XCTAssertEqual(state.report.invalidSnapshots.count, 1)
        XCTAssertTrue(state.report.invalidSnapshots[0].hasPrefix("snap-0000000000000005.snap"))
        try reopened.close()
    }

    func testAnInvalidNewestSnapshotWithoutItsSegmentsIsCorruption() throws {
        let dir = self.makeDirectory()
        let (journal, _) = try Journal.open(directory: dir, options: self.options)
        for i in 1...3 { try self.appendDurably(journal, payload: [UInt8(i)]) }
        XCTAssertNotNil(try self.snapshotResult(journal, upTo: 3, payload: [1, 2, 3])?.get())
        try journal.close()
        let path = dir + "/snap-0000000000000003.snap"
        var bytes = self.readBytes(path)
        bytes[JournalFormat.snapshotHeaderSize] ^= 0x01
        self.writeBytes(bytes, to: path)
        let error = self.assertJournalError(.corruption) { try Journal.open(directory: dir, options: self.options) }
        XCTAssertTrue(error?.message.contains("snap-0000000000000003.snap") ?? false, "\(String(describing: error))")
    }

    /// Crash (the process stops; what it wrote stays in the page cache) at every step of a snapshot: the
    /// rotation, the tmp file, its fsync, the rename, the directory fsync, the deletions; and during the
    /// appends after it. Reopening must give either the old state (no snapshot, records 1...n) or the new one
    /// (snapshot 5, records 6...n), never lose an acknowledged record, and accept appends.
    func testCrashAtEveryStepOfASnapshotRecoversAConsistentState() throws {
        var step = 0
        var sawOld = false
        var sawNew = false
        while true {
            let dir = self.makeDirectory()
            let fs = FaultInjectingFileSystem()
            let (journal, _) = try Journal.open(directory: dir, options: JournalOptions(), fileSystem: fs)
            for i in 1...5 { try self.appendDurably(journal, payload: [UInt8(i)]) }
            fs.crash(afterSteps: step)
            _ = self.snapshotResult(journal, upTo: 5, payload: [1, 2, 3, 4, 5])
            var acknowledged: UInt64 = 5
            for i in 6...7 {
                if case .success(let s)? = self.appendResult(journal, payload: [UInt8(i)]) { acknowledged = s }
            }
            let steps = fs.steps
            try? journal.close()
            let crashed = fs.crashed

            let (reopened, state) = try Journal.open(directory: dir)
            var applied: [UInt8] = []
            if let snapshot = state.snapshot {
                XCTAssertEqual(snapshot.sequence, 5, "step \(step)")
                XCTAssertEqual(snapshot.payload, [1, 2, 3, 4, 5], "step \(step)")
                applied = snapshot.payload
                sawNew = true
            } else {
                sawOld = true
            }
            applied += state.records.flatMap(\.payload)
            XCTAssertEqual(applied, (0..<applied.count).map { UInt8($0 + 1) }, "step \(step): \(steps)")
            XCTAssertGreaterThanOrEqual(applied.count, Int(acknowledged), "step \(step): lost an acknowledged record")
            XCTAssertEqual(try self.appendDurably(reopened, payload: [UInt8(applied.count + 1)]), UInt64(applied.count + 1))
            try reopened.close()
            if !crashed {
                XCTAssertEqual(applied.count, 7)
                break
            }
            step += 1
            XCTAssertLessThan(step, 100, "the snapshot never completed")
            if step >= 100 { break }
        }
        // rotation (open, write, fsync, rename, fsync dir), snapshot (open, write, fsync, rename, fsync dir),
        // unlink, then the appends after it.
        XCTAssertGreaterThanOrEqual(step, 11)
        XCTAssertTrue(sawOld)
        XCTAssertTrue(sawNew)
    }
}
