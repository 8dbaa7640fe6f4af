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
