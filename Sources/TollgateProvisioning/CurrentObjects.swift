import TollgateModel

/// The objects as they are on the daemon, by id, that a document is compared with. A missing id means the object
/// does not exist. It needs to hold only the ids the document names (the CLI fetches those), since objects the
/// document does not name are neither compared nor touched.
public struct CurrentObjects: Sendable, Hashable {
    public var plans: [String: Plan]
    public var orgs: [String: OrgSpec]
    public var licenses: [String: LicenseSpec]
    /// Identity roles by name.
    public var roles: [String: IdentityRole]

    public init(plans: [String: Plan] = [:], orgs: [String: OrgSpec] = [:], licenses: [String: LicenseSpec] = [:], roles: [String: IdentityRole] = [:]) {
        self.plans = plans
        self.orgs = orgs
        self.licenses = licenses
        self.roles = roles
    }

    /// From lists of values (later duplicates win, as later puts would).
    public init(plans: [Plan], orgs: [OrgSpec] = [], licenses: [LicenseSpec] = [], roles: [IdentityRole] = []) {
        self.init(
            plans: Dictionary(plans.map { ($0.id, $0) }, uniquingKeysWith: { $1 }),
            orgs: Dictionary(orgs.map { ($0.id, $0) }, uniquingKeysWith: { $1 }),
            licenses: Dictionary(licenses.map { ($0.id, $0) }, uniquingKeysWith: { $1 }),
            roles: Dictionary(roles.map { ($0.name, $0) }, uniquingKeysWith: { $1 }))
    }

    /// The objects after every put of `document` succeeded: what the daemon holds after `tollgate apply`, used for
    /// dry runs and to check that applying twice changes nothing the second time.
    public func applying(_ document: ProvisioningDocument, prune: Bool = false) -> CurrentObjects {
        var next = prune ? CurrentObjects() : self
        if prune && !document.managesRoles { next.roles = roles }  // a file without `roles:` leaves them alone
        for org in document.orgs { next.orgs[org.id] = org }
        for plan in document.plans { next.plans[plan.id] = plan }
        for license in document.licenses { next.licenses[license.id] = license }
        for role in document.roles { next.roles[role.name] = role }
        return next
    }
}
