import Dispatch

/// The write-ahead file of Tollgate: opaque records appended in sequence order, made durable by one writer
/// thread with group commit, compacted by snapshots. The format is specified in Protocol/JOURNAL.md.
///
/// Thread safety: every method may be called from any thread. Completions run on the journal's writer thread
/// (records), on its snapshot queue (snapshots), or on a global Dispatch queue (immediate rejections); never
/// on the caller's thread, so a caller may hold its own lock while calling `append`. A completion may call
/// `append` and `snapshot`, but MUST NOT call `flush` or `close` (they wait for the thread running it).
///
/// Call `close()` before dropping the last reference: the writer thread keeps the journal alive until then.
public final class Journal: @unchecked Sendable {
    public let directory: String
    public let options: JournalOptions
    let fileSystem: any JournalFileSystem

    private let lock = JournalLock()
    private let snapshotQueue = DispatchQueue(label: "tollgate.journal.snapshot")
    private let closeLock = JournalLock()
    private var writerThread: JournalThread?

    private struct SnapshotJob {
        var sequence: UInt64
        var encode: @Sendable () -> [UInt8]
        var completion: (@Sendable (Result<Void, JournalError>) -> Void)?
    }

    private enum Item {
        case record(sequence: UInt64, type: UInt8, payload: [UInt8], completion: (@Sendable (Result<UInt64, JournalError>) -> Void)?)
        case rotate(SnapshotJob)
    }

    private enum State { case running, closing, closed }

    /// What `close` does with records still queued (appended, not yet taken by the writer).
    public enum ClosePolicy: Sendable {
        /// Write and fsync everything queued first (the default).
        case writeQueued
        /// Drop what the writer has not started writing: each dropped record's completion runs with
        /// `.unavailable` (never acknowledged, so nothing acknowledged is lost). A write already started finishes.
        /// For a shutdown that must end within a bound whatever the backlog.
        case abandonQueued
    }

    // MARK: Guarded by `lock`
    private var queue: [Item] = []
    /// The storage of the last batch the writer took, emptied and handed back: the queue and the batch take turns
    /// with two arrays, so that taking a batch allocates nothing (−1 allocation per group commit).
    private var spareQueue: [Item] = []
    /// Records appended whose completion has not run yet (queued or being written).
    private var pendingRecords = 0
    /// Set by `close(.abandonQueued)`: the writer drops the queue instead of writing it.
    private var abandoning = false
    /// A durable record, a snapshot rotation, a flush or close is waiting: the writer must not wait.
    private var urgent = false
    /// Monotonic time at which the oldest queued `.buffered` record was appended.
    private var oldestBuffered: UInt64?
    private var state: State = .running
    private var failure: JournalError?
    private var _lastSequence: UInt64
    private var durableSequence: UInt64
    private var highestSnapshotRequested: UInt64?
    private var lastSnapshotSequence: UInt64?
    /// First sequences of the live segments, oldest first; the last is the one being written.
    private var segments: [UInt64]
    /// Snapshot files on disk (sequence numbers).
    private var snapshotFiles: [UInt64]
    /// Bytes in segments, ever (recovered + written); and the value it had when the newest completed snapshot's
    /// segment was started. The difference drives `needsSnapshot`.
    private var liveBytes: Int
    private var coveredBytes = 0
    private var bytesWritten = 0
    private var segmentBytes: Int
    private var fsyncCount = 0
    private var batches = 0
    private var repairs: Int

    // MARK: Owned by the writer thread
    private var file: JournalFile
    private var fileOffset: Int64
    private var currentSegment: UInt64
    private var lastWrittenSequence: UInt64
    /// Group commits to go before the batch observer sees one (writer thread only).
    private var commitsUntilObserved = 0
    /// A group commit's bytes and completions, kept for the next one (emptied, capacity kept up to
    /// `reusedCommitBytes`): no allocation per commit.
    private var commitBytes: [UInt8] = []
    private var commitPending: [Pending] = []
    private static let reusedCommitBytes = 1 << 20

