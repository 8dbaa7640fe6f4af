import Logging
import NIOCore
@testable import TollgateCore
import TollgateModel
import TollgateProtocol
@testable import TollgateServer
import XCTest

/// The connection's protocol logic without a channel: events in (bytes, durable answers, backlog room, writability,
/// timers, close), actions out. Times are passed in; the services are a fake that keeps durable requests until the
/// test answers them, so every interleaving is chosen by the test.
final class ConnectionStateMachineTests: XCTestCase {
    /// Records what the machine asks of the daemon. Durable requests are never answered by it: the test delivers
    /// `durableAnswered` itself.
    final class FakeServices: ConnectionServices {
        var allowed = true
        /// Room left in the daemon-wide backlog.
        var backlogRoom = Int.max
        var backlogEntered = 0
        var backlogLeft = 0
        var waitingForRoom = 0
        var batches: [[CheckRequest]] = []
        /// The lease the next allowed CHECK takes (0: none), counted up after each.
        var nextLease: UInt64 = 0
        var durable: [(ticket: DurableTicket, request: Request)] = []
        var atOnce: [Request] = []

        func allows(_ peer: PeerCredentials?, role: SocketRole) -> Bool { allowed }
        func permits(_ peer: PeerCredentials?, role: SocketRole) -> Bool { allowed }

        func checkBatch(_ requests: [CheckRequest], caller: UInt32?, into results: inout [CheckResult]) {
            batches.append(requests)
            for request in requests {
                results.append(CheckResult(reason: .none, tokenID: request.token, leaseID: nextLease))
                if nextLease != 0 { nextLease += 1 }
            }
        }

        func answerAtOnce(_ request: Request, from caller: Caller) -> Response? {
            atOnce.append(request)
            switch request {
            case .ping: return .pong
            case .release: return .released(true)
            default: return .error(.internal, "not faked")
            }
        }

        func submitDurable(_ request: Request, from caller: Caller, ticket: DurableTicket, leavesBacklog: Bool) -> Response? {
            durable.append((ticket, request))
            return nil
        }

        func tryEnterBacklog() -> Bool {
            guard backlogRoom > 0 else { return false }
            backlogRoom -= 1
            backlogEntered += 1
            return true
        }

        func notifyWhenBacklogHasRoom() -> Bool {
            guard backlogRoom == 0 else { return false }
            waitingForRoom += 1
            return true
        }

        func leaveBacklog() { backlogLeft += 1 }
        /// The decisions a WATCH on the machine reads (tests write them with `record`).
        let ring = DecisionRing(capacity: 16)
        var watchers = 0
        func watchDecisions(licenseID: String) -> DecisionSubscription {
            watchers += 1
            return ring.subscribe(licenseID: licenseID) {}
        }
    }

    private let t0 = NIODeadline.uptimeNanoseconds(1_000_000_000)

    private func machine(_ limits: ConnectionLimits = ConnectionLimits(idleTimeoutMilliseconds: 0, frameTimeoutMilliseconds: 0)) -> ConnectionStateMachine {
        var machine = ConnectionStateMachine(role: .api, limits: limits, logger: Logger(label: "m") { _ in SwiftLogNoOpLogHandler() }, maxFrameSize: 65536)
        _ = machine.activate(now: t0)
        return machine
    }

    private func bytes(_ requests: (Request, UInt32)...) throws -> ByteBuffer {
        var buffer = ByteBufferAllocator().buffer(capacity: 256)
        for (request, id) in requests { try buffer.writeRequest(request, requestID: id) }
        return buffer
    }

    private let meter = Request.meter(MeterRequest(token: "tg_live_a", meter: "requests", quantity: 1))
    private let check = Request.check(CheckRequest(token: "tg_live_a"))

    /// The request ids of the answers in the machine's output, in order (then emptied, as the handler does after
    /// writing it).
    private func written(_ machine: inout ConnectionStateMachine) -> [UInt32] {
        var stream = machine.output
        machine.outputWritten()
        var ids: [UInt32] = []
        let decoder = FrameDecoder(maxFrameSize: 1 << 20)
        while case .frame(let frame)? = decoder.next(from: &stream) { ids.append(frame.header.requestID) }
        XCTAssertEqual(stream.readableBytes, 0, "only whole frames are written")
        return ids
    }

