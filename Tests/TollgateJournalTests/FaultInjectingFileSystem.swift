import Foundation
import Glibc
import TollgateJournal

/// A `JournalFileSystem` over the real one that fails on command: a failing fsync, a short write, ENOSPC,
/// EIO, a failing ftruncate, a gate that holds the writer inside fdatasync, or a "crash" after N steps, after
/// which every call fails and does nothing, as if the process had died (the page cache keeps what was written).
final class FaultInjectingFileSystem: JournalFileSystem, @unchecked Sendable {
    private let base = PosixFileSystem()
    private let lock = NSLock()

    private var _steps: [String] = []
    private var crashAfter: Int?
    private var _crashed = false
    private var fsyncError: Int32?
    private var writeError: Int32?
    private var shortWrite = false
    private var truncateFails = false
    private var fdatasyncGate: (@Sendable () -> Void)?

    /// Mutating calls made since `resetSteps` (name + path or descriptor).
    var steps: [String] { self.lock.withLock { self._steps } }
    var crashed: Bool { self.lock.withLock { self._crashed } }

    func resetSteps() { self.lock.withLock { self._steps = [] } }
    /// After `count` more mutating calls succeed, every call fails with EIO and does nothing.
    func crash(afterSteps count: Int) { self.lock.withLock { self._steps = []; self.crashAfter = count } }
    /// Every later fsync / fdatasync (of a file or a directory) fails with `errno`.
    func failFsync(_ errno: Int32 = EIO) { self.lock.withLock { self.fsyncError = errno } }
    /// The next write writes half its bytes (when `short`), and the write after that fails with `errno`;
    /// later writes fail too.
    func failWrites(_ errno: Int32, short: Bool) { self.lock.withLock { self.writeError = errno; self.shortWrite = short } }
    func failTruncate() { self.lock.withLock { self.truncateFails = true } }
    /// Runs `gate` inside the next fdatasync of a segment, before syncing: the test holds the writer there.
    func gateNextFdatasync(_ gate: @escaping @Sendable () -> Void) { self.lock.withLock { self.fdatasyncGate = gate } }

    /// Holds the next fdatasync until `release` is signalled; `entered` is signalled when the writer is in it.
    /// The journal's writer is then stuck inside one commit while the test queues more behind it.
    func holdNextFdatasync() -> (entered: DispatchSemaphore, release: DispatchSemaphore) {
        let entered = DispatchSemaphore(value: 0)
        let release = DispatchSemaphore(value: 0)
        self.gateNextFdatasync {
            entered.signal()
            release.wait()
        }
        return (entered, release)
    }

    private func step(_ name: String) throws {
        try self.lock.withLock {
            if self._crashed { throw JournalError.io(name, errno: EIO) }
            if let limit = self.crashAfter, self._steps.count >= limit {
                self._crashed = true
                throw JournalError.io(name + " (crashed)", errno: EIO)
            }
            self._steps.append(name)
        }
    }

    private func checkAlive(_ name: String) throws {
        if self.crashed { throw JournalError.io(name, errno: EIO) }
    }

    func createDirectory(_ path: String) throws {
        try self.checkAlive("mkdir")
        try self.base.createDirectory(path)
    }

    func listDirectory(_ path: String) throws -> [String] {
        try self.checkAlive("opendir")
        return try self.base.listDirectory(path)
    }

    func readFile(_ path: String) throws -> [UInt8] {
        try self.checkAlive("read")
        return try self.base.readFile(path)
    }

    func open(_ path: String, mode: JournalOpenMode) throws -> JournalFile {
        try self.step("open \((path as NSString).lastPathComponent)")
        return try self.base.open(path, mode: mode)
    }

    func write(_ file: JournalFile, _ bytes: UnsafeRawBufferPointer, at offset: Int64) throws -> Int {
        try self.step("write fd")
        let (error, short) = self.lock.withLock { () -> (Int32?, Bool) in
            let result = (self.writeError, self.shortWrite)
            self.shortWrite = false
            return result
        }
        if let error {
            if short && bytes.count > 1 {
                return try self.base.write(file, UnsafeRawBufferPointer(rebasing: bytes[..<(bytes.count / 2)]), at: offset)
            }
            throw JournalError.io("write", errno: error)
        }
        return try self.base.write(file, bytes, at: offset)
    }

    func fsync(_ file: JournalFile) throws {
        try self.step("fsync fd")
        if let error = self.lock.withLock({ self.fsyncError }) { throw JournalError.io("fsync", errno: error) }
        try self.base.fsync(file)
    }

    func fdatasync(_ file: JournalFile) throws {
        try self.step("fdatasync fd")
        let gate = self.lock.withLock { () -> (@Sendable () -> Void)? in
            defer { self.fdatasyncGate = nil }
            return self.fdatasyncGate
        }
        gate?()
        if let error = self.lock.withLock({ self.fsyncError }) { throw JournalError.io("fdatasync", errno: error) }
        try self.base.fdatasync(file)
    }

    func truncate(_ file: JournalFile, to length: Int64) throws {
        try self.step("ftruncate fd")
        if self.lock.withLock({ self.truncateFails }) { throw JournalError.io("ftruncate", errno: EIO) }
        try self.base.truncate(file, to: length)
    }

    func close(_ file: JournalFile) throws {
        // A dead process closes nothing, but the descriptor must not leak from the test process.
        if self.crashed {
            try? self.base.close(file)
            throw JournalError.io("close", errno: EIO)
        }
        try self.base.close(file)
    }

    func rename(_ from: String, to: String) throws {
        try self.step("rename \((to as NSString).lastPathComponent)")
        try self.base.rename(from, to: to)
    }

    func unlink(_ path: String) throws {
        try self.step("unlink \((path as NSString).lastPathComponent)")
        try self.base.unlink(path)
    }

    func fsyncDirectory(_ path: String) throws {
        try self.step("fsync directory")
        if let error = self.lock.withLock({ self.fsyncError }) { throw JournalError.io("fsync", errno: error) }
        try self.base.fsyncDirectory(path)
    }
}
