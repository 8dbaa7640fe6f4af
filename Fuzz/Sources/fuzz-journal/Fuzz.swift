import FuzzSupport
import TollgateJournal
#if canImport(Glibc)
import Glibc
#endif

/// Builds a journal directory from the input, runs recovery (`Journal.open`) on it, and checks what it says.
///
/// The first byte picks how the input becomes files (`byte % 3`) and, with bit 4, a small `maxRecordSize` (64):
/// - 0 "tail":  `wal-0000000000000001.log` = a valid segment header + the rest of the input (so the fuzzer starts
///              past the header, in the record stream).
/// - 1 "ops":   the rest is a program that writes valid records (real CRCs) into segments and snapshots, then
///              damages them: wrong sequences, garbage, bit flips, truncation, zero tails, lost segments, `.tmp`s.
/// - 2 "files": the rest is a list of files `[kind u8][sequence u8][length u16 LE][bytes]`: segments and snapshots
///              with or without a valid header, `.tmp` files, unrelated names.
///
/// The directory is in memory (`MemoryFileSystem`); with `TOLLGATE_FUZZ_POSIX=1` it is a real temporary directory
/// (under `$TMPDIR`, default /tmp) and the journal uses `PosixFileSystem`.
///
/// Invariants: `open` either succeeds or throws `JournalError` with code `corruption`, never crashes or hangs
/// (`-timeout`). On corruption no segment or snapshot was modified. On success: records are contiguous and start
/// right after the snapshot; the report agrees with the records; a torn-tail cut removed exactly the reported bytes
/// from the end of the reported file. Then one record is appended, the journal is closed and opened again: the
/// second open must succeed without a repair and return the same snapshot, the same records and the new one.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzTestOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    var input = FuzzInput(data, size)
    let mode = input.u8()
    let files: [String: [UInt8]]
    switch mode % 3 {
    case 0: files = tailFiles(&input)
    case 1: files = opsFiles(&input)
    default: files = listedFiles(&input)
    }
    let options = JournalOptions(maxRecordSize: mode & 0x10 != 0 ? 64 : 16 * 1024 * 1024, flushInterval: .milliseconds(1))
    if posixMode {
        let directory = makeTemporaryDirectory(files)
        defer { removeDirectory(directory) }
        checkRecovery(directory: directory, fileSystem: PosixFileSystem(), options: options)
    } else {
        checkRecovery(directory: "/fuzz/journal", fileSystem: MemoryFileSystem(files: files), options: options)
    }
    return 0
}

let posixMode = getenv("TOLLGATE_FUZZ_POSIX").map { String(cString: $0) == "1" } ?? false

func segmentName(_ first: UInt64) -> String { JournalFormat.segmentFileName(firstSequence: first) }
func snapshotName(_ sequence: UInt64) -> String { JournalFormat.snapshotFileName(sequence: sequence) }

func tailFiles(_ input: inout FuzzInput) -> [String: [UInt8]] {
    [segmentName(1): JournalFormat.encodeSegmentHeader(firstSequence: 1) + input.rest()]
}

