import TollgateModel

/// What applying a document would change, computed before anything is sent, so that `tollgate apply` can show it
/// (and `--dry-run` can stop there) and send only the puts that change something.
public enum ProvisioningPlan {
    /// One change per object the document declares, in apply order: organisations, then plans, then licenses
    /// (a license names a plan and an organisation, which must exist before it); within a kind, in file order.
    ///
    /// An object is `unchanged` when every field is equal, so after the document is applied the next diff is all
    /// `unchanged`. Entitlements and features are compared as sets: they are grants, their order means nothing,
    /// and reordering them in the file must not cause a put.
    ///
    /// With `prune`, `current` must hold every object on the daemon: those the document does not name are deleted,
    /// after every put (a license the file moves off a plan is moved before the plan goes) and users first —
    /// roles, then licenses, then plans, then organisations, each in id order — since the daemon refuses to delete
    /// what is still in use. Roles are pruned only when the document has a `roles:` key (`managesRoles`).
    public static func diff(document: ProvisioningDocument, current: CurrentObjects, prune: Bool = false) -> [ProvisioningChange] {
        var changes = puts(document: document, current: current)
        guard prune else { return changes }
        if document.managesRoles {
            let roles = Set(document.roles.map(\.name))
            for name in current.roles.keys.sorted() where !roles.contains(name) { changes.append(.delete(.role, id: name)) }
        }
        let named = Set(document.licenses.map(\.id))
        for id in current.licenses.keys.sorted() where !named.contains(id) { changes.append(.delete(.license, id: id)) }
        let plans = Set(document.plans.map(\.id))
        for id in current.plans.keys.sorted() where !plans.contains(id) { changes.append(.delete(.plan, id: id)) }
        let orgs = Set(document.orgs.map(\.id))
        for id in current.orgs.keys.sorted() where !orgs.contains(id) { changes.append(.delete(.org, id: id)) }
        return changes
    }

    private static func puts(document: ProvisioningDocument, current: CurrentObjects) -> [ProvisioningChange] {
        var changes: [ProvisioningChange] = []
        for org in document.orgs {
            changes.append(change(.org, org.id, fields: current.orgs[org.id].map { fieldChanges(from: $0, to: org) }))
        }
        for plan in document.plans {
            changes.append(change(.plan, plan.id, fields: current.plans[plan.id].map { fieldChanges(from: $0, to: plan) }))
        }
        for license in document.licenses {
            changes.append(change(.license, license.id, fields: current.licenses[license.id].map { fieldChanges(from: $0, to: license) }))
        }
        for role in document.roles {
            changes.append(change(.role, role.name, fields: current.roles[role.name].map { fieldChanges(from: $0, to: role) }))
        }
        return changes
    }

    private static func change(_ kind: ProvisioningChange.Kind, _ id: String, fields: [ProvisioningChange.FieldChange]?) -> ProvisioningChange {
        guard let fields else { return .create(kind, id: id) }
        return fields.isEmpty ? .unchanged(kind, id: id) : .update(kind, id: id, fieldChanges: fields)
    }

    // MARK: Fields, in the order the file lists them

    static func fieldChanges(from old: OrgSpec, to new: OrgSpec) -> [ProvisioningChange.FieldChange] {
        var fields = FieldComparison()
        fields.compare("name", old.name, new.name, FieldFormat.text)
        fields.compare("suspended", old.suspended, new.suspended) { "\($0)" }
        return fields.changes
    }

    static func fieldChanges(from old: Plan, to new: Plan) -> [ProvisioningChange.FieldChange] {
        var fields = FieldComparison()
        fields.compareAsSets("entitlements", old.entitlements, new.entitlements)
        fields.compareAsSets("features", old.features, new.features)
        fields.compare("quotas", old.quotas, new.quotas) { FieldFormat.list($0.map(FieldFormat.quota)) }
        fields.compare("rate_limits", old.rateLimits, new.rateLimits) { FieldFormat.list($0.map(FieldFormat.rate)) }
        fields.compare("concurrency", old.concurrency, new.concurrency) { FieldFormat.list($0.map(FieldFormat.concurrency)) }
        fields.compare("credits", old.credits, new.credits, FieldFormat.credits)
        fields.compare("overage", old.overage, new.overage) { $0.name }
        fields.compare("max_token_lifetime_seconds", old.maxTokenLifetimeSeconds, new.maxTokenLifetimeSeconds) { "\($0)" }
        fields.compare("max_active_tokens", old.maxActiveTokens, new.maxActiveTokens) { "\($0)" }
        fields.compare("past_due_grace_seconds", old.pastDueGraceSeconds, new.pastDueGraceSeconds) { "\($0)" }
        return fields.changes
    }

