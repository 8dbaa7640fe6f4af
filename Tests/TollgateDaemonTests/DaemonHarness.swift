import Foundation
import Logging
import NIOCore
import TollgateClient
import TollgateDaemon
import TollgateHTTP
import TollgateJournal
import TollgateModel
import TollgateProtocol
@_exported import TollgateTestSupport
import XCTest

#if canImport(Glibc)
import Glibc
#endif

/// Starts the real daemon in-process on sockets in a temporary directory, through the same composition root as
/// `tollgated`.
final class DaemonHarness {
    let directory: String
    var configuration: DaemonConfiguration
    private(set) var daemon: Daemon?
    let logs = LogCapture()
    /// The journal's syscall seam (tests inject faults through it).
    var fileSystem: any JournalFileSystem = PosixFileSystem()
    /// How long `stop` waits for the journal's backlog before dropping it.
    var shutdownFlushTimeout: Duration = .seconds(10)
    /// The file `Daemon.reload()` re-reads (SIGHUP); nil: the embedded default.
    var configurationPath: String?
    /// HTTP listeners handed over as socket activation would (nil: the configuration's).
    var inheritedHTTPListeners: TollgateHTTPServer.Listeners?

    init(fsync: Bool = false, file: StaticString = #filePath) throws {
        // Short paths: sun_path holds at most 107 bytes.
        directory = try makeTemporaryDirectory()
        configuration = DaemonConfiguration.embeddedDefault()
        configuration.stateDirectory = directory + "/state"
        configuration.journalFsync = fsync
        configuration.usageFlushIntervalMilliseconds = 20
        // The api socket's I/O: the default (epoll loops), or NIO when the suite is run a second time over it
        // (scripts/test.sh runs the socket tests under both).
        if ProcessInfo.processInfo.environment["TOLLGATE_TEST_API_IO"] == "nio" { configuration.apiIO = .nio }
    }

    var apiSocket: String { configuration.resolvedAPISocket }
    var adminSocket: String { configuration.resolvedAdminSocket }
    var journalDirectory: String { configuration.journalDirectory }

    func start() async throws {
        let logs = self.logs
        let logger = Logger(label: "tollgated-test") { label in logs.handler(label: label) }
        let daemon = Daemon(
            configuration: configuration,
            dependencies: .init(fileSystem: fileSystem, eventLoopThreads: 1, configurationPath: configurationPath, shutdownFlushTimeout: shutdownFlushTimeout,
                inheritedHTTPListeners: inheritedHTTPListeners),
            logger: logger)
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

/// Raw-socket clients for the backpressure tests: they write without reading.
extension DaemonTestCase {
    /// Writes `chunk` again and again (whole frames only, resuming partial sends) until `ceiling` bytes are
    /// written or the kernel refuses more for a sustained stretch; returns the bytes written. Between refusals it
    /// pings the admin socket, which gives the daemon a turn and shows it still serves others.
    func sendUntilBlocked(_ fd: CInt, repeating chunk: [UInt8], ceiling: Int) async throws -> Int {
        let admin = try await harness.admin()
        defer { Task { await admin.close() } }
        var written = 0
        var offset = 0
        var blocked = 0
        while written < ceiling && blocked < 200 {
            let n = chunk.withUnsafeBytes { send(fd, $0.baseAddress! + offset, $0.count - offset, Int32(MSG_NOSIGNAL)) }
            if n > 0 {
                written += n
                offset = (offset + n) % chunk.count
                blocked = 0
            } else if errno == EAGAIN || errno == EWOULDBLOCK {
                blocked += 1
                try await admin.ping()
            } else {
                throw TestSupportError("send failed: errno \(errno)")
            }
        }
        return written
    }

    func statistic(_ key: String) async throws -> String {
        let stats = try await (try await harness.admin()).stats()
        return stats.first { $0.key == key }?.value ?? ""
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

        func log(event: LogEvent) {
            let all = self.metadata.merging(event.metadata ?? [:]) { $1 }
            capture.append("\(event.level) \(event.message) \(all.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " "))")
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

/// Raw Unix-socket connections for tests that speak bytes (frames, HTTP) rather than through a client.
extension XCTestCase {
    /// A connection to the Unix socket at `path`, non-blocking unless asked otherwise.
    func connectRaw(_ path: String, nonBlocking: Bool = true) throws -> CInt {
        let fd = socket(AF_UNIX, CInt(SOCK_STREAM.rawValue), 0)
        let connected = withUnixAddress(path) { connect(fd, $0, $1) }
        guard connected == 0 else {
            close(fd)
            throw TestSupportError("connect \(path): errno \(errno)")
        }
        if nonBlocking { _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) }
        return fd
    }

    /// Runs `body` with `path` as a `sockaddr_un` and its length (for connect and bind).
    func withUnixAddress<T>(_ path: String, _ body: (UnsafePointer<sockaddr>, socklen_t) -> T) -> T {
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            let bytes = Array(path.utf8)
            raw.copyBytes(from: bytes)
            raw[bytes.count] = 0
        }
        return withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
    }
}
