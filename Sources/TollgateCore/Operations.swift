import TollgateModel
import TollgateProtocol

/// Who is asking: the socket's role and the peer's uid as the kernel reports it (`SO_PEERCRED`), or nil when it is
/// not known. Every front end translates its own notion of a caller into this.
public struct Caller: Sendable, Hashable {
    public var role: SocketRole
    public var uid: UInt32?
    /// The HTTP route the forward-auth front end matched for a CHECK (`METHOD path`, empty when none matched), for
    /// the decision stream; nil for the binary protocol. It decides nothing.
    public var route: String?

    public init(role: SocketRole, uid: UInt32? = nil, route: String? = nil) {
        self.role = role
        self.uid = uid
        self.route = route
    }

    /// The daemon itself (start-up seeding, reloads): the admin role, no peer.
    public static let daemon = Caller(role: .admin, uid: nil)
}

/// The one table of what the application does: for every operation, who may call it, whether it is answered at
/// once or only once its journal record is durable, whether it counts in the daemon-wide `DurableBacklog`, and its
/// handler. Every front end (the binary socket today; HTTP, gRPC and fleet replication next) asks this table and
/// calls `ApplicationCore.handle`; none decides any of it on its own.
public struct Operation: Sendable {
    /// Which socket roles may call an operation.
    public enum Callers: Sendable, Hashable {
        /// The data plane: the api socket and the admin socket.
        case dataPlane
        /// The control plane: the admin socket only.
        case adminOnly
    }

    /// When the answer is sent.
    public enum Timing: Sendable, Hashable {
        /// Decided and answered under the state lock, with no I/O.
        case atOnce
        /// Applied under the lock, answered once its journal record is durable (group commit).
        case afterJournal
    }

    public let opcode: Opcode
    public let callers: Callers
    public let timing: Timing
    /// Whether a request of this operation from the api socket counts in the daemon-wide bound on requests waiting
    /// for the journal. REVOKE does not: a revocation must never wait behind usage.
    public let countsInBacklog: Bool
    let handler: Handler

    typealias Handler = @Sendable (ApplicationCore, Request, Caller, @escaping @Sendable (Response) -> Void) -> Response?

    public func permits(_ role: SocketRole) -> Bool { callers == .dataPlane || role == .admin }
}

extension Operation {
    /// The operation of `opcode`.
    public static func of(_ opcode: Opcode) -> Operation { table[Int(opcode.rawValue)]! }

    /// Every operation, in opcode order.
    public static var all: [Operation] { table.compactMap { $0 } }

    /// Indexed by the opcode's raw value: one load per request.
    private static let table: [Operation?] = {
        var table = [Operation?](repeating: nil, count: 256)
        for operation in definitions { table[Int(operation.opcode.rawValue)] = operation }
        precondition(Opcode.allCases.allSatisfy { table[Int($0.rawValue)] != nil }, "every opcode has an operation")
        return table
    }()

    private static func atOnce(_ opcode: Opcode, _ callers: Callers, _ run: @escaping @Sendable (ApplicationCore, Request, Caller) -> Response) -> Operation {
        Operation(opcode: opcode, callers: callers, timing: .atOnce, countsInBacklog: false) { core, request, caller, _ in run(core, request, caller) }
    }

    private static func afterJournal(_ opcode: Opcode, _ callers: Callers, countsInBacklog: Bool = false) -> Operation {
        Operation(opcode: opcode, callers: callers, timing: .afterJournal, countsInBacklog: countsInBacklog && callers == .dataPlane) { core, request, caller, completion in
            core.change(request, caller: caller, completion: completion)
        }
    }

