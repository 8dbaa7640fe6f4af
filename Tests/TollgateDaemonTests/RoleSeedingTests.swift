import Foundation
import TollgateClient
import TollgateDaemon
import TollgateModel
import XCTest

/// Where identity roles live (issue 17 item 4): the configuration's `identity.roles` seed names the journal has
/// never held; once held, ROLE_PUT (`tollgate apply`) is authoritative, and a deletion is remembered, across a
/// reload (SIGHUP's code path) and a restart.
final class RoleSeedingTests: DaemonTestCase {
    static let issuer = "https://idp.example"

    /// A configuration whose identity section has one provider (a JWKS file: nothing is fetched here) and `roles`.
    func writeConfiguration(roles: [String]) throws {
        let path = harness.directory + "/tollgated.json"
        let jwks = harness.directory + "/jwks.json"
        try #"{"keys": []}"#.write(toFile: jwks, atomically: true, encoding: .utf8)
        let identity = #"{ "providers": [{ "issuer": "\#(Self.issuer)", "jwks_file": "\#(jwks)" }], "roles": [\#(roles.joined(separator: ", "))] }"#
        try #"{ "identity": \#(identity) }"#.write(toFile: path, atomically: true, encoding: .utf8)
        harness.configurationPath = path
        harness.configuration.identity = try DaemonConfiguration.load(path: path).identity
    }

    static func role(_ name: String, ttl: Int = 900) -> String {
        #"{ "name": "\#(name)", "issuer": "\#(issuer)", "bound_audiences": ["tollgate"], "license": "lic", "scopes": ["read"], "max_ttl_s": \#(ttl) }"#
    }

    func roles() async throws -> [String: UInt32] {
        let admin = try await harness.admin()
        defer { Task { await admin.close() } }
        return Dictionary(uniqueKeysWithValues: try await admin.roles().map { ($0.name, $0.maxTTLSeconds) })
    }

    func testTheConfigurationSeedsAndApplyDecidesAcrossReloadAndRestart() async throws {
        try writeConfiguration(roles: [Self.role("ci"), Self.role("people")])
        try await harness.start()
        let seen1 = try await roles()
        XCTAssertEqual(seen1, ["ci": 900, "people": 900], "the empty state was seeded")

        let admin = try await harness.admin()
        var changed = IdentityRole(name: "ci", issuer: Self.issuer, audiences: ["tollgate"], scopes: ["read"])
        changed.license = "lic"
        changed.maxTTLSeconds = 60
        _ = try await admin.putRole(changed)
        _ = try await admin.deleteRole(name: "people", actor: "ops")
        do {
            var stray = changed
            stray.issuer = "https://elsewhere.example"
            _ = try await admin.putRole(stray)
            XCTFail("a role whose issuer has no provider was stored")
        } catch let error as TollgateClientError {
            XCTAssertEqual(error.code, .server(.invalidArgument))
        }
        await admin.close()

        // Reload with the same file: the applied ci stays, the deleted people is not seeded again.
        await harness.daemon!.reload()
        let seen2 = try await roles()
        XCTAssertEqual(seen2, ["ci": 60])
        XCTAssertTrue(harness.logs.text.contains("the configuration's role differs from the journal's"), harness.logs.text)
        XCTAssertTrue(harness.logs.text.contains("the configuration names a role that was deleted"), harness.logs.text)

        // A role the file adds is seeded on reload; all of it survives a restart.
        try writeConfiguration(roles: [Self.role("ci"), Self.role("people"), Self.role("workloads", ttl: 300)])
        await harness.daemon!.reload()
        try await harness.restart()
        let seen3 = try await roles()
        XCTAssertEqual(seen3, ["ci": 60, "workloads": 300])
        let seeded = harness.logs.text.split(separator: "\n").first { $0.contains("identity role seeded from the configuration") && $0.contains("tollgate.role=workloads") }
        XCTAssertTrue(seeded.map { $0.contains("tollgate.actor=config") && $0.contains("tollgate.occasion=reload") } ?? false, harness.logs.text)
    }
}