    func testADurableAnswerIsWrittenAheadOfChecksPipelinedBehindIt() throws {
        var m = machine()
        let services = FakeServices()
        var input = try bytes((check, 1), (meter, 2), (check, 3), (.ping, 4))
        XCTAssertEqual(m.read(&input, now: t0, services: services), ConnectionActions(), "a read gathers answers; it does not flush")
        XCTAssertEqual(services.durable.map(\.ticket.requestID), [2])
        XCTAssertEqual(services.batches.map(\.count), [1, 1], "the CHECK before the METER is decided before it, the one after it after it")
        XCTAssertEqual(m.readComplete(), ConnectionActions(flush: true))
        XCTAssertEqual(written(&m), [1], "only the answer ahead of the METER")
        XCTAssertEqual(m.readComplete(), ConnectionActions(), "nothing more until the journal answers")

        let ticket = services.durable[0].ticket
        let actions = m.durableAnswered(ticket, .meter(MeterResult(reason: .none)), now: { XCTFail("no held request: no time needed"); return t0 }, services: services)
        XCTAssertEqual(actions, ConnectionActions(flush: true))
        XCTAssertEqual(written(&m), [2, 3, 4], "the METER's answer, then what waited behind it, in request order")
    }

    func testConsecutiveChecksOfOneReadAreDecidedAsOneBatch() throws {
        var m = machine()
        let services = FakeServices()
        var input = try bytes((check, 1), (check, 2), (check, 3))
        _ = m.read(&input, now: t0, services: services)
        XCTAssertEqual(services.batches.map(\.count), [3])
        _ = m.readComplete()
        XCTAssertEqual(written(&m), [1, 2, 3])
    }

    func testMaxPipelinedHoldsTheNextDurableRequestAndPausesReadingUntilAnAnswerFrees() throws {
        var m = machine(ConnectionLimits(idleTimeoutMilliseconds: 0, frameTimeoutMilliseconds: 0, maxPipelined: 2))
        let services = FakeServices()
        var input = try bytes((meter, 1), (meter, 2), (meter, 3), (.ping, 4))
        XCTAssertEqual(m.read(&input, now: t0, services: services).reading, .pause)
        XCTAssertEqual(services.durable.map(\.ticket.requestID), [1, 2], "the third waits: two already wait for the journal")
        XCTAssertEqual(services.atOnce.count, 0, "nothing behind the held request is served")

        // Bytes already under way when reading paused are kept behind the held request.
        var late = try bytes((.ping, 5))
        XCTAssertEqual(m.read(&late, now: t0, services: services), ConnectionActions())
        XCTAssertEqual(m.readComplete(), ConnectionActions())

        let later = t0 + .milliseconds(5)
        var actions = m.durableAnswered(services.durable[0].ticket, .meter(MeterResult(reason: .none)), now: { later }, services: services)
        XCTAssertEqual(actions.reading, .unchanged, "the held request takes the freed place: still two waiting")
        XCTAssertTrue(actions.flush)
        XCTAssertEqual(written(&m), [1])
        XCTAssertEqual(services.durable.map(\.ticket.requestID), [1, 2, 3])

        actions = m.durableAnswered(services.durable[1].ticket, .meter(MeterResult(reason: .none)), now: { later }, services: services)
        XCTAssertEqual(actions.reading, .resume)
        XCTAssertEqual(written(&m), [2])
        actions = m.durableAnswered(services.durable[2].ticket, .meter(MeterResult(reason: .none)), now: { later }, services: services)
        XCTAssertEqual(written(&m), [3, 4, 5], "what was read behind the held request follows its answer")
        XCTAssertEqual(services.backlogEntered, 3)
    }

