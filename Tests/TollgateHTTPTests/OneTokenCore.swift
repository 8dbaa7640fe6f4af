import Foundation
import Logging
import TollgateCore
import TollgateEngine
import TollgateJournal
import TollgateModel
import TollgateProtocol
import XCTest

/// What the HTTP front end's pipeline tests answer against: a real core over a journal in a temporary directory,
/// with one plan (`p`: scope `read`, a quota of 100 `requests` a month), one license (`lic`) and one token on it.
final class OneTokenCore {
    let core: ApplicationCore
    /// The token's secret, for the `Authorization` headers of the requests under test.
    let secret: String
    private let directory: String

    init(label: String) async throws {
        directory = NSTemporaryDirectory() + "tollgate-\(label)-" + UUID().uuidString
        let (journal, recovered) = try Journal.open(directory: directory, options: JournalOptions(fsync: false))
        core = ApplicationCore(
            state: try ApplicationCore.rebuildState(from: recovered), journal: journal, recovery: recovered.report,
            clock: SystemWallClock(), options: .init(), logger: Logger(label: label) { _ in SwiftLogNoOpLogHandler() })
        _ = await Self.send(.planPut(Plan(id: "p", entitlements: ["read"], quotas: [QuotaRule(meter: "requests", period: .month, limit: 100)])), to: core)
        _ = await Self.send(.licensePut(LicenseSpec(id: "lic", customer: "c", plan: "p", status: .active)), to: core)
        guard case .issue(let secret, _) = await Self.send(.issue(IssueRequest(licenseID: "lic", subject: "svc", scopes: ["read"])), to: core) else {
            throw XCTSkip("could not issue a token")
        }
        self.secret = secret
    }

    func close() {
        try? core.currentJournal.close()
        try? FileManager.default.removeItem(atPath: directory)
    }

    private static func send(_ request: Request, to core: ApplicationCore) async -> Response {
        await withCheckedContinuation { continuation in
            if let now = core.handle(request, from: .daemon, completion: { continuation.resume(returning: $0) }) {
                continuation.resume(returning: now)
            }
        }
    }
}
