import NIOCore
import TollgateModel
import XCTest

@testable import TollgateEngine

/// Identity roles as journaled policy (issue 17 item 4): put through the validation source, stored normalised,
/// deleted with a remembered name, and kept through replay of records 18 and 19 and through snapshots.
final class RoleStateTests: XCTestCase {
    func role(_ name: String = "ci", audiences: [String] = ["tollgate"]) -> IdentityRole {
        var role = IdentityRole(name: name, issuer: "https://idp.example", audiences: audiences, scopes: ["read"])
        role.boundClaims = [.init(claim: "repository", values: ["acme/*"]), .init(claim: "groups", values: ["ops"])]
        role.boundClaimsMatch = .glob
        role.license = "lic_acme"
        return role
    }

    func put(_ f: EngineFixture, _ role: IdentityRole, issuers: Set<String>? = nil) throws -> StateChange? {
        let (_, change) = try f.state.putRole(role, at: f.now, issuers: issuers)
        f.record(change)
        return change
    }

    func testPutNormalisesAndAPutOfTheSameRoleChangesNothing() throws {
        let f = EngineFixture()
        let change = try put(f, role())
        XCTAssertEqual(change?.typeCode, 18)
        XCTAssertEqual(f.state.roles["ci"]?.boundClaims.map(\.claim), ["groups", "repository"], "bound claims stored in claim order")
        var reordered = role()
        reordered.boundClaims.reverse()
        XCTAssertNil(try put(f, reordered), "the same role with its claims in another order is no change")
        XCTAssertNotNil(try put(f, role(audiences: ["tollgate", "other"])), "another audience is a change")
        XCTAssertEqual(f.state.roles["ci"]?.audiences, ["tollgate", "other"])
    }

    func testPutRefusesWhatTheValidationSourceRefusesAndUnknownIssuers() throws {
        let f = EngineFixture()
        var noAudience = role()
        noAudience.audiences = []
        XCTAssertThrowsError(try put(f, noAudience)) { error in
            XCTAssertEqual((error as? EngineError)?.code, .invalidArgument)
            XCTAssertEqual((error as? EngineError)?.validation?.field, "bound_audiences")
        }
        var twice = role()
        twice.boundClaims.append(.init(claim: "groups", values: ["dev"]))
        XCTAssertThrowsError(try put(f, twice), "a claim bound twice")
        var twoWays = role()
        twoWays.orgClaim = "org"
        twoWays.orgMapping = ["acme": "org_acme"]
        XCTAssertThrowsError(try put(f, twoWays), "a license and an org claim")
        XCTAssertThrowsError(try put(f, role(), issuers: ["https://other.example"])) { error in
            XCTAssertTrue("\(error)".contains("no provider in identity.providers has issuer"), "\(error)")
        }
        XCTAssertThrowsError(try put(f, role(), issuers: [])) { error in
            XCTAssertTrue("\(error)".contains("identity is not configured"), "\(error)")
        }
        XCTAssertNotNil(try put(f, role(), issuers: ["https://idp.example"]))
        XCTAssertEqual(f.changes.count, 1, "refused puts journal nothing")
    }

    func testDeleteRemembersTheNameUntilItIsPutAgain() throws {
        let f = EngineFixture()
        _ = try put(f, role())
        XCTAssertFalse(f.state.seedsRole(named: "ci"), "a role held is not seeded")
        XCTAssertTrue(f.state.seedsRole(named: "never"), "a name never held is")
        let (deleted, change) = try f.state.deleteRole(DeleteRequest(id: "ci", actor: "alice uid=0"), at: f.now)
        f.record(change)
        XCTAssertEqual(deleted.name, "ci")
        XCTAssertNil(f.state.roles["ci"])
        XCTAssertFalse(f.state.seedsRole(named: "ci"), "a deleted role is not seeded again")
        XCTAssertThrowsError(try f.state.deleteRole(DeleteRequest(id: "ci"), at: f.now)) { XCTAssertEqual(($0 as? EngineError)?.code, .notFound) }
        _ = try put(f, role())
        XCTAssertEqual(f.state.deletedRoles, [], "putting it again forgets the deletion")
    }

