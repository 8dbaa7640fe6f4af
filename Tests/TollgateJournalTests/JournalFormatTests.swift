import Foundation
import TollgateJournal
import XCTest

final class JournalFormatTests: XCTestCase {
    func testCRC32CCheckValue() {
        XCTAssertEqual(CRC32C.checksum(Array("123456789".utf8)), 0xE306_9283)
    }

    func testCRC32CVectorsFromRFC3720() {
        XCTAssertEqual(CRC32C.checksum([UInt8](repeating: 0, count: 32)), 0x8A91_36AA)
        XCTAssertEqual(CRC32C.checksum([UInt8](repeating: 0xFF, count: 32)), 0x62A8_AB43)
        XCTAssertEqual(CRC32C.checksum((0..<32).map { UInt8($0) }), 0x46DD_794E)
        XCTAssertEqual(CRC32C.checksum([UInt8]()), 0)
    }

    func testCRC32CIncrementalEqualsOneShot() {
        let bytes = (0..<1000).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) }
        for split in [0, 1, 7, 8, 9, 500, 999, 1000] {
            let incremental = CRC32C.update(CRC32C.checksum(bytes[..<split]), bytes[split...])
            XCTAssertEqual(incremental, CRC32C.checksum(bytes), "split at \(split)")
        }
    }

    func testRecordGoldenBytesMatchVectorFile() throws {
        let text = try String(contentsOfFile: journalVectorsDirectory + "/record-seq1-type1-hello.hex", encoding: .utf8)
        let expected = parseHexVector(text)
        let encoded = JournalFormat.encodeRecord(JournalRecord(sequence: 1, type: 1, payload: Array("hello".utf8)))
        XCTAssertEqual(encoded, expected)
        XCTAssertEqual(encoded, [
            0xF9, 0x67, 0x3E, 0x40,  // crc32c of bytes 4..<22, little-endian
            0x05, 0x00, 0x00, 0x00,  // length 5
            0x01,  // type
            0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,  // sequence 1
            0x68, 0x65, 0x6C, 0x6C, 0x6F,  // "hello"
        ])
        let decoded = try XCTUnwrap(JournalFormat.decodeRecord(expected))
        XCTAssertEqual(decoded.record, JournalRecord(sequence: 1, type: 1, payload: Array("hello".utf8)))
        XCTAssertEqual(decoded.size, 22)
    }

    func testSegmentVectorFileDecodes() throws {
        let text = try String(contentsOfFile: journalVectorsDirectory + "/segment-wal-0000000000000001.hex", encoding: .utf8)
        let bytes = parseHexVector(text)
        var expected = JournalFormat.encodeSegmentHeader(firstSequence: 1)
        expected += JournalFormat.encodeRecord(JournalRecord(sequence: 1, type: 1, payload: Array("hello".utf8)))
        expected += JournalFormat.encodeRecord(JournalRecord(sequence: 2, type: 2, payload: []))
        XCTAssertEqual(bytes, expected)
        XCTAssertEqual(Array(bytes[0..<4]), Array("TGJL".utf8))
    }

    func testSnapshotVectorFileDecodes() throws {
        let text = try String(contentsOfFile: journalVectorsDirectory + "/snapshot-snap-0000000000000002.hex", encoding: .utf8)
        let bytes = parseHexVector(text)
        XCTAssertEqual(bytes, JournalFormat.encodeSnapshot(sequence: 2, payload: Array("state".utf8)))
        XCTAssertEqual(JournalFormat.decodeSnapshot(bytes), SnapshotFile(sequence: 2, payload: Array("state".utf8)))
    }

    func testRecordRoundTripForManySizes() {
        for size in [0, 1, 7, 8, 9, 15, 16, 17, 255, 256, 4097] {
            let record = JournalRecord(
                sequence: UInt64(size) &* 0x0123_4567_89AB, type: UInt8(size % 256),
                payload: (0..<size).map { UInt8(truncatingIfNeeded: $0 ^ 0x5A) })
            let bytes = JournalFormat.encodeRecord(record)
            XCTAssertEqual(bytes.count, JournalFormat.recordHeaderSize + size)
            let decoded = JournalFormat.decodeRecord(bytes + [0xAA, 0xBB])  // trailing bytes are not part of it
            XCTAssertEqual(decoded?.record, record)
            XCTAssertEqual(decoded?.size, bytes.count)
        }
    }

    func testRejectsTruncatedRecord() {
        let bytes = JournalFormat.encodeRecord(JournalRecord(sequence: 9, type: 3, payload: Array("payload".utf8)))
        for cut in 0..<bytes.count {
            XCTAssertNil(JournalFormat.decodeRecord(Array(bytes[..<cut])), "cut at \(cut)")
        }
    }

    func testRejectsEveryFlippedBit() {
        let bytes = JournalFormat.encodeRecord(JournalRecord(sequence: 9, type: 3, payload: Array("payload".utf8)))
        for index in bytes.indices {
            for bit in 0..<8 {
                var damaged = bytes
                damaged[index] ^= UInt8(1 << bit)
                XCTAssertNil(JournalFormat.decodeRecord(damaged), "byte \(index) bit \(bit)")
            }
        }
    }

    func testRejectsLengthAboveMaxRecordSizeBeforeReadingPayload() {
        let bytes = JournalFormat.encodeRecord(JournalRecord(sequence: 1, type: 1, payload: [UInt8](repeating: 1, count: 100)))
        XCTAssertNil(JournalFormat.decodeRecord(bytes, maxRecordSize: 99))
        XCTAssertNotNil(JournalFormat.decodeRecord(bytes, maxRecordSize: 100))
    }

    func testRejectsZeroFilledRecord() {
        XCTAssertNil(JournalFormat.decodeRecord([UInt8](repeating: 0, count: 64)))
    }

    func testRejectsDamagedSnapshot() {
        let bytes = JournalFormat.encodeSnapshot(sequence: 7, payload: Array("some state".utf8))
        XCTAssertNotNil(JournalFormat.decodeSnapshot(bytes))
        for index in bytes.indices {
            var damaged = bytes
            damaged[index] ^= 0x01
            XCTAssertNil(JournalFormat.decodeSnapshot(damaged), "byte \(index)")
        }
        XCTAssertNil(JournalFormat.decodeSnapshot(Array(bytes.dropLast())))
        XCTAssertNil(JournalFormat.decodeSnapshot(bytes + [0]))
    }

    func testFileNames() {
        XCTAssertEqual(JournalFormat.segmentFileName(firstSequence: 1), "wal-0000000000000001.log")
        XCTAssertEqual(JournalFormat.segmentFileName(firstSequence: 0xABCDEF), "wal-0000000000abcdef.log")
        XCTAssertEqual(JournalFormat.snapshotFileName(sequence: UInt64.max), "snap-ffffffffffffffff.snap")
    }
}
