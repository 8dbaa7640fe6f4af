import Foundation
import TollgateClient
import TollgateDaemon
import TollgateModel
import TollgateProtocol
import TollgateServer
import XCTest

#if canImport(Glibc)
import Glibc
#endif

/// Who may connect, and how much one connection may hold: allow-lists by peer credentials, connection count,
/// idle and stalled-frame timeouts, and backpressure against a client that never reads.
final class ConnectionLimitTests: DaemonTestCase {
    func testAdminRequestsFromAPeerNotOnTheAllowListAreRefusedAndLogged() async throws {
        harness.configuration.access = AccessPolicy(api: .anyone, admin: SocketAccess(uids: [UInt32(geteuid()) &+ 4242]))
        try await harness.start()
        let admin = try await harness.admin()
        let stats = try await admin.send(.stats)
        XCTAssertEqual(stats.status, .notPermitted)
        let hello = try await admin.send(.hello(HelloRequest(clientName: "t")))
        XCTAssertEqual(hello.status, .notPermitted, "every request is checked, not only control-plane ones")
        XCTAssertTrue(harness.logs.text.contains("uid=\(geteuid())"), "the refusal names the peer in the log")
        XCTAssertTrue(harness.logs.text.contains("not on the socket's allow-list"))

        // The api socket, open to anyone, still serves.
        let api = try await harness.api()
        try await api.ping()
    }

    func testPipelinedChecksFromAPeerNotOnTheAllowListAreEachRefusedAndCounted() async throws {
        harness.configuration.access = AccessPolicy(api: SocketAccess(uids: [UInt32(geteuid()) &+ 4242]), admin: .anyone)
        try await harness.start()
        let api = try await harness.api()
        let check = { (id: UInt32) in RawFrame.request(.check(CheckRequest(token: "tg_test_00000000000000000000000000000000000000000003waIaM", scopes: ["read"])), id: id) }
        // One write: the checks reach the server in one read, where they would be batched if the peer were allowed.
        try await api.sendRaw(check(1) + check(2) + RawFrame.request(.ping, id: 3) + check(4))
        var answers: [(UInt32, UInt8)] = []
        for _ in 0..<4 {
            let frame = try await api.nextUnsolicitedFrame()
            answers.append((frame.header.requestID, frame.header.status))
        }
        XCTAssertEqual(answers.map(\.0), [1, 2, 3, 4])
        XCTAssertEqual(answers.map(\.1), Array(repeating: Status.notPermitted.rawValue, count: 4))
        let stats = try await (try await harness.admin()).stats()
        XCTAssertEqual(stats.first { $0.key == "requests_refused" }?.value, "4", "every refused request is counted")
        XCTAssertEqual(stats.first { $0.key == "checks_total" }?.value, "0")
    }

    func testGroupsOnTheAllowListAdmitThePeer() async throws {
        harness.configuration.access = AccessPolicy(api: SocketAccess(uids: [], gids: [UInt32(getegid())]), admin: SocketAccess(uids: [UInt32(geteuid())]))
        try await harness.start()
        try await (try await harness.api()).ping()
        _ = try await (try await harness.admin()).stats()
    }

