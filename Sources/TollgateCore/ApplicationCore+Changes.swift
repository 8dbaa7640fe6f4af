import Logging
import TollgateEngine
import TollgateJournal
import TollgateModel
import TollgateProtocol

/// Changes: decided and applied under the lock, journaled in the same critical section, answered when durable.
extension ApplicationCore {
    /// Decides a change, applies it, appends its record, and answers once the record is durable (`completion`), or
    /// at once when there is nothing to write or the change is refused.
    func change(_ request: Request, caller identity: Caller, completion: @escaping @Sendable (Response) -> Void) -> Response? {
        let caller = identity.uid
        let now = clock.now()
        // While the journal cannot write, refuse changes before applying them: an applied-but-lost change could
        // otherwise answer a retry (an idempotency key seen) with a false ok.
        if currentJournal.statistics.failed {
            return .error(.unavailable, "the journal cannot write (disk full or I/O error); the change was not made. It recovers by itself; retry later")
        }

        enum Outcome {
            case now(Response)
            case later
        }
        let outcome: Outcome
        do {
            outcome = try lock.withLock { () throws -> Outcome in
                // Fleet mode: nothing is applied here that the fleet log cannot take (FLEET.md 4.1 step 1).
                if let replicator, !replicator.acceptsChanges { return .now(Self.fleetUnavailable) }
                // Fleet mode counts a METER only from the log, once its key is claimed there (FLEET.md 10).
                if let replicator, case .meter(let meter) = request {
                    let immediate = try meterThroughFleetLocked(meter, replicator: replicator, now: now, caller: caller, completion: completion)
                    return immediate.map { Outcome.now($0) } ?? Outcome.later
                }
                let (response, change) = try decideLocked(request, now: now, caller: caller)
                guard let change else {
                    // A repeated idempotency key whose first record is not durable yet is answered only when that
                    // record is: if it fails, the repeat must not have been told "ok, already counted".
                    if case .meter(let meter) = request, case .meter(let result) = response, result.duplicate,
                        keysInFlight[meter.idempotencyKey] != nil
                    {
                        keysInFlight[meter.idempotencyKey]!.append { durable in
                            completion(durable ? response : .error(.unavailable, "the first request with this idempotency key could not be made durable; retry"))
                        }
                        return .later
                    }
                    return .now(response)
                }
                let key: String? = if case .metered(_, let key) = change, !key.isEmpty { key } else { nil }
                if let key { keysInFlight[key] = [] }
                appendLocked(change, durability: .durable) { [weak self] result in
                    let waiters = key.flatMap { key in self?.lock.withLock { self?.keysInFlight.removeValue(forKey: key) } } ?? []
                    switch result {
                    case .success: completion(response)
                    case .failure(let error):
                        completion(self?.answerToFailedAppend(error) ?? ApplicationCore.notDurable)
                    }
                    let durable = (try? result.get()) != nil
                    for waiter in waiters { waiter(durable) }
                }
                return .later
            }
        } catch {
            return answer(for: error, opcode: request.opcode)
        }
        guard case .now(let response) = outcome else {
            maybeSnapshot()
            return nil
        }
        return response
    }

    static let fleetUnavailable = Response.error(.fleetUnavailable, "the fleet log (PostgreSQL) is unreachable; the change was not made. Retry later or on another host")

    /// Who asked, as the journal records it: the operator's name (admin socket) and the kernel's word on the uid
    /// (`alice uid=1000`, or `uid=1000` without a name; `uid=unknown` when the kernel did not say).
    static func recordedActor(_ actor: String, caller: UInt32?) -> String {
        (actor.isEmpty ? "" : actor + " ") + "uid=\(caller.map(String.init) ?? "unknown")"
    }