    private init(
        directory: String, options: JournalOptions, fileSystem: any JournalFileSystem,
        outcome: RecoveryOutcome, file: JournalFile, segments: [UInt64], fileOffset: Int
    ) {
        self.directory = directory
        self.options = options
        self.fileSystem = fileSystem
        let report = outcome.state.report
        self._lastSequence = report.lastSequence
        self.durableSequence = report.lastSequence
        self.lastWrittenSequence = report.lastSequence
        self.lastSnapshotSequence = report.snapshotSequence
        self.highestSnapshotRequested = report.snapshotSequence
        self.segments = segments
        self.snapshotFiles = outcome.snapshots
        self.liveBytes = outcome.liveBytes
        self.segmentBytes = fileOffset
        self.repairs = report.tornTailRepaired ? 1 : 0
        self.file = file
        self.fileOffset = Int64(fileOffset)
        self.currentSegment = segments.last!
    }

    /// Opens (creating if missing) the journal directory, recovers (loads the newest valid snapshot, replays the
    /// segments, cuts a torn tail and reports it), and starts the writer thread.
    ///
    /// Throws `.corruption` if the files are damaged in a way that is not a torn tail (see JOURNAL.md), and `.io`
    /// if a system call fails. Only one `Journal` may have a directory open at a time.
    public static func open(
        directory: String, options: JournalOptions = .init(), fileSystem: any JournalFileSystem = PosixFileSystem()
    ) throws -> (Journal, RecoveredState) {
        let outcome = try JournalRecovery.recover(directory: directory, options: options, fileSystem: fileSystem)
        var segments = outcome.segments
        var offset = outcome.lastSegmentEnd
        var liveBytes = outcome.liveBytes
        let file: JournalFile
        if let last = segments.last {
            file = try fileSystem.open(directory + "/" + JournalFormat.segmentFileName(firstSequence: last), mode: .readWrite)
        } else {
            let first = outcome.state.report.lastSequence + 1
            file = try createSegment(firstSequence: first, directory: directory, options: options, fileSystem: fileSystem)
            segments = [first]
            offset = JournalFormat.segmentHeaderSize
            liveBytes += offset
        }
        var adjusted = outcome
        adjusted.liveBytes = liveBytes
        let journal = Journal(
            directory: directory, options: options, fileSystem: fileSystem,
            outcome: adjusted, file: file, segments: segments, fileOffset: offset
        )
        journal.writerThread = JournalThread { journal.writerLoop() }
        return (journal, outcome.state)
    }

    // MARK: Public API

    /// The last sequence assigned by `append` (or recovered).
    public var lastSequence: UInt64 { self.lock.withLock { self._lastSequence } }

    /// False once `close` has begun: appends are refused from then on.
    public var isOpen: Bool { self.lock.withLock { self.state == .running } }

    /// True when the bytes written to segments since the last snapshot exceed `options.segmentTargetBytes`.
    public var needsSnapshot: Bool {
        self.lock.withLock { self.liveBytes - self.coveredBytes > self.options.segmentTargetBytes }
    }

    public var statistics: JournalStatistics {
        self.lock.withLock {
            JournalStatistics(
                lastSequence: self._lastSequence,
                durableSequence: self.durableSequence,
                bytesWritten: self.bytesWritten,
                segmentBytes: self.segmentBytes,
                fsyncCount: self.fsyncCount,
                batches: self.batches,
                failed: self.failure != nil,
                lastSnapshotSequence: self.lastSnapshotSequence,
                repairs: self.repairs,
                pendingRecords: self.pendingRecords
            )
        }
    }

    /// Assigns the next sequence number and enqueues the record; returns the sequence at once (never blocks on I/O).
    ///
    /// The caller calls this while holding its own state lock so that journal order == the order changes were
    /// applied. `completion` runs on the writer thread once the record is written and fsynced (for `.buffered`,
    /// at the next flush), or with the error if it could not be made durable: `.io` for the records of the batch
    /// whose write or fsync failed, `.unavailable` for records after that.
    ///
    /// Returns 0, assigning no sequence, if the record is rejected at once: `.recordTooLarge` when the payload
    /// exceeds `options.maxRecordSize`, `.unavailable` when the journal has failed or is closed. Those
    /// completions run on a global Dispatch queue.
    @discardableResult
    public func append(
        type: UInt8, payload: [UInt8], durability: Durability,
        completion: (@Sendable (Result<UInt64, JournalError>) -> Void)?
    ) -> UInt64 {
        if payload.count > self.options.maxRecordSize {
            Self.reject(completion, JournalError(
                code: .recordTooLarge,
                message: "payload of \(payload.count) bytes exceeds maxRecordSize \(self.options.maxRecordSize)"))
            return 0
        }
        self.lock.lock()
        if let error = self.rejectionLocked() {
            self.lock.unlock()
            Self.reject(completion, error)
            return 0
        }
        self._lastSequence += 1
        let sequence = self._lastSequence
        self.pendingRecords += 1
        self.queue.append(.record(sequence: sequence, type: type, payload: payload, completion: completion))
        switch durability {
        case .durable:
            if !self.urgent {
                self.urgent = true
                self.lock.signalWork()
            }
        case .buffered:
            if self.oldestBuffered == nil {
                self.oldestBuffered = JournalLock.now()
                self.lock.signalWork()
            }
        }
        self.lock.unlock()
        return sequence
    }

