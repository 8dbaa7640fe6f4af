/// When a record's completion may run.
public enum Durability: Sendable, Hashable {
    /// The completion runs after the record is written and fsynced (fdatasync). The writer wakes at once.
    case durable
    /// The record is written and synced within `JournalOptions.flushInterval` (or sooner, with the next
    /// durable record); the completion runs after that sync. For usage counters, where losing the last
    /// fraction of a second on power loss is acceptable.
    case buffered
}

/// Tuning knobs of a `Journal`. The defaults suit the daemon; tests shrink them.
public struct JournalOptions: Sendable {
    /// The largest payload `append` accepts, in bytes (default 16 MiB, at most `UInt32.max`). On replay, a record
    /// declaring a longer payload is invalid (a torn tail or corruption, see JOURNAL.md).
    public var maxRecordSize: Int
    /// A hint (default 64 MiB): `needsSnapshot` turns true once this many bytes were written since the last
    /// snapshot. The journal never snapshots on its own; the owner decides when.
    public var segmentTargetBytes: Int
    /// The longest a `.buffered` record waits before it is written and synced (default 100 ms).
    public var flushInterval: Duration
    /// Whether to fsync at all (default true). `false` is only for tests and benchmarks that opt out of
    /// durability: completions then report success once the bytes are written.
    public var fsync: Bool
    /// The most records one group commit (one write, one fdatasync) carries (default 4096). A longer queue is
    /// written in several commits, so that the first records of a backlog are acknowledged after one bounded
    /// write instead of after the whole backlog, and the writer never builds an unbounded buffer.
    public var maxBatchRecords: Int
    /// The most payload bytes one group commit carries (default 4 MiB); a single larger record is written alone.
    public var maxBatchBytes: Int
    /// Told about every group commit that reached the disk, on the writer thread, before its completions run: the
    /// metrics' hook (fsync latency, batch size). Kept in the options so that a journal reopened after an outage
    /// keeps reporting; nil: no clock is read around the fsync.
    public var batchObserver: (@Sendable (JournalBatch) -> Void)?
    /// `batchObserver` sees one group commit in this many (the first, then every N-th), timed around its fsync: a
    /// sample of the distributions. Every commit cost two clock reads and two histogram updates on the writer
    /// thread, which at one METER per commit was ~5 % of a durable METER's instructions (callgrind).
    public var batchObserverEvery: Int = 16

    public init(
        maxRecordSize: Int = 16 * 1024 * 1024,
        segmentTargetBytes: Int = 64 * 1024 * 1024,
        flushInterval: Duration = .milliseconds(100),
        fsync: Bool = true,
        maxBatchRecords: Int = 4096,
        maxBatchBytes: Int = 4 << 20
    ) {
        self.maxRecordSize = max(0, min(maxRecordSize, Int(UInt32.max)))
        self.segmentTargetBytes = segmentTargetBytes
        self.flushInterval = flushInterval
        self.fsync = fsync
        self.maxBatchRecords = max(1, maxBatchRecords)
        self.maxBatchBytes = max(1, maxBatchBytes)
    }
}

/// One group commit as `JournalOptions.batchObserver` sees it.
public struct JournalBatch: Sendable, Hashable {
    /// Records in the batch.
    public var records: Int
    /// Bytes written (record headers included).
    public var bytes: Int
    /// How long the fdatasync took; nil when `fsync` is off.
    public var syncNanoseconds: Int64?

    public init(records: Int, bytes: Int, syncNanoseconds: Int64?) {
        self.records = records
        self.bytes = bytes
        self.syncNanoseconds = syncNanoseconds
    }
}