    /// Decides a control- or data-plane change and applies it to the state. Called with the lock held.
    func decideLocked(_ request: Request, now: Timestamp, caller: UInt32?) throws -> (Response, StateChange?) {
        switch request {
        case .meter(let meter):
            let (result, change) = try state.meter(meter, at: now, caller: caller)
            counters.meters &+= 1
            if result.duplicate { counters.meterDuplicates &+= 1 }
            return (.meter(result), change)
        case .revoke(var revoke):
            // The journal records who asked: the operator's name (admin socket) and the kernel's word on the uid.
            revoke.actor = Self.recordedActor(revoke.actor, caller: caller)
            let (count, change) = try state.revoke(revoke, at: now)
            if let change, case .tokensRevoked(let ids, _, let actor, _) = change {
                audit("tokens revoked", caller: caller, [
                    "tollgate.revoke.by": "\(["secret", "token_id", "license", "org", "subject"][Int(revoke.target.code)])",
                    "tollgate.actor": "\(actor)",
                    "tollgate.token_ids": "\(ids.prefix(10).joined(separator: ","))\(ids.count > 10 ? ",…" : "")",
                    "tollgate.count": "\(ids.count)",
                ])
            }
            return (.revoke(revoked: count), change)
        case .issue(let issue):
            guard state.tokens.count < maxTokens else {
                throw EngineError(.invalidArgument, "the token store is full (\(maxTokens) tokens); raise limits.max_tokens")
            }
            let (secret, token, change) = try state.issue(issue, at: now, using: &rng)
            audit("token issued", caller: caller, ["tollgate.token_id": "\(token.id)", "tollgate.license": "\(token.licenseID)"])
            return (.issue(secret: secret, token: token), change)
        case .licensePut(let spec):
            guard state.licenses[spec.id] != nil || state.licenses.count < maxLicenses else {
                throw EngineError(.invalidArgument, "the license store is full (\(maxLicenses) licenses); raise limits.max_licenses")
            }
            // Usage counted under the old license (its organisation, its billing anchor) is journaled before the change,
            // so that replay counts it the same way.
            flushPendingUsageLocked()
            let (info, change) = try state.putLicense(spec, at: now)
            audit("license put", caller: caller, ["tollgate.license": "\(spec.id)", "tollgate.plan": "\(spec.plan)", "tollgate.status": "\(spec.status.name)"])
            return (.license(info), change)
        case .planPut(let plan):
            flushPendingUsageLocked()
            let (stored, change) = try state.putPlan(plan, at: now)
            if change != nil { audit("plan put", caller: caller, ["tollgate.plan": "\(plan.id)"]) }
            return (.plan(stored), change)
        case .derive(let derive):
            guard state.tokens.count < maxTokens else {
                throw EngineError(.invalidArgument, "the token store is full (\(maxTokens) tokens); raise limits.max_tokens")
            }
            let (result, secret, token, change) = try state.derive(derive, at: now, caller: caller, maxLifetime: options.maxDerivedLifetimeMillis, using: &rng)
            if let token { audit("token derived", caller: caller, ["tollgate.token_id": "\(token.id)", "tollgate.parent_id": "\(token.parentID)"]) }
            return (.derive(result, secret: secret, token: token), change)
        case .rotate(let rotate):
            let (secret, token, change) = try state.rotate(rotate, at: now, using: &rng)
            audit("token rotated", caller: caller, ["tollgate.token_id": "\(token.id)", "tollgate.grace_s": "\(rotate.graceSeconds)"])
            return (.issue(secret: secret, token: token), change)
        case .rotationEnd(let id):
            let (token, change) = try state.endRotation(tokenID: id, at: now)
            if change != nil { audit("rotation overlap ended", caller: caller, ["tollgate.token_id": "\(id)"]) }
            return (.token(token), change)
        case .orgPut(let org):
            let (stored, change) = try state.putOrg(org, at: now)
            if change != nil { audit("organisation put", caller: caller, ["tollgate.org": "\(org.id)", "tollgate.suspended": "\(org.suspended)"]) }
            return (.org(stored), change)
        case .creditsGrant(let grant):
            let (balance, change) = try state.grantCredits(grant, at: now)
            audit("credits granted", caller: caller, ["tollgate.pool": "\(grant.pool.name)", "tollgate.owner": "\(grant.owner)", "tollgate.amount": "\(grant.amount)"])
            return (.credits(balance: balance), change)
        case .licenseDelete(var delete):
            delete.actor = Self.recordedActor(delete.actor, caller: caller)
            // Usage counted under the license is journaled before the record that removes it, so that replay,
            // which counts usage only for licenses that exist, counts it too.
            flushPendingUsageLocked()
            let (info, change) = try state.deleteLicense(delete, at: now)
            audit("license deleted", caller: caller, [
                "tollgate.deleted": "license", "tollgate.license": "\(delete.id)", "tollgate.plan": "\(info.spec.plan)",
                "tollgate.org": "\(info.spec.org)", "tollgate.actor": "\(delete.actor)",
            ])
            return (.license(info), change)
        case .planDelete(var delete):
            delete.actor = Self.recordedActor(delete.actor, caller: caller)
            // Which calendar counters are kept depends on the plans (`CountedWindows`): usage counted before the
            // deletion is journaled before it, as for PLAN_PUT.
            flushPendingUsageLocked()
            let (plan, change) = try state.deletePlan(delete, at: now)
            audit("plan deleted", caller: caller, ["tollgate.deleted": "plan", "tollgate.plan": "\(plan.id)", "tollgate.actor": "\(delete.actor)"])
            return (.plan(plan), change)
        case .orgDelete(var delete):
            delete.actor = Self.recordedActor(delete.actor, caller: caller)
            let (org, change) = try state.deleteOrg(delete, at: now)
            audit("organisation deleted", caller: caller, ["tollgate.deleted": "org", "tollgate.org": "\(org.id)", "tollgate.actor": "\(delete.actor)"])
            return (.org(org), change)
        case .subjectStatus(var status):
            status.actor = Self.recordedActor(status.actor, caller: caller)
            let (count, change) = try state.setSubjectStatus(status, at: now)
            if change != nil {
                audit(status.active ? "subject reactivated" : "subject deprovisioned", caller: caller, [
                    "tollgate.subject": "\(LicensingState.printable(status.subject))", "tollgate.actor": "\(status.actor)", "tollgate.count": "\(count)",
                ])
            }
            return (.revoke(revoked: count), change)
        case .rolePut(let role):
            let (stored, change) = try state.putRole(role, at: now, issuers: roleIssuers)
            if change != nil {
                audit("role put", caller: caller, [
                    "tollgate.role": "\(stored.name)", "tollgate.issuer": "\(stored.issuer)",
                    "tollgate.audiences": "\(stored.audiences.joined(separator: ","))", "tollgate.scopes": "\(stored.scopes.joined(separator: ","))",
                ])
            }
            return (.role(stored), change)
        case .roleDelete(var delete):
            delete.actor = Self.recordedActor(delete.actor, caller: caller)
            let (role, change) = try state.deleteRole(delete, at: now)
            audit("role deleted", caller: caller, ["tollgate.deleted": "role", "tollgate.role": "\(role.name)", "tollgate.actor": "\(delete.actor)"])
            return (.role(role), change)
        default:
            // Only the table's `afterJournal` operations come here.
            throw CoreError(status: .internal, message: "\(request.opcode.name) is not a state change")
        }
    }
}
