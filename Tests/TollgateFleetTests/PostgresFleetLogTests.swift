import Foundation
#if canImport(Glibc)
import Glibc
#endif
import Logging
import PostgresNIO
import XCTest

@testable import TollgateFleet

/// A PostgreSQL cluster of the test's own: Debian's initdb and pg_ctl, run as the postgres user, listening only on a
/// Unix socket in a temporary directory. Never the system's cluster.
struct ThrowawayPostgres {
    let directory: String
    let port = 55_400 + Int.random(in: 0..<500)
    let bin: String

    static func start() throws -> ThrowawayPostgres {
        guard geteuid() == 0 else { throw XCTSkip("initdb must run as the postgres user: this test needs root to switch to it") }
        let versions = (try? FileManager.default.contentsOfDirectory(atPath: "/usr/lib/postgresql"))?.sorted() ?? []
        guard let version = versions.last else { throw XCTSkip("Debian's postgresql is not installed (scripts/setup.sh installs it)") }
        let directory = NSTemporaryDirectory() + "tollgate-pg-" + UUID().uuidString.prefix(8)
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        try FileManager.default.setAttributes([.ownerAccountName: "postgres", .posixPermissions: 0o755], ofItemAtPath: directory)
        let cluster = ThrowawayPostgres(directory: directory, bin: "/usr/lib/postgresql/\(version)/bin")
        try cluster.asPostgres("\(cluster.bin)/initdb", "-D", "\(directory)/data", "-A", "trust", "-U", "tollgate")
        try cluster.asPostgres(
            "\(cluster.bin)/pg_ctl", "-D", "\(directory)/data", "-l", "\(directory)/log", "-w",
            "-o", "-c listen_addresses='' -c unix_socket_directories=\(directory) -p \(cluster.port)", "start")
        return cluster
    }

    /// Runs a command as the postgres user and waits for it: posix_spawn and waitpid, because Foundation's
    /// `Process.waitUntilExit` did not see runuser exit inside the test runner (it stayed a zombie).
    func asPostgres(_ arguments: String...) throws {
        let output = "\(directory)/\(URL(fileURLWithPath: arguments[0]).lastPathComponent).out"
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, output, O_WRONLY | O_CREAT | O_APPEND, 0o644)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        let argv = (["/usr/sbin/runuser", "-u", "postgres", "--"] + arguments).map { strdup($0) } + [nil]
        defer { for pointer in argv { free(pointer) } }
        var pid: pid_t = 0
        guard posix_spawn(&pid, "/usr/sbin/runuser", &actions, nil, argv, environ) == 0 else {
            throw FleetLogError("cannot start runuser")
        }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        guard status == 0 else {
            let text = (try? String(contentsOfFile: output, encoding: .utf8)) ?? ""
            throw FleetLogError("\(arguments[0]) failed (status \(status)): \(text)")
        }
    }

    func stop() {
        try? asPostgres("\(bin)/pg_ctl", "-D", "\(directory)/data", "-m", "immediate", "stop")
        try? FileManager.default.removeItem(atPath: directory)
    }

    func settings(host: String) -> FleetSettings {
        FleetSettings(addresses: [.unix(directory: directory, port: port)], database: "postgres", user: "tollgate", password: nil, hostID: host)
    }
}

/// The fleet log's SQL against a real PostgreSQL (Protocol/FLEET.md 4.2): concurrent writers get contiguous sequence
/// numbers in commit order, and a reader racing them never sees a gap, so it can never skip a record.
final class PostgresFleetLogTests: XCTestCase {
    let logger = Logger(label: "fleet-log-tests") { _ in SwiftLogNoOpLogHandler() }

    func testConcurrentWritersNeverLeaveAReaderAGap() async throws {
        let cluster = try ThrowawayPostgres.start()
        defer { cluster.stop() }
        let logger = self.logger
        let setup = try await PostgresFleetLog.connect(to: cluster.settings(host: "x").addresses[0], settings: cluster.settings(host: "x"), timeoutMillis: 5_000, logger: logger)
        try await PostgresFleetLog.ensureSchema(setup, logger: logger)
        try await PostgresFleetLog.ensureSchema(setup, logger: logger)  // a second host's start: nothing changes
        try await setup.close()

        let writers = 4, batches = 40
        let gapsSeen = try await withThrowingTaskGroup(of: Int.self) { group in
            for writer in 0..<writers {
                group.addTask {
                    let settings = cluster.settings(host: "w\(writer)")
                    let connection = try await PostgresFleetLog.connect(to: settings.addresses[0], settings: settings, timeoutMillis: 5_000, logger: logger)
                    var reference: UInt64 = 0
                    for batch in 0..<batches {
                        let records = (0..<(1 + batch % 3)).map { _ -> OutboundQueue.Record in
                            reference += 1
                            return OutboundQueue.Record(type: 6, payload: [0, 0, 0, 0], reference: reference, id: reference)
                        }
                        _ = try await PostgresFleetLog.commit(records, hostID: settings.hostID, incarnation: 7, on: connection, logger: logger)
                    }
                    try await connection.close()
                    return 0
                }
            }
            // A reader racing the writers: every page it reads continues its position exactly.
            group.addTask {
                let settings = cluster.settings(host: "reader")
                let connection = try await PostgresFleetLog.connect(to: settings.addresses[0], settings: settings, timeoutMillis: 5_000, logger: logger)
                var cursor = LogCursor(hostID: "reader", incarnation: 1, journalSequenceAtStart: 0, position: 0)
                var gaps = 0
                let total = UInt64((0..<batches).reduce(0) { $0 + 1 + $1 % 3 } * writers)
                while cursor.position < total {
                    let rows = try await PostgresFleetLog.read(after: cursor.position, limit: 7, on: connection, logger: logger)
                    if cursor.advance(over: rows).error != nil { gaps += 1 }
                }
                try await connection.close()
                return gaps
            }
            return try await group.reduce(0, +)
        }
        XCTAssertEqual(gapsSeen, 0, "a reader racing the writers saw a missing sequence number")

        let check = try await PostgresFleetLog.connect(to: cluster.settings(host: "x").addresses[0], settings: cluster.settings(host: "x"), timeoutMillis: 5_000, logger: logger)
        let rows = try await PostgresFleetLog.read(after: 0, limit: 100_000, on: check, logger: logger)
        try await check.close()
        XCTAssertEqual(rows.map(\.sequence), Array(1...UInt64(rows.count)), "contiguous from 1")
        for writer in 0..<writers {
            let references = rows.filter { $0.origin == "w\(writer)" }.map(\.reference)
            XCTAssertEqual(references, Array(1...UInt64(references.count)), "writer \(writer)'s records in its own order, each once")
        }
    }