    static func fieldChanges(from old: LicenseSpec, to new: LicenseSpec) -> [ProvisioningChange.FieldChange] {
        var fields = FieldComparison()
        fields.compare("customer", old.customer, new.customer, FieldFormat.text)
        fields.compare("org", old.org, new.org, FieldFormat.optionalID)
        fields.compare("project", old.project, new.project, FieldFormat.text)
        fields.compare("plan", old.plan, new.plan) { $0 }
        fields.compare("status", old.status, new.status) { $0.name }
        fields.compare("valid_from", old.validFrom, new.validFrom, FieldFormat.timestamp)
        fields.compare("valid_until", old.validUntil, new.validUntil, FieldFormat.timestamp)
        fields.compare("trial_ends_at", old.trialEndsAt, new.trialEndsAt, FieldFormat.timestamp)
        fields.compare("billing_anchor_day", old.billingAnchorDay, new.billingAnchorDay) { "\($0)" }
        return fields.changes
    }
}

extension ProvisioningPlan {
    /// A role's fields as the file names them. Audiences and scopes are compared as sets (their order means
    /// nothing to a match); bound claims are compared normalised (claim order).
    static func fieldChanges(from old: IdentityRole, to new: IdentityRole) -> [ProvisioningChange.FieldChange] {
        let old = old.normalized, new = new.normalized
        var fields = FieldComparison()
        fields.compare("issuer", old.issuer, new.issuer, FieldFormat.text)
        fields.compareAsSets("bound_audiences", old.audiences, new.audiences)
        fields.compare("bound_claims", old.boundClaims, new.boundClaims, FieldFormat.boundClaims)
        fields.compare("bound_claims_type", old.boundClaimsMatch, new.boundClaimsMatch) { $0.rawValue }
        fields.compare("user_claim", old.userClaim, new.userClaim, FieldFormat.text)
        fields.compare("license", old.license, new.license, FieldFormat.optionalID)
        fields.compare("license_claim", old.licenseClaim, new.licenseClaim, FieldFormat.optionalID)
        fields.compare("license_mapping", old.licenseMapping, new.licenseMapping, FieldFormat.mapping)
        fields.compare("org_claim", old.orgClaim, new.orgClaim, FieldFormat.optionalID)
        fields.compare("org_mapping", old.orgMapping, new.orgMapping, FieldFormat.mapping)
        fields.compareAsSets("scopes", old.scopes, new.scopes)
        fields.compare("scope_claim", old.scopeClaim, new.scopeClaim, FieldFormat.optionalID)
        fields.compare("max_ttl_s", old.maxTTLSeconds, new.maxTTLSeconds) { "\($0)" }
        fields.compare("leeway_s", old.leewaySeconds, new.leewaySeconds, FieldFormat.leeways)
        return fields.changes
    }
}

/// Collects the fields that differ, each shown with the formatter of its kind.
struct FieldComparison {
    var changes: [ProvisioningChange.FieldChange] = []

    mutating func compare<T: Equatable>(_ field: String, _ old: T, _ new: T, _ format: (T) -> String) {
        guard old != new else { return }
        changes.append(.init(field: field, old: format(old), new: format(new)))
    }

    mutating func compareAsSets(_ field: String, _ old: [String], _ new: [String]) {
        guard Set(old) != Set(new) else { return }
        changes.append(.init(field: field, old: FieldFormat.list(old.map(FieldFormat.text)), new: FieldFormat.list(new.map(FieldFormat.text))))
    }
}
