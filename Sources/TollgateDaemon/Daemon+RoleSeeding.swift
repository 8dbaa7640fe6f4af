import Logging
import TollgateCore
import TollgateModel

/// Where identity roles live (issue 17 item 4): as for plans, **the journal is the truth**. The configuration's
/// `identity.roles` seed a role only when the state has never held its name, or held it and did not delete it
/// through ROLE_DELETE (`LicensingState.seedsRole`): a role changed by `tollgate apply` (or ROLE_PUT) is never put
/// back by the configuration, and a role deleted by `apply --prune` or `tollgate role delete` stays deleted across
/// restarts and reloads. Once a role is in the journal, change it with `tollgate apply`; editing the configuration
/// changes nothing, and says so in the log.
///
/// Every seeding is one journal record (record 18, durable before the daemon serves or the reload completes) and
/// one audit line with `tollgate.actor=config`.
extension Daemon {
    struct RoleSeeding: Equatable {
        var created: [String] = []
        /// Configured roles that exist with other contents, or that were deleted; the journal's word stands.
        var differing: [String] = []
        var deleted: [String] = []
    }

    func seedRoles(_ roles: [IdentityRole], into core: ApplicationCore, occasion: String) async throws -> RoleSeeding {
        var seeding = RoleSeeding()
        for role in roles {
            // The test and the put under one lock hold: a ROLE_PUT or ROLE_DELETE is never overwritten here.
            guard try await core.seedRoleDurably(role) else {
                let (existing, deleted) = core.withState { ($0.roles[role.name], $0.deletedRoles.contains(role.name)) }
                if deleted {
                    seeding.deleted.append(role.name)
                    logger.notice("the configuration names a role that was deleted (ROLE_DELETE); it is not seeded again (remove it from identity.roles, or put it with tollgate apply)", metadata: [
                        "tollgate.role": "\(role.name)", "tollgate.occasion": "\(occasion)",
                    ])
                } else if let existing, existing != role.normalized {
                    seeding.differing.append(role.name)
                    logger.notice("the configuration's role differs from the journal's; the journal's stays (change it with tollgate apply)", metadata: [
                        "tollgate.role": "\(role.name)", "tollgate.occasion": "\(occasion)",
                    ])
                }
                continue
            }
            seeding.created.append(role.name)
            logger.notice("identity role seeded from the configuration", metadata: [
                "tollgate.audit": "1", "tollgate.actor": "config", "tollgate.occasion": "\(occasion)", "tollgate.role": "\(role.name)",
                "tollgate.issuer": "\(role.issuer)",
            ])
        }
        return seeding
    }
}
