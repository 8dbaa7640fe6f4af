import Foundation
import TollgateClient
import TollgateModel
import TollgateProtocol
import XCTest

/// What was acknowledged survives a restart, a `kill -9`, a torn journal tail and compaction; what is corrupt
/// in the middle is refused; no secret ever reaches the disk.
final class DurabilityTests: DaemonTestCase {
    func testStateSurvivesARestart() async throws {
        try await harness.start()
        let p = try await harness.provision()
        let admin = try await harness.admin()
        let api = try await harness.api()
        let (doomed, doomedInfo) = try await admin.issue(IssueRequest(licenseID: p.licenseID, subject: "doomed"))
        _ = try await api.check(CheckRequest(token: p.secret, scopes: ["read"], meter: "requests", cost: 7))
        _ = try await api.meter(MeterRequest(token: p.secret, meter: "requests", quantity: 5, idempotencyKey: "once"))
        _ = try await admin.revoke(RevokeRequest(target: .tokenID(doomedInfo.id), reason: "rotated"))
        await admin.close()
        await api.close()

        try await harness.restart()

        let api2 = try await harness.api()
        let check = try await api2.check(CheckRequest(token: p.secret, scopes: ["read"], meter: "requests", cost: 0))
        XCTAssertTrue(check.allowed)
        XCTAssertEqual(check.quota?.remaining, 1000 - 7 - 5, "check consumption and meter events survive a graceful restart")
        let again = try await api2.meter(MeterRequest(token: p.secret, meter: "requests", quantity: 5, idempotencyKey: "once"))
        XCTAssertTrue(again.duplicate, "idempotency keys survive a restart")
        let value1 = try await api2.check(CheckRequest(token: doomed)).reason
        XCTAssertEqual(value1, .revoked)
        let admin2 = try await harness.admin()
        let value2 = try await admin2.license(id: p.licenseID).spec.customer
        XCTAssertEqual(value2, "Test Customer")
        let value3 = try await admin2.token(id: doomedInfo.id).revokeReason
        XCTAssertEqual(value3, "rotated")
    }

    func testSnapshotsKeepStateAcrossRestarts() async throws {
        harness.configuration.snapshotAfterBytes = 4096
        try await harness.start()
        let p = try await harness.provision()
        let admin = try await harness.admin()
        let api = try await harness.api()
        var secrets: [String] = []
        for i in 0..<120 {
            let (secret, _) = try await admin.issue(IssueRequest(licenseID: p.licenseID, subject: "bulk-\(i)", metadata: [KeyValue("i", "\(i)")]))
            secrets.append(secret)
            _ = try await api.meter(MeterRequest(token: secret, meter: "requests", quantity: 1, idempotencyKey: "bulk-\(i)"))
        }
        _ = try await admin.revoke(RevokeRequest(target: .secret(secrets[7])))
        await admin.close()
        await api.close()
        try await harness.stop()
        let snapshots = try FileManager.default.contentsOfDirectory(atPath: harness.journalDirectory).filter { $0.hasSuffix(".snap") }
        XCTAssertFalse(snapshots.isEmpty, "the journal was compacted into a snapshot")

        try await harness.start()
        let api2 = try await harness.api()
        let stats = Dictionary(try await (try await harness.admin()).stats().map { ($0.key, $0.value) }, uniquingKeysWith: { a, _ in a })
        XCTAssertEqual(stats["tokens"], "121")
        let check = try await api2.check(CheckRequest(token: p.secret, meter: "requests"))
        XCTAssertEqual(check.quota?.remaining, 1000 - 120)
        let value4 = try await api2.check(CheckRequest(token: secrets[7])).reason
        XCTAssertEqual(value4, .revoked)
        let value5 = try await api2.check(CheckRequest(token: secrets[119])).allowed
        XCTAssertTrue(value5)
        let value6 = try await api2.meter(MeterRequest(token: secrets[3], meter: "requests", quantity: 1, idempotencyKey: "bulk-3")).duplicate
        XCTAssertTrue(value6)
    }

