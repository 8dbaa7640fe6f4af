import TollgateModel

extension ProvisioningDocument {
    /// The document as a provisioning file (`tollgate export`): what `parse` reads back as this very document, so
    /// that exporting a daemon's policy and applying the file to the same daemon changes nothing (the diff is all
    /// `unchanged`; `ProvisioningRenderTests` checks it for every kind of rule and awkward strings).
    ///
    /// Objects keep their order (the export lists them in id order, so the file diffs well between two exports).
    /// Every field a plan has is written, even at its default, so the file states the whole policy; a license's
    /// optional fields (`org`, `project`, times) are left out when unset, as an operator would write it. Strings
    /// are plain when YAML reads them back unchanged and double-quoted otherwise (`FieldFormat.text`); times are
    /// RFC 3339 UTC, or integer milliseconds outside the years 0000–9999.
    public func yaml(header: [String] = []) -> String {
        var lines = header.map { $0.isEmpty ? "#" : "# " + $0 }
        lines.append(plans.isEmpty ? "plans: []" : "plans:")
        for plan in plans {
            lines.append("  - id: \(FieldFormat.text(plan.id))")
            lines.append("    entitlements: \(FieldFormat.list(plan.entitlements.map(FieldFormat.text)))")
            lines.append("    features: \(FieldFormat.list(plan.features.map(FieldFormat.text)))")
            Self.block("quotas", plan.quotas.map(FieldFormat.quota), into: &lines)
            Self.block("rate_limits", plan.rateLimits.map(FieldFormat.rate), into: &lines)
            Self.block("concurrency", plan.concurrency.map(FieldFormat.concurrency), into: &lines)
            if let credits = plan.credits { lines.append("    credits: \(FieldFormat.credits(credits))") }
            lines.append("    overage: \(plan.overage.name)")
            lines.append("    max_token_lifetime_seconds: \(plan.maxTokenLifetimeSeconds)")
            lines.append("    max_active_tokens: \(plan.maxActiveTokens)")
            lines.append("    past_due_grace_seconds: \(plan.pastDueGraceSeconds)")
        }
        lines.append(orgs.isEmpty ? "orgs: []" : "orgs:")
        for org in orgs {
            lines.append("  - {id: \(FieldFormat.text(org.id)), name: \(FieldFormat.text(org.name)), suspended: \(org.suspended)}")
        }
        lines.append(licenses.isEmpty ? "licenses: []" : "licenses:")
        for license in licenses {
            lines.append("  - id: \(FieldFormat.text(license.id))")
            lines.append("    customer: \(FieldFormat.text(license.customer))")
            if !license.org.isEmpty { lines.append("    org: \(FieldFormat.text(license.org))") }
            if !license.project.isEmpty { lines.append("    project: \(FieldFormat.text(license.project))") }
            lines.append("    plan: \(FieldFormat.text(license.plan))")
            lines.append("    status: \(license.status.name)")
            for (key, time) in [("valid_from", license.validFrom), ("valid_until", license.validUntil), ("trial_ends_at", license.trialEndsAt)] where time != 0 {
                lines.append("    \(key): \(Self.time(time))")
            }
            lines.append("    billing_anchor_day: \(license.billingAnchorDay)")
        }
        // Only when there are roles, so that the export of a daemon without identity roles is unchanged.
        if !roles.isEmpty { lines.append("roles:") }
        for role in roles {
            lines.append("  - name: \(FieldFormat.text(role.name))")
            lines.append("    issuer: \(FieldFormat.text(role.issuer))")
            lines.append("    bound_audiences: \(FieldFormat.list(role.audiences.map(FieldFormat.text)))")
            if !role.boundClaims.isEmpty {
                lines.append("    bound_claims: \(FieldFormat.boundClaims(role.boundClaims))")
                lines.append("    bound_claims_type: \(role.boundClaimsMatch.rawValue)")
            }
            lines.append("    user_claim: \(FieldFormat.text(role.userClaim))")
            if !role.license.isEmpty { lines.append("    license: \(FieldFormat.text(role.license))") }
            if !role.licenseClaim.isEmpty {
                lines.append("    license_claim: \(FieldFormat.text(role.licenseClaim))")
                lines.append("    license_mapping: \(FieldFormat.mapping(role.licenseMapping))")
            }
            if !role.orgClaim.isEmpty {
                lines.append("    org_claim: \(FieldFormat.text(role.orgClaim))")
                lines.append("    org_mapping: \(FieldFormat.mapping(role.orgMapping))")
            }
            lines.append("    scopes: \(FieldFormat.list(role.scopes.map(FieldFormat.text)))")
            if !role.scopeClaim.isEmpty { lines.append("    scope_claim: \(FieldFormat.text(role.scopeClaim))") }
            lines.append("    max_ttl_s: \(role.maxTTLSeconds)")
            lines.append("    leeway_s: \(FieldFormat.leeways(role.leewaySeconds))")
        }
        return lines.joined(separator: "\n") + "\n"
    }

    /// Licenses naming an organisation the document does not hold. The wire accepts them (a subscription system
    /// may sync a license before its organisation) but a file does not (`unknown_org`), so an export that holds one
    /// does not apply as it is; `tollgate export` says so.
    public var licensesNamingMissingOrganisations: [LicenseSpec] {
        let orgIDs = Set(orgs.map(\.id))
        return licenses.filter { !$0.org.isEmpty && !orgIDs.contains($0.org) }
    }

    /// A list of flow-style rules, one per line, or `[]`.
    private static func block(_ key: String, _ items: [String], into lines: inout [String]) {
        guard !items.isEmpty else { return lines.append("    \(key): []") }
        lines.append("    \(key):")
        for item in items { lines.append("      - \(item)") }
    }

    /// RFC 3339 when the year has a form in it (`RFC3339.format` marks the others with `ms`), else milliseconds,
    /// which the file also takes.
    private static func time(_ millis: UnixMillis) -> String {
        let text = RFC3339.format(millis)
        return text.hasSuffix("Z") ? text : "\(millis)"
    }
}
