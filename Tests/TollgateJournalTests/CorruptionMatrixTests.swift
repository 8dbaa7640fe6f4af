import Foundation
import TollgateJournal
import XCTest

/// The corruption matrix of LevelDB's log_test.cc and etcd's repair_test.go: damage the files the way crashes
/// and disks do, then recover, append and replay.
final class CorruptionMatrixTests: JournalTestCase {
    private let options = JournalOptions(fsync: false)

    private func payload(_ sequence: Int) -> [UInt8] {
        (0..<(8 + sequence)).map { UInt8(truncatingIfNeeded: sequence &* 37 &+ $0) }
    }

    /// A journal holding `count` records in one segment; returns the directory and the start offset of each record.
    private func makeJournal(records count: Int) throws -> (directory: String, offsets: [Int]) {
        let dir = self.makeDirectory()
        let (journal, _) = try Journal.open(directory: dir, options: self.options)
        var offsets: [Int] = []
        var offset = JournalFormat.segmentHeaderSize
        for i in 1...count {
            offsets.append(offset)
            journal.append(type: UInt8(i), payload: self.payload(i), durability: .durable, completion: nil)
            offset += JournalFormat.recordHeaderSize + self.payload(i).count
        }
        try journal.close()
        XCTAssertEqual(self.readBytes(self.segmentPath(dir)).count, offset)
        return (dir, offsets)
    }

    private func expectedRecords(_ count: Int) -> [JournalRecord] {
        count == 0 ? [] : (1...count).map { JournalRecord(sequence: UInt64($0), type: UInt8($0), payload: self.payload($0)) }
    }

    /// Reopens, checks the recovered records and the repair report, then appends one and replays again.
    private func assertRecovers(
        _ dir: String, records count: Int, truncatedBytes: Int, file: StaticString = #filePath, line: UInt = #line
    ) throws {
        let (journal, state) = try Journal.open(directory: dir, options: self.options)
        XCTAssertEqual(state.records, self.expectedRecords(count), file: file, line: line)
        XCTAssertEqual(state.report.tornTailRepaired, truncatedBytes > 0, file: file, line: line)
        XCTAssertEqual(state.report.truncatedBytes, truncatedBytes, file: file, line: line)
        if truncatedBytes > 0 {
            XCTAssertEqual(state.report.repairedFile, JournalFormat.segmentFileName(firstSequence: 1), file: file, line: line)
            XCTAssertEqual(journal.statistics.repairs, 1, file: file, line: line)
        }
        XCTAssertEqual(journal.lastSequence, UInt64(count), file: file, line: line)
        XCTAssertEqual(try self.appendDurably(journal, type: 0xEE, payload: [0xAB], file: file, line: line), UInt64(count + 1))
        try journal.close()

        let (again, replayed) = try Journal.open(directory: dir, options: self.options)
        XCTAssertEqual(
            replayed.records,
            self.expectedRecords(count) + [JournalRecord(sequence: UInt64(count + 1), type: 0xEE, payload: [0xAB])],
            file: file, line: line)
        XCTAssertFalse(replayed.report.tornTailRepaired, file: file, line: line)
        try again.close()
    }

    func testTruncatingAtEveryByteOfTheLastRecordRecoversThePreviousRecords() throws {
        let (pristine, offsets) = try self.makeJournal(records: 3)
        let bytes = self.readBytes(self.segmentPath(pristine))
        let lastStart = offsets[2]
        for cut in lastStart..<bytes.count {
            let dir = self.makeDirectory()
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            self.writeBytes(Array(bytes[..<cut]), to: self.segmentPath(dir))
            try self.assertRecovers(dir, records: 2, truncatedBytes: cut - lastStart)
        }
    }

    func testFlippingAnyByteOfTheLastRecordRecoversThePreviousRecords() throws {
        let (pristine, offsets) = try self.makeJournal(records: 3)
        let bytes = self.readBytes(self.segmentPath(pristine))
        for index in offsets[2]..<bytes.count {
            for mask: UInt8 in [0x01, 0x80, 0xFF] {
                let dir = self.makeDirectory()
                try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
                var damaged = bytes
                damaged[index] ^= mask
                self.writeBytes(damaged, to: self.segmentPath(dir))
                try self.assertRecovers(dir, records: 2, truncatedBytes: bytes.count - offsets[2])
            }
        }
    }

    func testAZeroFilledTailIsTorn() throws {
        let (dir, _) = try self.makeJournal(records: 3)
        let path = self.segmentPath(dir)
        self.writeBytes(self.readBytes(path) + [UInt8](repeating: 0, count: 512), to: path)
        try self.assertRecovers(dir, records: 3, truncatedBytes: 512)
    }

