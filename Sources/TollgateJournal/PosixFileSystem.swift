#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// The real file system: thin wrappers over POSIX calls, retrying EINTR.
public struct PosixFileSystem: JournalFileSystem {
    public init() {}

    public func createDirectory(_ path: String) throws {
        if mkdir(path, 0o700) != 0 {
            let e = errno
            var st = stat()
            if e == EEXIST, stat(path, &st) == 0, (st.st_mode & S_IFMT) == S_IFDIR { return }
            throw JournalError.io("mkdir", errno: e, path: path)
        }
    }

    public func listDirectory(_ path: String) throws -> [String] {
        guard let dir = opendir(path) else { throw JournalError.io("opendir", errno: errno, path: path) }
        defer { closedir(dir) }
        var names: [String] = []
        while true {
            errno = 0
            guard let entry = readdir(dir) else {
                if errno != 0 { throw JournalError.io("readdir", errno: errno, path: path) }
                break
            }
            let name = withUnsafePointer(to: &entry.pointee.d_name) {
                String(cString: UnsafeRawPointer($0).assumingMemoryBound(to: CChar.self))
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names
    }

    public func readFile(_ path: String) throws -> [UInt8] {
        let fd = try retrying("open", path: path) { Glibc.open(path, O_RDONLY | O_CLOEXEC) }
        defer { _ = Glibc.close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw JournalError.io("fstat", errno: errno, path: path) }
        var bytes = [UInt8](repeating: 0, count: Int(st.st_size))
        var done = 0
        while done < bytes.count {
            let n = try bytes.withUnsafeMutableBytes { raw in
                try retrying("read", path: path) { Glibc.read(fd, raw.baseAddress! + done, raw.count - done) }
            }
            if n == 0 { break }  // shrank while reading
            done += n
        }
        if done < bytes.count { bytes.removeLast(bytes.count - done) }
        return bytes
    }

    public func open(_ path: String, mode: JournalOpenMode) throws -> JournalFile {
        let flags: Int32
        switch mode {
        case .readWrite: flags = O_RDWR | O_CLOEXEC
        case .createTruncate: flags = O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC
        }
        let fd = try retrying("open", path: path) { Glibc.open(path, flags, 0o600) }
        return JournalFile(rawValue: fd)
    }

    public func write(_ file: JournalFile, _ bytes: UnsafeRawBufferPointer, at offset: Int64) throws -> Int {
        if bytes.isEmpty { return 0 }
        return try retrying("write") { pwrite(file.rawValue, bytes.baseAddress!, bytes.count, off_t(offset)) }
    }

    public func fsync(_ file: JournalFile) throws {
        _ = try retrying("fsync") { Glibc.fsync(file.rawValue) }
    }

    public func fdatasync(_ file: JournalFile) throws {
        _ = try retrying("fdatasync") { Glibc.fdatasync(file.rawValue) }
    }

    public func truncate(_ file: JournalFile, to length: Int64) throws {
        _ = try retrying("ftruncate") { ftruncate(file.rawValue, off_t(length)) }
    }

    public func close(_ file: JournalFile) throws {
        // Never retry close: on Linux the descriptor is gone even when close reports EINTR.
        if Glibc.close(file.rawValue) != 0 && errno != EINTR { throw JournalError.io("close", errno: errno) }
    }

    public func rename(_ from: String, to: String) throws {
        _ = try retrying("rename", path: to) { Glibc.rename(from, to) }
    }

    public func unlink(_ path: String) throws {
        _ = try retrying("unlink", path: path) { Glibc.unlink(path) }
    }

    public func fsyncDirectory(_ path: String) throws {
        let fd = try retrying("open", path: path) { Glibc.open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC) }
        defer { _ = Glibc.close(fd) }
        _ = try retrying("fsync", path: path) { Glibc.fsync(fd) }
    }

    private func retrying<T: BinaryInteger>(_ operation: String, path: String? = nil, _ call: () -> T) throws -> T {
        while true {
            let result = call()
            if result >= 0 { return result }
            let e = errno
            if e == EINTR { continue }
            throw JournalError.io(operation, errno: e, path: path)
        }
    }
}