    /// Starts a snapshot covering every record up to and including `sequence`.
    ///
    /// The caller passes `lastSequence` read under its lock, right after capturing a copy-on-write copy of its
    /// state. The journal rotates to a new segment *in order* with appends (starting at `sequence + 1`, or later
    /// if records after `sequence` were already written), then calls `encode` and writes the snapshot off the
    /// writer thread: tmp file + fsync + rename + fsync of the directory; then it deletes the segments and
    /// snapshots the new one made obsolete. Appends keep flowing meanwhile. `completion` runs on the snapshot
    /// queue once the snapshot is durable (cleanup failures are not errors: the next `open` finishes it).
    public func snapshot(
        upTo sequence: UInt64, encode: @escaping @Sendable () -> [UInt8],
        completion: (@Sendable (Result<Void, JournalError>) -> Void)?
    ) {
        self.lock.lock()
        if let error = self.rejectionLocked() {
            self.lock.unlock()
            Self.reject(completion, error)
            return
        }
        if sequence > self._lastSequence || sequence < (self.highestSnapshotRequested ?? 0) {
            let error = JournalError(
                code: .invalidArgument,
                message: "snapshot sequence \(sequence) outside \(self.highestSnapshotRequested ?? 0)...\(self._lastSequence)")
            self.lock.unlock()
            Self.reject(completion, error)
            return
        }
        self.highestSnapshotRequested = sequence
        let job = SnapshotJob(sequence: sequence, encode: encode, completion: completion)
        // In order with appends: before the first queued record the snapshot does not cover.
        let index = self.queue.firstIndex {
            if case .record(let s, _, _, _) = $0 { return s > sequence }
            return false
        } ?? self.queue.endIndex
        self.queue.insert(.rotate(job), at: index)
        self.urgent = true
        self.lock.signalWork()
        self.lock.unlock()
    }

    /// Blocks until everything appended so far is durable, or until `timeout` has passed. Used at graceful
    /// shutdown. Throws the I/O error (or `.unavailable`) if some of it could not be made durable, `.timedOut`
    /// when the timeout passed first (the records stay queued), and `.unavailable` once the journal is closed.
    public func flush(timeout: Duration? = nil) throws {
        self.lock.lock()
        defer { self.lock.unlock() }
        if self.state == .closed { throw JournalError.unavailable("journal is closed") }
        let target = self._lastSequence
        let deadline = timeout.map { JournalLock.now() + UInt64(max(0, $0.nanoseconds)) }
        while self.durableSequence < target && self.failure == nil && self.state != .closed {
            self.urgent = true
            self.lock.signalWork()
            if let deadline {
                if JournalLock.now() >= deadline {
                    throw JournalError(code: .timedOut, message: "records up to \(target) were not durable within the timeout")
                }
                self.lock.waitForProgress(until: deadline)
            } else {
                self.lock.waitForProgress()
            }
        }
        if self.durableSequence < target {
            throw self.failure ?? JournalError.unavailable("journal is closed")
        }
    }

    /// Flushes (or, with `.abandonQueued`, drops what is not being written), stops the writer thread, waits for
    /// a snapshot in progress, and closes the files. Throws if records appended before could not be made durable
    /// (with `.abandonQueued`: if any was dropped). Idempotent.
    public func close(_ policy: ClosePolicy = .writeQueued) throws {
        self.closeLock.lock()
        defer { self.closeLock.unlock() }
        self.lock.lock()
        guard self.state == .running else {
            self.lock.unlock()
            return
        }
        self.state = .closing
        if policy == .abandonQueued { self.abandoning = true }
        self.lock.signalWork()
        self.lock.unlock()

        self.writerThread?.join()
        self.writerThread = nil
        self.snapshotQueue.sync {}
        let closeError: Error?
        do {
            try self.fileSystem.close(self.file)
            closeError = nil
        } catch {
            closeError = error
        }

        self.lock.lock()
        self.state = .closed
        let complete = self.durableSequence >= self._lastSequence
        let failure = self.failure
        self.lock.broadcastProgress()
        self.lock.unlock()
        if !complete { throw failure ?? JournalError.unavailable("journal closed before all records were durable") }
        if let closeError, failure == nil { throw closeError }
    }

