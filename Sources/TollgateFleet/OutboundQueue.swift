import NIOConcurrencyHelpers

/// The records this host has applied and journaled but not yet committed to the fleet log, in apply order
/// (`Protocol/FLEET.md` 4.1). The writer takes the oldest ones as one batch; a batch that fails to commit goes back
/// to the front, so the log receives this host's records in the order it applied them, each exactly once.
///
/// Each waiting request is answered once: true when its record commits, false when its deadline passes first (the
/// record stays queued). Thread-safe: the core enqueues under its lock, the writer task takes and confirms.
public final class OutboundQueue: Sendable {
    public struct Record: Sendable {
        public var type: UInt8
        public var payload: [UInt8]
        public var reference: UInt64
        /// A METER's idempotency key, claimed in the commit's transaction (`Protocol/FLEET.md` 10); nil: none.
        public var key: String?
        let id: UInt64
    }

    /// What a waiting request is told about its record.
    public enum Outcome: Sendable, Hashable {
        /// Committed to the log.
        case committed
        /// Not committed because its idempotency key was claimed already: it leaves the queue for good.
        case refused
        /// Its deadline passed first; the record stays queued.
        case timedOut
    }

    private struct Waiter {
        var deadline: Int64
        var completion: @Sendable (Outcome) -> Void
    }

    private struct State {
        var records: [Record] = []
        var waiters: [UInt64: Waiter] = [:]
        var nextID: UInt64 = 0
        var inFlight = false
        var committed: UInt64 = 0
        var refused: UInt64 = 0
    }

    private let state = NIOLockedValueBox(State())
    /// Called (off the lock) when a record is queued: wakes the writer.
    private let wake: @Sendable () -> Void

    public init(wake: @escaping @Sendable () -> Void) {
        self.wake = wake
    }

    /// Queues a record; `completion`, if given, must be answered by `deadline` (nanoseconds, the caller's clock).
    public func enqueue(
        type: UInt8, payload: [UInt8], reference: UInt64, key: String? = nil, deadline: Int64, completion: (@Sendable (Outcome) -> Void)?
    ) {
        state.withLockedValue { s in
            let id = s.nextID
            s.nextID += 1
            s.records.append(Record(type: type, payload: payload, reference: reference, key: key, id: id))
            if let completion { s.waiters[id] = Waiter(deadline: deadline, completion: completion) }
        }
        wake()
    }

    /// The oldest records, at most `limit`, for one commit; empty when there is nothing, or a batch is in flight.
    public func takeBatch(limit: Int) -> [Record] {
        state.withLockedValue { s in
            guard !s.inFlight, !s.records.isEmpty else { return [] }
            s.inFlight = true
            return Array(s.records.prefix(limit))
        }
    }

    /// The batch taken last committed: its records leave the queue and their waiters are told. `refused`: the
    /// references of those whose key was claimed already (not in the log, never to be).
    public func committed(_ batch: [Record], refused: Set<UInt64> = []) {
        let done: [(@Sendable (Outcome) -> Void, Outcome)] = state.withLockedValue { s in
            s.inFlight = false
            s.records.removeFirst(batch.count)
            s.committed &+= UInt64(batch.count - refused.count)
            s.refused &+= UInt64(refused.count)
            return batch.compactMap { record in
                s.waiters.removeValue(forKey: record.id).map { ($0.completion, refused.contains(record.reference) ? .refused : .committed) }
            }
        }
        for (completion, outcome) in done { completion(outcome) }
    }

    /// The log already holds every queued record up to `reference` (a commit whose answer was lost): they leave the
    /// queue as committed, but for those in `refused` (keyed METERs of those commits that the log does not hold: their
    /// key was claimed already). References grow in queue order (they are the journal's sequence numbers).
    public func committed(upTo reference: UInt64, refused: Set<UInt64> = []) {
        let done: [(@Sendable (Outcome) -> Void, Outcome)] = state.withLockedValue { s in
            guard !s.inFlight else { return [] }
            let count = s.records.prefix { $0.reference <= reference }.count
            let removed = s.records.prefix(count)
            s.records.removeFirst(count)
            let refusedCount = removed.filter { refused.contains($0.reference) }.count
            s.committed &+= UInt64(count - refusedCount)
            s.refused &+= UInt64(refusedCount)
            return removed.compactMap { record in
                s.waiters.removeValue(forKey: record.id).map { ($0.completion, refused.contains(record.reference) ? .refused : .committed) }
            }
        }
        for (completion, outcome) in done { completion(outcome) }
    }

    /// The references of the queued keyed records up to `reference`: after a lost answer, those the log turns out
    /// not to hold were refused for their key.
    public func keyedReferences(upTo reference: UInt64) -> [UInt64] {
        state.withLockedValue { s in
            guard !s.inFlight else { return [] }
            return s.records.prefix { $0.reference <= reference }.filter { $0.key != nil }.map(\.reference)
        }
    }

    /// The batch taken last did not commit: it stays at the front, for the next attempt.
    public func failed() {
        state.withLockedValue { $0.inFlight = false }
    }

    /// Answers false to every waiter whose deadline is at or before `now`; their records stay queued.
    public func expire(now: Int64) {
        let expired: [@Sendable (Outcome) -> Void] = state.withLockedValue { s in
            let ids = s.waiters.filter { $0.value.deadline <= now }.map(\.key)
            return ids.compactMap { s.waiters.removeValue(forKey: $0)?.completion }
        }
        for completion in expired { completion(.timedOut) }
    }

    /// Records waiting for the log, how many were committed so far, and how many METERs were refused (key taken).
    public var statistics: (queued: Int, committed: UInt64, refused: UInt64) {
        state.withLockedValue { ($0.records.count, $0.committed, $0.refused) }
    }
}