    func testAFullBacklogHoldsTheRequestUntilThereIsRoom() throws {
        var m = machine()
        let services = FakeServices()
        services.backlogRoom = 0
        var input = try bytes((meter, 1), (.ping, 2))
        XCTAssertEqual(m.read(&input, now: t0, services: services).reading, .pause)
        XCTAssertEqual(services.waitingForRoom, 1)
        XCTAssertTrue(services.durable.isEmpty)
        XCTAssertTrue(services.atOnce.isEmpty, "the PING behind it waits too: answers keep request order")

        services.backlogRoom = 1
        let actions = m.backlogHasRoom(now: t0 + .milliseconds(3), services: services)
        XCTAssertEqual(actions.reading, .resume)
        XCTAssertTrue(actions.flush == false, "the PING's answer waits behind the METER's")
        XCTAssertEqual(services.durable.map(\.ticket.requestID), [1])
        XCTAssertEqual(services.backlogEntered, 1)
        XCTAssertEqual(services.atOnce, [.ping])

        _ = m.durableAnswered(services.durable[0].ticket, .meter(MeterResult(reason: .none)), now: { t0 }, services: services)
        XCTAssertEqual(written(&m), [1, 2])
    }

    func testAReadStallsWhileTheClientDoesNotReadItsAnswers() {
        var m = machine()
        XCTAssertEqual(m.writabilityChanged(isWritable: false).reading, .pause)
        XCTAssertEqual(m.writabilityChanged(isWritable: false).reading, .unchanged)
        XCTAssertEqual(m.writabilityChanged(isWritable: true).reading, .resume)
    }

    func testTheFrameTimerRunsWhileAFrameIsUnfinishedAndClosesWhenItFires() throws {
        var m = machine(ConnectionLimits(idleTimeoutMilliseconds: 0, frameTimeoutMilliseconds: 500))
        let services = FakeServices()
        var whole = try bytes((.ping, 1), (.ping, 2))
        var first = whole.readSlice(length: 5)!
        XCTAssertEqual(m.read(&first, now: t0, services: services).frameTimer, .arm(t0 + .milliseconds(500)))
        // The rest of the first frame and half of the second: the new unfinished frame gets a whole timeout.
        var more = whole.readSlice(length: whole.readableBytes - 3)!
        let t1 = t0 + .milliseconds(400)
        XCTAssertEqual(m.read(&more, now: t1, services: services).frameTimer, .arm(t1 + .milliseconds(500)))
        XCTAssertEqual(services.atOnce, [.ping])
        XCTAssertEqual(m.read(&whole, now: t1 + .milliseconds(100), services: services).frameTimer, .cancel, "no frame left unfinished")
        XCTAssertEqual(services.atOnce, [.ping, .ping])

        var half = try bytes((.ping, 3)).getSlice(at: 0, length: 6)!
        XCTAssertEqual(m.read(&half, now: t1 + .milliseconds(200), services: services).frameTimer, .arm(t1 + .milliseconds(700)))
        XCTAssertEqual(m.frameTimerFired(), ConnectionActions(close: true))
    }

    func testTheIdleTimerClosesOnlyAfterTheTimeoutWithoutAFrame() throws {
        let limits = ConnectionLimits(idleTimeoutMilliseconds: 1_000, frameTimeoutMilliseconds: 0)
        var m = ConnectionStateMachine(role: .api, limits: limits, logger: Logger(label: "m") { _ in SwiftLogNoOpLogHandler() }, maxFrameSize: 65536)
        XCTAssertEqual(m.activate(now: t0).idleTimer, .arm(t0 + .milliseconds(1_000)))
        let services = FakeServices()
        var ping = try bytes((.ping, 1))
        let t600 = t0 + .milliseconds(600)
        XCTAssertEqual(m.read(&ping, now: t600, services: services).idleTimer, .unchanged, "not re-armed per read")
        XCTAssertEqual(m.idleTimerFired(now: t0 + .milliseconds(1_000)), ConnectionActions(idleTimer: .arm(t600 + .milliseconds(1_000))), "fired early: armed for the rest")
        XCTAssertEqual(m.idleTimerFired(now: t600 + .milliseconds(1_000)), ConnectionActions(close: true))
    }

