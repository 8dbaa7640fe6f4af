import TollgateJournal
#if canImport(Glibc)
import Glibc
#endif

/// An in-memory `JournalFileSystem` for one directory: fast, deterministic, and it lets the target compare the
/// files before and after `Journal.open`. Paths are `<directory>/<name>`.
final class MemoryFileSystem: JournalFileSystem, @unchecked Sendable {
    private var lock = pthread_mutex_t()
    private(set) var files: [String: [UInt8]] = [:]
    private var open: [Int32: String] = [:]
    private var nextFD: Int32 = 3

    init(files: [String: [UInt8]]) {
        pthread_mutex_init(&lock, nil)
        self.files = files
    }

    deinit { pthread_mutex_destroy(&lock) }

    private func locked<T>(_ body: () throws -> T) rethrows -> T {
        pthread_mutex_lock(&lock)
        defer { pthread_mutex_unlock(&lock) }
        return try body()
    }

    var snapshotOfFiles: [String: [UInt8]] { locked { files } }

    private func name(_ path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return path }
        return String(path[path.index(after: slash)...])
    }

    func createDirectory(_ path: String) throws {}
    func listDirectory(_ path: String) throws -> [String] { locked { Array(files.keys) } }

    func readFile(_ path: String) throws -> [UInt8] {
        try locked {
            guard let bytes = files[name(path)] else { throw JournalError.io("open", errno: ENOENT, path: path) }
            return bytes
        }
    }

    func open(_ path: String, mode: JournalOpenMode) throws -> JournalFile {
        try locked {
            let n = name(path)
            switch mode {
            case .readWrite:
                guard files[n] != nil else { throw JournalError.io("open", errno: ENOENT, path: path) }
            case .createTruncate:
                files[n] = []
            }
            let fd = nextFD
            nextFD += 1
            open[fd] = n
            return JournalFile(rawValue: fd)
        }
    }

    func write(_ file: JournalFile, _ bytes: UnsafeRawBufferPointer, at offset: Int64) throws -> Int {
        try locked {
            guard let n = open[file.rawValue], var content = files[n] else { throw JournalError.io("pwrite", errno: EBADF) }
            let start = Int(offset)
            if content.count < start { content += [UInt8](repeating: 0, count: start - content.count) }
            let overlap = min(bytes.count, content.count - start)
            content.replaceSubrange(start..<start + overlap, with: bytes[0..<overlap])
            content.append(contentsOf: bytes[overlap...])
            files[n] = content
            return bytes.count
        }
    }

    func fsync(_ file: JournalFile) throws { try check(file) }
    func fdatasync(_ file: JournalFile) throws { try check(file) }

    private func check(_ file: JournalFile) throws {
        try locked { guard open[file.rawValue] != nil else { throw JournalError.io("fsync", errno: EBADF) } }
    }

    func truncate(_ file: JournalFile, to length: Int64) throws {
        try locked {
            guard let n = open[file.rawValue], var content = files[n] else { throw JournalError.io("ftruncate", errno: EBADF) }
            let length = Int(length)
            if content.count > length { content.removeLast(content.count - length) } else { content += [UInt8](repeating: 0, count: length - content.count) }
            files[n] = content
        }
    }

    func close(_ file: JournalFile) throws {
        try locked { guard open.removeValue(forKey: file.rawValue) != nil else { throw JournalError.io("close", errno: EBADF) } }
    }

    func rename(_ from: String, to: String) throws {
        try locked {
            guard let bytes = files.removeValue(forKey: name(from)) else { throw JournalError.io("rename", errno: ENOENT, path: from) }
            files[name(to)] = bytes
            for (fd, n) in open where n == name(from) { open[fd] = name(to) }
        }
    }

    func unlink(_ path: String) throws {
        try locked { guard files.removeValue(forKey: name(path)) != nil else { throw JournalError.io("unlink", errno: ENOENT, path: path) } }
    }

    func fsyncDirectory(_ path: String) throws {}
}
