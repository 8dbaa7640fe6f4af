import Foundation
import TollgateClient
import TollgateModel
import TollgateProtocol
import XCTest

#if canImport(Glibc)
import Glibc
#endif

/// The real `tollgated` binary in a child process, killed with SIGKILL after acknowledgements.
final class KillTests: XCTestCase {
    static var daemonBinary: URL? {
        let candidates = [Bundle.main.bundleURL, Bundle.main.bundleURL.deletingLastPathComponent()]
            + [URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent(".build/debug")]
        return candidates.map { $0.appendingPathComponent("tollgated") }.first { FileManager.default.isExecutableFile(atPath: $0.path) }
    }

    func startDaemon(stateDir: String) throws -> Process {
        let binary = try XCTUnwrap(Self.daemonBinary, "build tollgated first (swift build)")
        let process = Process()
        process.executableURL = binary
        process.arguments = ["--state-dir", stateDir, "--log-level", "warning"]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        return process
    }

    /// Waits (bounded) until the admin socket answers a PING.
    func waitUntilServing(_ path: String) async throws -> TollgateConnection {
        for _ in 0..<600 {
            if let connection = try? await TollgateConnection.connect(path: path) {
                if (try? await connection.ping()) != nil { return connection }
                await connection.close()
            }
            try await Task.sleep(for: .milliseconds(50))  // polling for readiness, not timing a result
        }
        throw XCTSkip("tollgated did not start within 30 s")
    }

    func testAcknowledgedChangesSurviveKill9() async throws {
        let directory = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let stateDir = directory + "/state"
        var process = try startDaemon(stateDir: stateDir)
        defer { if process.isRunning { kill(process.processIdentifier, SIGKILL) } }

        var admin = try await waitUntilServing(stateDir + "/tollgate-admin.sock")
        var api = try await TollgateConnection.connect(path: stateDir + "/tollgate.sock")
        _ = try await admin.putPlan(Plan(id: "k9", entitlements: ["*"], quotas: [QuotaRule(meter: "events", period: .month, limit: 1_000_000)]))
        _ = try await admin.putLicense(LicenseSpec(id: "lic_k9", customer: "K9", plan: "k9", status: .active))
        var live: [String] = []
        var revoked: [String] = []
        var metered: UInt64 = 0
        for i in 0..<30 {
            let (secret, _) = try await admin.issue(IssueRequest(licenseID: "lic_k9", subject: "k\(i)"))
            if i % 3 == 0 {
                _ = try await api.revoke(RevokeRequest(target: .secret(secret), reason: "k9"))
                revoked.append(secret)
            } else {
                live.append(secret)
                let result = try await api.meter(MeterRequest(token: secret, meter: "events", quantity: UInt64(i), idempotencyKey: "k9-\(i)"))
                XCTAssertTrue(result.allowed)
                metered += UInt64(i)
            }
        }
        // Every answer above was acknowledged: now the process dies without any chance to flush.
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
        XCTAssertEqual(process.terminationReason, .uncaughtSignal)
        await admin.close()
        await api.close()

        process = try startDaemon(stateDir: stateDir)
        admin = try await waitUntilServing(stateDir + "/tollgate-admin.sock")
        api = try await TollgateConnection.connect(path: stateDir + "/tollgate.sock")
        for secret in revoked { 
            let value1 = try await api.check(CheckRequest(token: secret)).reason
            XCTAssertEqual(value1, .revoked)
        }
        for secret in live { 
            let value2 = try await api.check(CheckRequest(token: secret)).allowed
            XCTAssertTrue(value2)
        }
        let quota = try await api.check(CheckRequest(token: live[0], meter: "events")).quota
        XCTAssertEqual(quota?.remaining, 1_000_000 - metered, "every acknowledged meter event is counted exactly once")
        let value3 = try await api.meter(MeterRequest(token: live[0], meter: "events", quantity: 1, idempotencyKey: "k9-1")).duplicate
        XCTAssertTrue(value3)
        let value4 = try await admin.license(id: "lic_k9").activeTokens
        XCTAssertEqual(value4, UInt32(live.count))
        await admin.close()
        await api.close()
        kill(process.processIdentifier, SIGTERM)
        process.waitUntilExit()
        XCTAssertEqual(process.terminationStatus, 0, "SIGTERM is a clean stop")
    }
}
