import TollgateCore
import TollgateModel
import TollgateProtocol

/// What a connection's protocol logic asks of the rest of the daemon while it decides: the allow-list, the
/// application core, the daemon-wide durable backlog. Called inline, in request order (a CHECK pipelined behind a
/// METER sees the METER applied). The live implementation turns a durable answer and room in the backlog into the
/// machine's `durableAnswered` and `backlogHasRoom` events on the connection's event loop; a test's fake keeps them
/// until the test delivers them.
protocol ConnectionServices {
    /// Whether `peer` may use the socket, without counting a refusal (one look per read for a batch of CHECKs).
    func allows(_ peer: PeerCredentials?, role: SocketRole) -> Bool
    /// Whether `peer` may use the socket, counting a refusal.
    func permits(_ peer: PeerCredentials?, role: SocketRole) -> Bool
    /// Decides CHECKs together (one lock), their results in order.
    func checkBatch(_ requests: [CheckRequest], caller: UInt32?, into results: inout [CheckResult])
    /// Answers a request that does not wait for the journal.
    func answerAtOnce(_ request: Request, from caller: Caller) -> Response?
    /// Hands a request that waits for the journal to the core: its answer now (refused, or nothing to write), or nil
    /// and a `durableAnswered` event for `ticket` later. `leavesBacklog`: it entered the daemon-wide backlog and
    /// leaves it once answered, now or later.
    func submitDurable(_ request: Request, from caller: Caller, ticket: DurableTicket, leavesBacklog: Bool) -> Response?
    /// Counts one more request in the daemon-wide backlog; false when it is full.
    func tryEnterBacklog() -> Bool
    /// After `tryEnterBacklog` refused: arranges a `backlogHasRoom` event and returns true, or returns false when
    /// there is room already.
    func notifyWhenBacklogHasRoom() -> Bool
    /// A request that entered the backlog is answered.
    func leaveBacklog()
    /// Subscribes to the core's decision stream (WATCH).
    func watchDecisions(licenseID: String) -> DecisionSubscription
}

/// Identifies a durable request while it waits for the journal: the connection's slot for its answer, and what the
/// answer's header repeats.
struct DurableTicket: Sendable, Hashable {
    var token: UInt64
    var opcode: UInt8
    var requestID: UInt32
}

/// The part of `ConnectionServices` that both live front ends (the NIO handler's and the epoll loop's) answer the
/// same way, written once: the allow-list, the core's CHECK batch and immediate answers, the daemon-wide backlog,
/// the decision stream. Each front end supplies the registry and the core, and its own `submitDurable` and
/// `notifyWhenBacklogHasRoom` (how a completion on another thread gets back to the connection is what differs).
///
/// The core is reached through `Unmanaged._withUnsafeGuaranteedRef`: a retain of `ApplicationCore` is not cheap (it
/// is referenced weakly, so its count lives in a side table: ~170 instructions per retain and release pair, 0.6 % of
/// a CHECK, measured with callgrind). The state machine is generic over its services, so these defaults are
/// specialized and inlined into each front end's path as its own methods were (callgrind A/B in
/// Benchmarks/SCALE.md, issue 19).
protocol LiveConnectionServices: ConnectionServices {
    var registry: ConnectionRegistry { get }
    var core: Unmanaged<ApplicationCore> { get }
}

/// The completion of requests that never wait for the journal.
private let answeredAtOnce: @Sendable (Response) -> Void = { _ in }

extension LiveConnectionServices {
    @inline(__always)
    func allows(_ peer: PeerCredentials?, role: SocketRole) -> Bool {
        registry.allows(peer, role: role)
    }

    @inline(__always)
    func permits(_ peer: PeerCredentials?, role: SocketRole) -> Bool {
        registry.permits(peer, role: role)
    }

    @inline(__always)
    func checkBatch(_ requests: [CheckRequest], caller: UInt32?, into results: inout [CheckResult]) {
        core._withUnsafeGuaranteedRef { $0.checkBatch(requests, caller: caller, into: &results) }
    }

    @inline(__always)
    func answerAtOnce(_ request: Request, from caller: Caller) -> Response? {
        core._withUnsafeGuaranteedRef { $0.handle(request, from: caller, completion: answeredAtOnce) }
    }

    @inline(__always)
    func tryEnterBacklog() -> Bool {
        registry.backlog.tryEnter()
    }

    @inline(__always)
    func leaveBacklog() {
        registry.backlog.leave()
    }

    func watchDecisions(licenseID: String) -> DecisionSubscription {
        core._withUnsafeGuaranteedRef { $0.watchDecisions(licenseID: licenseID) }
    }
}
