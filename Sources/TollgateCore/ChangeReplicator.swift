import NIOConcurrencyHelpers
import TollgateEngine
import TollgateJournal

/// Fleet mode's one seam in the core's durable path (`Protocol/FLEET.md` 4.1): every replicated record the core
/// appends to its journal is also handed, in the same critical section and so in apply order, to a replicator that
/// commits it to the fleet log. A durable change is answered only when both the journal and the replicator are done.
/// With no replicator (a single host, the default) nothing here runs.
public protocol ChangeReplicator: AnyObject, Sendable {
    /// False while the fleet log is unreachable: a change is then refused before it is decided
    /// (`fleet_unavailable`), so that nothing is applied here that the fleet cannot have.
    var acceptsChanges: Bool { get }

    /// Queues one record the core has just appended to its journal at local sequence `reference`. Called with the
    /// core's lock held: it must not block. `completion`, when given, is called once, with true when the record is
    /// committed to the fleet log, or false when the commit was not confirmed within the replicator's timeout (the
    /// record stays queued and is committed later, in order).
    func enqueue(type: UInt8, payload: [UInt8], reference: UInt64, completion: (@Sendable (Bool) -> Void)?)

    /// Queues a METER record (type 5) that is *not* applied here (`Protocol/FLEET.md` 10): its idempotency key, when
    /// not empty, is claimed in the same transaction that commits it, and the record enters the log only if the claim
    /// succeeds. Same ordering and locking rules as `enqueue`; `completion` is called once.
    func enqueueUsage(payload: [UInt8], reference: UInt64, idempotencyKey: String, completion: @escaping @Sendable (UsageCommit) -> Void)
}

/// What became of a METER handed to the fleet log (`ChangeReplicator.enqueueUsage`).
public enum UsageCommit: Sendable, Hashable {
    /// Committed, its key (if any) claimed by it: counted once, on every host that reads the log.
    case counted
    /// Its key was already claimed by an earlier METER (on any host): not committed, not counted.
    case duplicate
    /// Not confirmed within the commit timeout: it stays queued and is counted, or found a duplicate, later.
    case unconfirmed
}

/// Waits for the journal's fsync and the fleet log's commit of one record, and reports once both are known: the
/// journal's failure first (the change is not durable here), then an unconfirmed fleet commit as `timedOut`
/// (answered `fleet_unconfirmed`), else the journal's sequence.
final class FleetCommitJoin: Sendable {
    private let state = NIOLockedValueBox<(journal: Result<UInt64, JournalError>?, fleet: Bool?)>((nil, nil))
    private let completion: @Sendable (Result<UInt64, JournalError>) -> Void

    /// The error an unconfirmed fleet commit is reported with: the journal never completes an append with `timedOut`.
    static let unconfirmed = JournalError(code: .timedOut, message: "the fleet log did not confirm the commit in time")

    init(_ completion: @escaping @Sendable (Result<UInt64, JournalError>) -> Void) {
        self.completion = completion
    }

    func journalDone(_ result: Result<UInt64, JournalError>) {
        report(state.withLockedValue { $0.journal = result; return $0 })
    }

    func fleetDone(_ committed: Bool) {
        report(state.withLockedValue { $0.fleet = committed; return $0 })
    }

    private func report(_ seen: (journal: Result<UInt64, JournalError>?, fleet: Bool?)) {
        guard let journal = seen.journal, let fleet = seen.fleet else { return }
        if case .failure = journal { return completion(journal) }
        completion(fleet ? journal : .failure(Self.unconfirmed))
    }
}

extension ApplicationCore {
    /// Attaches fleet mode's replicator and starts the horizon (`Protocol/FLEET.md` 7): until the first confirmed
    /// catch-up, checks are answered from memory only until `staleAt`. Called once, before the sockets accept.
    public func attachReplicator(_ replicator: any ChangeReplicator, staleAt: Timestamp) {
        lock.withLock {
            self.replicator = replicator
            self.fleetStaleAt = staleAt.nanoseconds
        }
    }

    /// Applies records read from the fleet log, in sequence order, through the one `apply` the journal replay uses,
    /// and journals each wrapped with its sequence (type 21), or the new position alone (type 20) when the records
    /// were this host's own. Returns the position reached.
    public func applyFleetRecords(_ changes: [StateChange], position: UInt64) {
        lock.withLock {
            // Usage counted under the old objects is journaled before what replaces them, as for a local change.
            if changes.contains(where: { if case .fleetApplied = $0 { return true } else { return false } }) { flushPendingUsageLocked() }
            for change in changes {
                state.apply(change)
                appendLocked(change, durability: .buffered, completion: nil)
            }
            if state.fleetPosition < position {
                let change = StateChange.fleetPosition(sequence: position)
                state.apply(change)
                appendLocked(change, durability: .buffered, completion: nil)
            }
        }
    }

    /// Confirms a catch-up sent at `sentAt`: checks are answered from memory until `staleAt` (sent + H).
    public func confirmFleetCatchUp(staleAt: Timestamp) {
        lock.withLock { fleetStaleAt = max(fleetStaleAt, staleAt.nanoseconds) }
    }

    /// The fleet log position this host has applied up to (0 on a single host).
    public var fleetPosition: UInt64 { lock.withLock { state.fleetPosition } }

    /// Fleet mode's live-host count, as the heartbeat read it (`Protocol/FLEET.md` 9): every rate rule is enforced
    /// here at 1/`hosts` of its rate and burst.
    public func setRateShare(hosts: Int) {
        let share = UInt32(clamping: max(1, hosts))
        lock.withLock { state.rateShare = share }
    }

    /// The live-host count the rate rules are divided by (1 on a single host).
    public var rateShare: UInt32 { lock.withLock { state.rateShare } }

    /// When this host stops admitting (nanoseconds of the core's clock); `Int64.max` on a single host.
    public var fleetStaleAtNanoseconds: Int64 { lock.withLock { fleetStaleAt } }
}
