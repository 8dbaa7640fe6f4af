import Foundation
import Logging
import NIOCore
import TollgateClient
import TollgateDaemon
import TollgateJournal
import TollgateModel
import TollgateProtocol
@_exported import TollgateTestSupport
import XCTest

/// Starts the real daemon in-process on sockets in a temporary directory, through the same composition root as
/// `tollgated`.
final class DaemonHarness {
    let directory: String
    var configuration: DaemonConfiguration
    private(set) var daemon: Daemon?
    let logs = LogCapture()
    /// The journal's syscall seam (tests inject faults through it).
    var fileSystem: any JournalFileSystem = PosixFileSystem()
    /// The file `Daemon.reload()` re-reads (SIGHUP); nil: the embedded default.
    var configurationPath: String?

    init(fsync: Bool = false, file: StaticString = #filePath) throws {
        // Short paths: sun_path holds at most 107 bytes.
        directory = try makeTemporaryDirectory()
        configuration = DaemonConfiguration.embeddedDefault()
        configuration.stateDirectory = directory + "/state"
        configuration.journalFsync = fsync
        configuration.usageFlushIntervalMilliseconds = 20
    }

    var apiSocket: String { configuration.resolvedAPISocket }
    var adminSocket: String { configuration.resolvedAdminSocket }
    var journalDirectory: String { configuration.journalDirectory }

    func start() async throws {
        let logs = self.logs
        let logger = Logger(label: "tollgated-test") { label in logs.handler(label: label) }
        let daemon = Daemon(configuration: configuration, dependencies: .init(fileSystem: fileSystem, eventLoopThreads: 1, configurationPath: configurationPath), logger: logger)
        try await daemon.start()
        self.daemon = daemon
    }

    func stop() async throws {
        try await daemon?.stop()
        daemon = nil
    }

    func restart() async throws {
        try await stop()
        try await start()
    }

    func api() async throws -> TollgateConnection { try await TollgateConnection.connect(path: apiSocket) }
    func admin() async throws -> TollgateConnection { try await TollgateConnection.connect(path: adminSocket) }

    func cleanUp() {
        try? FileManager.default.removeItem(atPath: directory)
    }

    /// Every byte the daemon wrote under its state directory.
    func allStateBytes() throws -> [UInt8] {
        var bytes: [UInt8] = []
        let enumerator = FileManager.default.enumerator(atPath: configuration.stateDirectory)
        while let name = enumerator?.nextObject() as? String {
            let path = configuration.stateDirectory + "/" + name
            var isDirectory: ObjCBool = false
            if FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), !isDirectory.boolValue,
                let data = FileManager.default.contents(atPath: path)
            {
                bytes += data
            }
        }
        return bytes
    }

    /// Segment files of the journal, oldest first.
    func segmentPaths() throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: journalDirectory).filter { $0.hasSuffix(".log") }.sorted().map { journalDirectory + "/" + $0 }
    }
}

/// A test case with a fresh, not yet started daemon harness per test; tear-down stops the daemon and removes its
/// directory.
class DaemonTestCase: XCTestCase {
    var harness: DaemonHarness!

    override func setUp() async throws {
        harness = try DaemonHarness()
    }

    override func tearDown() async throws {
        try await harness.stop()
        harness.cleanUp()
    }
}

/// Collects every log line the daemon emits (to check that secrets never appear and refusals are logged).
final class LogCapture: @unchecked Sendable {
    private let lock = NSLock()
    private var lines: [String] = []

    var text: String { lock.withLock { lines.joined(separator: "\n") } }

    func append(_ line: String) { lock.withLock { lines.append(line) } }

    func handler(label: String) -> LogHandler { CapturingLogHandler(capture: self) }

    struct CapturingLogHandler: LogHandler {
        let capture: LogCapture
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .trace

        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }

        func log(level: Logger.Level, message: Logger.Message, metadata: Logger.Metadata?, source: String, file: String, function: String, line: UInt) {
            let all = self.metadata.merging(metadata ?? [:]) { $1 }
            capture.append("\(level) \(message) \(all.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " "))")
        }
    }
}

/// A plan, a license and a token, provisioned through the admin socket.
struct Provisioned {
    var secret: String
    var token: TokenInfo
    var licenseID: String
}

extension DaemonHarness {
    @discardableResult
    func provision(license: String = "lic_test", plan: Plan = Plan(id: "test_plan", entitlements: ["read", "write"], quotas: [QuotaRule(meter: "requests", period: .month, limit: 1000)]), scopes: [String] = ["read"]) async throws -> Provisioned {
        let admin = try await self.admin()
        defer { Task { await admin.close() } }
        _ = try await admin.putPlan(plan)
        _ = try await admin.putLicense(LicenseSpec(id: license, customer: "Test Customer", plan: plan.id, status: .active))
        let (secret, token) = try await admin.issue(IssueRequest(licenseID: license, subject: "svc-test", scopes: scopes))
        return Provisioned(secret: secret, token: token, licenseID: license)
    }
}

/// Raw frames for robustness tests.
enum RawFrame {
    static func header(length: UInt32, magic: UInt16 = 0x5447, version: UInt8 = 1, opcode: UInt8, flags: UInt8 = 0, status: UInt8 = 0, requestID: UInt32) -> [UInt8] {
        var buffer = ByteBufferAllocator().buffer(capacity: 16)
        buffer.writeInteger(length)
        buffer.writeInteger(magic)
        buffer.writeInteger(version)
        buffer.writeInteger(opcode)
        buffer.writeInteger(flags)
        buffer.writeInteger(status)
        buffer.writeInteger(UInt16(0))
        buffer.writeInteger(requestID)
        return Array(buffer.readableBytesView)
    }

    static func request(_ request: Request, id: UInt32) -> [UInt8] {
        var buffer = ByteBufferAllocator().buffer(capacity: 64)
        try! buffer.writeRequest(request, requestID: id)
        return Array(buffer.readableBytesView)
    }

    static func decode(_ frame: Frame) throws -> Response {
        let status = Status(rawValue: frame.header.status)!
        if let opcode = Opcode(rawValue: frame.header.opcode) {
            return try decodeResponse(opcode: opcode, status: status, body: frame.body)
        }
        var reader = WireReader(frame.body, context: "error")
        return .error(status, try reader.string("message"))
    }
}
