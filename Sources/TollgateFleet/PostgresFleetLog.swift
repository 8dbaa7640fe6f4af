import Logging
import NIOCore
import NIOPosix
import NIOConcurrencyHelpers
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
    /// The transaction is the only one of more than one statement, and it runs only before the tables exist: a host
    /// cut off in its middle is aborted by PostgreSQL after 5 s idle, so that it cannot block the others.
    static func ensureSchema(_ connection: PostgresConnection, logger: Logger) async throws {
        // The newest table: a database made by an earlier version gets the tables it lacks.
        let existing = try await connection.query("SELECT to_regclass('tollgate_idempotency_keys') IS NOT NULL", logger: logger)
        for try await exists in existing.decode(Bool.self) where exists { return }
        try await connection.withTransaction(logger: logger) { c in
            try await c.query("SET LOCAL idle_in_transaction_session_timeout = '5s'", logger: logger)
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
            try await c.query("""
                CREATE TABLE IF NOT EXISTS tollgate_idempotency_keys (
                    key text PRIMARY KEY, origin text NOT NULL, incarnation bigint NOT NULL, origin_ref bigint NOT NULL,
                    claimed timestamptz NOT NULL DEFAULT now())
                """, logger: logger)
        }
    }

    /// Commits `batch` as the next sequence numbers, in order, and wakes the other hosts. A record with an
    /// idempotency key is written only if this transaction claims the key (FLEET.md 10); returns the references of
    /// those that were not (their key was claimed before, by any host).
    ///
    /// One statement, so one implicit transaction that PostgreSQL runs to its end once it has the request: the head
    /// row's lock, taken by the UPDATE and held until the commit, makes sequence order the commit order without gaps
    /// (FLEET.md 4.2), and no host cut off mid-transaction can leave it held (as BEGIN … COMMIT over several round
    /// trips could, idle in transaction until TCP notices, stalling every host's commits). The keys are inserted
    /// before the head row is locked (the UPDATE's new value counts the records kept), so two hosts claiming the same
    /// key wait on each other's key, never on the head row in the opposite order; and in key order, so that two
    /// batches holding the same keys in different orders (a client retrying on another host) wait, never deadlock.
    static func commit(_ batch: [OutboundQueue.Record], hostID: String, incarnation: UInt64, on connection: PostgresConnection, logger: Logger) async throws -> Set<UInt64> {
        precondition(!batch.isEmpty)
        let references = batch.map { Int64(bitPattern: $0.reference) }
        let types = batch.map { Int16($0.type) }
        let payloads = batch.map { ByteBuffer(bytes: $0.payload) }
        let keys = batch.map { $0.key ?? "" }
        let incarnationValue = Int64(bitPattern: incarnation)
        let rows = try await connection.query("""
            WITH batch AS MATERIALIZED (
                SELECT u.ord, u.ref, u.type, u.payload, nullif(u.key, '') AS key
                FROM unnest(\(references)::bigint[], \(types)::smallint[], \(payloads)::bytea[], \(keys)::text[]) WITH ORDINALITY AS u(ref, type, payload, key, ord)),
            claimed AS (
                INSERT INTO tollgate_idempotency_keys (key, origin, incarnation, origin_ref)
                SELECT key, \(hostID), \(incarnationValue), ref FROM batch WHERE key IS NOT NULL ORDER BY key
                ON CONFLICT (key) DO NOTHING
                RETURNING origin_ref),
            kept AS MATERIALIZED (
                SELECT b.ref, b.type, b.payload, row_number() OVER (ORDER BY b.ord) AS n, count(*) OVER () AS total
                FROM batch b WHERE b.key IS NULL OR b.ref IN (SELECT origin_ref FROM claimed)),
            head AS (UPDATE tollgate_log_head SET seq = seq + (SELECT count(*) FROM kept) WHERE id = 1 RETURNING seq),
            written AS (
                INSERT INTO tollgate_log (seq, origin, incarnation, origin_ref, type, payload)
                SELECT head.seq - kept.total + kept.n, \(hostID), \(incarnationValue), kept.ref, kept.type, kept.payload
                FROM head, kept
                RETURNING origin_ref)
            SELECT ARRAY(SELECT b.ref FROM batch b WHERE b.ref NOT IN (SELECT origin_ref FROM written) ORDER BY b.ord),
                (SELECT count(*) FROM head)
            FROM (SELECT pg_notify('tollgate_log', \(hostID))) AS woken
            """, logger: logger)
        var refused = Set<UInt64>()
        var answered = false
        var headRows: Int64 = 0
        for try await (references, heads) in rows.decode(([Int64], Int64).self) {
            answered = true
            headRows = heads
            for reference in references { refused.insert(UInt64(bitPattern: reference)) }
        }
        guard answered else { throw FleetLogError("the commit statement returned no row") }
        // Without the head row nothing was written, though every keyed record would look refused as a duplicate.
        guard headRows == 1 else { throw FleetLogError("the log head row is missing; was the schema changed by hand?") }
        return refused
    }

    /// The last of this run's records the log holds (0: none). A commit whose answer was lost (the connection broke
    /// after PostgreSQL committed) is recognised by it after the reconnect, and not committed twice.
    static func lastReference(hostID: String, incarnation: UInt64, on connection: PostgresConnection, logger: Logger) async throws -> UInt64 {
        let incarnationValue = Int64(bitPattern: incarnation)
        let rows = try await connection.query(
            "SELECT coalesce(max(origin_ref), 0) FROM tollgate_log WHERE origin = \(hostID) AND incarnation = \(incarnationValue)", logger: logger)
        var last: Int64 = 0
        for try await value in rows.decode(Int64.self) { last = value }
        return UInt64(bitPattern: last)
    }

    /// Which of `references` (this run's) the log holds.
    static func heldReferences(_ references: [UInt64], hostID: String, incarnation: UInt64, on connection: PostgresConnection, logger: Logger) async throws -> Set<UInt64> {
        let incarnationValue = Int64(bitPattern: incarnation)
        let values = references.map { Int64(bitPattern: $0) }
        let rows = try await connection.query(
            "SELECT origin_ref FROM tollgate_log WHERE origin = \(hostID) AND incarnation = \(incarnationValue) AND origin_ref = ANY(\(values)::bigint[])",
            logger: logger)
        var held = Set<UInt64>()
        for try await value in rows.decode(Int64.self) { held.insert(UInt64(bitPattern: value)) }
        return held
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

    /// This host's row in `tollgate_hosts` (FLEET.md 2.3); returns the live hosts, this one included: those seen
    /// within `liveWithinMillis` by the database's clock (FLEET.md 9).
    static func heartbeat(
        hostID: String, incarnation: UInt64, position: UInt64, liveWithinMillis: Int64, on connection: PostgresConnection, logger: Logger
    ) async throws -> Int {
        let incarnationValue = Int64(bitPattern: incarnation)
        let positionValue = Int64(position)
        let window = Double(liveWithinMillis) / 1000
        let rows = try await connection.query("""
            WITH beat AS (
                INSERT INTO tollgate_hosts (host_id, incarnation, position, seen) VALUES (\(hostID), \(incarnationValue), \(positionValue), now())
                ON CONFLICT (host_id) DO UPDATE SET incarnation = EXCLUDED.incarnation, position = EXCLUDED.position, seen = now()
                RETURNING host_id)
            SELECT 1 + count(*) FROM tollgate_hosts, beat
            WHERE tollgate_hosts.host_id <> beat.host_id AND tollgate_hosts.seen > now() - make_interval(secs => \(window))
            """, logger: logger)
        var live: Int64 = 1
        for try await count in rows.decode(Int64.self) { live = count }
        return Int(live)
    }
}

