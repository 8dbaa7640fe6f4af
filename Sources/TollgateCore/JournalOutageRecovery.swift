import Logging
import NIOConcurrencyHelpers
import NIOCore
import TollgateEngine
import TollgateJournal

/// Getting back from a failed journal (disk full, I/O error) without a restart: prove the disk takes a write
/// again, reopen the journal (which cuts it back to the last durable record), rebuild the state from it so that
/// memory again equals what is durable, and re-apply the check consumption that could not be journaled. Retries
/// with backoff (250 ms doubling to 5 s).
final class JournalOutageRecovery: Sendable {
    /// Check consumption entries kept in memory while the journal cannot write (about 100 bytes each).
    static let maxUsageHeld = 1_000_000

    let fileSystem: any JournalFileSystem
    private struct Backoff {
        var nextAttempt: Timestamp?
        var millis: Int64 = 250
    }
    private let backoff = NIOLockedValueBox(Backoff())

    init(fileSystem: any JournalFileSystem) { self.fileSystem = fileSystem }

    /// Whether an attempt is due at `now`.
    func isDue(at now: Timestamp) -> Bool { backoff.withLockedValue { $0.nextAttempt.map { now >= $0 } ?? true } }

    /// Records a failed attempt; returns the wait before the next one.
    func failed(at now: Timestamp) -> Int64 {
        backoff.withLockedValue { b in
            b.nextAttempt = now.adding(millis: b.millis)
            b.millis = min(b.millis * 2, 5000)
            return b.millis
        }
    }

    func succeeded() { backoff.withLockedValue { $0 = Backoff() } }

    /// Writes and fdatasyncs a probe file: reopening a journal only reads, so this is what shows the disk is back.
    func probeWritable(directory: String) throws {
        let path = directory + "/write-probe.tmp"
        let file = try fileSystem.open(path, mode: .createTruncate)
        defer {
            try? fileSystem.close(file)
            try? fileSystem.unlink(path)
        }
        let bytes: [UInt8] = Array(repeating: 0, count: 4096)
        let written = try bytes.withUnsafeBytes { try fileSystem.write(file, $0, at: 0) }
        guard written == bytes.count else { throw JournalError(code: .io, message: "short write while probing the disk") }
        try fileSystem.fdatasync(file)
    }

    /// Rebuilds a state from a snapshot and the records after it. A record that passed its checksum but does not
    /// decode is refused: skipping it could resurrect a revoked token.
    static func rebuildState(from recovered: RecoveredState) throws -> LicensingState {
        var state = LicensingState()
        if let snapshot = recovered.snapshot {
            do {
                state = try LicensingState.decodeSnapshot(snapshot.payload)
            } catch {
                throw RebuildError(code: .undecodableSnapshot, description: "the snapshot at sequence \(snapshot.sequence) does not decode: \(error)")
            }
        }
        for record in recovered.records {
            do {
                state.apply(try StateChange.decode(type: record.type, payload: ByteBuffer(bytes: record.payload)))
            } catch {
                throw RebuildError(code: .undecodableRecord, description: "journal record \(record.sequence) does not decode: \(error)")
            }
        }
        return state
    }
}

/// The journal's records do not rebuild a state (see `JournalOutageRecovery.rebuildState`). Compare by `code`.
public struct RebuildError: Error, CustomStringConvertible, Hashable {
    public enum Code: Hashable, Sendable {
        /// The newest valid snapshot passed its checksum but does not decode.
        case undecodableSnapshot
        /// A record passed its checksum but does not decode.
        case undecodableRecord
    }

    public var code: Code
    public var description: String
}

extension ApplicationCore {
    /// Rebuilds a state from recovered journal files (start-up and outage recovery share it).
    public static func rebuildState(from recovered: RecoveredState) throws -> LicensingState {
        try JournalOutageRecovery.rebuildState(from: recovered)
    }

    /// When the journal has failed, tries to recover (see `JournalOutageRecovery`). Changes that were answered
    /// `unavailable` are dropped by the rebuild; check consumption not yet journaled is kept. Called
    /// periodically; cheap when healthy.
    public func recoverJournalIfFailed() {
        let now = clock.now()
        lock.withLock {
            guard journal.statistics.failed, outage.isDue(at: now) else { return }
            do {
                try outage.probeWritable(directory: journal.directory)
                try? journal.close()
                let (reopened, recovered) = try Journal.open(directory: journal.directory, options: journal.options, fileSystem: outage.fileSystem)
                var rebuilt = try JournalOutageRecovery.rebuildState(from: recovered)
                if !pendingUsage.isEmpty { rebuilt.apply(.consumed(pendingUsage)) }
                journal = reopened
                state = rebuilt
                outage.succeeded()
                logger.notice("journal recovered; state rebuilt from the durable records", metadata: [
                    "tollgate.journal.last_seq": "\(recovered.report.lastSequence)", "tollgate.tokens": "\(rebuilt.tokens.count)",
                ])
            } catch {
                let retry = outage.failed(at: now)
                logger.error("journal still cannot be recovered", metadata: ["tollgate.error": "\(error)", "tollgate.retry_ms": "\(retry)"])
            }
        }
    }
}
