import CMemory

/// When to give freed heap back to the kernel (`malloc_trim`).
///
/// glibc keeps what a burst freed (the answers of clients that never read, a journal backlog, read buffers) in its
/// arenas: after three bursts of never-reading clients the daemon's RSS stayed at each burst's peak and ratcheted
/// up. Trimming walks the heap, so it runs only once the daemon has gone quiet after real activity, and at most once
/// per `minimumIntervalNanoseconds`.
///
/// "Quiet" is judged over the last tick, not at an instant: nothing waits for the journal, and since the previous tick
/// the journal took less than `quietBytesPerTick` and fewer than `closedThreshold` connections closed (a
/// CLI polling now and then does not keep the daemon from ever trimming). An instant alone is not enough: a
/// burst's backlog is empty for a moment between two group commits while its connections still hold their buffers,
/// and a trim then (heap still live) released nothing and used up the burst, so the memory stayed (measured:
/// 184 MiB anonymous memory kept after a burst; a `malloc_trim(0)` once it had ended gave back all but 6 MiB).
/// A pure value on injected time, tested without waiting.
struct MemoryTrimPolicy {
    var minimumIntervalNanoseconds: Int64
    /// Journal bytes written since the last trim that count as a burst.
    var bytesThreshold: Int
    /// Connections closed since the last trim that count as a burst.
    var closedThreshold: UInt64
    /// Journal bytes per tick below which the daemon counts as quiet (a trickle of usage flushes is quiet).
    var quietBytesPerTick: Int

    init(
        minimumIntervalNanoseconds: Int64 = 10_000_000_000, bytesThreshold: Int = 8 << 20, closedThreshold: UInt64 = 16,
        quietBytesPerTick: Int = 64 << 10
    ) {
        self.minimumIntervalNanoseconds = minimumIntervalNanoseconds
        self.bytesThreshold = bytesThreshold
        self.closedThreshold = closedThreshold
        self.quietBytesPerTick = quietBytesPerTick
    }

    private var lastTrim: Int64?
    private var bytesAtLastTrim = 0
    private var closedAtLastTrim: UInt64 = 0
    private var bytesAtLastTick = 0
    private var closedAtLastTick: UInt64 = 0

    /// Called once per tick: whether to trim now. `nothingWaiting`: no record waits for the journal and no durable
    /// request waits for room. Counters are cumulative.
    mutating func shouldTrim(nowNanoseconds now: Int64, journalBytesWritten bytes: Int, connectionsClosed closed: UInt64, nothingWaiting: Bool) -> Bool {
        let quietSinceLastTick = nothingWaiting && bytes - bytesAtLastTick < quietBytesPerTick
            && closed &- closedAtLastTick < closedThreshold
        bytesAtLastTick = bytes
        closedAtLastTick = closed
        guard quietSinceLastTick else { return false }
        if let last = lastTrim, now - last < minimumIntervalNanoseconds { return false }
        guard bytes - bytesAtLastTrim >= bytesThreshold || closed &- closedAtLastTrim >= closedThreshold else { return false }
        lastTrim = now
        bytesAtLastTrim = bytes
        closedAtLastTrim = closed
        return true
    }
}

/// The C library's view of the heap (glibc's `mallinfo2`): what is in use and what it keeps free. Zero on a C
/// library without it. Walks the allocator's bins: for diagnostics, never on the request path.
struct HeapStatistics: Equatable {
    var inUse: Int
    var keptFree: Int

    /// Whether the shim was compiled against glibc's allocator (false: its fallbacks, which trim nothing).
    static var shimIsGlibc: Bool { tollgate_heap_shim_is_glibc() == 1 }

    static var current: HeapStatistics {
        var inUse = 0, keptFree = 0
        tollgate_heap_bytes(&inUse, &keptFree)
        return HeapStatistics(inUse: inUse, keptFree: keptFree)
    }
}