    func testZeroingTheLastSectorRecoversTheRecordsBeforeIt() throws {
        let (pristine, offsets) = try self.makeJournal(records: 40)
        var bytes = self.readBytes(self.segmentPath(pristine))
        let zeroFrom = bytes.count - 512
        for i in zeroFrom..<bytes.count { bytes[i] = 0 }
        // Records that end at or before the zeroed sector survive.
        let survivors = offsets.indices.filter { i in
            let end = i + 1 < offsets.count ? offsets[i + 1] : bytes.count
            return end <= zeroFrom
        }.count
        XCTAssertLessThan(survivors, 40)
        let dir = self.makeDirectory()
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        self.writeBytes(bytes, to: self.segmentPath(dir))
        try self.assertRecovers(dir, records: survivors, truncatedBytes: bytes.count - offsets[survivors])
    }

    func testFlipInTheMiddleRecordIsCorruption() throws {
        let (pristine, offsets) = try self.makeJournal(records: 3)
        let bytes = self.readBytes(self.segmentPath(pristine))
        // One byte in every field: checksum, length, type, sequence, payload.
        for field in [0, 4, 7, 8, 9, 16, 17, 20] {
            let index = offsets[1] + field
            let dir = self.makeDirectory()
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            var damaged = bytes
            damaged[index] ^= 0x40
            self.writeBytes(damaged, to: self.segmentPath(dir))
            let error = self.assertJournalError(.corruption) { try Journal.open(directory: dir, options: self.options) }
            XCTAssertTrue(error?.message.contains("wal-0000000000000001.log at offset \(offsets[1])") ?? false, "\(String(describing: error))")
            XCTAssertTrue(error?.message.contains("followed by valid record 3 at offset \(offsets[2])") ?? false, "\(String(describing: error))")
            // Refusing to start must leave the files alone.
            XCTAssertEqual(self.readBytes(self.segmentPath(dir)), damaged)
        }
    }

    func testSequenceGapIsCorruption() throws {
        let (dir, _) = try self.makeJournal(records: 2)
        let path = self.segmentPath(dir)
        let gap = JournalFormat.encodeRecord(JournalRecord(sequence: 4, type: 1, payload: [1, 2, 3]))
        self.writeBytes(self.readBytes(path) + gap, to: path)
        let error = self.assertJournalError(.corruption) { try Journal.open(directory: dir, options: self.options) }
        XCTAssertTrue(error?.message.contains("sequence gap: record 4, expected 3") ?? false, "\(String(describing: error))")
    }

    func testRepeatedSequenceIsCorruption() throws {
        let (dir, _) = try self.makeJournal(records: 2)
        let path = self.segmentPath(dir)
        let repeated = JournalFormat.encodeRecord(JournalRecord(sequence: 2, type: 1, payload: [1, 2, 3]))
        self.writeBytes(self.readBytes(path) + repeated, to: path)
        self.assertJournalError(.corruption) { try Journal.open(directory: dir, options: self.options) }
    }

    func testGarbageWithAValidLaterRecordIsCorruption() throws {
        let (dir, _) = try self.makeJournal(records: 2)
        let path = self.segmentPath(dir)
        let later = JournalFormat.encodeRecord(JournalRecord(sequence: 3, type: 1, payload: [9]))
        self.writeBytes(self.readBytes(path) + [0xDE, 0xAD, 0xBE, 0xEF, 0, 0, 0] + later, to: path)
        self.assertJournalError(.corruption) { try Journal.open(directory: dir, options: self.options) }
    }

    func testGarbageWithAnOlderValidRecordAfterItIsATornTail() throws {
        // A stale copy of an earlier record (lower sequence) cannot be a continuation: still a torn tail.
        let (dir, offsets) = try self.makeJournal(records: 2)
        let path = self.segmentPath(dir)
        let bytes = self.readBytes(path)
        let stale = Array(bytes[offsets[1]...])
        self.writeBytes(bytes + [0xDE, 0xAD] + stale, to: path)
        try self.assertRecovers(dir, records: 2, truncatedBytes: 2 + stale.count)
    }

    func testRecordLongerThanMaxRecordSizeOnReplayIsInvalid() throws {
        let (dir, offsets) = try self.makeJournal(records: 3)
        let small = JournalOptions(maxRecordSize: self.payload(3).count - 1, fsync: false)
        let (journal, state) = try Journal.open(directory: dir, options: small)
        XCTAssertEqual(state.records, self.expectedRecords(2))
        XCTAssertEqual(state.report.repairedOffset, offsets[2])
        try journal.close()
    }

