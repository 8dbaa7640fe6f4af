import Foundation
import NIOCore
import TollgateClient
import TollgateModel
import TollgateProtocol
import XCTest

#if canImport(Glibc)
import Glibc
#endif

/// WATCH (PROTOCOL.md 6.22) against the real daemon: every decision streamed with its fields, the license filter,
/// the ways a stream ends, and a watcher that stops reading, which loses decisions (counted) but holds up no check.
final class WatchTests: DaemonTestCase {
    /// Collects a stream's batches so a test can wait for what it expects (no sleeping: it waits on the batches).
    private actor Collected {
        var batches: [WatchBatch] = []
        var finished = false
        var failure: Error?
        private var waiters: [(condition: ([WatchBatch]) -> Bool, continuation: CheckedContinuation<Void, Never>)] = []

        func add(_ batch: WatchBatch) {
            batches.append(batch)
            wake()
        }

        func finish(_ error: Error?) {
            finished = true
            failure = error
            wake()
        }

        private func wake() {
            let ready = waiters.filter { finished || $0.condition(batches) }
            waiters.removeAll { waiter in finished || waiter.condition(batches) }
            ready.forEach { $0.continuation.resume() }
        }

        func wait(until condition: @escaping ([WatchBatch]) -> Bool) async {
            if finished || condition(batches) { return }
            await withCheckedContinuation { waiters.append((condition, $0)) }
        }

        var events: [DecisionEvent] { batches.flatMap(\.events) }
    }

    private func collect(_ stream: AsyncThrowingStream<WatchBatch, Error>) -> Collected {
        let collected = Collected()
        Task {
            do {
                for try await batch in stream { await collected.add(batch) }
                await collected.finish(nil)
            } catch {
                await collected.finish(error)
            }
        }
        return collected
    }

    func testEveryDecisionIsStreamedWithItsTokenLicenseSubjectScopeReasonAndLatency() async throws {
        try await harness.start()
        let provisioned = try await harness.provision(scopes: ["read", "write"])
        let admin = try await harness.admin()
        let watched = collect(admin.watch())
        await watched.wait { !$0.isEmpty }  // the stream's first frame: the subscription is in place
        let first = await watched.batches
        XCTAssertEqual(first, [WatchBatch(kind: .events, dropped: 0, events: [])])

        let api = try await harness.api()
        _ = try await api.check(CheckRequest(token: provisioned.secret, scopes: ["read", "write"], meter: "requests", cost: 1))
        _ = try await api.check(CheckRequest(token: provisioned.secret, scopes: ["admin"]))
        _ = try await api.check(CheckRequest(token: "tg_test_not_a_token"))
        await watched.wait { $0.flatMap(\.events).count >= 3 }
        let events = await watched.events
        XCTAssertEqual(events.count, 3)
        XCTAssertEqual(events.map(\.reason), [.none, .insufficientScope, .malformedToken])
        XCTAssertEqual(events[0].tokenID, provisioned.token.id)
        XCTAssertEqual(events[0].licenseID, provisioned.licenseID)
        XCTAssertEqual(events[0].subject, "svc-test")
        XCTAssertEqual(events[0].route, "read write")
        XCTAssertEqual(events[0].source, .socket)
        XCTAssertGreaterThan(events[0].latencyNanoseconds, 0)
        XCTAssertEqual(events[1].route, "admin")
        XCTAssertEqual(events[2].tokenID, "")
        XCTAssertEqual(events.map(\.sequence), [events[0].sequence, events[0].sequence + 1, events[0].sequence + 2], "consecutive: nothing lost")
        let secretText = provisioned.secret
        XCTAssertFalse(events.contains { $0.jsonLine.contains(secretText) }, "no secret in the stream")

        // The client stops the stream with any request: the end frame comes first, then the request's answer.
        try await admin.stopWatching()
        await watched.wait { _ in false }
        let batches = await watched.batches
        XCTAssertEqual(batches.last?.kind, .end)
        let failure = await watched.failure
        XCTAssertNil(failure)
        let watchers = try await statistic("decision_watchers")
        XCTAssertEqual(watchers, "0", "the subscription ended with the stream")
        _ = try await admin.stats()  // the connection serves requests again
        await admin.close()
        await api.close()
    }

    func testTheLicenseFilterAndTheAPISocketRefusal() async throws {
        try await harness.start()
        let acme = try await harness.provision(license: "lic_acme")
        let globex = try await harness.provision(license: "lic_globex")
        let admin = try await harness.admin()
        let watched = collect(admin.watch(licenseID: "lic_globex"))
        await watched.wait { !$0.isEmpty }
        let api = try await harness.api()
        for _ in 0..<5 { _ = try await api.check(CheckRequest(token: acme.secret, scopes: ["read"])) }
        _ = try await api.check(CheckRequest(token: globex.secret, scopes: ["read"]))
        await watched.wait { $0.flatMap(\.events).count >= 1 }
        try await admin.stopWatching()
        await watched.wait { _ in false }
        let events = await watched.events
        XCTAssertEqual(events.map(\.licenseID), ["lic_globex"], "only the filtered license's decisions")

        // On the api socket WATCH is refused like any control-plane request: one error frame, no stream.
        let refused = collect(api.watch())
        await refused.wait { _ in false }
        guard let error = await refused.failure as? TollgateClientError else { return XCTFail("the api socket streamed") }
        XCTAssertEqual(error.code, .server(.notPermitted))
        let watchers = try await statistic("decision_watchers")
        XCTAssertEqual(watchers, "0")
        await admin.close()
        await api.close()
    }