    func testAConnectionWaitingForTheJournalIsNotIdle() throws {
        let limits = ConnectionLimits(idleTimeoutMilliseconds: 1_000, frameTimeoutMilliseconds: 0)
        var m = ConnectionStateMachine(role: .api, limits: limits, logger: Logger(label: "m") { _ in SwiftLogNoOpLogHandler() }, maxFrameSize: 65536)
        _ = m.activate(now: t0)
        let services = FakeServices()
        var input = try bytes((meter, 1))
        _ = m.read(&input, now: t0, services: services)
        let late = t0 + .seconds(5)
        XCTAssertEqual(m.idleTimerFired(now: late), ConnectionActions(idleTimer: .arm(late + .milliseconds(1_000))))
    }

    func testAFramingErrorIsAnsweredThenClosesAndNothingAfterItIsServed() throws {
        var m = machine()
        let services = FakeServices()
        var input = try bytes((.ping, 1))
        input.writeInteger(UInt32(1 << 30))  // a length prefix over the limit
        try input.writeRequest(.ping, requestID: 2)
        _ = m.read(&input, now: t0, services: services)
        XCTAssertEqual(m.readComplete(), ConnectionActions(flush: true, close: true), "write the answers, then close")
        XCTAssertEqual(written(&m), [1, 0], "the PING's answer, then the framing error (request id 0)")
        XCTAssertEqual(services.atOnce, [.ping], "the PING after the bad prefix is not served")
        var more = try bytes((.ping, 3))
        _ = m.read(&more, now: t0, services: services)
        XCTAssertEqual(services.atOnce, [.ping])
    }

    func testAFramingErrorBehindADurableRequestClosesOnlyOnceItIsAnswered() throws {
        var m = machine()
        let services = FakeServices()
        var input = try bytes((meter, 1))
        input.writeInteger(UInt32(1 << 30))
        _ = m.read(&input, now: t0, services: services)
        XCTAssertEqual(m.readComplete(), ConnectionActions(), "the METER's answer is still owed")
        let actions = m.durableAnswered(services.durable[0].ticket, .meter(MeterResult(reason: .none)), now: { t0 }, services: services)
        XCTAssertEqual(actions, ConnectionActions(flush: true, close: true))
        XCTAssertEqual(written(&m), [1, 0])
    }

    func testLeasesNotReleasedByTheClientAreReleasedWhenTheConnectionCloses() throws {
        var m = machine()
        let services = FakeServices()
        services.nextLease = 7
        var input = try bytes((check, 1), (check, 2), (check, 3), (.release(leaseID: 8), 4))
        _ = m.read(&input, now: t0, services: services)
        XCTAssertEqual(m.leases, [7, 9], "the CHECKs' leases, less the one RELEASE gave back")
        _ = m.readComplete()
        XCTAssertEqual(written(&m), [1, 2, 3, 4])
        XCTAssertEqual(m.deactivate(), [7, 9], "the lease released by the client is not released again")
        XCTAssertEqual(m.leases, [])
    }

    func testARefusedPeerGetsNotPermittedAndNothingReachesTheCore() throws {
        var m = machine()
        let services = FakeServices()
        services.allowed = false
        var input = try bytes((check, 1), (.ping, 2))
        _ = m.read(&input, now: t0, services: services)
        XCTAssertTrue(services.batches.isEmpty)
        XCTAssertTrue(services.atOnce.isEmpty)
        _ = m.readComplete()
        XCTAssertEqual(written(&m), [1, 2])
    }

    // MARK: - WATCH

    /// The frames in the machine's output, decoded (then emptied).
    private func frames(_ machine: inout ConnectionStateMachine) throws -> [(id: UInt32, response: Response)] {
        var stream = machine.output
        machine.outputWritten()
        var out: [(UInt32, Response)] = []
        let decoder = FrameDecoder(maxFrameSize: 1 << 20)
        while case .frame(let frame)? = decoder.next(from: &stream) {
            let opcode = Opcode(rawValue: frame.header.opcode)!
            out.append((frame.header.requestID, try decodeResponse(opcode: opcode, status: Status(rawValue: frame.header.status)!, body: frame.body)))
        }
        return out
    }

