import ArgumentParser
import Foundation
import TollgateClient
import TollgateModel

/// `tollgate role list|delete`: the identity roles the daemon verifies EXCHANGE against (issue 17). Roles are put by
/// `tollgate apply` (a file's `roles:`), as plans are, or seeded from tollgated's `identity.roles`.
struct RoleCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "role", abstract: "List or delete identity roles (put them with tollgate apply).", subcommands: [List.self, Delete.self])

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List identity roles in name order (--json: every field).")
        @OptionGroup var global: GlobalOptions
        @OptionGroup var options: ListOptions

        func run() async throws {
            let roles = try await call(global, admin: true) { try await $0.roles() }
            printListing(roles, global: global, limit: options.limit, json: \.json) { role in
                let target = !role.license.isEmpty ? "license=\(role.license)"
                    : !role.licenseClaim.isEmpty ? "license_claim=\(role.licenseClaim)" : "org_claim=\(role.orgClaim)"
                return "\(role.name)  issuer=\(role.issuer)  audiences=\(PlanCommand.names(role.audiences))  \(target)"
                    + "  scopes=\(PlanCommand.names(role.scopes))  max_ttl_s=\(role.maxTTLSeconds)"
            }
        }
    }

    struct Delete: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Delete an identity role: exchanges under it are refused from now on.",
            discussion: """
                Tokens it minted stay valid until they expire (revoke them by subject or license to end them sooner). \
                The deletion is journaled: a role tollgated's configuration names is not seeded again.
                """)
        @OptionGroup var global: GlobalOptions
        @Argument(help: "Role name.") var name: String
        @Option(help: "Who deletes (an operator's name; journaled and logged with the caller's uid).") var actor: String = ""

        func run() async throws {
            let role = try await call(global, admin: true) { try await $0.deleteRole(name: name, actor: actor) }
            printDeleted(role.json, global: global, line: "deleted role \(role.name) (issuer \(role.issuer))")
        }
    }
}

extension IdentityRole {
    /// The role in the keys of the configuration's `identity.roles` and a provisioning file's `roles:`.
    var json: [String: Any] {
        var object: [String: Any] = [
            "name": name, "issuer": issuer, "bound_audiences": audiences,
            "bound_claims": Dictionary(uniqueKeysWithValues: boundClaims.map { ($0.claim, $0.values) }),
            "bound_claims_type": boundClaimsMatch.rawValue, "user_claim": userClaim, "scopes": scopes, "max_ttl_s": maxTTLSeconds,
            "leeway_s": ["exp": leewaySeconds.exp, "nbf": leewaySeconds.nbf, "iat": leewaySeconds.iat],
        ]
        if !license.isEmpty { object["license"] = license }
        if !licenseClaim.isEmpty {
            object["license_claim"] = licenseClaim
            object["license_mapping"] = licenseMapping
        }
        if !orgClaim.isEmpty {
            object["org_claim"] = orgClaim
            object["org_mapping"] = orgMapping
        }
        if !scopeClaim.isEmpty { object["scope_claim"] = scopeClaim }
        return object
    }
}
