/// The on-disk format, byte for byte, as specified in Protocol/JOURNAL.md. All integers are little-endian.
///
/// Pure functions on byte arrays: no I/O, so the codec is tested on its own and against the vectors in
/// Protocol/vectors/journal/.
public enum JournalFormat {
    /// Format version written in segment and snapshot headers; readers reject any other.
    public static let version: UInt16 = 1

    // MARK: Records

    /// `crc32c u32 | length u32 | type u8 | sequence u64`, then `length` payload bytes.
    public static let recordHeaderSize = 17

    /// Appends the framed record to `buffer`.
    ///
    /// Linear over a batch: the buffer grows geometrically (at least doubling), never to the exact size of each
    /// record. (`Array.reserveCapacity(n)` reallocates to exactly `n`, so calling it per record made a batch of N
    /// records cost O(N²) copying: minutes for a backlog of 10⁵ records.) A caller that knows a batch's total size
    /// reserves it once beforehand.
    public static func encodeRecord(sequence: UInt64, type: UInt8, payload: [UInt8], into buffer: inout [UInt8]) {
        let start = buffer.count
        let needed = start + recordHeaderSize + payload.count
        if needed > buffer.capacity { buffer.reserveCapacity(max(needed, 2 * buffer.capacity)) }
        appendLE(UInt32(0), to: &buffer)  // checksum, patched below
        appendLE(UInt32(payload.count), to: &buffer)
        buffer.append(type)
        appendLE(sequence, to: &buffer)
        buffer.append(contentsOf: payload)
        let crc = buffer.withUnsafeBytes { CRC32C.update(0, UnsafeRawBufferPointer(rebasing: $0[(start + 4)...])) }
        buffer.withUnsafeMutableBytes { storeLE(crc, at: start, in: $0) }
    }

    /// The framed bytes of one record.
    public static func encodeRecord(_ record: JournalRecord) -> [UInt8] {
        var buffer: [UInt8] = []
        encodeRecord(sequence: record.sequence, type: record.type, payload: record.payload, into: &buffer)
        return buffer
    }

    /// The header of a valid record: it lies wholly inside `bytes`, declares at most `maxRecordSize` payload
    /// bytes, and its stored CRC32C matches. Checks the length *before* touching the payload.
    struct RecordHeader: Equatable {
        var sequence: UInt64
        var type: UInt8
        var length: Int
        /// Offset just past the record.
        var end: Int
    }

    /// Parses and checks the record at `offset`; nil if there is no valid record there (the validity rule).
    static func validRecord(at offset: Int, in bytes: UnsafeRawBufferPointer, maxRecordSize: Int) -> RecordHeader? {
        guard offset >= 0, bytes.count - offset >= recordHeaderSize else { return nil }
        let length = Int(loadLE(UInt32.self, at: offset + 4, in: bytes))
        guard length <= maxRecordSize, bytes.count - offset - recordHeaderSize >= length else { return nil }
        let end = offset + recordHeaderSize + length
        let stored = loadLE(UInt32.self, at: offset, in: bytes)
        let actual = CRC32C.update(0, UnsafeRawBufferPointer(rebasing: bytes[(offset + 4)..<end]))
        guard stored == actual else { return nil }
        return RecordHeader(
            sequence: loadLE(UInt64.self, at: offset + 9, in: bytes),
            type: bytes[offset + 8],
            length: length,
            end: end
        )
    }

    /// Decodes one framed record from the start of `bytes`; nil if it is not valid.
    public static func decodeRecord(_ bytes: [UInt8], maxRecordSize: Int = Int(UInt32.max)) -> (record: JournalRecord, size: Int)? {
        bytes.withUnsafeBytes { raw in
            guard let header = validRecord(at: 0, in: raw, maxRecordSize: maxRecordSize) else { return nil }
            let payload = Array(raw[recordHeaderSize..<header.end])
            return (JournalRecord(sequence: header.sequence, type: header.type, payload: payload), header.end)
        }
    }

    // MARK: Segment header

    /// `"TGJL" | version u16 | reserved u16 (0) | first sequence u64 | crc32c u32 of bytes 0..<16`.
    public static let segmentHeaderSize = 20
    public static let segmentMagic: [UInt8] = Array("TGJL".utf8)

    public static func encodeSegmentHeader(firstSequence: UInt64) -> [UInt8] {
        var bytes = segmentMagic
        appendLE(version, to: &bytes)
        appendLE(UInt16(0), to: &bytes)
        appendLE(firstSequence, to: &bytes)
        appendLE(CRC32C.checksum(bytes), to: &bytes)
        return bytes
    }

    /// The first sequence named by a valid segment header, or a reason it is not valid.
    static func decodeSegmentHeader(_ bytes: UnsafeRawBufferPointer) -> Result<UInt64, HeaderProblem> {
        guard bytes.count >= segmentHeaderSize else { return .failure(.short) }
        guard Array(bytes[0..<4]) == segmentMagic else { return .failure(.magic) }
        guard loadLE(UInt32.self, at: 16, in: bytes) == CRC32C.update(0, UnsafeRawBufferPointer(rebasing: bytes[0..<16])) else {
            return .failure(.checksum)
        }
        let version = loadLE(UInt16.self, at: 4, in: bytes)
        guard version == Self.version else { return .failure(.version(version)) }
        return .success(loadLE(UInt64.self, at: 8, in: bytes))
    }

