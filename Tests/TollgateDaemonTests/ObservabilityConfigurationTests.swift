import Foundation
import TollgateDaemon
import XCTest

/// `http.observability`: the reserved paths are on by default, off on request (a listener Envoy's request-line
/// shape uses), and a non-boolean is refused.
final class ObservabilityConfigurationTests: XCTestCase {
    private func parse(_ http: String) throws -> DaemonConfiguration {
        try DaemonConfiguration.parse(json: Data(#"{ "http": \#(http) }"#.utf8))
    }

    func testObservabilityIsOnByDefaultAndCanBeTurnedOff() throws {
        XCTAssertEqual(try parse("{}").http?.observability, true)
        XCTAssertEqual(try parse(#"{ "observability": false }"#).http?.observability, false)
        XCTAssertThrowsError(try parse(#"{ "observability": "no" }"#))
    }
}