    /// Cuts the journal at every byte offset inside its last record, and flips every byte of it: the daemon
    /// recovers to the record before, reports the repair, and keeps working.
    func testTornOrCorruptLastRecordRecoversToTheLastValidRecord() async throws {
        try await harness.start()
        let p = try await harness.provision()
        try await harness.stop()
        let segment = try XCTUnwrap(try harness.segmentPaths().last)
        let before = try Data(contentsOf: URL(fileURLWithPath: segment))

        try await harness.start()
        _ = try await (try await harness.admin()).revoke(RevokeRequest(target: .tokenID(p.token.id), reason: "last"))
        try await harness.stop()
        let after = try Data(contentsOf: URL(fileURLWithPath: segment))
        XCTAssertGreaterThan(after.count, before.count)
        XCTAssertEqual(after.prefix(before.count), before)

        var damaged: [(String, Data)] = []
        for cut in before.count..<after.count { damaged.append(("cut at \(cut)", after.prefix(cut))) }
        for offset in before.count..<after.count {
            var flipped = after
            flipped[offset] ^= 0x5A
            damaged.append(("flip at \(offset)", flipped))
        }
        for (label, bytes) in damaged {
            try bytes.write(to: URL(fileURLWithPath: segment))
            try await harness.start()
            let api = try await harness.api()
            let result = try await api.check(CheckRequest(token: p.secret, scopes: ["read"]))
            XCTAssertTrue(result.allowed, "\(label): the revocation was in the damaged record, so it is gone")
            let stats = Dictionary(try await (try await harness.admin()).stats().map { ($0.key, $0.value) }, uniquingKeysWith: { a, _ in a })
            XCTAssertEqual(stats["journal_repairs"], bytes.count == before.count ? "0" : "1", label)
            await api.close()
            try await harness.stop()
            let repaired = try Data(contentsOf: URL(fileURLWithPath: segment))
            XCTAssertEqual(repaired, before, "\(label): the file is cut back to the last valid record")
        }

        // After a repair, new records append and replay normally.
        try await harness.start()
        _ = try await (try await harness.admin()).revoke(RevokeRequest(target: .tokenID(p.token.id), reason: "again"))
        try await harness.restart()
        let value7 = try await (try await harness.api()).check(CheckRequest(token: p.secret)).reason
        XCTAssertEqual(value7, .revoked)
    }

    func testCorruptionInTheMiddleRefusesToStart() async throws {
        try await harness.start()
        try await harness.provision()
        try await harness.stop()
        let segment = try XCTUnwrap(try harness.segmentPaths().last)
        var bytes = try Data(contentsOf: URL(fileURLWithPath: segment))
        bytes[40] ^= 0xFF  // inside the first record, with valid records after it
        try bytes.write(to: URL(fileURLWithPath: segment))
        do {
            try await harness.start()
            XCTFail("a journal corrupt in the middle must not be accepted")
        } catch {
            XCTAssertTrue("\(error)".contains("corrupt"), "the refusal says why: \(error)")
        }
    }

    func testSecretsNeverReachTheDiskOrTheLogs() async throws {
        harness.configuration.snapshotAfterBytes = 4096
        try await harness.start()
        let p = try await harness.provision()
        let admin = try await harness.admin()
        let api = try await harness.api()
        var secrets = [p.secret]
        for i in 0..<60 { secrets.append(try await admin.issue(IssueRequest(licenseID: p.licenseID, subject: "s\(i)")).secret) }
        for secret in secrets.prefix(10) {
            _ = try await api.check(CheckRequest(token: secret, scopes: ["read"], meter: "requests", cost: 1))
            _ = try await api.meter(MeterRequest(token: secret, meter: "requests", quantity: 1))
        }
        _ = try await api.revoke(RevokeRequest(target: .secret(secrets[1])))
        _ = try await admin.send(.tokenGet(tokenID: secrets[2]))
        _ = try await admin.send(.revoke(RevokeRequest(target: .tokenID(secrets[3]))))
        try await harness.stop()

        let disk = try harness.allStateBytes()
        let logs = harness.logs.text
        XCTAssertFalse(logs.isEmpty)
        for secret in secrets {
            XCTAssertNil(disk.firstRange(of: Array(secret.utf8)), "a secret was written to the state directory")
            XCTAssertFalse(logs.contains(secret), "a secret was logged")
            // Not even the random part on its own.
            XCTAssertNil(disk.firstRange(of: Array(secret.utf8.dropFirst(8).prefix(43))))
        }
    }
}