    enum HeaderProblem: Error, CustomStringConvertible {
        case short, magic, checksum, version(UInt16), length

        var description: String {
            switch self {
            case .short: return "file shorter than its header"
            case .magic: return "bad magic"
            case .checksum: return "header checksum mismatch"
            case .version(let v): return "unsupported format version \(v)"
            case .length: return "length does not match the file size, or checksum mismatch"
            }
        }
    }

    // MARK: Snapshot file

    /// `"TGJS" | version u16 | reserved u16 (0) | sequence u64 | length u64 | crc32c u32`, then the payload;
    /// the checksum covers bytes 0..<24 and the payload.
    public static let snapshotHeaderSize = 28
    public static let snapshotMagic: [UInt8] = Array("TGJS".utf8)

    public static func encodeSnapshot(sequence: UInt64, payload: [UInt8]) -> [UInt8] {
        var bytes = snapshotMagic
        bytes.reserveCapacity(snapshotHeaderSize + payload.count)
        appendLE(version, to: &bytes)
        appendLE(UInt16(0), to: &bytes)
        appendLE(sequence, to: &bytes)
        appendLE(UInt64(payload.count), to: &bytes)
        let crc = CRC32C.update(CRC32C.checksum(bytes), payload)
        appendLE(crc, to: &bytes)
        bytes.append(contentsOf: payload)
        return bytes
    }

    /// Decodes a whole snapshot file; fails unless magic, version, length and checksum are all right.
    public static func decodeSnapshot(_ bytes: [UInt8]) -> SnapshotFile? {
        try? decodeSnapshotChecked(bytes).get()
    }

    static func decodeSnapshotChecked(_ bytes: [UInt8]) -> Result<SnapshotFile, HeaderProblem> {
        bytes.withUnsafeBytes { raw in
            guard raw.count >= snapshotHeaderSize else { return .failure(.short) }
            guard Array(raw[0..<4]) == snapshotMagic else { return .failure(.magic) }
            let length = loadLE(UInt64.self, at: 16, in: raw)
            guard length == UInt64(raw.count - snapshotHeaderSize) else { return .failure(.length) }
            var crc = CRC32C.update(0, UnsafeRawBufferPointer(rebasing: raw[0..<24]))
            crc = CRC32C.update(crc, UnsafeRawBufferPointer(rebasing: raw[snapshotHeaderSize...]))
            guard crc == loadLE(UInt32.self, at: 24, in: raw) else { return .failure(.checksum) }
            let version = loadLE(UInt16.self, at: 4, in: raw)
            guard version == Self.version else { return .failure(.version(version)) }
            return .success(SnapshotFile(sequence: loadLE(UInt64.self, at: 8, in: raw), payload: Array(raw[snapshotHeaderSize...])))
        }
    }

    // MARK: File names

    /// `wal-<first sequence as 16 lowercase hex digits>.log`
    public static func segmentFileName(firstSequence: UInt64) -> String { "wal-\(hex16(firstSequence)).log" }
    /// `snap-<sequence as 16 lowercase hex digits>.snap`
    public static func snapshotFileName(sequence: UInt64) -> String { "snap-\(hex16(sequence)).snap" }
    /// Suffix of files being created; a reader deletes them: they never hold acknowledged data.
    public static let temporarySuffix = ".tmp"

    static func parseSegmentFileName(_ name: String) -> UInt64? { parse(name, prefix: "wal-", suffix: ".log") }
    static func parseSnapshotFileName(_ name: String) -> UInt64? { parse(name, prefix: "snap-", suffix: ".snap") }

    private static func parse(_ name: String, prefix: String, suffix: String) -> UInt64? {
        guard name.hasPrefix(prefix), name.hasSuffix(suffix) else { return nil }
        let digits = name.dropFirst(prefix.count).dropLast(suffix.count)
        guard digits.count == 16, digits.allSatisfy({ $0.isHexDigit && !$0.isUppercase }) else { return nil }
        return UInt64(digits, radix: 16)
    }

    private static func hex16(_ value: UInt64) -> String {
        let digits = String(value, radix: 16)
        return String(repeating: "0", count: 16 - digits.count) + digits
    }

    // MARK: Little-endian helpers

    static func appendLE<T: FixedWidthInteger>(_ value: T, to bytes: inout [UInt8]) {
        var v = value.littleEndian
        withUnsafeBytes(of: &v) { bytes.append(contentsOf: $0) }
    }

    static func storeLE<T: FixedWidthInteger>(_ value: T, at offset: Int, in bytes: UnsafeMutableRawBufferPointer) {
        bytes.storeBytes(of: value.littleEndian, toByteOffset: offset, as: T.self)
    }

    static func loadLE<T: FixedWidthInteger>(_: T.Type, at offset: Int, in bytes: UnsafeRawBufferPointer) -> T {
        T(littleEndian: bytes.loadUnaligned(fromByteOffset: offset, as: T.self))
    }
}
