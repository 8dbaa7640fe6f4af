import TollgateModel
import XCTest

@testable import TollgateProvisioning

/// Identity roles in a provisioning file (issue 17 item 4): read by the role document model the daemon's
/// configuration uses, diffed field by field in file terms, pruned first, and exported so that applying the export
/// changes nothing.
final class RoleProvisioningTests: XCTestCase {
    let yaml = """
        plans:
          - {id: pro, entitlements: [read, deploy]}
        licenses:
          - {id: lic_acme, customer: Acme, plan: pro, status: active}
        roles:
          - name: ci
            issuer: https://token.actions.githubusercontent.com
            bound_audiences: [https://tollgate.example.com]
            bound_claims: {sub: "repo:acme/*:ref:refs/heads/main", groups: [ops, dev]}
            bound_claims_type: glob
            license_claim: repository_owner
            license_mapping: {acme: lic_acme}
            scopes: [read, deploy]
            max_ttl_s: 900
            leeway_s: {exp: 30, nbf: 30}
          - {name: people, issuer: "https://login.example.com", bound_audiences: ["0oa1tollgate"], user_claim: email,
             org_claim: org, org_mapping: {acme: org_acme}, scopes: [read], scope_claim: scp}
        """

    func testRolesParseWithTheDaemonsKeysAndDefaults() throws {
        let document = try ProvisioningDocument.parse(yaml: yaml)
        XCTAssertEqual(document.roles.map(\.name), ["ci", "people"])
        let ci = try XCTUnwrap(document.role("ci"))
        XCTAssertEqual(ci.boundClaims, [.init(claim: "groups", values: ["ops", "dev"]), .init(claim: "sub", values: ["repo:acme/*:ref:refs/heads/main"])])
        XCTAssertEqual(ci.boundClaimsMatch, .glob)
        XCTAssertEqual(ci.userClaim, "sub")
        XCTAssertEqual(ci.licenseMapping, ["acme": "lic_acme"])
        XCTAssertEqual(ci.leewaySeconds, .init(exp: 30, nbf: 30, iat: 0))
        XCTAssertEqual(document.role("people")?.maxTTLSeconds, 900, "the default lifetime")
    }

    func testARoleIsRefusedForTheSameReasonsAsInTheConfiguration() {
        let missingAudience = "roles:\n  - {name: ci, issuer: \"https://idp\", license: lic, scopes: [read]}\n"
        XCTAssertThrowsError(try ProvisioningDocument.parse(yaml: missingAudience)) { error in
            XCTAssertEqual((error as? ProvisioningError)?.code, "missing_key")
            XCTAssertTrue("\(error)".contains("roles[0].bound_audiences"), "\(error)")
        }
        let typo = "roles:\n  - {name: ci, issuer: \"https://idp\", bound_audience: [a], license: lic, scopes: [read]}\n"
        XCTAssertThrowsError(try ProvisioningDocument.parse(yaml: typo)) { error in
            XCTAssertEqual((error as? ProvisioningError)?.code, "unknown_key")
            XCTAssertTrue("\(error)".contains("bound_audiences"), "the suggestion names the key: \(error)")
        }
        let twice = "roles:\n  - {name: ci, issuer: \"https://idp\", bound_audiences: [a], license: lic, scopes: [read]}\n  - {name: ci, issuer: \"https://idp\", bound_audiences: [b], license: lic, scopes: [read]}\n"
        XCTAssertThrowsError(try ProvisioningDocument.parse(yaml: twice)) { XCTAssertEqual(($0 as? ProvisioningError)?.code, "duplicate_id") }
        let ttl = "roles:\n  - {name: ci, issuer: \"https://idp\", bound_audiences: [a], license: lic, scopes: [read], max_ttl_s: 0}\n"
        XCTAssertThrowsError(try ProvisioningDocument.parse(yaml: ttl)) { XCTAssertEqual(($0 as? ProvisioningError)?.code, "out_of_range") }
    }

