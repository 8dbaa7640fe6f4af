import Foundation
import NIOCore
import TollgateClient
import TollgateDaemon
import TollgateEngine
import TollgateJournal
import TollgateModel
import TollgateProtocol
import XCTest

#if canImport(Glibc)
import Glibc
#endif

/// Clients that pipeline durable requests and never read must not stall durable writes for everyone: the backlog
/// waiting for the journal is bounded for the whole daemon, revocations are not queued behind it, and a stop does
/// not wait for it.
final class DurableBacklogTests: DaemonTestCase {
    /// A METER on a meter no quota names: allowed, and journaled as one record each.
    private func meterFrames(_ secret: String, count: Int) -> [UInt8] {
        let meter = RawFrame.request(.meter(MeterRequest(token: secret, meter: "events", quantity: 1)), id: 1)
        return [UInt8]((0..<count).flatMap { _ in meter })
    }

    private func statistics() async throws -> [String: String] {
        let admin = try await harness.admin()
        defer { Task { await admin.close() } }
        return Dictionary(try await admin.stats().map { ($0.key, $0.value) }, uniquingKeysWith: { a, _ in a })
    }

    /// With a never-reading METER flood holding the daemon-wide backlog at its bound while the disk is slow, a
    /// REVOKE on the admin socket is let through at once (the revoked token is denied from then on) and is written
    /// with the commit that carries the held backlog: in the journal, no more METERs stand before it than the
    /// bound, and the flood's backlog (read only after it) stands behind it.
    func testARevocationIsWrittenAheadOfAMeterFloodHeldAtTheBound() async throws {
        let disk = DiskThatStalls()
        harness.fileSystem = disk
        harness.configuration.journalFsync = true
        harness.configuration.connectionLimits.maxDurableBacklog = 64
        harness.configuration.connectionLimits.maxPipelined = 100_000
        try await harness.start()
        let p = try await harness.provision()
        let admin = try await harness.admin()
        let (victimSecret, victim) = try await admin.issue(IssueRequest(licenseID: p.licenseID, subject: "victim", scopes: ["read"]))

        disk.stall()
        var flood: [CInt] = []
        defer { for fd in flood { close(fd) } }
        let chunk = meterFrames(p.secret, count: 256)
        var sent = 0
        for _ in 0..<4 {
            let fd = try connectRaw(harness.apiSocket)
            flood.append(fd)
            sent += try await sendUntilBlocked(fd, repeating: chunk, ceiling: 1 << 20)
        }
        let meterSize = chunk.count / 256
        // The disk holds the first commit; the daemon has let exactly the bound through and holds the rest.
        var stats = try await statistics()
        XCTAssertEqual(stats["durable_backlog"], "64")
        XCTAssertEqual(stats["durable_backlog_peak"], "64")
        XCTAssertGreaterThan(Int(stats["durable_backlog_holds"] ?? "") ?? 0, 0)
        XCTAssertGreaterThan(sent / meterSize, 64 * 4, "the flood sent more than the bound")

        let revocation = Task { try await admin.revoke(RevokeRequest(target: .tokenID(victim.id), reason: "leaked")) }
        // Decided at once, before it is durable: the token is denied while the flood is still held.
        let api = try await harness.api()
        var denied = false
        for _ in 0..<1000 where !denied {
            denied = try await api.check(CheckRequest(token: victimSecret)).reason == .revoked
        }
        XCTAssertTrue(denied)
        stats = try await statistics()
        XCTAssertEqual(stats["durable_backlog"], "64", "the flood is still held while the revocation is decided")

        disk.release()
        let revokedCount = try await revocation.value
        XCTAssertEqual(revokedCount, 1)
        // Let the flood's backlog follow the revocation into the journal, then stop and read the journal.
        let revokeSequence = try XCTUnwrap(UInt64(stats["journal_last_seq"] ?? ""))
        // A bounded wait (the harness is not Sendable, so not inside `withTimeout`): fails rather than hangs.
        let deadline = ContinuousClock.now + .seconds(60)
        var durable: UInt64 = 0
        while durable < revokeSequence + 200 {
            guard ContinuousClock.now < deadline else { return XCTFail("the flood's backlog was not written within 60 s") }
            durable = UInt64(try await statistics()["journal_durable_seq"] ?? "") ?? 0
        }
        for fd in flood { close(fd) }
        flood = []
        try await harness.stop()

        let (journal, recovered) = try Journal.open(directory: harness.journalDirectory)
        try journal.close()
        let kinds = try recovered.records.map { try StateChange.decode(type: $0.type, payload: ByteBuffer(bytes: $0.payload)) }
        let revokeIndex = try XCTUnwrap(kinds.firstIndex { if case .tokensRevoked = $0 { return true } else { return false } })
        let isMeter: (StateChange) -> Bool = { if case .metered = $0 { return true } else { return false } }
        XCTAssertLessThanOrEqual(kinds[..<revokeIndex].filter(isMeter).count, 64, "only the held backlog stands before the revocation")
        XCTAssertGreaterThan(kinds[(revokeIndex + 1)...].filter(isMeter).count, 100, "the flood's backlog comes after it")
    }