    // MARK: Rejections

    private func rejectionLocked() -> JournalError? {
        if let failure = self.failure {
            return JournalError.unavailable("journal failed after an I/O error: \(failure.message)")
        }
        if self.state != .running { return JournalError.unavailable("journal is closed") }
        return nil
    }

    private static func reject<T>(_ completion: (@Sendable (Result<T, JournalError>) -> Void)?, _ error: JournalError) {
        guard let completion else { return }
        DispatchQueue.global().async { completion(.failure(error)) }
    }

    // MARK: Writer thread

    private func writerLoop() {
        self.lock.lock()
        while true {
            while true {
                if self.queue.isEmpty {
                    if self.state != .running {
                        self.lock.broadcastProgress()
                        self.lock.unlock()
                        return
                    }
                    self.lock.waitForWork(until: nil)
                    continue
                }
                if self.urgent || self.state != .running || self.failure != nil { break }
                let deadline = (self.oldestBuffered ?? 0) + self.options.flushInterval.nanoseconds
                if JournalLock.now() >= deadline { break }
                self.lock.waitForWork(until: deadline)
            }
            if self.abandoning {
                let dropped = self.queue
                self.queue = []
                self.lock.unlock()
                self.abandon(dropped)
                self.lock.lock()
                continue
            }
            var batch = self.takeBatchLocked()
            self.lock.unlock()

            self.process(batch)
            // Unique here (the queue holds other storage): emptied in place, outside the lock (completions released).
            batch.removeAll(keepingCapacity: true)

            self.lock.lock()
            if batch.capacity <= 4 * self.options.maxBatchRecords { self.spareQueue = batch }
        }
    }

    /// Takes the next group commit off the queue: at most `maxBatchRecords` records and `maxBatchBytes` payload
    /// bytes (at least one record), and the snapshot rotations among them. What is left stays queued and is
    /// taken at once by the next turn of the loop (`urgent` stays set), without waiting for new work.
    private func takeBatchLocked() -> [Item] {
        var records = 0
        var bytes = 0
        var end = self.queue.startIndex
        while end < self.queue.endIndex {
            if case .record(_, _, let payload, _) = self.queue[end] {
                if records > 0 && (records == self.options.maxBatchRecords || bytes + payload.count > self.options.maxBatchBytes) { break }
                records += 1
                bytes += payload.count
            }
            end += 1
        }
        let batch: [Item]
        if end == self.queue.endIndex {
            batch = self.queue
            // The queue goes on in the spare storage (a backlog's storage is not kept: an idle journal returns to a
            // small queue).
            self.queue = self.spareQueue
            self.spareQueue = []
            self.urgent = false
            self.oldestBuffered = nil
        } else {
            batch = Array(self.queue[..<end])
            self.queue.removeFirst(end)
            self.urgent = true
        }
        return batch
    }

    /// Fails the completions of records dropped by `close(.abandonQueued)`, and of the snapshot jobs among them.
    private func abandon(_ dropped: [Item]) {
        let error = JournalError.unavailable("the daemon stopped before the record was written")
        var count = 0
        for item in dropped {
            switch item {
            case .record(_, _, _, let completion):
                count += 1
                completion?(.failure(error))
            case .rotate(let job):
                job.completion?(.failure(error))
            }
        }
        self.lock.withLock {
            self.pendingRecords -= count
            self.lock.broadcastProgress()
        }
    }

    private typealias Pending = (sequence: UInt64, completion: (@Sendable (Result<UInt64, JournalError>) -> Void)?)

