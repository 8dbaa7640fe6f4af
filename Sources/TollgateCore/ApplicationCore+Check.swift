import Logging
import NIOCore
import TollgateEngine
import TollgateModel
import TollgateProtocol

/// The data plane's hot path: CHECK (alone or a read's worth at once), SETTLE, RELEASE, and the journaling of the
/// consumption they apply. Decided under the lock, no I/O.
extension ApplicationCore {
    /// Decides one CHECK: a batch of one, so a lone CHECK and a pipelined one take the same route.
    public func check(_ request: CheckRequest, caller: UInt32? = nil) -> CheckResult {
        var results: [CheckResult] = []
        results.reserveCapacity(1)
        withUnsafePointer(to: request) { request in
            decideChecks(UnsafeBufferPointer(start: request, count: 1), caller: caller, into: &results)
        }
        return results[0]
    }

    /// Decides one CHECK and reads its `details` from the state the check left, under the same acquisition of the
    /// lock and at the same instant (the `details` option; the batch path never takes such a CHECK).
    public func checkDetailed(_ request: CheckRequest, caller: UInt32? = nil, route: String? = nil) -> (CheckResult, CheckDetails) {
        let now = clock.now()
        let watched = decisionWatchers.load(ordering: .relaxed) != 0
        let started = watched ? NIODeadline.now().uptimeNanoseconds : 0
        let (result, logDecision, details) = lock.withLock {
            let (result, logDecision) = checkLocked(request, now: now, caller: caller)
            if watched { recordDecisionLocked(request, result, at: now, started: started, route: route) }
            if pendingUsage.count >= nextFlushAt { flushPendingUsageLocked() }
            return (result, logDecision, state.checkDetails(tokenID: result.tokenID, at: now))
        }
        if logDecision { logDenial(result) }
        return (result, details)
    }

    /// Answers consecutive CHECKs cut from one read of one connection, in order, under a single acquisition of the
    /// lock: on a pipelined connection the lock and the clock read are paid once per read instead of once per
    /// request. Each check is decided exactly as a lone CHECK (counters, consumption, early usage flush, sampled
    /// denial log), all at one instant, the time the batch is decided. Every request must have passed
    /// `refusal(of:)`. `results` receives one result per request, in order, after what it held.
    public func checkBatch(_ requests: [CheckRequest], caller: UInt32?, into results: inout [CheckResult]) {
        // Through a buffer pointer: each request is lent to the engine in place, not copied out of the array.
        requests.withUnsafeBufferPointer { decideChecks($0, caller: caller, into: &results) }
    }

    private func decideChecks(_ requests: UnsafeBufferPointer<CheckRequest>, caller: UInt32?, into results: inout [CheckResult]) {
        let now = clock.now()
        // Latency is sampled (one batch in `checkLatencySampleInterval`), so that the metric costs an atomic add per
        // batch and not two clock reads and a histogram update per CHECK (issue 15: within 5 % of the instructions).
        let sampled = checkLatencySamples.add(1, ordering: .relaxed).newValue % Self.checkLatencySampleInterval == 0
        // The decision stream: one relaxed load per batch while nobody watches.
        let watched = decisionWatchers.load(ordering: .relaxed) != 0
        let started = sampled || watched ? NIODeadline.now().uptimeNanoseconds : 0
        var observer: (@Sendable (Int64, Int) -> Void)?
        // Indices of denials the sampler admitted: logged after the lock is released. Empty (no allocation) unless
        // a denial is logged, which the sampler allows at most `perSecond` times a second.
        var logged: [Int] = []
        lock.withLock {
            for index in requests.indices {
                assert(Self.admits(requests[index]), "a CHECK that refusal(of:) refuses reached the engine")
                let (result, logDecision) = checkLocked(requests[index], now: now, caller: caller)
                if watched { recordDecisionLocked(requests[index], result, at: now, started: started, route: nil) }
                if logDecision { logged.append(results.count) }
                results.append(result)
                if pendingUsage.count >= nextFlushAt { flushPendingUsageLocked() }
            }
            if sampled { observer = checkLatencyObserver }
        }
        if let observer {
            // From before the lock was taken (its wait included) to the last decision; one figure per CHECK.
            let elapsed = Int64(truncatingIfNeeded: NIODeadline.now().uptimeNanoseconds &- started)
            observer(elapsed / Int64(max(1, requests.count)), requests.count)
        }
        for index in logged { logDenial(results[index]) }
    }

    /// The error a CHECK is answered with before the engine sees it (a meter name longer than the wire allows), or
    /// nil when it is to be decided.
    public static func refusal(of check: CheckRequest) -> Response? {
        admits(check) ? nil : meterNameTooLong
    }

    /// Whether `refusal(of:)` lets `check` through to the engine (without building the answer).
    @inlinable
    public static func admits(_ check: CheckRequest) -> Bool {
        check.meter.utf8.count <= Limits.maxMeterName
    }

    /// The answer to a CHECK whose meter name is longer than the wire allows.
    static let meterNameTooLong = Response.error(.invalidArgument, "the meter name must be at most \(Limits.maxMeterName) bytes")