    func testDamagedSegmentHeaderIsCorruption() throws {
        let (dir, _) = try self.makeJournal(records: 1)
        let path = self.segmentPath(dir)
        for index in 0..<JournalFormat.segmentHeaderSize {
            var bytes = self.readBytes(path)
            bytes[index] ^= 0x10
            self.writeBytes(bytes, to: path)
            let error = self.assertJournalError(.corruption) { try Journal.open(directory: dir, options: self.options) }
            XCTAssertTrue(error?.message.contains("invalid segment header") ?? false, "\(String(describing: error))")
            bytes[index] ^= 0x10
            self.writeBytes(bytes, to: path)
        }
        let (journal, state) = try Journal.open(directory: dir, options: self.options)
        XCTAssertEqual(state.records.count, 1)
        try journal.close()
    }

    /// Two live segments: snapshot 1 was taken after records 1...3 were written, so wal-1 (records 1...3)
    /// is still needed for records 2 and 3; wal-4 holds 4 and 5.
    private func makeTwoSegments() throws -> String {
        let dir = self.makeDirectory()
        let (journal, _) = try Journal.open(directory: dir, options: self.options)
        for i in 1...3 { try self.appendDurably(journal, type: UInt8(i), payload: self.payload(i)) }
        guard case .success? = self.snapshotResult(journal, upTo: 1, payload: [1]) else {
            XCTFail("snapshot failed")
            return dir
        }
        for i in 4...5 { try self.appendDurably(journal, type: UInt8(i), payload: self.payload(i)) }
        try journal.close()
        XCTAssertEqual(self.files(in: dir), ["snap-0000000000000001.snap", "wal-0000000000000001.log", "wal-0000000000000004.log"])
        return dir
    }

    func testTwoSegmentsReplayAcrossTheBoundary() throws {
        let dir = try self.makeTwoSegments()
        let (journal, state) = try Journal.open(directory: dir, options: self.options)
        XCTAssertEqual(state.snapshot?.sequence, 1)
        XCTAssertEqual(state.records, Array(self.expectedRecords(5).dropFirst()))
        XCTAssertEqual(state.report.segmentsRead, 2)
        try journal.close()
    }

    func testTornTailInANonLastSegmentIsCorruption() throws {
        let dir = try self.makeTwoSegments()
        let path = self.segmentPath(dir)
        let bytes = self.readBytes(path)
        self.writeBytes(Array(bytes.dropLast(3)), to: path)
        let error = self.assertJournalError(.corruption) { try Journal.open(directory: dir, options: self.options) }
        XCTAssertTrue(error?.message.contains("not the last") ?? false, "\(String(describing: error))")
    }

    /// Any flipped byte of a segment that is not the last, header or record, is corruption: the records after it
    /// were acknowledged, so cutting there would lose them. The files are left as they were for an operator.
    func testFlippingAnyByteOfANonLastSegmentIsCorruption() throws {
        let dir = try self.makeTwoSegments()
        let path = self.segmentPath(dir)
        let original = self.readBytes(path)
        let last = self.readBytes(self.segmentPath(dir, first: 4))
        for offset in original.indices {
            var damaged = original
            damaged[offset] ^= 0x5A
            self.writeBytes(damaged, to: path)
            let error = self.assertJournalError(.corruption) { try Journal.open(directory: dir, options: self.options) }
            XCTAssertNotNil(error, "a flip at offset \(offset) of the first segment was not refused")
            XCTAssertEqual(self.readBytes(path), damaged, "offset \(offset): a refused journal is not modified")
            XCTAssertEqual(self.readBytes(self.segmentPath(dir, first: 4)), last)
        }
        self.writeBytes(original, to: path)
        try self.assertTwoSegmentsReplay(dir)
    }

    /// A zeroed sector (a lost write) inside a segment that is not the last is corruption too.
    func testZeroingASectorOfANonLastSegmentIsCorruption() throws {
        let dir = try self.makeTwoSegments()
        let path = self.segmentPath(dir)
        let original = self.readBytes(path)
        for start in stride(from: JournalFormat.segmentHeaderSize, to: original.count, by: 16) {
            var damaged = original
            for i in start..<min(start + 512, damaged.count) { damaged[i] = 0 }
            self.writeBytes(damaged, to: path)
            XCTAssertNotNil(self.assertJournalError(.corruption) { try Journal.open(directory: dir, options: self.options) }, "zeroed from \(start)")
        }
    }

    private func assertTwoSegmentsReplay(_ dir: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let (journal, state) = try Journal.open(directory: dir, options: self.options)
        XCTAssertEqual(state.records, Array(self.expectedRecords(5).dropFirst()), file: file, line: line)
        try journal.close()
    }

    func testMissingSegmentIsCorruption() throws {
        let dir = try self.makeTwoSegments()
        try FileManager.default.removeItem(atPath: self.segmentPath(dir, first: 1))
        let error = self.assertJournalError(.corruption) { try Journal.open(directory: dir, options: self.options) }
        XCTAssertTrue(error?.message.contains("no segment file holds sequence 2") ?? false, "\(String(describing: error))")
    }
}