public struct FleetLogError: Error, CustomStringConvertible {
    public var description: String
    init(_ description: String) { self.description = description }
}

/// Runs `body` on `connection`, or closes the connection after `millis` and throws: a query that hangs (a partition
/// leaves TCP half-open) must not hang the host's view of the fleet; the caller then makes a new connection.
///
/// Not a task group: a group waits for every child, and a query written to a connection that is already closed may
/// never complete (postgres-nio drops the request with the write), so the group would never return. Here the first
/// of the answer and the deadline wins, and the loser is cancelled and left behind.
func bounded<T: Sendable>(_ connection: PostgresConnection, millis: Int64, _ body: @escaping @Sendable () async throws -> T) async throws -> T {
    let outcome = FirstOutcome<T>()
    return try await withCheckedThrowingContinuation { continuation in
        outcome.set(continuation)
        let work = Task {
            do { outcome.resume(.success(try await body())) } catch { outcome.resume(.failure(error)) }
        }
        let timer = Task {
            try await Task.sleep(for: .milliseconds(millis))
            if outcome.resume(.failure(FleetLogError("no answer from PostgreSQL within \(millis) ms; connection closed"))) {
                work.cancel()
                try? await connection.close()
            }
        }
        outcome.onFinish { timer.cancel() }
    }
}

/// Resumes a continuation once, with the first result offered.
final class FirstOutcome<T: Sendable>: Sendable {
    private struct State {
        var continuation: CheckedContinuation<T, any Error>?
        var result: Result<T, any Error>?
        var finished = false
        var onFinish: [@Sendable () -> Void] = []
    }
    private let state = NIOLockedValueBox(State())

    func set(_ continuation: CheckedContinuation<T, any Error>) {
        state.withLockedValue { $0.continuation = continuation }
    }

    /// Runs `action` once the outcome is known (at once if it already is).
    func onFinish(_ action: @escaping @Sendable () -> Void) {
        let now = state.withLockedValue { s -> Bool in
            if s.finished { return true }
            s.onFinish.append(action)
            return false
        }
        if now { action() }
    }

    /// True when this was the first result.
    @discardableResult
    func resume(_ result: Result<T, any Error>) -> Bool {
        let taken = state.withLockedValue { s -> (CheckedContinuation<T, any Error>, [@Sendable () -> Void])? in
            guard !s.finished, let continuation = s.continuation else { return nil }
            s.finished = true
            defer { s.onFinish = [] }
            return (continuation, s.onFinish)
        }
        guard let (continuation, actions) = taken else { return false }
        continuation.resume(with: result)
        for action in actions { action() }
        return true
    }
}