    /// Idempotency keys claimed in the commit's transaction (FLEET.md 10): writers racing with the same keys get each
    /// key into the log exactly once, every other claim refused, and the log stays contiguous (a refused record takes
    /// no sequence number). Keyless records are never refused.
    func testAKeySentByManyWritersEntersTheLogOnce() async throws {
        let cluster = try ThrowawayPostgres.start()
        defer { cluster.stop() }
        let logger = self.logger
        let setup = try await PostgresFleetLog.connect(to: cluster.settings(host: "x").addresses[0], settings: cluster.settings(host: "x"), timeoutMillis: 5_000, logger: logger)
        try await PostgresFleetLog.ensureSchema(setup, logger: logger)
        try await setup.close()

        let writers = 3, keys = 60
        let outcomes = try await withThrowingTaskGroup(of: (committed: [String], refused: [String], keyless: Int).self) { group in
            for writer in 0..<writers {
                group.addTask {
                    let settings = cluster.settings(host: "w\(writer)")
                    let connection = try await PostgresFleetLog.connect(to: settings.addresses[0], settings: settings, timeoutMillis: 5_000, logger: logger)
                    var order = (0..<keys).map { "key-\($0)" }
                    order.shuffle()
                    var reference: UInt64 = 0
                    var committed: [String] = [], refused: [String] = [], keyless = 0
                    for chunk in stride(from: 0, to: keys, by: 4) {
                        var records: [OutboundQueue.Record] = []
                        for key in order[chunk..<min(keys, chunk + 4)] {
                            reference += 1
                            records.append(OutboundQueue.Record(type: 5, payload: Array(key.utf8), reference: reference, key: key, id: reference))
                            reference += 1
                            records.append(OutboundQueue.Record(type: 6, payload: [0, 0, 0, 0], reference: reference, id: reference))
                        }
                        let out = try await PostgresFleetLog.commit(records, hostID: settings.hostID, incarnation: 7, on: connection, logger: logger)
                        for record in records {
                            guard let key = record.key else {
                                if !out.contains(record.reference) { keyless += 1 }
                                continue
                            }
                            if out.contains(record.reference) { refused.append(key) } else { committed.append(key) }
                        }
                    }
                    try await connection.close()
                    return (committed, refused, keyless)
                }
            }
            var all: [(committed: [String], refused: [String], keyless: Int)] = []
            for try await outcome in group { all.append(outcome) }
            return all
        }
        let committed = outcomes.flatMap(\.committed)
        XCTAssertEqual(committed.sorted(), (0..<keys).map { "key-\($0)" }.sorted(), "each key committed by exactly one writer")
        XCTAssertEqual(outcomes.flatMap(\.refused).count, keys * (writers - 1), "every other claim refused")
        XCTAssertEqual(outcomes.map(\.keyless).reduce(0, +), keys * writers, "keyless records are never refused")

        let check = try await PostgresFleetLog.connect(to: cluster.settings(host: "x").addresses[0], settings: cluster.settings(host: "x"), timeoutMillis: 5_000, logger: logger)
        let rows = try await PostgresFleetLog.read(after: 0, limit: 100_000, on: check, logger: logger)
        XCTAssertEqual(rows.map(\.sequence), Array(1...UInt64(rows.count)), "contiguous from 1: a refused record takes no number")
        let logged = rows.filter { $0.type == 5 }.map { String(decoding: $0.payload, as: UTF8.self) }
        XCTAssertEqual(logged.sorted(), (0..<keys).map { "key-\($0)" }.sorted(), "each key's record in the log once")

        // The heartbeat counts the hosts seen within the window, this one included.
        let first = try await PostgresFleetLog.heartbeat(hostID: "a", incarnation: 1, position: 0, liveWithinMillis: 60_000, on: check, logger: logger)
        let second = try await PostgresFleetLog.heartbeat(hostID: "b", incarnation: 1, position: 0, liveWithinMillis: 60_000, on: check, logger: logger)
        XCTAssertEqual([first, second], [1, 2])
        try await check.query("UPDATE tollgate_hosts SET seen = now() - interval '2 minutes' WHERE host_id = 'a'", logger: logger)
        let alone = try await PostgresFleetLog.heartbeat(hostID: "b", incarnation: 1, position: 0, liveWithinMillis: 60_000, on: check, logger: logger)
        XCTAssertEqual(alone, 1, "a host not seen within the window is not live")
        try await check.close()
    }
}
