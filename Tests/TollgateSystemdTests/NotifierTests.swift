import Foundation
import Logging
import NIOCore
import NIOPosix
import TollgateSystemd
import TollgateTestSupport
import XCTest

#if canImport(Glibc)
import Glibc
#endif

final class NotifierTests: XCTestCase {
    func testMessagesReachTheNotifySocket() throws {
        let socket = try NotifySocket()
        setenv("NOTIFY_SOCKET", socket.path, 1)
        defer { unsetenv("NOTIFY_SOCKET") }
        let notifier = SystemdNotifier()
        XCTAssertTrue(notifier.isActive)
        notifier.ready(status: "tokens=3\nlicenses=1")
        XCTAssertEqual(socket.receive(), "READY=1\nSTATUS=tokens=3 licenses=1", "a newline in a value must not start a new assignment")
        notifier.reloading(status: "reloading")
        let reloading = try XCTUnwrap(socket.receive())
        XCTAssertTrue(reloading.hasPrefix("RELOADING=1\nMONOTONIC_USEC="))
        let usec = reloading.split(separator: "\n")[1].dropFirst("MONOTONIC_USEC=".count)
        XCTAssertNotNil(UInt64(usec))
        notifier.watchdog()
        XCTAssertEqual(socket.receive(), "WATCHDOG=1")
        notifier.stopping(status: "stopping")
        XCTAssertEqual(socket.receive(), "STOPPING=1\nSTATUS=stopping")
    }

    func testWithoutANotifySocketNothingIsSent() {
        let notifier = SystemdNotifier(environment: [:])
        XCTAssertFalse(notifier.isActive)
        XCTAssertFalse(notifier.notify(["READY=1"]))
    }
}

final class JournaldLogHandlerTests: XCTestCase {
    final class CapturingSink: JournalSink, @unchecked Sendable {
        let lock = NSLock()
        var entries: [[(name: String, value: String)]] = []
        func send(_ fields: [(name: String, value: String)]) { lock.withLock { entries.append(fields) } }
    }

    func testEntriesCarryStandardAndTollgateFields() throws {
        let sink = CapturingSink()
        let control = LogLevelControl(.info)
        let logger = Logger(label: "t") { _ in JournaldLogHandler(identifier: "tollgated", control: control, sink: sink) }
        logger.info("check denied", metadata: ["tollgate.decision": "deny", "tollgate.reason": "revoked", "tollgate.token_id": "tok_1", "tollgate.license": "lic_a"])
        logger.debug("not emitted at info")
        XCTAssertEqual(sink.entries.count, 1)
        let fields = Dictionary(sink.entries[0].map { ($0.name, $0.value) }, uniquingKeysWith: { a, _ in a })
        XCTAssertEqual(fields["MESSAGE"], "check denied")
        XCTAssertEqual(fields["PRIORITY"], "6")
        XCTAssertEqual(fields["SYSLOG_IDENTIFIER"], "tollgated")
        XCTAssertEqual(fields["TOLLGATE_DECISION"], "deny")
        XCTAssertEqual(fields["TOLLGATE_REASON"], "revoked")
        XCTAssertEqual(fields["TOLLGATE_TOKEN_ID"], "tok_1")
        XCTAssertEqual(fields["TOLLGATE_LICENSE"], "lic_a")
        XCTAssertTrue(fields["CODE_FILE"]?.hasSuffix("NotifierTests.swift") ?? false)
        XCTAssertNotNil(fields["CODE_LINE"].flatMap(Int.init))
        XCTAssertNotNil(fields["CODE_FUNC"])

        control.level = .debug
        logger.debug("now emitted")
        XCTAssertEqual(sink.entries.count, 2, "the shared level changes every handler at once")
    }

    func testFieldNamesAreValidJournalFieldNames() {
        XCTAssertEqual(JournaldLogHandler.fieldName("tollgate.journal.last_seq"), "TOLLGATE_JOURNAL_LAST_SEQ")
        XCTAssertEqual(JournaldLogHandler.fieldName("_private"), "F_PRIVATE")
        XCTAssertEqual(JournaldLogHandler.fieldName("9lives"), "F9LIVES")
        XCTAssertEqual(JournaldLogHandler.fieldName(String(repeating: "a", count: 100)).count, 64)
    }

    func testJournalStreamDetectionComparesStandardError() {
        XCTAssertFalse(JournaldLogHandler.standardErrorIsJournal(environment: [:]))
        var status = stat()
        fstat(2, &status)
        XCTAssertTrue(JournaldLogHandler.standardErrorIsJournal(environment: ["JOURNAL_STREAM": "\(status.st_dev):\(status.st_ino)"]))
        XCTAssertFalse(JournaldLogHandler.standardErrorIsJournal(environment: ["JOURNAL_STREAM": "1:2"]))
    }
}

final class LivenessProbeTests: XCTestCase {
    func testAStuckEventLoopFailsTheProbe() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
        let probe = LivenessProbe(group: group)
        let healthy = await probe.isAlive(deadline: .seconds(5))
        XCTAssertTrue(healthy)

        let release = DispatchSemaphore(value: 0)
        let loops = Array(group.makeIterator())
        loops[1].execute { release.wait() }  // freeze one loop
        let frozen = await probe.isAlive(deadline: .milliseconds(200))
        XCTAssertFalse(frozen, "a stuck loop must stop the watchdog pings")
        release.signal()
        let recovered = await probe.isAlive(deadline: .seconds(5))
        XCTAssertTrue(recovered)
        try await group.shutdownGracefully()
    }

    func testAFailedExtraProbeFailsTheProbe() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let alive = await LivenessProbe(group: group, extraProbe: { false }).isAlive(deadline: .seconds(5))
        XCTAssertFalse(alive)
        try await group.shutdownGracefully()
    }
}
