/// What `Journal.open` found and did. Logged by the daemon at startup and exposed in its stats.
public struct RecoveryReport: Sendable, Equatable {
    /// The sequence of the snapshot loaded, nil if none was.
    public var snapshotSequence: UInt64?
    /// Records returned in `RecoveredState.records` (those after the snapshot).
    public var recordsReplayed: Int
    /// Segment files read.
    public var segmentsRead: Int
    /// True if the last segment ended in a torn tail that was cut off.
    public var tornTailRepaired: Bool
    /// Bytes cut off the torn tail.
    public var truncatedBytes: Int
    /// The file whose tail was cut, if any.
    public var repairedFile: String?
    /// The offset the repaired file was cut back to (the end of its last valid record).
    public var repairedOffset: Int?
    /// The last sequence recovered (snapshot or record); the next append gets `lastSequence + 1`.
    public var lastSequence: UInt64
    /// Snapshot files skipped because they failed validation (newest first), with the reason.
    public var invalidSnapshots: [String]
    /// Leftover files removed: `.tmp` files of interrupted writes, and segments and snapshots made obsolete by
    /// a snapshot whose cleanup was interrupted.
    public var removedFiles: [String]

    public init(
        snapshotSequence: UInt64? = nil,
        recordsReplayed: Int = 0,
        segmentsRead: Int = 0,
        tornTailRepaired: Bool = false,
        truncatedBytes: Int = 0,
        repairedFile: String? = nil,
        repairedOffset: Int? = nil,
        lastSequence: UInt64 = 0,
        invalidSnapshots: [String] = [],
        removedFiles: [String] = []
    ) {
        self.snapshotSequence = snapshotSequence
        self.recordsReplayed = recordsReplayed
        self.segmentsRead = segmentsRead
        self.tornTailRepaired = tornTailRepaired
        self.truncatedBytes = truncatedBytes
        self.repairedFile = repairedFile
        self.repairedOffset = repairedOffset
        self.lastSequence = lastSequence
        self.invalidSnapshots = invalidSnapshots
        self.removedFiles = removedFiles
    }
}

/// The state `Journal.open` hands to its owner: apply the snapshot, then every record, in order.
public struct RecoveredState: Sendable {
    /// The newest valid snapshot, if any.
    public var snapshot: (sequence: UInt64, payload: [UInt8])?
    /// Records with sequence greater than the snapshot's (or all, without one), contiguous and in order.
    public var records: [JournalRecord]
    public var report: RecoveryReport

    public init(snapshot: (sequence: UInt64, payload: [UInt8])?, records: [JournalRecord], report: RecoveryReport) {
        self.snapshot = snapshot
        self.records = records
        self.report = report
    }
}

/// Counters for monitoring; a consistent copy taken under the journal's lock.
public struct JournalStatistics: Sendable, Equatable {
    /// The last sequence assigned by `append` (or recovered).
    public var lastSequence: UInt64
    /// Every record up to this sequence is durable (fsynced, or written when `fsync` is off).
    public var durableSequence: UInt64
    /// Bytes written to segments by this process (headers included).
    public var bytesWritten: Int
    /// Size of the current segment.
    public var segmentBytes: Int
    /// fsync and fdatasync calls made by this process on segments, snapshots and the directory.
    public var fsyncCount: Int
    /// Group commits: one write call + one fdatasync each, however many records they carry.
    public var batches: Int
    /// True once an I/O failure put the journal into the failed state.
    public var failed: Bool
    /// The sequence of the newest durable snapshot, if any.
    public var lastSnapshotSequence: UInt64?
    /// Torn tails cut at open plus truncations back to the durable offset after an I/O failure.
    public var repairs: Int
    /// Records appended whose completion has not run yet: queued, or in the group commit being written.
    public var pendingRecords: Int = 0
}
