import TollgateEngine
import TollgateJournal
import TollgateModel
import TollgateProtocol

/// Fleet mode's METER (`Protocol/FLEET.md` 10): usage is counted from the fleet log only, never before it is there.
///
/// A host decides a METER as a single host does but does not count it: it hands the record to the log, whose commit
/// claims the idempotency key (a unique constraint) in the same transaction and writes the record only if the claim
/// succeeds. Every host, this one included, counts the METER when it reads it back. So a key sent to several hosts
/// counts once, and a METER whose commit never happened (the host was killed first, or its answer was lost and the
/// record dropped) is counted nowhere: no host, the origin included, holds usage the log does not.
extension ApplicationCore {
    /// Decides `meter` and queues it for the log, under the lock. Returns the answer when it is known now (a denied
    /// token, a key this host already counted), else nil and answers through `completion` when the log has decided.
    func meterThroughFleetLocked(
        _ meter: MeterRequest, replicator: any ChangeReplicator, now: Timestamp, caller: UInt32?, completion: @escaping @Sendable (Response) -> Void
    ) throws -> Response? {
        let (result, change) = try state.meter(meter, at: now, caller: caller, counting: false)
        counters.meters &+= 1
        let key = meter.idempotencyKey
        // A duplicate counts nothing: its quota is read without this request's quantity, as a single host answers one.
        let duplicate = { () -> MeterResult in
            var duplicate = result
            duplicate.duplicate = true
            if !key.isEmpty, result.reason == .none, change != nil { duplicate.quota = state.quotaWithoutServing(meter, at: now, caller: caller) }
            return duplicate
        }()
        // A key this host's queue already holds: answered with the first METER's outcome, never queued twice.
        if !key.isEmpty, result.reason == .none, keysInFlight[key] != nil {
            counters.meterDuplicates &+= 1
            keysInFlight[key]!.append { taken in
                completion(taken ? .meter(duplicate) : .error(.unavailable, "the first request with this idempotency key is not confirmed by the fleet log yet; retry"))
            }
            return nil
        }
        guard let change else {
            if result.duplicate { counters.meterDuplicates &+= 1 }
            return .meter(result)
        }
        let payload = try change.encodedPayload()
        // The journal sequence of this marker is the record's reference in the log, in queue order with the others.
        let reference = appendLocked(.fleetUsageSent, durability: .buffered, completion: nil)
        guard reference > 0 else { return Self.notDurable }
        if !key.isEmpty { keysInFlight[key] = [] }
        replicator.enqueueUsage(payload: payload, reference: reference, idempotencyKey: key) { [weak self] outcome in
            guard let self else { return completion(Self.notDurable) }
            let waiters: [@Sendable (Bool) -> Void] = key.isEmpty ? [] : lock.withLock { () -> [@Sendable (Bool) -> Void] in
                if outcome == .duplicate { counters.meterDuplicates &+= 1 }
                return keysInFlight.removeValue(forKey: key) ?? []
            }
            switch outcome {
            case .counted: completion(.meter(result))
            case .duplicate: completion(.meter(duplicate))
            case .unconfirmed: completion(answerToFailedAppend(FleetCommitJoin.unconfirmed))
            }
            for waiter in waiters { waiter(outcome != .unconfirmed) }
        }
        return nil
    }
}