    func testAnUnprivilegedUserIsRefusedWithNotPermitted() async throws {
        guard geteuid() == 0 else { throw XCTSkip("needs root to run a client as another user") }
        let setpriv = "/usr/bin/setpriv"
        let cli = try XCTUnwrap(KillTests.daemonBinary?.deletingLastPathComponent().appendingPathComponent("tollgate").path)
        guard FileManager.default.isExecutableFile(atPath: setpriv), FileManager.default.isExecutableFile(atPath: cli) else {
            throw XCTSkip("setpriv or the tollgate CLI is missing")
        }
        // A copy of the CLI that the unprivileged user can execute, and sockets it can open (mode 0666), so that
        // only the allow-list stands in its way.
        let exposed = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: exposed) }
        chmod(exposed, 0o755)
        try FileManager.default.copyItem(atPath: cli, toPath: exposed + "/tollgate")
        chmod(exposed + "/tollgate", 0o755)
        harness.configuration.adminSocket = exposed + "/admin.sock"
        harness.configuration.apiSocket = exposed + "/api.sock"
        harness.configuration.adminSocketMode = 0o666
        try await harness.start()

        let process = Process()
        process.executableURL = URL(fileURLWithPath: setpriv)
        process.arguments = ["--reuid=65534", "--regid=65534", "--clear-groups", exposed + "/tollgate", "--admin-socket", exposed + "/admin.sock", "stats"]
        let stderr = Pipe()
        process.standardError = stderr
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        process.waitUntilExit()
        let message = String(decoding: stderr.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        XCTAssertEqual(process.terminationStatus, 1)
        XCTAssertTrue(message.contains("not_permitted"), message)
        XCTAssertTrue(harness.logs.text.contains("uid=65534"), "the refusal is in the log with the peer's uid")
    }

    func testFullStoresRefuseNewTokensAndLicensesWithAClearError() async throws {
        harness.configuration.maxTokens = 2
        harness.configuration.maxLicenses = 1
        try await harness.start()
        let p = try await harness.provision()
        let admin = try await harness.admin()
        _ = try await admin.issue(IssueRequest(licenseID: p.licenseID, subject: "second"))
        let third = try await admin.send(.issue(IssueRequest(licenseID: p.licenseID, subject: "third")))
        XCTAssertEqual(third.status, .invalidArgument)
        if case .error(_, let message) = third { XCTAssertTrue(message.contains("full"), message) }
        let newLicense = try await admin.send(.licensePut(LicenseSpec(id: "lic_other", customer: "c", plan: "free", status: .active)))
        XCTAssertEqual(newLicense.status, .invalidArgument)
        let sameLicense = try await admin.send(.licensePut(LicenseSpec(id: p.licenseID, customer: "renamed", plan: "free", status: .active)))
        XCTAssertEqual(sameLicense.status, .ok, "an existing license can still be changed when the store is full")
    }

    func testConnectionsBeyondTheLimitAreRefusedCleanly() async throws {
        harness.configuration.connectionLimits.maxConnections = 3
        try await harness.start()
        var open: [TollgateConnection] = []
        for _ in 0..<3 {
            let connection = try await harness.api()
            try await connection.ping()
            open.append(connection)
        }
        let excess = try await harness.api()
        let refusal = try await excess.nextUnsolicitedFrame()
        XCTAssertEqual(refusal.header.status, Status.unavailable.rawValue)
        try await excess.closeFuture.get()
        // Closing one makes room again.
        await open[0].close()
        var admitted: TollgateConnection?
        for _ in 0..<100 where admitted == nil {
            let candidate = try await harness.api()
            if (try? await candidate.ping()) != nil { admitted = candidate } else { await candidate.close() }
        }
        XCTAssertNotNil(admitted, "a slot freed by a closed connection is reused")
    }

    func testAStalledHalfFrameIsClosedAfterTheFrameTimeout() async throws {
        harness.configuration.connectionLimits.frameTimeoutMilliseconds = 100
        try await harness.start()
        let stalled = try await harness.api()
        try await stalled.sendRaw(RawFrame.header(length: 100, opcode: Opcode.check.rawValue, requestID: 1))
        try await stalled.closeFuture.get()  // the server closes it; an unbounded wait would fail the suite's time limit
        let healthy = try await harness.api()
        try await healthy.ping()
    }

    func testAnIdleConnectionIsClosed() async throws {
        harness.configuration.connectionLimits.idleTimeoutMilliseconds = 100
        try await harness.start()
        let idle = try await harness.api()
        try await idle.ping()
        try await idle.closeFuture.get()
    }

    /// While the journal is slow, a connection may have at most `max_pipelined` requests waiting for it; beyond
    /// that the daemon stops reading the connection, so the client's writes block instead of the daemon queueing
    /// every request it sent. Releasing the disk lets all of them through, in order.
    func testDurableRequestsBeyondThePipeliningLimitWaitInTheClientNotInTheDaemon() async throws {
        let disk = DiskThatStalls()
        harness.fileSystem = disk
        harness.configuration.journalFsync = true  // the stall is in fdatasync
        harness.configuration.connectionLimits.maxPipelined = 4
        try await harness.start()
        let p = try await harness.provision()
        disk.stall()
        let fd = try connectRaw(harness.apiSocket)
        defer { close(fd) }
        let meter = RawFrame.request(.meter(MeterRequest(token: p.secret, meter: "requests", quantity: 1)), id: 1)
        let chunk = [UInt8]((0..<1024).flatMap { _ in meter })
        let ceiling = 16 << 20
        let written = try await sendUntilBlocked(fd, repeating: chunk, ceiling: ceiling)
        XCTAssertLessThan(written, ceiling, "the daemon kept reading while its requests waited for the journal")
        // The daemon has one event loop here: after these admin round trips it has had every chance to read more
        // from the stalled client. With the limit in force it read nothing more.
        let decided = Int(try await statistic("meters_total")) ?? -1
        let admin = try await harness.admin()
        for _ in 0..<50 { try await admin.ping() }
        let decidedLater = Int(try await statistic("meters_total")) ?? -1
        XCTAssertGreaterThan(decided, 0)
        XCTAssertEqual(decidedLater, decided, "no request is read while max_pipelined requests wait for the journal")
        XCTAssertLessThan(decided, written / meter.count, "what the client sent beyond the limit waits in the client")
        // What one read burst can carry (16 reads of at most 64 KiB) bounds what is decided past the limit.
        XCTAssertLessThanOrEqual(decided, 4 + 16 * 65536 / meter.count)
        disk.release()
    }

    /// A client that pipelines requests but never reads its answers must hit backpressure: the daemon stops
    /// reading from it once its answers fill the output limit, so the client's own writes block (EAGAIN) after a
    /// bounded number of bytes instead of the daemon buffering without end.
    func testAClientThatNeverReadsIsThrottledNotBuffered() async throws {
        harness.configuration.connectionLimits.maxOutputBytes = 64 << 10
        try await harness.start()
        let fd = try connectRaw(harness.apiSocket)
        defer { close(fd) }
        let ping = RawFrame.request(.ping, id: 1)
        let chunk = [UInt8]((0..<4096).flatMap { _ in ping })
        let ceiling = 256 << 20
        // The daemon reading everything would let us reach the ceiling.
        let written = try await sendUntilBlocked(fd, repeating: chunk, ceiling: ceiling)
        XCTAssertLessThan(written, ceiling, "the daemon kept reading a client that never reads its answers")
        let stats = Dictionary(try await (try await harness.admin()).stats().map { ($0.key, $0.value) }, uniquingKeysWith: { a, _ in a })
        XCTAssertNotNil(stats["connections"])
    }
}
