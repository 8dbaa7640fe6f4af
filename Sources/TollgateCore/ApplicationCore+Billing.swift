import TollgateEngine
import TollgateModel

/// What became of a billing event handed to the core.
public enum BillingAnswer: Sendable, Hashable {
    /// Decided; when `.applied`, its record is durable.
    case decided(BillingOutcome)
    /// Refused by the engine (the mapped plan does not exist, a field out of range): nothing was applied. The
    /// message names Tollgate's objects only, never a secret.
    case refused(String)
    /// The journal could not make it durable: nothing was applied; the billing system should retry.
    case unavailable
}

/// Billing events (Stripe webhooks): a change like the table's `afterJournal` operations, decided and applied under
/// the lock and answered once its record is durable. It has no opcode: no client sends it over the binary protocol,
/// only the HTTP front end's webhook route, after verifying the event's signature.
extension ApplicationCore {
    /// Applies `update` (see `LicensingState.applyBilling`) and calls `completion` once the outcome is final: at
    /// once for a duplicate, a stale or an unchanged event, after the journal for an applied one. Every applied
    /// event is audited with the actor `stripe` and its event id.
    /// - Parameter retention: how long an applied event id is remembered (milliseconds).
    public func applyBilling(_ update: BillingUpdate, retention: Int64, completion: @escaping @Sendable (BillingAnswer) -> Void) {
        if currentJournal.statistics.failed { return completion(.unavailable) }
        let now = clock.now()
        enum Decided {
            case now(BillingAnswer)
            case later
        }
        let decided: Decided = lock.withLock {
            // Usage counted under the license as it was (organisation, billing anchor) is journaled first, as for
            // LICENSE_PUT.
            flushPendingUsageLocked()
            let outcome: BillingOutcome
            let change: StateChange?
            do {
                (outcome, change) = try state.applyBilling(update, at: now, retention: retention)
            } catch let error as EngineError {
                return .now(.refused(error.message))
            } catch {
                return .now(.refused("the event could not be applied"))
            }
            guard let change else { return .now(.decided(outcome)) }
            if case .applied(let info) = outcome {
                audit("billing event applied", caller: nil, [
                    "tollgate.actor": "stripe", "tollgate.stripe.event": "\(update.eventID)", "tollgate.stripe.type": "\(update.eventType)",
                    "tollgate.stripe.subscription": "\(update.subscription)", "tollgate.license": "\(info.spec.id)",
                    "tollgate.plan": "\(info.spec.plan)", "tollgate.status": "\(info.spec.status.name)",
                ])
            }
            appendLocked(change, durability: .durable) { [weak self] result in
                switch result {
                case .success: completion(.decided(outcome))
                case .failure(let error):
                    // An unconfirmed fleet commit is no journal failure; either way Stripe retries, idempotently.
                    if error.code != .timedOut { self?.journalWriteFailed(error) }
                    completion(.unavailable)
                }
            }
            return .later
        }
        switch decided {
        case .now(let answer): completion(answer)
        case .later: maybeSnapshot()
        }
    }
}
