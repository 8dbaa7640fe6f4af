#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Why a journal operation failed. Compare errors by `code`; `message` is for people and logs.
public struct JournalError: Error, Hashable, CustomStringConvertible, Sendable {
    /// A stable error category. New codes may be added; switch with a `default`.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Value: Hashable, Sendable {
            case corruption, io, unavailable, recordTooLarge, invalidArgument, timedOut
        }
        private let value: Value
        private init(_ value: Value) { self.value = value }

        /// Files in the journal directory are damaged in a way that is not a torn tail (see JOURNAL.md):
        /// the journal refuses to start rather than silently lose acknowledged records.
        public static let corruption = Code(.corruption)
        /// A system call failed; the message names it and the errno, e.g. "fsync failed: EIO".
        public static let io = Code(.io)
        /// The journal is in the failed state after an earlier I/O failure, or it is closed.
        public static let unavailable = Code(.unavailable)
        /// The payload is longer than `JournalOptions.maxRecordSize`.
        public static let recordTooLarge = Code(.recordTooLarge)
        /// The caller passed an argument the journal cannot honour (e.g. a snapshot sequence beyond `lastSequence`).
        public static let invalidArgument = Code(.invalidArgument)
        /// A wait with a timeout (`flush(timeout:)`) ended before what it waited for happened.
        public static let timedOut = Code(.timedOut)

        public var description: String {
            switch self.value {
            case .corruption: return "corruption"
            case .io: return "io"
            case .unavailable: return "unavailable"
            case .recordTooLarge: return "recordTooLarge"
            case .invalidArgument: return "invalidArgument"
            case .timedOut: return "timedOut"
            }
        }
    }

    public var code: Code
    public var message: String

    public init(code: Code, message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { "JournalError.\(self.code): \(self.message)" }

    static func corruption(_ message: String) -> JournalError { JournalError(code: .corruption, message: message) }
    static func unavailable(_ message: String) -> JournalError { JournalError(code: .unavailable, message: message) }

    /// An `.io` error for a failed system call: `"<operation> failed: <ERRNO NAME>"`, plus the path when known.
    public static func io(_ operation: String, errno: Int32, path: String? = nil) -> JournalError {
        var message = "\(operation) failed: \(errnoName(errno))"
        if let path { message += " (\(path))" }
        return JournalError(code: .io, message: message)
    }
}

/// The symbolic name of an errno value ("EIO"), so messages are greppable and stable across libcs.
public func errnoName(_ code: Int32) -> String {
    switch code {
    case EIO: return "EIO"
    case ENOSPC: return "ENOSPC"
    case EDQUOT: return "EDQUOT"
    case EBADF: return "EBADF"
    case EINVAL: return "EINVAL"
    case ENOENT: return "ENOENT"
    case EEXIST: return "EEXIST"
    case EACCES: return "EACCES"
    case EPERM: return "EPERM"
    case EROFS: return "EROFS"
    case EINTR: return "EINTR"
    case EAGAIN: return "EAGAIN"
    case EFBIG: return "EFBIG"
    case ENOTDIR: return "ENOTDIR"
    case EISDIR: return "EISDIR"
    case EMFILE: return "EMFILE"
    case ENFILE: return "ENFILE"
    case ENOTEMPTY: return "ENOTEMPTY"
    case ENOMEM: return "ENOMEM"
    case EXDEV: return "EXDEV"
    default: return "errno \(code)"
    }
}
