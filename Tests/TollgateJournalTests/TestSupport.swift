import Foundation
import TollgateJournal
import XCTest

/// A fresh directory under the system temporary directory, removed by `tearDown`.
class JournalTestCase: XCTestCase {
    private var directories: [String] = []

    func makeDirectory() -> String {
        let path = NSTemporaryDirectory() + "tollgate-journal-tests-" + UUID().uuidString
        self.directories.append(path)
        return path
    }

    override func tearDown() {
        for path in self.directories { try? FileManager.default.removeItem(atPath: path) }
        self.directories = []
        super.tearDown()
    }

    /// Appends and waits for the durable completion; returns its sequence.
    @discardableResult
    func appendDurably(_ journal: Journal, type: UInt8 = 1, payload: [UInt8], file: StaticString = #filePath, line: UInt = #line) throws -> UInt64 {
        let box = ResultBox<Result<UInt64, JournalError>>()
        let done = DispatchSemaphore(value: 0)
        let assigned = journal.append(type: type, payload: payload, durability: .durable) { result in
            box.set(result)
            done.signal()
        }
        XCTAssertEqual(done.wait(timeout: .now() + 10), .success, "completion never ran", file: file, line: line)
        let sequence = try XCTUnwrap(box.value, file: file, line: line).get()
        XCTAssertEqual(sequence, assigned, file: file, line: line)
        return sequence
    }

    /// Appends and waits for the completion, returning its result.
    func appendResult(_ journal: Journal, payload: [UInt8], durability: Durability = .durable) -> Result<UInt64, JournalError>? {
        let box = ResultBox<Result<UInt64, JournalError>>()
        let done = DispatchSemaphore(value: 0)
        journal.append(type: 1, payload: payload, durability: durability) { result in
            box.set(result)
            done.signal()
        }
        guard done.wait(timeout: .now() + 10) == .success else { return nil }
        return box.value
    }

    func snapshotResult(_ journal: Journal, upTo sequence: UInt64, payload: [UInt8]) -> Result<Void, JournalError>? {
        let box = ResultBox<Result<Void, JournalError>>()
        let done = DispatchSemaphore(value: 0)
        journal.snapshot(upTo: sequence, encode: { payload }) { result in
            box.set(result)
            done.signal()
        }
        guard done.wait(timeout: .now() + 10) == .success else { return nil }
        return box.value
    }

    func files(in directory: String) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []).sorted()
    }

    func segmentPath(_ directory: String, first: UInt64 = 1) -> String {
        directory + "/" + JournalFormat.segmentFileName(firstSequence: first)
    }

    func readBytes(_ path: String) -> [UInt8] {
        [UInt8](FileManager.default.contents(atPath: path) ?? Data())
    }

    func writeBytes(_ bytes: [UInt8], to path: String) {
        XCTAssertTrue(FileManager.default.createFile(atPath: path, contents: Data(bytes)))
    }

    /// Throws unless `body` throws a `JournalError` with `code`; returns it.
    @discardableResult
    func assertJournalError<T>(
        _ code: JournalError.Code, file: StaticString = #filePath, line: UInt = #line, _ body: () throws -> T
    ) -> JournalError? {
        do {
            _ = try body()
            XCTFail("expected JournalError.\(code), got success", file: file, line: line)
        } catch let error as JournalError {
            XCTAssertEqual(error.code, code, "\(error)", file: file, line: line)
            return error
        } catch {
            XCTFail("expected JournalError.\(code), got \(error)", file: file, line: line)
        }
        return nil
    }
}

/// A value set from another thread.
final class ResultBox<T>: @unchecked Sendable {
    private let lock = NSLock()
    private var _value: T?
    var value: T? { self.lock.withLock { self._value } }
    func set(_ value: T) { self.lock.withLock { self._value = value } }
}

/// A list appended to from other threads.
final class LockedList<T>: @unchecked Sendable {
    private let lock = NSLock()
    private var items: [T] = []
    var all: [T] { self.lock.withLock { self.items } }
    func append(_ item: T) { self.lock.withLock { self.items.append(item) } }
}

/// Parses a vector file: hex bytes separated by whitespace; lines starting with '#' are comments.
func parseHexVector(_ text: String) -> [UInt8] {
    text.split(separator: "\n")
        .filter { !$0.hasPrefix("#") }
        .flatMap { $0.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\r" }) }
        .map { UInt8($0, radix: 16)! }
}

/// Protocol/vectors/journal/, found from this source file.
let journalVectorsDirectory: String = {
    var url = URL(fileURLWithPath: #filePath)
    url.deleteLastPathComponent()  // TollgateJournalTests
    url.deleteLastPathComponent()  // Tests
    url.deleteLastPathComponent()  // package root
    return url.appendingPathComponent("Protocol/vectors/journal").path
}()