    /// Decides one check and counts it. Called with the lock held; returns whether the decision is to be logged.
    private func checkLocked(_ request: CheckRequest, now: Timestamp, caller: UInt32?) -> (CheckResult, Bool) {
        // Fleet mode's revocation horizon (Protocol/FLEET.md 7), at the check's own instant; never on a single host.
        let (result, consumed): (CheckResult, UsageEntry?) = now.nanoseconds < fleetStaleAt
            ? state.check(request, at: now, caller: caller, reservationLifetime: options.reservationLifetimeMillis)
            : (CheckResult(reason: .fleetStale), nil)
        counters.checks &+= 1
        var logDecision = false
        if !result.allowed {
            counters.checksDenied &+= 1
            let slot = Int(result.reason.rawValue)
            if slot < CoreCounters.reasonSlots { counters.denials[slot] &+= 1 }
            logDecision = decisionLog.admit(at: now)
        }
        if let consumed { pendingUsage.append(consumed) }
        return (result, logDecision)
    }

    /// Sampled: at most `perSecond` lines, so a flood of bad tokens cannot slow the hot path or fill the disk.
    private func logDenial(_ result: CheckResult) {
        logger.info("check denied", metadata: [
            "tollgate.decision": "deny", "tollgate.reason": "\(result.reason.name)",
            "tollgate.token_id": "\(result.tokenID)", "tollgate.license": "\(result.licenseID)",
        ])
    }

    /// Charges a reservation's actual cost; like check consumption, it is journaled with the next batch.
    func settle(_ request: SettleRequest) -> Response {
        let now = clock.now()
        do {
            let (result, flushNeeded) = try lock.withLock { () throws -> (CheckResult, Bool) in
                let (result, consumed) = try state.settle(request, at: now)
                if let consumed { pendingUsage.append(consumed) }
                return (result, pendingUsage.count >= nextFlushAt)
            }
            if flushNeeded { flushPendingUsage() }
            return .check(result)
        } catch {
            return answer(for: error, opcode: .settle)
        }
    }

    /// Releases a lease; false when it was not held.
    func release(leaseID: UInt64) -> Bool {
        lock.withLock { state.release(leaseID: leaseID) }
    }

    /// Releases leases a connection still held when it closed.
    public func releaseLeases(_ ids: some Sequence<UInt64>) {
        lock.withLock {
            for id in ids { _ = state.release(leaseID: id) }
        }
    }

    /// Journals the check consumption gathered since the last flush, as one buffered record.
    public func flushPendingUsage() {
        lock.withLock { flushPendingUsageLocked() }
    }

    func flushPendingUsageLocked() {
        // Threshold events counted live are journaled with the batch (their own record, numbered when they happened).
        if !journal.statistics.failed, let events = state.takeUnjournaledEvents() {
            appendLocked(events, durability: .buffered, completion: nil)
        }
        guard !pendingUsage.isEmpty else { return }
        // While the journal cannot write, keep the consumption: recovery re-applies it to the rebuilt state and
        // journals it then. Bounded, so that a long outage cannot exhaust memory.
        if journal.statistics.failed {
            if pendingUsage.count > JournalOutageRecovery.maxUsageHeld {
                counters.usageDropped &+= UInt64(pendingUsage.count - JournalOutageRecovery.maxUsageHeld)
                pendingUsage.removeFirst(pendingUsage.count - JournalOutageRecovery.maxUsageHeld)
            }
            nextFlushAt = pendingUsage.count + options.usageFlushBatch
            return
        }
        nextFlushAt = options.usageFlushBatch
        let change = StateChange.consumed(pendingUsage)
        pendingUsage.removeAll(keepingCapacity: true)
        appendLocked(change, durability: .buffered, completion: nil)
    }

    /// Periodic work off the request path: releases expired reservations, and every `sweepInterval` journals a
    /// sweep (expiry events, forgetting long-gone tokens, pruning ended counters and old idempotency keys).
    public func housekeeping(sweep: Bool) {
        let now = clock.now()
        lock.withLock {
            state.expireReservations(at: now.millis)
            guard sweep, !journal.statistics.failed else { return }
            flushPendingUsageLocked()
            let change = state.sweep(
                at: now, tokenRetention: options.tokenRetentionMillis, keyRetention: options.idempotencyRetentionMillis,
                expiryWarning: options.expiryWarningMillis, ledgerRetention: options.ledgerRetentionMillis)
            appendLocked(change, durability: .buffered, completion: nil)
            flushPendingUsageLocked()
        }
    }
}

/// Lets through at most `perSecond` decision log lines per wall-clock second.
struct DecisionLogSampler {
    let perSecond: Int
    var windowStart: Int64 = 0
    var admitted = 0

    init(perSecond: Int) { self.perSecond = perSecond }

    mutating func admit(at now: Timestamp) -> Bool {
        let second = now.nanoseconds / 1_000_000_000
        if second != windowStart {
            windowStart = second
            admitted = 0
        }
        guard admitted < perSecond else { return false }
        admitted += 1
        return true
    }
}