    /// The scenario of the hostile-client run: 30 clients pipeline METERs, never read, and disconnect. The backlog
    /// never exceeds its bound, and a fresh client's ISSUE and REVOKE are answered (the bound is generous: this
    /// asserts that they are answered at all while the flood drains, not how fast).
    func testAFreshClientIsServedWhileNeverReadingMeterClientsDrain() async throws {
        harness.configuration.connectionLimits.maxDurableBacklog = 1024
        try await harness.start()
        let p = try await harness.provision()
        let chunk = meterFrames(p.secret, count: 512)
        var flood: [CInt] = []
        for _ in 0..<30 {
            let fd = try connectRaw(harness.apiSocket)
            flood.append(fd)
            _ = try await sendUntilBlocked(fd, repeating: chunk, ceiling: 128 << 10)
        }
        for fd in flood { close(fd) }

        let admin = try await harness.admin()
        let answered = try await withTimeout(seconds: 60) {
            let (_, token) = try await admin.issue(IssueRequest(licenseID: p.licenseID, subject: "fresh", scopes: ["read"]))
            return try await admin.revoke(RevokeRequest(target: .tokenID(token.id), reason: "test"))
        }
        XCTAssertEqual(answered, 1)
        let stats = try await statistics()
        XCTAssertLessThanOrEqual(Int(stats["durable_backlog_peak"] ?? "") ?? .max, 1024)
    }

    /// A stop with a backlog the disk cannot write in time drops what is queued (its clients are answered
    /// `unavailable` or see the connection close) and finishes; everything acknowledged before is durable.
    func testStopDropsAnUnwrittenBacklogAndKeepsWhatWasAcknowledged() async throws {
        let disk = DiskThatStalls()
        harness.fileSystem = disk
        harness.configuration.journalFsync = true
        harness.configuration.connectionLimits.maxDurableBacklog = 32
        harness.shutdownFlushTimeout = .milliseconds(200)
        try await harness.start()
        let p = try await harness.provision()
        let api = try await harness.api()
        var acknowledged = 0
        for _ in 0..<10 {
            _ = try await api.meter(MeterRequest(token: p.secret, meter: "events", quantity: 1))
            acknowledged += 1
        }
        disk.stall()
        let fd = try connectRaw(harness.apiSocket)
        defer { close(fd) }
        _ = try await sendUntilBlocked(fd, repeating: meterFrames(p.secret, count: 128), ceiling: 1 << 20)
        let backlog = try await statistics()["durable_backlog"]
        XCTAssertEqual(backlog, "32")

        // The harness is not Sendable; this task touches only its `logs` (locked) until `stopping` has finished.
        nonisolated(unsafe) let stoppingHarness: DaemonHarness = harness
        let stopping = Task { try await stoppingHarness.stop() }
        // The stop gives up on the backlog after its timeout; the disk is released only once it has.
        let logs = harness.logs
        try await withTimeout(seconds: 60) {
            while !logs.text.contains("did not write its backlog in time") {
                try Task.checkCancellation()
                await Task.yield()
            }
        }
        disk.release()
        try await stopping.value

        try await harness.start()
        let usage = try await (try await harness.admin()).usage(UsageQuery(from: 0, to: .max, licenseID: p.licenseID))
        let metered = usage.filter { $0.meter == "events" }.reduce(0) { $0 + Int($1.quantity) }
        XCTAssertGreaterThanOrEqual(metered, acknowledged, "every acknowledged METER is durable")
        XCTAssertLessThanOrEqual(metered, acknowledged + 32, "at most the commit in flight beyond them")
    }
}

/// Runs `body`, failing if it has not finished within `seconds` (a bound on a hang, not a timing assertion).
/// `body` must end when cancelled (a loop checks `Task.checkCancellation()`): the group waits for it.
@discardableResult
func withTimeout<T: Sendable>(seconds: Double, _ body: @escaping @Sendable () async throws -> T) async throws -> T {
    try await withThrowingTaskGroup(of: T?.self) { group in
        group.addTask { try await body() }
        group.addTask {
            try await Task.sleep(for: .seconds(seconds))
            return nil
        }
        guard let first = try await group.next(), let value = first else {
            group.cancelAll()
            throw TestSupportError("not answered within \(seconds) s")
        }
        group.cancelAll()
        return value
    }
}