    private func process(_ batch: [Item]) {
        var size = 0
        for item in batch {
            if case .record(_, _, let payload, _) = item { size += JournalFormat.recordHeaderSize + payload.count }
        }
        var buffer = self.commitBytes
        var pending = self.commitPending
        (self.commitBytes, self.commitPending) = ([], [])
        defer {
            if buffer.capacity <= Self.reusedCommitBytes { self.commitBytes = buffer }
            self.commitPending = pending
        }
        buffer.reserveCapacity(size)
        pending.reserveCapacity(batch.count)
        for item in batch {
            switch item {
            case .record(let sequence, let type, let payload, let completion):
                JournalFormat.encodeRecord(sequence: sequence, type: type, payload: payload, into: &buffer)
                pending.append((sequence, completion))
            case .rotate(let job):
                self.commit(&buffer, &pending)
                self.rotate(for: job)
            }
        }
        self.commit(&buffer, &pending)
    }

    /// One group commit: one write call, one fdatasync, then every completion.
    private func commit(_ buffer: inout [UInt8], _ pending: inout [Pending]) {
        defer {
            buffer.removeAll(keepingCapacity: true)
            pending.removeAll(keepingCapacity: true)
        }
        guard let last = pending.last else { return }
        var syncNanoseconds: Int64?
        // Writer-thread state: which commits the observer samples (the first, then one in `batchObserverEvery`).
        let observed = options.batchObserver != nil && commitsUntilObserved == 0
        if options.batchObserver != nil { commitsUntilObserved = observed ? max(1, options.batchObserverEvery) - 1 : commitsUntilObserved - 1 }
        if let failure = self.lock.withLock({ self.failure }) {
            let error = JournalError.unavailable("journal failed after an I/O error: \(failure.message)")
            self.lock.withLock { self.pendingRecords -= pending.count }
            for p in pending { p.completion?(.failure(error)) }
            return
        }
        do {
            try self.fileSystem.writeAll(self.file, buffer, at: self.fileOffset)
            if self.options.fsync {
                let started = observed ? ContinuousClock.now : nil
                try self.fileSystem.fdatasync(self.file)
                if let started { syncNanoseconds = Self.nanoseconds(started.duration(to: .now)) }
            }
        } catch {
            let ioError = Self.asJournalError(error)
            self.fail(with: ioError)
            self.lock.withLock { self.pendingRecords -= pending.count }
            for p in pending { p.completion?(.failure(ioError)) }
            return
        }
        self.fileOffset += Int64(buffer.count)
        self.lastWrittenSequence = last.sequence
        self.lock.withLock {
            self.durableSequence = last.sequence
            self.bytesWritten += buffer.count
            self.liveBytes += buffer.count
            self.segmentBytes = Int(self.fileOffset)
            self.batches += 1
            self.pendingRecords -= pending.count
            if self.options.fsync { self.fsyncCount += 1 }
            self.lock.broadcastProgress()
        }
        // Before the completions: whoever has seen an answer of this batch finds it counted (a histogram update,
        // well under a microsecond, ahead of the answers).
        if observed { self.options.batchObserver?(JournalBatch(records: pending.count, bytes: buffer.count, syncNanoseconds: syncNanoseconds)) }
        for p in pending { p.completion?(.success(p.sequence)) }
    }

    static func nanoseconds(_ duration: Duration) -> Int64 {
        duration.components.seconds &* 1_000_000_000 &+ duration.components.attoseconds / 1_000_000_000
    }

    /// Enters the failed state after a failed write or fsync: tries to cut the segment back to the last durable
    /// offset so that bytes nobody was told are durable cannot reappear on replay.
    private func fail(with error: JournalError) {
        var repaired = false
        if (try? self.fileSystem.truncate(self.file, to: self.fileOffset)) != nil {
            repaired = true
            if self.options.fsync { try? self.fileSystem.fsync(self.file) }
        }
        self.lock.withLock {
            if self.failure == nil { self.failure = error }
            if repaired { self.repairs += 1 }
            self.lock.broadcastProgress()
        }
    }

