import TollgateModel

/// Identity-provider exchanges and deprovisioning (issue 17). The JWT was verified and mapped before the state is
/// touched (`TollgateIdentity`); here the grant meets the licensing rules: the subject not deprovisioned, the
/// license (or the organisation's license) usable, its plan's scopes, token limit and maximum lifetime.
extension LicensingState {
    /// Mints the token a verified grant earned. It is journaled as any issued token (`tokenIssued`, its hash only),
    /// carries its role under `ExchangeGrant.roleMetadataKey` (which marks it derived: it cannot DERIVE further),
    /// and is revoked with its subject, license or organisation. Refusals are `ExchangeRefusal`s.
    public mutating func exchange<R: RandomNumberGenerator>(
        _ grant: ExchangeGrant, ttlSeconds: UInt32, at now: Timestamp, maxLifetime: Int64, using rng: inout R
    ) throws -> (secret: String, token: TokenInfo, change: StateChange) {
        guard deprovisioned[grant.subject] == nil else {
            throw ExchangeRefusal(.subjectDeprovisioned, "the subject was deprovisioned at the identity provider")
        }
        let licenseID = try exchangeLicense(grant)
        guard let license = licenses[licenseID]?.spec, let plan = plans[license.plan] else {
            throw ExchangeRefusal(.licenseUnavailable, "license \(Self.printable(licenseID)) does not exist")
        }
        do throws(ValidationError) {
            try Validation.scopesGranted(grant.scopes, by: plan, license: license.id, field: "scopes")
        } catch {
            throw ExchangeRefusal(.invalidScope, error.message)
        }
        do {
            try checkTokenLimit(plan: plan, licenseID: license.id, at: now.millis)
        } catch let error as EngineError {
            throw ExchangeRefusal(.licenseUnavailable, error.message)
        }
        let expiresAt = Self.exchangeExpiry(
            now: now.millis, requestedSeconds: ttlSeconds, roleMaxMillis: grant.maxLifetimeMillis, daemonMaxMillis: maxLifetime,
            planMaxSeconds: plan.maxTokenLifetimeSeconds, subjectTokenExpiresAt: grant.subjectTokenExpiresAt)
        guard expiresAt > now.millis else { throw ExchangeRefusal(.expired, "the JWT expires now") }
        var info = TokenInfo(
            id: "", licenseID: license.id, subject: grant.subject, scopes: grant.scopes, issuedAt: now.millis, notBefore: 0,
            expiresAt: expiresAt, metadata: [KeyValue(ExchangeGrant.roleMetadataKey, grant.role)], environment: .live)
        // The license must be usable now, by the same gates CHECK applies (status, validity, organisation).
        if case .failure(let unusable) = usability(of: TokenView(TokenRecord(hash: TokenHash(0, 0, 0, 0), info: info)), at: now.millis, caller: nil) {
            throw ExchangeRefusal(.licenseUnavailable, "license \(Self.printable(license.id)) cannot have tokens now (\(unusable.reason.name))")
        }
        let secret = mint(&info, using: &rng)
        let change = StateChange.tokenIssued(TokenRecord(hash: Self.hash(of: secret), info: info))
        apply(change)
        return (secret, info, change)
    }

    /// The license of a grant: the one it names, or the one license of the organisation it names.
    func exchangeLicense(_ grant: ExchangeGrant) throws(ExchangeRefusal) -> String {
        if !grant.licenseID.isEmpty { return grant.licenseID }
        let members = licenses.values.filter { $0.spec.org == grant.org }.map(\.spec.id).sorted()
        guard members.count == 1 else {
            throw ExchangeRefusal(.licenseUnavailable, members.isEmpty
                ? "organisation \(Self.printable(grant.org)) has no license"
                : "organisation \(Self.printable(grant.org)) has \(members.count) licenses; map the role to a license instead")
        }
        return members[0]
    }

    /// When an exchanged token expires: now plus the lifetime asked for (0: the role's maximum), never beyond the
    /// role's maximum, the daemon's maximum for derived tokens, the plan's maximum token lifetime (0: none) or the
    /// JWT's own expiry.
    public static func exchangeExpiry(
        now: UnixMillis, requestedSeconds: UInt32, roleMaxMillis: Int64, daemonMaxMillis: Int64, planMaxSeconds: UInt32, subjectTokenExpiresAt: UnixMillis
    ) -> UnixMillis {
        var lifetime = min(roleMaxMillis, daemonMaxMillis)
        if requestedSeconds > 0 { lifetime = min(lifetime, Int64(requestedSeconds) * 1000) }
        if planMaxSeconds > 0 { lifetime = min(lifetime, Int64(planMaxSeconds) * 1000) }
        return min(now + lifetime, subjectTokenExpiresAt)
    }

    /// Deprovisions or reactivates a subject. Deprovisioning revokes every live token issued to it (and those derived
    /// from them) in the same record, and refuses its exchanges from then on; reactivating allows exchanges again.
    /// Nil change when there is nothing to do (already in that state, no live token).
    public mutating func setSubjectStatus(_ request: SubjectStatusRequest, at now: Timestamp) throws -> (revoked: UInt32, change: StateChange?) {
        try Validate.run { () throws(ValidationError) in
            try Validation.subject(request.subject)
            try Validation.text(request.actor, max: Limits.maxReason, "the actor")
        }
        if request.active {
            guard deprovisioned[request.subject] != nil else { return (0, nil) }
            let change = StateChange.subjectStatus(subject: request.subject, active: true, tokenIDs: [], actor: request.actor, at: max(now.millis, 1))
            apply(change)
            return (0, change)
        }
        var ids = tokens.ids(subject: request.subject)
        ids += ids.flatMap { children[$0] ?? [] }
        var seen = Set<String>()
        let live = ids.filter { seen.insert($0).inserted && token(id: $0)?.info.revokedAt == 0 }
        guard deprovisioned[request.subject] == nil || !live.isEmpty else { return (0, nil) }
        let change = StateChange.subjectStatus(subject: request.subject, active: false, tokenIDs: live, actor: request.actor, at: max(now.millis, 1))
        apply(change)
        return (UInt32(clamping: live.count), change)
    }
}
