import TollgateModel

/// What a provisioning file (`tollgate apply FILE`) declares: plans, organisations, licenses and identity roles, as
/// the model's own values, so that what is applied is exactly what was read and the diff compares like with like.
///
/// The file is declarative and additive: it states how the objects it names must be. Objects on the daemon that
/// the file does not name are left alone (a file describing one customer must not delete the others).
public struct ProvisioningDocument: Sendable, Hashable {
    public var plans: [Plan]
    public var orgs: [OrgSpec]
    public var licenses: [LicenseSpec]
    /// Identity-provider roles (issue 17): what a verified JWT earns at EXCHANGE. Read by the same model as the
    /// daemon configuration's `identity.roles` (`RoleDocument`); the issuer each names must be one of the daemon's
    /// configured providers (the daemon refuses the put otherwise).
    public var roles: [IdentityRole]
    /// Whether the file has a `roles:` key (`roles: []` included): only then does `apply --prune` delete the roles
    /// it does not name. A file written before roles were policy has none, and pruning with it must not delete the
    /// roles the daemon seeded from its configuration (each deletion is journaled and outlives the configuration).
    public var managesRoles: Bool
    /// The forward-auth routes of an `http:` section, checked by the same reader and rules as the daemon's
    /// configuration (`RouteDocument`, `Validation.routes`). They are not applied: routes are tollgated's
    /// configuration (`http.routes`), which a running daemon reloads on SIGHUP; the file only gets them checked
    /// beside the plans whose scopes they name.
    public var http: RouteTable?

    public init(
        plans: [Plan] = [], orgs: [OrgSpec] = [], licenses: [LicenseSpec] = [], roles: [IdentityRole] = [], managesRoles: Bool = false,
        http: RouteTable? = nil
    ) {
        self.plans = plans
        self.orgs = orgs
        self.licenses = licenses
        self.roles = roles
        self.managesRoles = managesRoles || !roles.isEmpty
        self.http = http
    }

    /// The plan the file declares with this id, to put when the diff says it is created or updated.
    public func plan(_ id: String) -> Plan? { plans.first { $0.id == id } }
    public func org(_ id: String) -> OrgSpec? { orgs.first { $0.id == id } }
    public func license(_ id: String) -> LicenseSpec? { licenses.first { $0.id == id } }
    public func role(_ name: String) -> IdentityRole? { roles.first { $0.name == name } }
}