    private static let definitions: [Operation] = [
        atOnce(.hello, .dataPlane) { core, request, caller in
            guard case .hello(let hello) = request else { return mismatch }
            return core.hello(hello, caller: caller)
        },
        atOnce(.ping, .dataPlane) { _, _, _ in .pong },
        atOnce(.check, .dataPlane) { core, request, caller in
            guard case .check(let check) = request else { return mismatch }
            if let refusal = ApplicationCore.refusal(of: check) { return refusal }
            guard check.options.contains(.details) else { return .check(core.check(check, caller: caller.uid)) }
            let (result, details) = core.checkDetailed(check, caller: caller.uid, route: caller.route)
            return .checkDetailed(result, details)
        },
        afterJournal(.meter, .dataPlane, countsInBacklog: true),
        // On the api socket, by the secret only: whoever holds a secret may kill it, nothing more.
        Operation(opcode: .revoke, callers: .dataPlane, timing: .afterJournal, countsInBacklog: false) { core, request, caller, completion in
            if caller.role == .api, case .revoke(let revoke) = request, !revoke.target.isSecret {
                return .error(.notPermitted, "on the api socket REVOKE accepts a secret only; revoke by id or license on the admin socket")
            }
            return core.change(request, caller: caller, completion: completion)
        },
        atOnce(.release, .dataPlane) { core, request, _ in
            guard case .release(let leaseID) = request else { return mismatch }
            return .released(core.release(leaseID: leaseID))
        },
        atOnce(.settle, .dataPlane) { core, request, _ in
            guard case .settle(let settle) = request else { return mismatch }
            return core.settle(settle)
        },
        afterJournal(.derive, .dataPlane, countsInBacklog: true),
        afterJournal(.issue, .adminOnly),
        afterJournal(.licensePut, .adminOnly),
        atOnce(.licenseGet, .adminOnly) { core, request, _ in
            guard case .licenseGet(let id) = request else { return mismatch }
            return core.license(id)
        },
        afterJournal(.planPut, .adminOnly),
        atOnce(.planGet, .adminOnly) { core, request, _ in
            guard case .planGet(let id) = request else { return mismatch }
            return core.plan(id)
        },
        atOnce(.tokenGet, .adminOnly) { core, request, _ in
            guard case .tokenGet(let id) = request else { return mismatch }
            return core.token(id)
        },
        atOnce(.tokenList, .adminOnly) { core, request, _ in
            guard case .tokenList(let list) = request else { return mismatch }
            return core.listTokens(list)
        },
        atOnce(.stats, .adminOnly) { core, _, _ in .stats(core.statistics()) },
        afterJournal(.rotate, .adminOnly),
        afterJournal(.rotationEnd, .adminOnly),
        afterJournal(.orgPut, .adminOnly),
        atOnce(.orgGet, .adminOnly) { core, request, _ in
            guard case .orgGet(let id) = request else { return mismatch }
            return core.org(id)
        },
        afterJournal(.creditsGrant, .adminOnly),
        atOnce(.usageExport, .adminOnly) { core, request, _ in
            guard case .usageExport(let export) = request else { return mismatch }
            return core.usageExport(export)
        },
        atOnce(.events, .adminOnly) { core, request, _ in
            guard case .events(let after, let limit) = request else { return mismatch }
            return core.eventsPage(after: after, limit: limit)
        },
        atOnce(.licenseList, .adminOnly) { core, request, _ in
            guard case .licenseList(let list) = request else { return mismatch }
            return core.listLicenses(list)
        },
        atOnce(.planList, .adminOnly) { core, request, _ in
            guard case .planList(let page) = request else { return mismatch }
            return core.listPlans(page)
        },
        atOnce(.orgList, .adminOnly) { core, request, _ in
            guard case .orgList(let page) = request else { return mismatch }
            return core.listOrgs(page)
        },
        afterJournal(.licenseDelete, .adminOnly),
        afterJournal(.planDelete, .adminOnly),
        afterJournal(.orgDelete, .adminOnly),
        // A stream, not one answer: a front end that streams subscribes through `watchDecisions` itself (the binary
        // server does); one that cannot stream gets this answer.
        atOnce(.watch, .adminOnly) { _, _, _ in .error(.notPermitted, "WATCH is a stream, served on the admin socket of the binary protocol") },
        // Verified off the event loop (the issuer's keys may need a fetch), then minted and answered once durable.
        Operation(opcode: .exchange, callers: .dataPlane, timing: .afterJournal, countsInBacklog: true) { core, request, caller, completion in
            guard case .exchange(let exchange) = request else { return mismatch }
            return core.exchange(exchange, caller: caller, completion: completion)
        },
        afterJournal(.subjectStatus, .adminOnly),
        afterJournal(.rolePut, .adminOnly),
        afterJournal(.roleDelete, .adminOnly),
        atOnce(.roleList, .adminOnly) { core, request, _ in
            guard case .roleList(let page) = request else { return mismatch }
            return core.listRoles(page)
        },
    ]

    /// A request whose case does not match its opcode: a bug in a front end, answered without effect.
    private static let mismatch = Response.error(.internal, "the request failed inside the server")
}