    func testTheDiffShowsRoleChangesInFileTermsAndPruneDeletesRolesFirst() throws {
        let document = try ProvisioningDocument.parse(yaml: yaml)
        let onEmpty = ProvisioningPlan.diff(document: document, current: CurrentObjects())
        XCTAssertEqual(onEmpty.suffix(2), [.create(.role, id: "ci"), .create(.role, id: "people")], "roles are put last")
        var running = try XCTUnwrap(document.role("ci"))
        running.audiences = ["tollgate"]
        running.maxTTLSeconds = 600
        running.boundClaims.reverse()  // order alone is no change
        let current = CurrentObjects(plans: document.plans, licenses: document.licenses, roles: [running, IdentityRole(name: "old", issuer: "https://idp", audiences: ["a"], scopes: ["read"])])
        let changes = ProvisioningPlan.diff(document: document, current: current, prune: true)
        XCTAssertTrue(changes.contains(.update(.role, id: "ci", fieldChanges: [
            .init(field: "bound_audiences", old: "[tollgate]", new: "[\"https://tollgate.example.com\"]"),
            .init(field: "max_ttl_s", old: "600", new: "900"),
        ])), "\(changes)")
        XCTAssertEqual(changes.first { if case .delete = $0 { true } else { false } }, .delete(.role, id: "old"), "roles are pruned before anything else")
        let rendered = ProvisioningPlan.render(changes)
        XCTAssertTrue(rendered.contains("~ role ci: max_ttl_s 600 -> 900"), rendered)
        XCTAssertTrue(rendered.contains("+ role people"), rendered)
        XCTAssertTrue(rendered.contains("- role old"), rendered)
        // Applied, the same file changes nothing.
        let after = current.applying(document, prune: true)
        XCTAssertTrue(ProvisioningPlan.diff(document: document, current: after, prune: true).allSatisfy { !$0.isChange })
    }

    func testTheExportOfRolesAppliesWithoutChange() throws {
        let document = try ProvisioningDocument.parse(yaml: yaml)
        let exported = try ProvisioningDocument.parse(yaml: document.yaml())
        XCTAssertEqual(exported.roles, document.roles)
        XCTAssertTrue(ProvisioningPlan.diff(document: exported, current: CurrentObjects(plans: document.plans, licenses: document.licenses, roles: document.roles)).allSatisfy { !$0.isChange })
        XCTAssertFalse(ProvisioningDocument(plans: [Plan(id: "p", entitlements: ["*"])]).yaml().contains("roles"), "no roles: no roles section")
    }

    /// A file written before roles were policy has no `roles:` key: `apply --prune` with it must not delete the roles
    /// the daemon seeded from its configuration (a deletion is journaled and outlives the configuration). An explicit
    /// `roles: []` does prune them.
    func testPruneLeavesRolesAloneUnlessTheFileHasARolesKey() throws {
        let seeded = IdentityRole(name: "seeded", issuer: "https://idp", audiences: ["a"], scopes: ["read"])
        let withoutKey = try ProvisioningDocument.parse(yaml: "plans:\n  - {id: pro, entitlements: [read]}\n")
        XCTAssertFalse(withoutKey.managesRoles)
        let current = CurrentObjects(plans: withoutKey.plans, roles: [seeded])
        let changes = ProvisioningPlan.diff(document: withoutKey, current: current, prune: true)
        XCTAssertFalse(changes.contains(.delete(.role, id: "seeded")), "\(changes)")
        XCTAssertEqual(current.applying(withoutKey, prune: true).roles["seeded"], seeded)

        let emptyRoles = try ProvisioningDocument.parse(yaml: "plans:\n  - {id: pro, entitlements: [read]}\nroles: []\n")
        XCTAssertTrue(emptyRoles.managesRoles)
        XCTAssertTrue(ProvisioningPlan.diff(document: emptyRoles, current: current, prune: true).contains(.delete(.role, id: "seeded")))
        XCTAssertNil(current.applying(emptyRoles, prune: true).roles["seeded"])
    }
}
