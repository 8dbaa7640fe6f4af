import Foundation
import Glibc
import TollgateJournal
import XCTest

/// I/O failures through the file-system seam: a failing fsync, a short write, a full disk, EIO.
final class FaultInjectionTests: JournalTestCase {
    private func expectFailure(_ result: Result<UInt64, JournalError>?, _ code: JournalError.Code, file: StaticString = #filePath, line: UInt = #line) -> JournalError? {
        guard case .failure(let error)? = result else {
            XCTFail("expected \(code), got \(String(describing: result))", file: file, line: line)
            return nil
        }
        XCTAssertEqual(error.code, code, "\(error)", file: file, line: line)
        return error
    }

    /// Appends one acknowledged record, injects `fault`, then checks the failed state and what a reopen sees.
    private func assertFailureIsContained(
        expectedMessage: String, tornTailOnReopen: Bool = false, file: StaticString = #filePath, line: UInt = #line,
        _ fault: (FaultInjectingFileSystem) -> Void
    ) throws {
        let dir = self.makeDirectory()
        let fs = FaultInjectingFileSystem()
        let (journal, _) = try Journal.open(directory: dir, fileSystem: fs)
        XCTAssertEqual(try self.appendDurably(journal, payload: Array("acknowledged".utf8), file: file, line: line), 1)
        fault(fs)

        let error = self.expectFailure(self.appendResult(journal, payload: [UInt8](repeating: 0x55, count: 64)), .io, file: file, line: line)
        XCTAssertEqual(error?.message, expectedMessage, file: file, line: line)
        XCTAssertTrue(journal.statistics.failed, file: file, line: line)
        XCTAssertEqual(journal.statistics.durableSequence, 1, file: file, line: line)

        // The failed state: no sequence, an immediate .unavailable; flush and close report the failure.
        let box = ResultBox<Result<UInt64, JournalError>>()
        let done = DispatchSemaphore(value: 0)
        XCTAssertEqual(journal.append(type: 1, payload: [1], durability: .durable) { box.set($0); done.signal() }, 0, file: file, line: line)
        XCTAssertEqual(done.wait(timeout: .now() + 10), .success, file: file, line: line)
        _ = self.expectFailure(box.value, .unavailable, file: file, line: line)
        self.assertJournalError(.unavailable, file: file, line: line) {
            try self.snapshotResult(journal, upTo: 1, payload: [])?.get()
        }
        self.assertJournalError(.io, file: file, line: line) { try journal.flush() }
        self.assertJournalError(.io, file: file, line: line) { try journal.close() }

        // Reopening shows the acknowledged record and nothing of the failed one.
        let (reopened, state) = try Journal.open(directory: dir)
        XCTAssertEqual(state.records, [JournalRecord(sequence: 1, type: 1, payload: Array("acknowledged".utf8))], file: file, line: line)
        XCTAssertEqual(state.report.tornTailRepaired, tornTailOnReopen, file: file, line: line)
        XCTAssertEqual(try self.appendDurably(reopened, payload: [2], file: file, line: line), 2)
        try reopened.close()
    }

    func testFailedFdatasyncFailsTheBatchAndEntersTheFailedState() throws {
        try self.assertFailureIsContained(expectedMessage: "fdatasync failed: EIO") { $0.failFsync(EIO) }
    }

    func testShortWriteThenENOSPC() throws {
        try self.assertFailureIsContained(expectedMessage: "write failed: ENOSPC") { $0.failWrites(ENOSPC, short: true) }
    }

    func testWriteEIO() throws {
        try self.assertFailureIsContained(expectedMessage: "write failed: EIO") { $0.failWrites(EIO, short: false) }
    }

    func testShortWriteWhoseRollbackAlsoFailsLeavesATornTailThatRecoveryCuts() throws {
        try self.assertFailureIsContained(expectedMessage: "write failed: ENOSPC", tornTailOnReopen: true) {
            $0.failWrites(ENOSPC, short: true)
            $0.failTruncate()
        }
    }

    func testRecordsQueuedBehindAFailedBatchAreNotReportedDurable() throws {
        let dir = self.makeDirectory()
        let fs = FaultInjectingFileSystem()
        let (journal, _) = try Journal.open(directory: dir, fileSystem: fs)
        let entered = DispatchSemaphore(value: 0)
        let release = DispatchSemaphore(value: 0)
        fs.gateNextFdatasync {
            entered.signal()
            release.wait()
        }
        fs.failFsync(EIO)
        let results = LockedList<Result<UInt64, JournalError>>()
        let done = DispatchGroup()
        done.enter()
        journal.append(type: 1, payload: [1], durability: .durable) { results.append($0); done.leave() }
        XCTAssertEqual(entered.wait(timeout: .now() + 10), .success)
        // Queued while the writer is inside the failing fdatasync.
        for i in 2...4 {
            done.enter()
            journal.append(type: 1, payload: [UInt8(i)], durability: .durable) { results.append($0); done.leave() }
        }
        release.signal()
        XCTAssertEqual(done.wait(timeout: .now() + 10), .success)
        let codes = results.all.map { result -> JournalError.Code? in
            if case .failure(let e) = result { return e.code }
            return nil
        }
        XCTAssertEqual(codes, [.io, .unavailable, .unavailable, .unavailable])
        try? journal.close()
        let (reopened, state) = try Journal.open(directory: dir)
        XCTAssertEqual(state.records, [])
        try reopened.close()
    }

    func testOpenFailsWithIOWhenTheDirectoryCannotBeRead() throws {
        let dir = self.makeDirectory()
        XCTAssertTrue(FileManager.default.createFile(atPath: dir, contents: Data([1])))
        let error = self.assertJournalError(.io) { try Journal.open(directory: dir) }
        XCTAssertTrue(error?.message.hasPrefix("mkdir failed: EEXIST") ?? false, "\(String(describing: error))")
    }
}
