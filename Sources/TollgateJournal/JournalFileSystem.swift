/// An open file, as handed out by a `JournalFileSystem`. For `PosixFileSystem` it is the descriptor.
public struct JournalFile: Hashable, Sendable {
    public var rawValue: Int32
    public init(rawValue: Int32) { self.rawValue = rawValue }
}

/// How `JournalFileSystem.open` opens a file. Files are created with mode 0600: they hold license state.
public enum JournalOpenMode: Sendable, Hashable {
    /// An existing file, for reading and writing (O_RDWR).
    case readWrite
    /// Create, or truncate if it exists, for writing (O_WRONLY | O_CREAT | O_TRUNC). Used for `.tmp` files only.
    case createTruncate
}

/// Every system call the journal makes, and nothing else: the seam through which tests inject a failing
/// fsync, a short write, a full disk or a crash after step N.
///
/// Paths are absolute or relative to the working directory; the journal only passes paths inside its directory.
/// Implementations throw `JournalError` with code `.io` and a message that names the call and the errno,
/// e.g. `"fsync failed: EIO"`.
public protocol JournalFileSystem: Sendable {
    /// Creates the directory (mode 0700) if it does not exist.
    func createDirectory(_ path: String) throws
    /// The names (not paths) of the entries of a directory, without "." and "..", in no particular order.
    func listDirectory(_ path: String) throws -> [String]
    /// The whole content of a file.
    func readFile(_ path: String) throws -> [UInt8]
    func open(_ path: String, mode: JournalOpenMode) throws -> JournalFile
    /// Writes up to `bytes.count` bytes at `offset` (pwrite); returns how many were written, which may be fewer.
    func write(_ file: JournalFile, _ bytes: UnsafeRawBufferPointer, at offset: Int64) throws -> Int
    /// Makes the file's data and metadata durable (fsync).
    func fsync(_ file: JournalFile) throws
    /// Makes the file's data, and the metadata needed to read it back, durable (fdatasync).
    func fdatasync(_ file: JournalFile) throws
    func truncate(_ file: JournalFile, to length: Int64) throws
    func close(_ file: JournalFile) throws
    /// Atomically replaces `to` with `from` (rename(2)); both are in the same directory.
    func rename(_ from: String, to: String) throws
    func unlink(_ path: String) throws
    /// Makes the directory's entries durable: the names created, renamed or removed in it (open + fsync + close).
    func fsyncDirectory(_ path: String) throws
}

extension JournalFileSystem {
    /// Writes all of `bytes` at `offset`, continuing after short writes.
    func writeAll(_ file: JournalFile, _ bytes: [UInt8], at offset: Int64) throws {
        try bytes.withUnsafeBytes { raw in
            var done = 0
            while done < raw.count {
                let n = try self.write(file, UnsafeRawBufferPointer(rebasing: raw[done...]), at: offset + Int64(done))
                guard n > 0 else { throw JournalError(code: .io, message: "write failed: wrote 0 bytes") }
                done += n
            }
        }
    }
}
