/// When to give freed heap back to the kernel (`malloc_trim`).
///
/// glibc keeps what a burst freed (the answers of clients that never read, a journal backlog, read buffers) in its
/// arenas: after three bursts of never-reading clients the daemon's RSS stayed at each burst's peak and ratcheted
/// up. Trimming walks the heap, so it runs only once the daemon has gone quiet after real activity: nothing waits
/// for the journal, and enough was written to it or enough connections closed since the last trim; and at most
/// once per `minimumIntervalNanoseconds`. A pure value on injected time, tested without waiting.
struct MemoryTrimPolicy {
    var minimumIntervalNanoseconds: Int64
    /// Journal bytes written since the last trim that count as a burst.
    var bytesThreshold: Int
    /// Connections closed since the last trim that count as a burst.
    var closedThreshold: UInt64

    init(minimumIntervalNanoseconds: Int64 = 10_000_000_000, bytesThreshold: Int = 8 << 20, closedThreshold: UInt64 = 16) {
        self.minimumIntervalNanoseconds = minimumIntervalNanoseconds
        self.bytesThreshold = bytesThreshold
        self.closedThreshold = closedThreshold
    }

    private var lastTrim: Int64?
    private var bytesAtLastTrim = 0
    private var closedAtLastTrim: UInt64 = 0

    /// Whether to trim now. `quiet`: nothing waits for the journal. Counters are cumulative.
    mutating func shouldTrim(nowNanoseconds now: Int64, journalBytesWritten bytes: Int, connectionsClosed closed: UInt64, quiet: Bool) -> Bool {
        guard quiet else { return false }
        if let last = lastTrim, now - last < minimumIntervalNanoseconds { return false }
        guard bytes - bytesAtLastTrim >= bytesThreshold || closed &- closedAtLastTrim >= closedThreshold else { return false }
        lastTrim = now
        bytesAtLastTrim = bytes
        closedAtLastTrim = closed
        return true
    }
}
