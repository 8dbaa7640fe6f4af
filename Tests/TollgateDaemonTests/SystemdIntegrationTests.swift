import Foundation
import TollgateClient
import TollgateDaemon
import TollgateModel
import TollgateProtocol
import XCTest

#if canImport(Glibc)
import Glibc
#endif

/// The real `tollgated` binary as systemd would run it: notifications on a NOTIFY_SOCKET the test binds,
/// reload on SIGHUP, watchdog pings, and sockets passed by name through socket activation.
final class SystemdIntegrationTests: XCTestCase {
    var directory: String!

    override func setUp() async throws {
        directory = try makeTemporaryDirectory()
    }

    override func tearDown() async throws {
        try? FileManager.default.removeItem(atPath: directory)
    }

    func spawn(_ executable: String, _ arguments: [String], environment extra: [String: String]) throws -> Process {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        var environment = ProcessInfo.processInfo.environment
        environment.merge(extra) { $1 }
        process.environment = environment
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle(forWritingAtPath: "/dev/null")
        try process.run()
        return process
    }

    func testNotifiesReadyReloadingWatchdogAndStopping() async throws {
        let binary = try XCTUnwrap(KillTests.daemonBinary)
        let notify = try NotifySocket(path: directory + "/notify.sock")
        let config = directory + "/config.json"
        try DaemonConfiguration.embeddedDefaultJSON.write(toFile: config, atomically: true, encoding: .utf8)
        let process = try spawn(binary.path, ["--config", config, "--state-dir", directory + "/state"], environment: [
            "NOTIFY_SOCKET": notify.path, "WATCHDOG_USEC": "400000",
        ])
        defer { if process.isRunning { kill(process.processIdentifier, SIGKILL) } }

        // READY comes only once both sockets accept.
        let ready = try XCTUnwrap(notify.receive(until: { $0.contains("READY=1") }), "no READY=1")
        XCTAssertTrue(ready.contains("STATUS=tokens=0 licenses=0"), ready)
        let admin = try await TollgateConnection.connect(path: directory + "/state/tollgate-admin.sock")
        try await admin.ping()
        let api = try await TollgateConnection.connect(path: directory + "/state/tollgate.sock")
        try await api.ping()

        // The watchdog is fed while the loops answer.
        XCTAssertNotNil(notify.receive(until: { $0 == "WATCHDOG=1" }), "no WATCHDOG=1 ping")

        // A valid new configuration: a new plan becomes visible after RELOADING=1 … READY=1.
        let changed = DaemonConfiguration.embeddedDefaultJSON.replacingOccurrences(of: #"{ "id": "enterprise""#, with: #"{ "id": "gold", "entitlements": ["*"] }, { "id": "enterprise""#)
        try changed.write(toFile: config, atomically: true, encoding: .utf8)
        kill(process.processIdentifier, SIGHUP)
        let reloading = try XCTUnwrap(notify.receive(until: { $0.contains("RELOADING=1") }))
        XCTAssertTrue(reloading.contains("MONOTONIC_USEC="))
        XCTAssertNotNil(notify.receive(until: { $0.contains("READY=1") }))
        let gold = try await admin.plan(id: "gold")
        XCTAssertEqual(gold.entitlements, ["*"])

        // An invalid configuration is rejected and the old one stays: the daemon keeps serving.
        try "{ \"plans\": 7 }".write(toFile: config, atomically: true, encoding: .utf8)
        kill(process.processIdentifier, SIGHUP)
        XCTAssertNotNil(notify.receive(until: { $0.contains("RELOADING=1") }))
        XCTAssertNotNil(notify.receive(until: { $0.contains("READY=1") }))
        try await api.ping()
        let stillGold = try await admin.plan(id: "gold")
        XCTAssertEqual(stillGold.entitlements, ["*"], "the rejected reload changed nothing")

        // The connections opened before the reloads are still served.
        await admin.close()
        kill(process.processIdentifier, SIGTERM)
        XCTAssertNotNil(notify.receive(until: { $0.contains("STOPPING=1") }))
        process.waitUntilExit()
        XCTAssertEqual(process.terminationStatus, 0)
    }

    func testTakesBothSocketsByNameFromSocketActivation() async throws {
        let binary = try XCTUnwrap(KillTests.daemonBinary)
        let activator = "/usr/bin/systemd-socket-activate"
        guard FileManager.default.isExecutableFile(atPath: activator) else { throw XCTSkip("systemd-socket-activate is not installed") }
        let apiPath = directory + "/a.sock"
        let adminPath = directory + "/b.sock"
        // Listed admin first: the daemon must use the names, not the order.
        let process = try spawn(activator, ["-l", adminPath, "-l", apiPath, "--fdname=admin:api", binary.path, "--state-dir", directory + "/state"], environment: [:])
        defer { if process.isRunning { kill(process.processIdentifier, SIGKILL) } }
        // systemd-socket-activate starts the daemon on the first connection; the connection waits in the backlog.
        var admin: TollgateConnection?
        for _ in 0..<200 where admin == nil {
            admin = try? await TollgateConnection.connect(path: adminPath)
            if admin == nil { try await Task.sleep(for: .milliseconds(50)) }  // waiting for the activator to bind
        }
        let adminConnection = try XCTUnwrap(admin)
        let hello = try await adminConnection.hello()
        XCTAssertEqual(hello.role, .admin)
        let api = try await TollgateConnection.connect(path: apiPath)
        let apiHello = try await api.hello()
        XCTAssertEqual(apiHello.role, .api)
        let issue = try await api.send(.issue(IssueRequest(licenseID: "x", subject: "y")))
        XCTAssertEqual(issue.status, .notPermitted)
        kill(process.processIdentifier, SIGTERM)
        process.waitUntilExit()
    }
}