func opsFiles(_ input: inout FuzzInput) -> [String: [UInt8]] {
    var segments: [(first: UInt64, bytes: [UInt8])] = [(1, JournalFormat.encodeSegmentHeader(firstSequence: 1))]
    var other: [String: [UInt8]] = [:]
    var expected: UInt64 = 1
    var ops = 0
    while !input.isAtEnd && ops < 256 {
        ops += 1
        let op = input.u8()
        if segments.isEmpty { segments.append((expected, JournalFormat.encodeSegmentHeader(firstSequence: expected))) }
        let last = segments.count - 1
        switch op % 10 {
        case 0:  // a valid record with the next sequence
            let type = input.u8()
            let payload = input.take(Int(input.u8() % 48))
            JournalFormat.encodeRecord(sequence: expected, type: type, payload: payload, into: &segments[last].bytes)
            expected += 1
        case 1:  // rotate: a new segment continuing the sequence
            segments.append((expected, JournalFormat.encodeSegmentHeader(firstSequence: expected)))
        case 2:  // a valid record with a wrong sequence (gap, repeat, step back)
            let delta = Int(input.u8()) - 128
            let sequence = UInt64(max(0, Int(expected) + delta))
            JournalFormat.encodeRecord(sequence: sequence, type: input.u8(), payload: input.take(Int(input.u8() % 16)), into: &segments[last].bytes)
        case 3:  // garbage after the last record
            segments[last].bytes += input.take(Int(input.u8() % 32))
        case 4:  // flip bits in some segment
            let index = Int(input.u8()) % segments.count
            if !segments[index].bytes.isEmpty {
                let position = Int(input.u16()) % segments[index].bytes.count
                segments[index].bytes[position] ^= input.u8() | 1
            }
        case 5:  // cut the end of the last segment (a torn write)
            let cut = min(Int(input.u8() % 40), segments[last].bytes.count)
            segments[last].bytes.removeLast(cut)
        case 6:  // a valid snapshot at or a little before the last sequence
            let back = UInt64(input.u8() % 4)
            let sequence = expected - 1 >= back ? expected - 1 - back : 0
            other[snapshotName(sequence)] = JournalFormat.encodeSnapshot(sequence: sequence, payload: input.take(Int(input.u8() % 16)))
        case 7:  // the oldest segment is gone (compaction ran, or a file was lost)
            if segments.count > 1 { segments.removeFirst() }
        case 8:  // an interrupted file creation
            other[segmentName(expected) + ".tmp"] = input.take(Int(input.u8() % 32))
        default:  // a zero-filled (preallocated) tail
            segments[last].bytes += [UInt8](repeating: 0, count: Int(input.u8() % 64))
        }
    }
    var files = other
    for segment in segments { files[segmentName(segment.first)] = segment.bytes }
    return files
}

func listedFiles(_ input: inout FuzzInput) -> [String: [UInt8]] {
    var files: [String: [UInt8]] = [:]
    while !input.isAtEnd && files.count < 16 {
        let kind = input.u8() % 6
        let sequence = UInt64(input.u8() % 8)
        let bytes = input.take(Int(input.u16() % 1024))
        switch kind {
        case 0: files[segmentName(sequence)] = JournalFormat.encodeSegmentHeader(firstSequence: sequence) + bytes
        case 1: files[segmentName(sequence)] = bytes
        case 2: files[snapshotName(sequence)] = JournalFormat.encodeSnapshot(sequence: sequence, payload: bytes)
        case 3: files[snapshotName(sequence)] = bytes
        case 4: files[snapshotName(sequence) + ".tmp"] = bytes
        default: files["wal-\(sequence).log"] = bytes  // not a journal name: ignored
        }
    }
    return files
}

/// The directory's files, through the journal's own file system.
func readAll(_ directory: String, _ fs: any JournalFileSystem) -> [String: [UInt8]] {
    var result: [String: [UInt8]] = [:]
    do {
        for name in try fs.listDirectory(directory) { result[name] = try fs.readFile(directory + "/" + name) }
    } catch {
        fuzzCheck(false, "reading the directory back failed: \(error)")
    }
    return result
}

func isJournalFile(_ name: String) -> Bool {
    !name.hasSuffix(".tmp") && ((name.hasPrefix("wal-") && name.hasSuffix(".log")) || (name.hasPrefix("snap-") && name.hasSuffix(".snap")))
}

