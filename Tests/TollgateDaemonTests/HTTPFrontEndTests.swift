import Foundation
import TollgateDaemon
import TollgateHTTP
import TollgateModel
import XCTest

#if canImport(Glibc)
import Glibc
#endif

/// The HTTP front end in the real daemon (the composition root): its socket served beside the binary ones, a
/// token issued over the admin socket allowed over HTTP, and the route table reloaded live (SIGHUP's path), a bad
/// file leaving the running routes in force.
final class HTTPFrontEndTests: XCTestCase {
    private var harness: DaemonHarness!
    private var file: String { harness.directory + "/tollgated.json" }
    private var httpSocket: String { harness.directory + "/http.sock" }

    override func setUp() async throws {
        harness = try DaemonHarness()
        harness.configurationPath = file
    }

    override func tearDown() async throws {
        try? await harness.stop()
        harness.cleanUp()
    }

    private func write(routes: String) throws {
        let json = #"""
            { "state_dir": "\#(harness.configuration.stateDirectory)", "journal": { "fsync": false },
              "http": { "socket": "\#(httpSocket)", "routes": \#(routes) } }
            """#
        try json.write(toFile: file, atomically: true, encoding: .utf8)
        let loaded = try DaemonConfiguration.load(path: file)
        harness.configuration.http = loaded.http
    }

    /// One request over the HTTP socket (`Connection: close`, Traefik's shape, which gets the JSON body), the
    /// status line and body back. Bounded by a 5 s receive timeout.
    private func request(_ uri: String, token: String? = nil) throws -> (status: String, body: String) {
        let fd = try connectRaw(httpSocket, nonBlocking: false)
        defer { close(fd) }
        var timeout = timeval(tv_sec: 5, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        let text = "GET /v1/forward-auth HTTP/1.1\r\nHost: t\r\nConnection: close\r\nX-Forwarded-Uri: \(uri)\r\nX-Forwarded-Method: GET\r\n"
            + (token.map { "Authorization: Bearer \($0)\r\n" } ?? "") + "\r\n"
        _ = text.utf8CString.withUnsafeBufferPointer { send(fd, $0.baseAddress, $0.count - 1, 0) }
        var received: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = recv(fd, &buffer, buffer.count, 0)
            if n <= 0 { break }
            received += buffer[0..<n]
        }
        let answer = String(decoding: received, as: UTF8.self)
        let status = answer.components(separatedBy: "\r\n").first ?? ""
        let body = answer.components(separatedBy: "\r\n\r\n").dropFirst().joined(separator: "\r\n\r\n")
        return (status, body)
    }

    /// Socket activation's path: a listening socket handed over (as systemd passes `http`) is served, without an
    /// `http` section (its defaults: no routes, deny).
    func testServesAnInheritedHTTPSocketWithoutAnHTTPSection() async throws {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        let bound = withUnixAddress(httpSocket) { bind(fd, $0, $1) }
        XCTAssertEqual(bound, 0)
        XCTAssertEqual(listen(fd, 16), 0)
        harness.inheritedHTTPListeners = .init(unix: .descriptor(fd))
        try await harness.start()
        let answer = try request("/anything")
        XCTAssertEqual(answer.status, "HTTP/1.1 403 Forbidden")
        XCTAssertEqual(answer.body, #"{"decision":"deny","reason":"no_route"}"#)
    }

    /// Both front ends feed the one decision stream: a forward-auth decision reaches WATCH with its route, its source
    /// and the token's identity; a request refused before the core (no token) is not a decision.
    func testForwardAuthDecisionsReachTheDecisionStreamWithTheirRoute() async throws {
        try write(routes: #"[ { "method": "GET", "path": "/v1/items/{id}", "scopes": ["read"], "meter": "requests" } ]"#)
        try await harness.start()
        let admin = try await harness.admin()
        _ = try await admin.putLicense(LicenseSpec(id: "lic_h", customer: "H", plan: "pro", status: .active))
        let (secret, token) = try await admin.issue(IssueRequest(licenseID: "lic_h", subject: "svc-http", scopes: ["read"]))
        var batches = admin.watch().makeAsyncIterator()
        _ = try await batches.next()  // the first frame: subscribed
        XCTAssertEqual(try request("/v1/items/1").status, "HTTP/1.1 401 Unauthorized")
        XCTAssertEqual(try request("/v1/items/7", token: secret).status, "HTTP/1.1 200 OK")
        var events: [DecisionEvent] = []
        // Frames come at least once a second, so this loop ends with the decision or with the stream.
        while events.isEmpty, let batch = try await batches.next() { events += batch.events }
        XCTAssertEqual(events.count, 1)
        XCTAssertEqual(events.first?.route, "GET /v1/items/{id}")
        XCTAssertEqual(events.first?.source, .forwardAuth)
        XCTAssertEqual(events.first?.tokenID, token.id)
        XCTAssertEqual(events.first?.subject, "svc-http")
        XCTAssertEqual(events.first?.reason, DenyReason.none)
        await admin.close()
    }

    func testServesForwardAuthBesideTheBinarySocketsAndReloadsRoutesLive() async throws {
        try write(routes: #"[ { "method": "GET", "path": "/v1/items/{id}", "scopes": ["read"], "meter": "requests" } ]"#)
        try await harness.start()
        let admin = try await harness.admin()
        _ = try await admin.putLicense(LicenseSpec(id: "lic_h", customer: "H", plan: "pro", status: .active))
        let (secret, _) = try await admin.issue(IssueRequest(licenseID: "lic_h", subject: "svc", scopes: ["read"]))
        await admin.close()

        XCTAssertEqual(try request("/v1/items/1", token: secret).status, "HTTP/1.1 200 OK")
        XCTAssertEqual(try request("/v1/items/1").status, "HTTP/1.1 401 Unauthorized")
        let unrouted = try request("/v2/reports", token: secret)
        XCTAssertEqual(unrouted.status, "HTTP/1.1 403 Forbidden")
        XCTAssertEqual(unrouted.body, #"{"decision":"deny","reason":"no_route"}"#)

        // SIGHUP's path: the new route applies from the next request.
        try write(routes: #"[ { "path": "/v2/*", "scopes": ["reports"] }, { "method": "GET", "path": "/v1/items/{id}", "scopes": ["read"] } ]"#)
        await harness.daemon!.reload()
        XCTAssertEqual(try request("/v2/reports", token: secret).body, #"{"decision":"deny","reason":"insufficient_scope"}"#, "routed now")

        // A file with a bad route is refused as a whole; the running routes stay.
        try #"{ "http": { "socket": "\#(httpSocket)", "routes": [ { "path": "no-slash" } ] } }"#.write(toFile: file, atomically: true, encoding: .utf8)
        await harness.daemon!.reload()
        XCTAssertTrue(harness.logs.text.contains("reload rejected"), harness.logs.text)
        XCTAssertTrue(harness.logs.text.contains("http.routes[0].path"), "the error names the field")
        XCTAssertEqual(try request("/v2/reports", token: secret).body, #"{"decision":"deny","reason":"insufficient_scope"}"#)
        XCTAssertFalse(harness.logs.text.contains(secret), "no secret in the logs")
        let reader = try await harness.admin()
        let stats = try await reader.stats()
        await reader.close()
        XCTAssertEqual(stats.first { $0.key == "http_connections" }?.value, "0", "STATS counts the HTTP front end's connections")
    }
}