    func testRolesAndDeletionsSurviveReplayAndSnapshots() throws {
        let f = EngineFixture()
        _ = try put(f, role("ci"))
        _ = try put(f, role("gone"))
        f.record(try f.state.deleteRole(DeleteRequest(id: "gone", actor: "ops"), at: f.now).change)
        try f.restart()
        XCTAssertEqual(f.state.roles.keys.sorted(), ["ci"])
        XCTAssertEqual(f.state.deletedRoles, ["gone"])
        try f.takeSnapshot()
        _ = try put(f, role("later"))
        try f.restart()
        XCTAssertEqual(f.state.roles.keys.sorted(), ["ci", "later"])
        XCTAssertEqual(f.state.roles["ci"], role("ci").normalized)
        XCTAssertEqual(f.state.deletedRoles, ["gone"], "the snapshot keeps the deleted names")
    }

    func testListingPagesInNameOrder() throws {
        let f = EngineFixture()
        for name in ["c", "a", "b"] { _ = try put(f, role(name)) }
        let first = f.state.listRoles(after: "", limit: 2)
        XCTAssertEqual(first.roles.map(\.name), ["a", "b"])
        XCTAssertTrue(first.more)
        let second = f.state.listRoles(after: "b", limit: 2)
        XCTAssertEqual(second.roles.map(\.name), ["c"])
        XCTAssertFalse(second.more)
    }

    func testRoleRecordsRejectMalformedPayloads() throws {
        let glob = try StateChange.rolePut(role(), at: 1).encodedPayload()
        XCTAssertEqual(try StateChange.decode(type: 18, payload: ByteBuffer(bytes: glob)), .rolePut(role(), at: 1))
        // The one byte in which the glob role and its exact twin differ is bound_claims_type; 2 is not defined.
        var exact = role()
        exact.boundClaimsMatch = .exact
        let twin = try StateChange.rolePut(exact, at: 1).encodedPayload()
        let index = try XCTUnwrap(zip(glob, twin).enumerated().first { $0.element.0 != $0.element.1 }?.offset)
        var bad = glob
        bad[index] = 2
        XCTAssertThrowsError(try StateChange.decode(type: 18, payload: ByteBuffer(bytes: bad)))
        XCTAssertThrowsError(try StateChange.decode(type: 18, payload: ByteBuffer(bytes: glob.dropLast())), "a truncated record")
        XCTAssertEqual(try StateChange.decode(type: 19, payload: ByteBuffer(bytes: try StateChange.roleDeleted(name: "ci", actor: "ops", at: 5).encodedPayload())),
            .roleDeleted(name: "ci", actor: "ops", at: 5))
    }

    /// A mapping's pairs travel in ascending order of their keys' bytes, the one encoding of a mapping: pairs out of
    /// order are malformed, so that a decoded role always encodes to the bytes it came from (found by fuzz-messages).
    func testMappingPairsOutOfOrderAreMalformed() throws {
        var mapped = role()
        mapped.licenseClaim = "org"
        mapped.license = ""
        mapped.licenseMapping = ["k2zz": "lic_b", "k1zz": "lic_a"]
        let payload = try StateChange.rolePut(mapped, at: 1).encodedPayload()
        XCTAssertEqual(try StateChange.decode(type: 18, payload: ByteBuffer(bytes: payload)), .rolePut(mapped, at: 1))
        let first = try XCTUnwrap(payload.indices.first { Array(payload[$0..<min($0 + 4, payload.count)]) == Array("k1zz".utf8) })
        let second = try XCTUnwrap(payload.indices.first { Array(payload[$0..<min($0 + 4, payload.count)]) == Array("k2zz".utf8) })
        XCTAssertLessThan(first, second, "encoded in ascending order")
        var swapped = payload
        swapped.replaceSubrange(first..<first + 4, with: Array("k2zz".utf8))
        swapped.replaceSubrange(second..<second + 4, with: Array("k1zz".utf8))
        XCTAssertThrowsError(try StateChange.decode(type: 18, payload: ByteBuffer(bytes: swapped)))
    }
}