    func testClosingTheConnectionEndsTheSubscription() async throws {
        try await harness.start()
        let admin = try await harness.admin()
        let watched = collect(admin.watch())
        await watched.wait { !$0.isEmpty }
        let open = try await statistic("decision_watchers")
        XCTAssertEqual(open, "1")
        await admin.close()
        await watched.wait { _ in false }
        // The daemon notices the close on its event loop: ask until it has (each STATS is a turn of that loop).
        var watchers = try await statistic("decision_watchers")
        for _ in 0..<1000 where watchers != "0" { watchers = try await statistic("decision_watchers") }
        XCTAssertEqual(watchers, "0")
    }

    /// A watcher that stops reading: every check is still answered, and once it reads again every decision made
    /// meanwhile is either delivered or counted in `dropped` — exactly, with some counted (the ring overtook it).
    func testAStalledWatcherHoldsUpNoCheckAndCountsWhatItLost() async throws {
        harness.configuration.connectionLimits.maxOutputBytes = 64 << 10
        try await harness.start()
        let provisioned = try await harness.provision(plan: Plan(id: "open", entitlements: ["*"]))
        let fd = try connectRaw(harness.adminSocket, nonBlocking: false)
        defer { close(fd) }
        try writeAll(fd, RawFrame.request(.watch(licenseID: ""), id: 77))
        var reader = RawReader(fd: fd)
        let first = try reader.next()
        XCTAssertEqual(first.header.requestID, 77)
        XCTAssertEqual(try RawFrame.decode(first), .watch(WatchBatch(kind: .events, dropped: 0, events: [])))

        // The watcher reads nothing from here on. 3 × the ring's capacity of checks, pipelined 500 at a time.
        let checks = 3 * 8192
        let secret = provisioned.secret
        let api = try await harness.api()
        var answered = 0
        for _ in 0..<(checks / 512) {
            answered += try await withThrowingTaskGroup(of: Bool.self) { group in
                for _ in 0..<512 { group.addTask { try await api.check(CheckRequest(token: secret)).allowed } }
                return try await group.reduce(0) { $0 + ($1 ? 1 : 0) }
            }
        }
        XCTAssertEqual(answered, checks, "every check was answered while the watcher did not read")

        // Read again: stop the stream with a PING, then take every frame up to the PING's answer.
        try writeAll(fd, RawFrame.request(.ping, id: 78))
        var delivered = 0
        var dropped: UInt64 = 0
        var ended = false
        var lastSequence: UInt64 = 0
        while true {
            let frame = try reader.next()
            if frame.header.requestID == 78 {
                XCTAssertTrue(ended, "the end frame comes before the PING's answer")
                break
            }
            guard case .watch(let batch) = try RawFrame.decode(frame) else { return XCTFail("not a WATCH frame") }
            XCTAssertGreaterThanOrEqual(batch.dropped, dropped, "dropped never decreases")
            for event in batch.events {
                XCTAssertGreaterThan(event.sequence, lastSequence, "oldest first, never twice")
                lastSequence = event.sequence
            }
            delivered += batch.events.count
            dropped = batch.dropped
            if batch.kind == .end { ended = true }
        }
        XCTAssertGreaterThan(dropped, 0, "the ring overtook a watcher that did not read")
        XCTAssertEqual(delivered + Int(dropped), checks, "each decision was delivered or counted as dropped")
        await api.close()
    }

    private func writeAll(_ fd: CInt, _ bytes: [UInt8]) throws {
        var offset = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeBytes { send(fd, $0.baseAddress! + offset, $0.count - offset, Int32(MSG_NOSIGNAL)) }
            guard n > 0 else { throw TestSupportError("send failed: errno \(errno)") }
            offset += n
        }
    }
}

/// Whole frames from a blocking socket.
private struct RawReader {
    let fd: CInt
    var buffer = ByteBufferAllocator().buffer(capacity: 1 << 16)
    let decoder = FrameDecoder(maxFrameSize: 1 << 20)

    init(fd: CInt) { self.fd = fd }

    mutating func next() throws -> Frame {
        while true {
            if case .frame(let frame)? = decoder.next(from: &buffer) { return frame }
            var chunk = [UInt8](repeating: 0, count: 1 << 16)
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress!, $0.count, 0) }
            guard n > 0 else { throw TestSupportError("the daemon closed the connection (recv \(n), errno \(errno))") }
            buffer.writeBytes(chunk[0..<n])
        }
    }
}
