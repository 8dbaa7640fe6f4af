import TollgateModel

/// Identity roles as policy (issue 17 item 4): put, deleted and listed like plans, journaled (records 18 and 19),
/// kept in snapshots, and so changed live by `tollgate apply` and ROLE_PUT / ROLE_DELETE.
///
/// Where roles come from: **the journal is the truth**, as for plans. The daemon's configuration
/// (`identity.roles`) seeds a role only when the state has never held that name, or held it and did not delete
/// it through ROLE_DELETE (`deletedRoles`): a role put by `apply` is never overwritten by the configuration, and a
/// role deleted by `apply --prune` or `tollgate role delete` does not come back at the next start or reload.
extension LicensingState {
    /// Puts a role (validated by `Validation.identityRole`, stored normalised). Nil change when it is already
    /// stored exactly so. `issuers`, when given, are those the daemon has a key source for (its configured
    /// providers): a role naming another could never verify a token, so it is refused.
    public mutating func putRole(_ role: IdentityRole, at now: Timestamp, issuers: Set<String>? = nil) throws -> (role: IdentityRole, change: StateChange?) {
        let role = role.normalized
        try Validate.run { () throws(ValidationError) in try Validation.identityRole(role) }
        if let issuers, !issuers.contains(role.issuer) {
            throw EngineError(.invalidArgument, issuers.isEmpty
                ? "identity is not configured on this daemon: a role needs a provider for its issuer (identity.providers in tollgated's configuration)"
                : "issuer: no provider in identity.providers has issuer \(Self.printable(role.issuer)); add one to tollgated's configuration first")
        }
        guard roles[role.name] != role else { return (role, nil) }
        let change = StateChange.rolePut(role, at: now.millis)
        apply(change)
        return (role, change)
    }

    /// Deletes a role. Tokens it minted stay valid until they expire (revoke them by subject or license to end
    /// them sooner); exchanges under it are refused from now on. Returns the role as it was.
    public mutating func deleteRole(_ request: DeleteRequest, at now: Timestamp) throws -> (role: IdentityRole, change: StateChange) {
        try Validate.run { () throws(ValidationError) in
            try Validation.identifier(request.id, "a role name", field: "name")
            try Validation.text(request.actor, max: Limits.maxReason, "the actor", field: "actor")
        }
        guard let role = roles[request.id] else { throw EngineError.notFound("role \(Self.printable(request.id)) does not exist") }
        let change = StateChange.roleDeleted(name: request.id, actor: request.actor, at: now.millis)
        apply(change)
        return (role, change)
    }

    /// Roles in ascending name order after `after`, at most `limit`; `more` when others follow.
    public func listRoles(after: String, limit: Int) -> (roles: [IdentityRole], more: Bool) {
        let names = Self.firstIDs(roles.keys, after: after, count: limit + 1)
        return (names.prefix(limit).compactMap { roles[$0] }, names.count > limit)
    }

    /// Whether the configuration may seed a role of this name: never held, or not deleted through ROLE_DELETE.
    public func seedsRole(named name: String) -> Bool { roles[name] == nil && !deletedRoles.contains(name) }
}