    private func rotate(for job: SnapshotJob) {
        if let failure = self.lock.withLock({ self.failure }) {
            job.completion?(.failure(JournalError.unavailable("journal failed after an I/O error: \(failure.message)")))
            return
        }
        let first = self.lastWrittenSequence + 1
        let mark: Int
        if first == self.currentSegment {
            // The current segment is empty and already starts where the snapshot ends.
            mark = self.lock.withLock { self.liveBytes - Int(self.fileOffset) }
        } else {
            let newFile: JournalFile
            do {
                newFile = try Self.createSegment(
                    firstSequence: first, directory: self.directory, options: self.options, fileSystem: self.fileSystem)
            } catch {
                let ioError = Self.asJournalError(error)
                self.fail(with: ioError)
                job.completion?(.failure(ioError))
                return
            }
            // The old segment was fdatasynced by its last commit; closing it cannot lose data.
            try? self.fileSystem.close(self.file)
            self.file = newFile
            self.fileOffset = Int64(JournalFormat.segmentHeaderSize)
            self.currentSegment = first
            mark = self.lock.withLock {
                let mark = self.liveBytes
                self.segments.append(first)
                self.liveBytes += JournalFormat.segmentHeaderSize
                self.bytesWritten += JournalFormat.segmentHeaderSize
                self.segmentBytes = JournalFormat.segmentHeaderSize
                if self.options.fsync { self.fsyncCount += 2 }
                return mark
            }
        }
        self.snapshotQueue.async { self.writeSnapshot(job, coveredBytes: mark) }
    }

    /// Creates a segment durably: tmp file with its header, fsync, rename, fsync of the directory.
    static func createSegment(
        firstSequence: UInt64, directory: String, options: JournalOptions, fileSystem fs: any JournalFileSystem
    ) throws -> JournalFile {
        let path = directory + "/" + JournalFormat.segmentFileName(firstSequence: firstSequence)
        let tmp = path + JournalFormat.temporarySuffix
        let file = try fs.open(tmp, mode: .createTruncate)
        do {
            try fs.writeAll(file, JournalFormat.encodeSegmentHeader(firstSequence: firstSequence), at: 0)
            if options.fsync { try fs.fsync(file) }
            try fs.rename(tmp, to: path)
            if options.fsync { try fs.fsyncDirectory(directory) }
        } catch {
            try? fs.close(file)
            throw error
        }
        return file
    }

    // MARK: Snapshot queue

    private func writeSnapshot(_ job: SnapshotJob, coveredBytes: Int) {
        let fs = self.fileSystem
        let name = JournalFormat.snapshotFileName(sequence: job.sequence)
        let path = self.directory + "/" + name
        let tmp = path + JournalFormat.temporarySuffix
        let bytes = JournalFormat.encodeSnapshot(sequence: job.sequence, payload: job.encode())
        do {
            let file = try fs.open(tmp, mode: .createTruncate)
            do {
                try fs.writeAll(file, bytes, at: 0)
                if self.options.fsync { try fs.fsync(file) }
            } catch {
                try? fs.close(file)
                throw error
            }
            try fs.close(file)
            try fs.rename(tmp, to: path)
            if self.options.fsync { try fs.fsyncDirectory(self.directory) }
        } catch {
            try? fs.unlink(tmp)
            job.completion?(.failure(Self.asJournalError(error)))
            return
        }

        // Durable: everything up to job.sequence can now be recovered from the snapshot.
        let (obsoleteSegments, obsoleteSnapshots): ([UInt64], [UInt64]) = self.lock.withLock {
            if self.options.fsync { self.fsyncCount += 2 }
            self.lastSnapshotSequence = max(self.lastSnapshotSequence ?? 0, job.sequence)
            self.coveredBytes = max(self.coveredBytes, coveredBytes)
            if !self.snapshotFiles.contains(job.sequence) { self.snapshotFiles.append(job.sequence) }
            // A segment is obsolete when the next one starts at or before job.sequence + 1.
            var segments: [UInt64] = []
            while self.segments.count >= 2 && self.segments[1] <= job.sequence + 1 {
                segments.append(self.segments.removeFirst())
            }
            let snapshots = self.snapshotFiles.filter { $0 < job.sequence }
            self.snapshotFiles.removeAll { $0 < job.sequence }
            return (segments, snapshots)
        }
        // Deleting needs no fsync: a deletion lost in a crash leaves a file the next open removes again.
        for first in obsoleteSegments {
            try? fs.unlink(self.directory + "/" + JournalFormat.segmentFileName(firstSequence: first))
        }
        for sequence in obsoleteSnapshots {
            try? fs.unlink(self.directory + "/" + JournalFormat.snapshotFileName(sequence: sequence))
        }
        job.completion?(.success(()))
    }

    private static func asJournalError(_ error: Error) -> JournalError {
        if let error = error as? JournalError { return error }
        return JournalError(code: .io, message: "\(error)")
    }
}