    private func decide(_ ring: DecisionRing, _ count: Int) {
        for index in 0..<count {
            ring.record(at: Int64(index), latencyNanoseconds: 1, source: .socket, result: CheckResult(reason: .none, tokenID: "tok_\(index)"), route: nil, scopes: [])
        }
    }

    /// The stream's life on one connection: the first frame at once, decisions drained on each tick, nothing taken
    /// while the client does not read (the ring overwrites, the loss counted), and any later request ending the
    /// stream with its end frame before that request's answer.
    func testAWatchStreamsOnTicksStopsWhileUnwritableAndEndsBeforeTheNextAnswer() throws {
        var m = ConnectionStateMachine(
            role: .admin, limits: ConnectionLimits(idleTimeoutMilliseconds: 0, frameTimeoutMilliseconds: 0),
            logger: Logger(label: "m") { _ in SwiftLogNoOpLogHandler() }, maxFrameSize: 65536)
        _ = m.activate(now: t0)
        let services = FakeServices()
        var input = try bytes((.watch(licenseID: ""), 5))
        XCTAssertEqual(m.read(&input, now: t0, services: services).watch, .start)
        XCTAssertTrue(m.isWatching)
        _ = m.readComplete()
        var out = try frames(&m)
        XCTAssertEqual(out.map(\.id), [5])
        XCTAssertEqual(out.first?.response, .watch(WatchBatch(kind: .events, dropped: 0, events: [])))

        decide(services.ring, 3)
        XCTAssertTrue(m.watchTick(now: t0 + .milliseconds(50)).flush)
        out = try frames(&m)
        guard case .watch(let batch)? = out.first?.response else { return XCTFail("\(out)") }
        XCTAssertEqual(batch.events.map(\.tokenID), ["tok_0", "tok_1", "tok_2"])
        XCTAssertEqual(m.watchTick(now: t0 + .milliseconds(100)), ConnectionActions(), "nothing new, no heartbeat due")

        // The client stops reading: nothing is taken, and 20 decisions overrun a ring of 16.
        _ = m.writabilityChanged(isWritable: false)
        decide(services.ring, 20)
        XCTAssertFalse(m.watchTick(now: t0 + .milliseconds(150)).flush)
        _ = m.writabilityChanged(isWritable: true)
        XCTAssertTrue(m.watchTick(now: t0 + .milliseconds(200)).flush)
        out = try frames(&m)
        guard case .watch(let after)? = out.first?.response else { return XCTFail("\(out)") }
        XCTAssertEqual(after.dropped, 4)
        XCTAssertEqual(after.events.count, 16)

        // A second of quiet: a heartbeat, empty, with the same count.
        XCTAssertTrue(m.watchTick(now: t0 + .milliseconds(1300)).flush)
        XCTAssertEqual(try frames(&m).map(\.response), [.watch(WatchBatch(kind: .events, dropped: 4, events: []))])

        // Any request ends the stream: what is left, the end frame, then the request's answer.
        decide(services.ring, 1)
        input = try bytes((.ping, 6))
        XCTAssertEqual(m.read(&input, now: t0 + .milliseconds(1400), services: services).watch, .stop)
        XCTAssertFalse(m.isWatching)
        _ = m.readComplete()
        out = try frames(&m)
        XCTAssertEqual(out.map(\.id), [5, 6])
        guard case .watch(let end) = out[0].response else { return XCTFail("\(out)") }
        XCTAssertEqual(end.kind, .end)
        XCTAssertEqual(end.events.map(\.tokenID), ["tok_0"])
        XCTAssertEqual(out[1].response, .pong)
    }

    /// On the api socket WATCH is a control-plane request like any other: refused, no subscription.
    func testWatchOnTheAPISocketIsRefused() throws {
        var m = machine()
        let services = FakeServices()
        var input = try bytes((.watch(licenseID: ""), 9))
        XCTAssertEqual(m.read(&input, now: t0, services: services).watch, .unchanged)
        XCTAssertEqual(services.watchers, 0)
        XCTAssertFalse(m.isWatching)
    }
}
