import Logging
import NIOCore
import NIOPosix
import PostgresNIO

/// The fleet log's SQL (`Protocol/FLEET.md` 2 and 4.2), over postgres-nio: no PostgreSQL wire code of ours.
/// Each function is one statement or one transaction on a connection the caller owns.
enum PostgresFleetLog {
    static let channel = "tollgate_log"

    static func connect(to address: FleetSettings.Address, settings: FleetSettings, timeoutMillis: Int64, logger: Logger) async throws -> PostgresConnection {
        var configuration: PostgresConnection.Configuration
        switch address {
        case .tcp(let host, let port):
            configuration = .init(host: host, port: port, username: settings.user, password: settings.password, database: settings.database, tls: .disable)
        case .unix(let directory, let port):
            configuration = .init(unixSocketPath: "\(directory)/.s.PGSQL.\(port)", username: settings.user, password: settings.password, database: settings.database)
        }
        configuration.options.connectTimeout = .milliseconds(timeoutMillis)
        return try await PostgresConnection.connect(configuration: configuration, id: 1, logger: logger)
    }

    /// Creates the tables if they do not exist, under an advisory lock so that hosts starting together do not race.
    static func ensureSchema(_ connection: PostgresConnection, logger: Logger) async throws {
        try await connection.withTransaction(logger: logger) { c in
            try await c.query("SELECT pg_advisory_xact_lock(hashtext('tollgate_fleet_schema'))", logger: logger)
            try await c.query("""
                CREATE TABLE IF NOT EXISTS tollgate_log (
                    seq bigint PRIMARY KEY, origin text NOT NULL, incarnation bigint NOT NULL, origin_ref bigint NOT NULL,
                    type smallint NOT NULL, payload bytea NOT NULL, committed timestamptz NOT NULL DEFAULT now(),
                    UNIQUE (origin, incarnation, origin_ref))
                """, logger: logger)
            try await c.query("CREATE TABLE IF NOT EXISTS tollgate_log_head (id smallint PRIMARY KEY CHECK (id = 1), seq bigint NOT NULL)", logger: logger)
            try await c.query("INSERT INTO tollgate_log_head VALUES (1, 0) ON CONFLICT DO NOTHING", logger: logger)
            try await c.query("""
                CREATE TABLE IF NOT EXISTS tollgate_hosts (
                    host_id text PRIMARY KEY, incarnation bigint NOT NULL, position bigint NOT NULL, seen timestamptz NOT NULL)
                """, logger: logger)
        }
    }

    /// Commits `batch` as the next sequence numbers, in order, and wakes the other hosts; returns the last sequence.
    /// The head row's lock, held from the UPDATE to COMMIT, makes sequence order the commit order, without gaps.
    static func commit(_ batch: [OutboundQueue.Record], hostID: String, incarnation: UInt64, on connection: PostgresConnection, logger: Logger) async throws -> UInt64 {
        precondition(!batch.isEmpty)
        let count = Int64(batch.count)
        let references = batch.map { Int64(bitPattern: $0.reference) }
        let types = batch.map { Int16($0.type) }
        let payloads = batch.map { ByteBuffer(bytes: $0.payload) }
        let origin = hostID
        let incarnationValue = Int64(bitPattern: incarnation)
        return try await connection.withTransaction(logger: logger) { c in
            let rows = try await c.query("UPDATE tollgate_log_head SET seq = seq + \(count) WHERE id = 1 RETURNING seq", logger: logger)
            var last: Int64 = -1
            for try await (seq) in rows.decode(Int64.self) { last = seq }
            guard last >= count else { throw FleetLogError("the log head row is missing; was the schema changed by hand?") }
            let first = last - count + 1
            try await c.query("""
                INSERT INTO tollgate_log (seq, origin, incarnation, origin_ref, type, payload)
                SELECT \(first) + u.ord - 1, \(origin), \(incarnationValue), u.ref, u.type, u.payload
                FROM unnest(\(references)::bigint[], \(types)::smallint[], \(payloads)::bytea[]) WITH ORDINALITY AS u(ref, type, payload, ord)
                """, logger: logger)
            try await c.query("SELECT pg_notify('tollgate_log', \(origin))", logger: logger)
            return UInt64(last)
        }
    }

    /// Up to `limit` rows after `position`, in sequence order.
    static func read(after position: UInt64, limit: Int, on connection: PostgresConnection, logger: Logger) async throws -> [LogRow] {
        let after = Int64(position)
        let rows = try await connection.query(
            "SELECT seq, origin, incarnation, origin_ref, type, payload FROM tollgate_log WHERE seq > \(after) ORDER BY seq LIMIT \(limit)",
            logger: logger)
        var result: [LogRow] = []
        for try await (seq, origin, incarnation, reference, type, payload) in rows.decode((Int64, String, Int64, Int64, Int16, ByteBuffer).self) {
            result.append(LogRow(
                sequence: UInt64(seq), origin: origin, incarnation: UInt64(bitPattern: incarnation), reference: UInt64(bitPattern: reference),
                type: UInt8(truncatingIfNeeded: type), payload: Array(payload.readableBytesView)))
        }
        return result
    }

    /// This host's row in `tollgate_hosts` (FLEET.md 2.3).
    static func heartbeat(hostID: String, incarnation: UInt64, position: UInt64, on connection: PostgresConnection, logger: Logger) async throws {
        let incarnationValue = Int64(bitPattern: incarnation)
        let positionValue = Int64(position)
        try await connection.query("""
            INSERT INTO tollgate_hosts (host_id, incarnation, position, seen) VALUES (\(hostID), \(incarnationValue), \(positionValue), now())
            ON CONFLICT (host_id) DO UPDATE SET incarnation = EXCLUDED.incarnation, position = EXCLUDED.position, seen = now()
            """, logger: logger)
    }
}

public struct FleetLogError: Error, CustomStringConvertible {
    public var description: String
    init(_ description: String) { self.description = description }
}

/// Runs `body` on `connection`, or closes the connection after `millis` and throws: a query that hangs (a partition
/// leaves TCP half-open) must not hang the host's view of the fleet. Closing is what ends the hung query (it does not
/// notice task cancellation); the caller then makes a new connection.
func bounded<T: Sendable>(_ connection: PostgresConnection, millis: Int64, _ body: @escaping @Sendable () async throws -> T) async throws -> T {
    try await withThrowingTaskGroup(of: T?.self) { group in
        group.addTask { try await body() }
        group.addTask {
            try await Task.sleep(for: .milliseconds(millis))
            try? await connection.close()
            throw FleetLogError("no answer from PostgreSQL within \(millis) ms; connection closed")
        }
        defer { group.cancelAll() }
        return try await group.next()!!
    }
}
