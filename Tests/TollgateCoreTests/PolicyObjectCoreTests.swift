import Foundation
import Logging
import NIOCore
@testable import TollgateCore
import TollgateEngine
import TollgateJournal
import TollgateModel
import TollgateProtocol
import XCTest

/// The core's side of LICENSE_LIST … ORG_DELETE: pages cut to the frame with a `next` that continues them, the
/// `in_use` answer, and deletions journaled with the caller's uid appended to the actor.
final class PolicyObjectCoreTests: XCTestCase {
    private var directory: String!
    private var core: ApplicationCore!

    override func setUp() async throws {
        directory = NSTemporaryDirectory() + "tollgate-policy-core-tests-" + UUID().uuidString
        try open(maxFrameSize: 2048)
    }

    override func tearDown() async throws {
        try? core.currentJournal.close()
        try? FileManager.default.removeItem(atPath: directory)
    }

    private func open(maxFrameSize: Int) throws {
        let (journal, recovered) = try Journal.open(directory: directory, options: JournalOptions(fsync: false))
        core = ApplicationCore(
            state: try ApplicationCore.rebuildState(from: recovered), journal: journal, recovery: recovered.report, clock: ManualClock(),
            options: .init(maxFrameSize: maxFrameSize), logger: Logger(label: "core-tests") { _ in SwiftLogNoOpLogHandler() })
    }

    private func send(_ request: Request, as role: SocketRole = .admin, uid: UInt32? = 1000) async -> Response {
        await withCheckedContinuation { continuation in
            if let now = core.handle(request, from: Caller(role: role, uid: uid), completion: { continuation.resume(returning: $0) }) {
                continuation.resume(returning: now)
            }
        }
    }

    func testPagesAreCutToTheFrameAndNextContinuesThem() async throws {
        for i in 0..<40 {
            let plan = Plan(id: String(format: "plan-%02d", i), entitlements: (0..<8).map { "scope-\(i)-\($0)" })
            guard case .plan = await send(.planPut(plan)) else { return XCTFail("plan put") }
        }
        var seen: [String] = []
        var after = ""
        var pages = 0
        repeat {
            guard case .planList(let plans, let next) = await send(.planList(ListPageRequest(after: after, limit: 500))) else { return XCTFail("plan list") }
            var buffer = ByteBufferAllocator().buffer(capacity: 4096)
            buffer.writeResponse(.planList(plans: plans, next: next), opcode: Opcode.planList.rawValue, requestID: 1)
            XCTAssertLessThanOrEqual(buffer.readableBytes - 4, 2048, "the page fits the frame")
            XCTAssertFalse(plans.isEmpty)
            seen += plans.map(\.id)
            after = next
            pages += 1
        } while !after.isEmpty
        XCTAssertGreaterThan(pages, 2)
        XCTAssertEqual(seen, (0..<40).map { String(format: "plan-%02d", $0) })
        // limit 0 is 100, larger than 500 is 500: with big frames 40 plans come in one page.
        try core.currentJournal.close()
        try open(maxFrameSize: 65536)
        guard case .planList(let all, let next) = await send(.planList(ListPageRequest())) else { return XCTFail("plan list") }
        XCTAssertEqual(all.count, 40)
        XCTAssertEqual(next, "")
        guard case .planList(let two, let more) = await send(.planList(ListPageRequest(after: "plan-10", limit: 2))) else { return XCTFail("plan list") }
        XCTAssertEqual(two.map(\.id), ["plan-11", "plan-12"])
        XCTAssertEqual(more, "plan-12")
    }

    func testDeletionsAnswerInUseOrTheObjectAndAreJournaledWithTheCallersUid() async throws {
        _ = await send(.planPut(Plan(id: "pro", entitlements: ["read"])))
        _ = await send(.orgPut(OrgSpec(id: "acme", name: "Acme")))
        _ = await send(.licensePut(LicenseSpec(id: "lic", customer: "c", plan: "pro", status: .active, org: "acme")))
        let refused = await send(.planDelete(DeleteRequest(id: "pro", actor: "alice")))
        XCTAssertEqual(refused, .error(.inUse, "plan 'pro' is in use: 1 license is on it (lic); move it to another plan or delete it first"))
        let notHere = await send(.planDelete(DeleteRequest(id: "pro")), as: .api)
        guard case .error(.notPermitted, _) = notHere else { return XCTFail("\(notHere)") }

        let license = await send(.licenseDelete(DeleteRequest(id: "lic", actor: "alice")))
        guard case .license(let info) = license else { return XCTFail("\(license)") }
        XCTAssertEqual(info.spec.id, "lic")
        let plan = await send(.planDelete(DeleteRequest(id: "pro")))
        XCTAssertEqual(plan, .plan(Plan(id: "pro", entitlements: ["read"])))
        let org = await send(.orgDelete(DeleteRequest(id: "acme", actor: "bob")), uid: nil)
        XCTAssertEqual(org, .org(OrgSpec(id: "acme", name: "Acme")))
        let again = await send(.orgDelete(DeleteRequest(id: "acme")))
        XCTAssertEqual(again, .error(.notFound, "organisation 'acme' does not exist"))

        // What the journal holds, read back as a restart reads it.
        try core.currentJournal.close()
        let (journal, recovered) = try Journal.open(directory: directory, options: JournalOptions(fsync: false))
        defer { try? journal.close() }
        let deletions = try recovered.records.compactMap { record -> StateChange? in
            let change = try StateChange.decode(type: record.type, payload: ByteBuffer(bytes: record.payload))
            if case .objectDeleted = change { return change }
            return nil
        }
        let at = ManualClock().now().millis
        XCTAssertEqual(deletions, [
            .objectDeleted(.license, id: "lic", actor: "alice uid=1000", at: at),
            .objectDeleted(.plan, id: "pro", actor: "uid=1000", at: at),
            .objectDeleted(.org, id: "acme", actor: "bob uid=unknown", at: at),
        ])
        let rebuilt = try ApplicationCore.rebuildState(from: recovered)
        XCTAssertTrue(rebuilt.licenses.isEmpty && rebuilt.plans.isEmpty && rebuilt.orgs.isEmpty)
    }
}
