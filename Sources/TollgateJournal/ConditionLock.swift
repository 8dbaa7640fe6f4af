#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// A pthread mutex with two condition variables on the monotonic clock, so the writer can wait for work
/// with a deadline and `flush` can wait for durability on the same lock.
final class JournalLock: @unchecked Sendable {
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>
    /// Signalled when there is work for the writer thread.
    private let work: UnsafeMutablePointer<pthread_cond_t>
    /// Broadcast when `durableSequence` advances or the journal fails.
    private let progress: UnsafeMutablePointer<pthread_cond_t>

    init() {
        self.mutex = .allocate(capacity: 1)
        self.work = .allocate(capacity: 1)
        self.progress = .allocate(capacity: 1)
        pthread_mutex_init(self.mutex, nil)
        var attr = pthread_condattr_t()
        pthread_condattr_init(&attr)
        pthread_condattr_setclock(&attr, CLOCK_MONOTONIC)
        pthread_cond_init(self.work, &attr)
        pthread_cond_init(self.progress, &attr)
        pthread_condattr_destroy(&attr)
    }

    deinit {
        pthread_cond_destroy(self.work)
        pthread_cond_destroy(self.progress)
        pthread_mutex_destroy(self.mutex)
        self.work.deallocate()
        self.progress.deallocate()
        self.mutex.deallocate()
    }

    func lock() { pthread_mutex_lock(self.mutex) }
    func unlock() { pthread_mutex_unlock(self.mutex) }

    func withLock<T>(_ body: () throws -> T) rethrows -> T {
        self.lock()
        defer { self.unlock() }
        return try body()
    }

    func signalWork() { pthread_cond_signal(self.work) }
    func broadcastProgress() { pthread_cond_broadcast(self.progress) }

    /// Waits for `signalWork` (lock held), or until the monotonic clock reaches `deadline` (nanoseconds) if given.
    func waitForWork(until deadline: UInt64?) {
        guard let deadline else {
            pthread_cond_wait(self.work, self.mutex)
            return
        }
        var ts = timespec(tv_sec: Int(deadline / 1_000_000_000), tv_nsec: Int(deadline % 1_000_000_000))
        _ = pthread_cond_timedwait(self.work, self.mutex, &ts)
    }

    func waitForProgress() { pthread_cond_wait(self.progress, self.mutex) }

    /// Waits for `broadcastProgress` (lock held), or until the monotonic clock reaches `deadline` (nanoseconds).
    func waitForProgress(until deadline: UInt64) {
        var ts = timespec(tv_sec: Int(deadline / 1_000_000_000), tv_nsec: Int(deadline % 1_000_000_000))
        _ = pthread_cond_timedwait(self.progress, self.mutex, &ts)
    }

    /// The monotonic clock, in nanoseconds.
    static func now() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
    }
}

/// Runs `body` on a new pthread; `join` waits for it to end.
final class JournalThread: @unchecked Sendable {
    private var thread = pthread_t()

    private final class Box {
        let body: () -> Void
        init(_ body: @escaping () -> Void) { self.body = body }
    }

    init(_ body: @escaping () -> Void) {
        let box = Unmanaged.passRetained(Box(body)).toOpaque()
        let rc = pthread_create(&self.thread, nil, { arg in
            let box = Unmanaged<Box>.fromOpaque(arg!).takeRetainedValue()
            box.body()
            return nil
        }, box)
        precondition(rc == 0, "pthread_create failed: \(errnoName(rc))")
    }

    func join() { pthread_join(self.thread, nil) }
}

extension Duration {
    var nanoseconds: UInt64 {
        let (seconds, attoseconds) = self.components
        guard seconds >= 0, attoseconds >= 0 else { return 0 }
        return UInt64(seconds) * 1_000_000_000 + UInt64(attoseconds / 1_000_000_000)
    }
}
