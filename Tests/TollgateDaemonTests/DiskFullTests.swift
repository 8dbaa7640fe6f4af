import Foundation
import NIOConcurrencyHelpers
import TollgateClient
import TollgateDaemon
import TollgateJournal
import TollgateModel
import TollgateProtocol
import XCTest

#if canImport(Glibc)
import Glibc
#endif

/// The real file system, with a switch that makes every write and fsync fail with ENOSPC ("the disk is full").
final class DiskThatFills: JournalFileSystem, @unchecked Sendable {
    private let real = PosixFileSystem()
    private let full = NIOLockedValueBox(false)

    var isFull: Bool {
        get { full.withLockedValue { $0 } }
        set { full.withLockedValue { $0 = newValue } }
    }

    private func failIfFull(_ operation: String) throws {
        if isFull { throw JournalError.io(operation, errno: ENOSPC) }
    }

    func createDirectory(_ path: String) throws { try real.createDirectory(path) }
    func listDirectory(_ path: String) throws -> [String] { try real.listDirectory(path) }
    func readFile(_ path: String) throws -> [UInt8] { try real.readFile(path) }
    func open(_ path: String, mode: JournalOpenMode) throws -> JournalFile {
        if mode == .createTruncate { try failIfFull("open") }
        return try real.open(path, mode: mode)
    }
    func write(_ file: JournalFile, _ bytes: UnsafeRawBufferPointer, at offset: Int64) throws -> Int {
        try failIfFull("write")
        return try real.write(file, bytes, at: offset)
    }
    func fsync(_ file: JournalFile) throws {
        try failIfFull("fsync")
        try real.fsync(file)
    }
    func fdatasync(_ file: JournalFile) throws {
        try failIfFull("fdatasync")
        try real.fdatasync(file)
    }
    func truncate(_ file: JournalFile, to length: Int64) throws { try real.truncate(file, to: length) }
    func close(_ file: JournalFile) throws { try real.close(file) }
    func rename(_ from: String, to: String) throws { try real.rename(from, to: to) }
    func unlink(_ path: String) throws { try real.unlink(path) }
    func fsyncDirectory(_ path: String) throws { try real.fsyncDirectory(path) }
}

/// The real file system, with a switch that holds every fdatasync until it is released (a slow disk).
final class DiskThatStalls: JournalFileSystem, @unchecked Sendable {
    private let real = PosixFileSystem()
    private let condition = NSCondition()
    private var stalled = false

    func stall() { condition.withLock { stalled = true } }

    func release() {
        condition.withLock {
            stalled = false
            condition.broadcast()
        }
    }

    func createDirectory(_ path: String) throws { try real.createDirectory(path) }
    func listDirectory(_ path: String) throws -> [String] { try real.listDirectory(path) }
    func readFile(_ path: String) throws -> [UInt8] { try real.readFile(path) }
    func open(_ path: String, mode: JournalOpenMode) throws -> JournalFile { try real.open(path, mode: mode) }
    func write(_ file: JournalFile, _ bytes: UnsafeRawBufferPointer, at offset: Int64) throws -> Int { try real.write(file, bytes, at: offset) }
    func fsync(_ file: JournalFile) throws { try real.fsync(file) }
    func fdatasync(_ file: JournalFile) throws {
        condition.withLock { while stalled { condition.wait() } }
        try real.fdatasync(file)
    }
    func truncate(_ file: JournalFile, to length: Int64) throws { try real.truncate(file, to: length) }
    func close(_ file: JournalFile) throws { try real.close(file) }
    func rename(_ from: String, to: String) throws { try real.rename(from, to: to) }
    func unlink(_ path: String) throws { try real.unlink(path) }
    func fsyncDirectory(_ path: String) throws { try real.fsyncDirectory(path) }
}

/// A full disk: writes that cannot be made durable are answered `unavailable`, never `ok`; checks keep being
/// answered from memory; the daemon recovers by itself when space returns, and nothing acknowledged is lost.
final class DiskFullTests: XCTestCase {
    func testAFullDiskRefusesChangesKeepsCheckingAndRecoversByItself() async throws {
        let disk = DiskThatFills()
        let harness = try DaemonHarness()
        defer { harness.cleanUp() }
        harness.fileSystem = disk
        try await harness.start()
        let p = try await harness.provision()
        let api = try await harness.api()
        let admin = try await harness.admin()
        let meter = MeterRequest(token: p.secret, meter: "requests", quantity: 5, idempotencyKey: "while-full")

        disk.isFull = true
        let refused = try await api.send(.meter(meter))
        XCTAssertEqual(refused.status, .unavailable, "a write that cannot be made durable is never answered ok")
        let retried = try await api.send(.meter(meter))
        XCTAssertEqual(retried.status, .unavailable, "a retry is not mistaken for a duplicate of a change that was not made")
        let issued = try await admin.send(.issue(IssueRequest(licenseID: p.licenseID, subject: "during-outage")))
        XCTAssertEqual(issued.status, .unavailable)
        if case .error(_, let message) = issued { XCTAssertTrue(message.contains("journal"), message) }
        let check = try await api.check(CheckRequest(token: p.secret, scopes: ["read"], meter: "requests", cost: 2))
        XCTAssertTrue(check.allowed, "checks are answered from memory while the disk is full")
        // Memory may still hold the refused meter's usage until recovery rebuilds it: stricter, never looser.
        XCTAssertLessThanOrEqual(check.quota?.remaining ?? 0, 1000 - 2)

        disk.isFull = false
        // Poll until the daemon has recovered by itself (bounded; recovery is retried with backoff up to 5 s).
        var answer: Response = refused
        for _ in 0..<400 where answer.status != .ok {
            answer = try await api.send(.meter(meter))
            if answer.status != .ok { try await Task.sleep(for: .milliseconds(25)) }
        }
        guard case .meter(let recorded) = answer else { return XCTFail("no recovery: \(answer)") }
        XCTAssertFalse(recorded.duplicate, "the refused attempts left no trace")
        XCTAssertEqual(recorded.quota?.remaining, 1000 - 2 - 5, "check consumption during the outage was kept")
        let again = try await api.meter(meter)
        XCTAssertTrue(again.duplicate)

        try await harness.restart()
        let afterRestart = try await (try await harness.api()).check(CheckRequest(token: p.secret, meter: "requests"))
        XCTAssertEqual(afterRestart.quota?.remaining, 1000 - 2 - 5, "counted exactly once, durably, with the outage's check consumption")
        let tokens = try await (try await harness.admin()).listTokens(TokenListRequest(licenseID: p.licenseID))
        XCTAssertEqual(tokens.tokens.map(\.subject), ["svc-test"], "the token refused during the outage does not exist")
        try await harness.stop()
    }
}
