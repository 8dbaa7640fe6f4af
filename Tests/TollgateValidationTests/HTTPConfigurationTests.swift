import Foundation
import TollgateDaemon
import TollgateHTTP
import TollgateModel
import TollgateProvisioning
import XCTest

/// The daemon configuration's `http` section: routes go through the one route document model and the validation
/// source (stable codes, the field's path), the TCP listener is loopback only, unknown keys are refused.
final class HTTPConfigurationTests: XCTestCase {
    private func parse(_ http: String) throws -> DaemonConfiguration {
        try DaemonConfiguration.parse(json: Data(#"{ "http": \#(http) }"#.utf8))
    }

    private func refusal(_ http: String) -> ConfigurationError? {
        do {
            _ = try parse(http)
            return nil
        } catch {
            return error as? ConfigurationError
        }
    }

    func testReadsACompleteSection() throws {
        let config = try parse(#"""
            { "socket": "/tmp/x.sock", "socket_mode": "0666", "tcp": "127.0.0.1:8181", "token_header": "X-Api-Key", "token_query": "api_key",
              "access": { "uids": [1000] },
              "limits": { "max_header_bytes": 4096, "max_body_bytes": 0, "max_connections": 10, "idle_timeout_ms": 500 },
              "default": "allow_unmetered",
              "routes": [ { "method": "GET", "path": "/v1/items/{id}", "scopes": ["read"], "meter": "requests" },
                          { "path": "/v1/*", "features": ["api"] } ] }
            """#)
        let http = try XCTUnwrap(config.http)
        XCTAssertEqual(http.socket, "/tmp/x.sock")
        XCTAssertEqual(http.socketMode, 0o666)
        XCTAssertEqual(http.tcp?.host, "127.0.0.1")
        XCTAssertEqual(http.tcp?.port, 8181)
        XCTAssertEqual(http.access.uids, [1000])
        XCTAssertEqual(http.limits, HTTPLimits(maxHeaderBytes: 4096, maxBodyBytes: 0, maxConnections: 10, idleTimeoutMilliseconds: 500))
        XCTAssertEqual(http.policy.tokenHeader, "X-Api-Key")
        XCTAssertEqual(http.policy.tokenQueryParameter, "api_key")
        XCTAssertEqual(http.policy.routes.fallback, .allowUnmetered)
        XCTAssertEqual(http.policy.routes.rules.map(\.path.description), ["/v1/items/{id}", "/v1/*"])
        XCTAssertEqual(http.policy.routes.rules[0].cost, 1)
        XCTAssertNil(DaemonConfiguration.embeddedDefault().http, "no HTTP listener unless asked for")
        XCTAssertEqual(try parse("{}").http?.policy.routes, RouteTable(), "an empty section: the defaults, deny")
    }

    func testRouteErrorsCarryTheValidationSourcesCodeAndField() {
        let cases: [(String, ValidationError.Code, String)] = [
            (#"{ "routes": [ { "path": "v1" } ] }"#, .invalidValue, "http.routes[0].path"),
            (#"{ "routes": [ { "path": "/v1/*/x" } ] }"#, .invalidValue, "http.routes[0].path"),
            (#"{ "routes": [ { "method": "get", "path": "/x" } ] }"#, .invalidValue, "http.routes[0].method"),
            (#"{ "routes": [ { "path": "/x", "meter": "a b" } ] }"#, .invalidValue, "http.routes[0].meter"),
            (#"{ "routes": [ { "path": "/x", "cost": 2 } ] }"#, .invalidValue, "http.routes[0].cost"),
            (#"{ "routes": [ { "path": "/x", "scopes": ["a", "a"] } ] }"#, .invalidValue, "http.routes[0].scopes[1]"),
            (#"{ "routes": [ { "path": "/x", "scope": ["a"] } ] }"#, .unknownKey, "http.routes[0].scope"),
            (#"{ "routes": [ { "method": "GET" } ] }"#, .missingKey, "http.routes[0].path"),
            (#"{ "routes": [ { "path": "/x" }, { "path": "/x" } ] }"#, .invalidValue, "http.routes[1]"),
            (#"{ "default": "allow" }"#, .invalidName, "http.default"),
            (#"{ "routes": [ { "path": 5 } ] }"#, .wrongType, "http.routes[0].path"),
            (#"{ "tcp": "0.0.0.0:8181" }"#, .invalidValue, "http.tcp"),
            (#"{ "tcp": "localhost:8181" }"#, .invalidValue, "http.tcp"),
            (#"{ "tcp": "127.0.0.1:99999" }"#, .outOfRange, "http.tcp"),
        ]
        for (json, code, field) in cases {
            let error = refusal(json)
            XCTAssertEqual(error?.validation?.code, code, json)
            XCTAssertEqual(error?.validation?.field, field, json)
            XCTAssertTrue(error?.message.hasPrefix(field) ?? false, "\(json): \(error?.message ?? "accepted")")
        }
    }

    /// One verdict: the same bad `http` section in the daemon's JSON configuration and in a `tollgate apply` file
    /// (JSON is YAML) is refused with the same code, at the same path, with the same sentence.
    func testTheApplyFileGetsTheSameVerdictOnRoutes() throws {
        let sections = [
            #"{ "routes": [ { "path": "v1" } ] }"#, #"{ "routes": [ { "method": "get", "path": "/x" } ] }"#,
            #"{ "routes": [ { "path": "/x", "cost": 2 } ] }"#, #"{ "routes": [ { "path": "/x", "scope": ["a"] } ] }"#,
            #"{ "routes": [ { "method": "GET" } ] }"#, #"{ "routes": [ { "path": "/x" }, { "path": "/x" } ] }"#,
            #"{ "default": "allow" }"#, #"{ "routes": [ { "path": "/x", "meter": "a b" } ] }"#,
        ]
        for section in sections {
            let json = try XCTUnwrap(refusal(section), section)
            XCTAssertThrowsError(try ProvisioningDocument.parse(yaml: #"{ "http": \#(section) }"#), section) { error in
                let yaml = error as! ProvisioningError
                XCTAssertEqual(yaml.code, json.validation?.code.rawValue, section)
                XCTAssertEqual(yaml.path, json.validation?.field, section)
                XCTAssertEqual(yaml.message, json.message, section)
            }
        }
        let good = try ProvisioningDocument.parse(yaml: "http:\n  default: allow_unmetered\n  routes:\n    - {method: GET, path: \"/v1/items/{id}\", scopes: [read], meter: requests}\n")
        XCTAssertEqual(good.http?.rules.count, 1)
        XCTAssertEqual(good.http?.fallback, .allowUnmetered)
        XCTAssertThrowsError(try ProvisioningDocument.parse(yaml: "http:\n  socket: /x\n"), "apply files hold routes only") {
            XCTAssertEqual(($0 as? ProvisioningError)?.code, "unknown_key")
        }
    }

    func testOtherMistakesAreRefusedToo() {
        XCTAssertNotNil(refusal(#"{ "sockett": "/x" }"#), "unknown key")
        XCTAssertNotNil(refusal(#"{ "limits": { "max_header_bytes": 10 } }"#), "below the minimum")
        XCTAssertNotNil(refusal(#"{ "limits": { "max_conns": 10 } }"#), "unknown limit")
        XCTAssertNotNil(refusal(#"{ "token_header": "X Api" }"#))
        XCTAssertNotNil(refusal(#"{ "token_query": "" }"#))
    }

    /// The shipped example parses (its allow-list group is swapped for a uid: the group need not exist here).
    func testTheExampleSectionParses() throws {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../../examples/tollgated-http.json")
        var text = try String(contentsOf: url, encoding: .utf8)
        text = text.replacingOccurrences(of: #""groups": ["tollgate-clients"]"#, with: #""uids": [0]"#)
        let config = try DaemonConfiguration.parse(json: Data(text.utf8))
        XCTAssertEqual(config.http?.policy.routes.rules.count, 4)
    }
}
