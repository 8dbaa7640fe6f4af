import Foundation
import TollgateDaemon
import TollgateHTTP
import TollgateModel
import XCTest

/// The `http.stripe` section: every key read strictly, the secrets read from files when the policy is resolved
/// (start-up, reload, --check-config), and never repeated in an error.
final class StripeConfigurationTests: XCTestCase {
    var directory = ""

    override func setUpWithError() throws {
        directory = NSTemporaryDirectory() + "tg-stripe-config-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(atPath: directory) }

    func parse(_ stripe: String) throws -> DaemonConfiguration {
        let prefix = #"{ "http": { "stripe": "#
        return try DaemonConfiguration.parse(json: Data((prefix + stripe + " } }").utf8))
    }

    func secretFile(_ name: String, _ content: String) throws -> String {
        let path = directory + "/" + name
        try Data(content.utf8).write(to: URL(fileURLWithPath: path))
        return path
    }

    func testEveryKeyIsReadAndTheSecretsAreResolved() throws {
        let one = try secretFile("one", "whsec_abcdefghijklmnop\n")
        let two = try secretFile("two", "whsec_qrstuvwxyz012345")
        let config = try parse(#"""
            { "path": "/hooks/stripe", "secret_files": ["\#(one)", "\#(two)"], "tolerance_s": 120, "event_retention_s": 604800,
              "max_body_bytes": 4096,
              "mapping": { "prices": { "price_1": "pro" }, "products": { "prod_1": "team" }, "lookup_keys": { "basic_m": "basic" },
                           "customers": { "cus_1": "org_1" }, "org_metadata_key": "org", "license_metadata_key": "lic",
                           "license_prefix": "L_", "period_end_slack_s": -1 } }
            """#)
        let stripe = try XCTUnwrap(config.http?.policy.stripe)
        XCTAssertEqual(stripe.path, "/hooks/stripe")
        XCTAssertEqual(stripe.secrets, [], "secrets are not part of the parsed configuration")
        XCTAssertEqual(stripe.toleranceSeconds, 120)
        XCTAssertEqual(stripe.eventRetentionMillis, 604_800_000)
        XCTAssertEqual(stripe.maxBodyBytes, 4096)
        XCTAssertEqual(stripe.mapping.plansByPrice, ["price_1": "pro"])
        XCTAssertEqual(stripe.mapping.plansByProduct, ["prod_1": "team"])
        XCTAssertEqual(stripe.mapping.plansByLookupKey, ["basic_m": "basic"])
        XCTAssertEqual(stripe.mapping.orgsByCustomer, ["cus_1": "org_1"])
        XCTAssertEqual(stripe.mapping.orgMetadataKey, "org")
        XCTAssertEqual(stripe.mapping.licenseMetadataKey, "lic")
        XCTAssertEqual(stripe.mapping.licensePrefix, "L_")
        XCTAssertEqual(stripe.mapping.periodEndSlackSeconds, -1)
        let resolved = try XCTUnwrap(try config.http?.resolvedPolicy().stripe)
        XCTAssertEqual(resolved.secrets, [Array("whsec_abcdefghijklmnop".utf8), Array("whsec_qrstuvwxyz012345".utf8)])
        XCTAssertFalse("\(resolved)".contains("whsec_"), "the description never shows a secret")
    }

    func testRefusals() throws {
        let one = try secretFile("one", "whsec_abcdefghijklmnop")
        let cases: [(String, ConfigurationError.Code)] = [
            (#"{ "secret_files": ["\#(one)"], "secret": "whsec_inline" }"#, .unknownKey),
            (#"{ "secret_files": ["\#(one)"], "mapping": { "plans": {} } }"#, .unknownKey),
            (#"{ "secret_files": ["\#(one)"], "path": "no-slash" }"#, .invalidValue),
            (#"{ "secret_files": ["\#(one)"], "path": "/v1/forward-auth" }"#, .invalidValue),
            (#"{ "secret_files": ["relative/path"] }"#, .invalidValue),
            (#"{ "secret_files": ["\#(one)"], "tolerance_s": 0 }"#, .outOfRange),
            (#"{ "secret_files": ["\#(one)"], "event_retention_s": 60 }"#, .outOfRange),
            (#"{ "secret_files": ["\#(one)"], "mapping": { "prices": { "price_1": "not a plan id" } } }"#, .invalidValue),
            (#"{ "secret_files": ["\#(one)"], "mapping": { "prices": { "price 1": "pro" } } }"#, .invalidValue),
            (#"{ "secret_files": ["\#(one)"], "mapping": { "prices": { "price_1": 3 } } }"#, .wrongType),
        ]
        for (json, code) in cases {
            XCTAssertThrowsError(try parse(json), json) { XCTAssertEqual(($0 as? ConfigurationError)?.code, code, "\(json): \($0)") }
        }
    }

    func testSecretsAreCheckedWhenResolvedAndNeverRepeated() throws {
        let short = try secretFile("short", "whsec")
        let spaced = try secretFile("spaced", "whsec_has a space in it")
        let good = try secretFile("good", "whsec_abcdefghijklmnop")
        let cases: [(String, ConfigurationError.Code)] = [
            (#"{ }"#, .missingKey),
            (#"{ "secret_files": ["\#(good)", "\#(good)", "\#(good)"] }"#, .missingKey),
            (#"{ "secret_files": ["\#(directory)/missing"] }"#, .unreadable),
            (#"{ "secret_files": ["\#(short)"] }"#, .invalidValue),
            (#"{ "secret_files": ["\#(spaced)"] }"#, .invalidValue),
        ]
        for (json, code) in cases {
            let config = try parse(json)
            XCTAssertThrowsError(try config.http?.resolvedPolicy(), json) { error in
                XCTAssertEqual((error as? ConfigurationError)?.code, code, "\(json): \(error)")
                XCTAssertFalse("\(error)".contains("has a space"), "the error repeats the secret: \(error)")
            }
        }
    }
}