func checkRecovery(directory: String, fileSystem fs: any JournalFileSystem, options: JournalOptions) {
    let before = readAll(directory, fs)
    let journal: Journal
    let state: RecoveredState
    do {
        (journal, state) = try Journal.open(directory: directory, options: options, fileSystem: fs)
    } catch let error as JournalError {
        fuzzCheck(error.code == .corruption, "open failed with \(error), expected corruption or success")
        let after = readAll(directory, fs)
        for (name, bytes) in before where isJournalFile(name) {
            fuzzCheck(after[name] == bytes, "open refused (\(error)) but changed \(name)")
        }
        return
    } catch {
        fuzzCheck(false, "open threw a non-JournalError: \(error)")
        return
    }

    let report = state.report
    let base = state.snapshot?.sequence ?? 0
    fuzzCheck(report.snapshotSequence == state.snapshot?.sequence, "report names snapshot \(String(describing: report.snapshotSequence))")
    for (i, record) in state.records.enumerated() {
        fuzzCheck(record.sequence == base + 1 + UInt64(i), "record \(i) has sequence \(record.sequence), expected \(base + 1 + UInt64(i))")
    }
    fuzzCheck(report.recordsReplayed == state.records.count, "recordsReplayed \(report.recordsReplayed) != \(state.records.count)")
    fuzzCheck(report.lastSequence == state.records.last?.sequence ?? base, "lastSequence \(report.lastSequence), records end at \(state.records.last?.sequence ?? base)")
    fuzzCheck(journal.lastSequence == report.lastSequence, "journal.lastSequence \(journal.lastSequence) != report \(report.lastSequence)")
    let after = readAll(directory, fs)
    if report.tornTailRepaired {
        guard let file = report.repairedFile, let offset = report.repairedOffset, let original = before[file], let cut = after[file] else {
            fuzzCheck(false, "a repair without its file/offset, or of a file that was not there: \(report)")
            return
        }
        fuzzCheck(report.truncatedBytes > 0 && offset + report.truncatedBytes == original.count, "cut \(report.truncatedBytes) at \(offset) from \(original.count) bytes")
        fuzzCheck(cut == Array(original.prefix(offset)), "the repaired file is not the prefix of the original")
    } else {
        fuzzCheck(report.truncatedBytes == 0 && report.repairedFile == nil, "no repair but \(report)")
    }
    for (name, bytes) in after where isJournalFile(name) && name != report.repairedFile {
        if let old = before[name] { fuzzCheck(old == bytes, "open changed \(name) without reporting a repair") }
    }

    // Append one record, close, and recover again: everything must come back, with no repair.
    let payload: [UInt8] = [0xF0, 0x0D]
    let sequence = journal.append(type: 0xAB, payload: payload, durability: .durable, completion: nil)
    fuzzCheck(sequence == report.lastSequence + 1, "append got sequence \(sequence) after \(report.lastSequence)")
    do {
        try journal.flush()
        try journal.close()
    } catch {
        fuzzCheck(false, "append/flush/close after a successful open failed: \(error)")
    }
    do {
        let (again, second) = try Journal.open(directory: directory, options: options, fileSystem: fs)
        defer { try? again.close() }
        fuzzCheck(!second.report.tornTailRepaired, "the second open repaired again: \(second.report)")
        fuzzCheck(second.snapshot?.sequence == state.snapshot?.sequence, "the second open loaded another snapshot")
        fuzzCheck(second.snapshot?.payload == state.snapshot?.payload, "the second open loaded another snapshot payload")
        let expected = state.records + [JournalRecord(sequence: sequence, type: 0xAB, payload: payload)]
        fuzzCheck(second.records == expected, "the second open returned \(second.records.count) records, expected \(expected.count)")
    } catch {
        fuzzCheck(false, "reopening after a successful open and one append failed: \(error)")
    }
}

// MARK: - Real directories (TOLLGATE_FUZZ_POSIX=1)

func makeTemporaryDirectory(_ files: [String: [UInt8]]) -> String {
    let base = getenv("TMPDIR").map { String(cString: $0) } ?? "/tmp"
    var template = Array((base + "/tollgate-fuzz-journal-XXXXXX").utf8CString)
    guard template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) != nil else {
        fuzzCheck(false, "mkdtemp failed: errno \(errno)")
        return ""
    }
    let directory = String(cString: template)
    for (name, bytes) in files {
        let fd = Glibc.open(directory + "/" + name, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        fuzzCheck(fd >= 0, "creating \(name) failed")
        let written = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
        fuzzCheck(written == bytes.count, "writing \(name) failed")
        Glibc.close(fd)
    }
    return directory
}

func removeDirectory(_ directory: String) {
    if let names = try? PosixFileSystem().listDirectory(directory) {
        for name in names { unlink(directory + "/" + name) }
    }
    rmdir(directory)
}

@main
struct FuzzMain {
    static func main() { runLibFuzzer(fuzzTestOneInput) }
}
