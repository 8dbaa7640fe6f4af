import TollgateModel

/// Why the engine refused a control-plane request. Codes are stable; the server maps them to wire statuses.
public struct EngineError: Error, Hashable, CustomStringConvertible {
    public enum Code: Hashable, Sendable {
        /// The license, plan or token named does not exist.
        case notFound
        /// A value is not acceptable (the message says which).
        case invalidArgument
        /// A license, plan or organisation to delete is still used by others (the message names them).
        case inUse
    }

    public var code: Code
    /// Never contains a token secret.
    public var message: String
    /// For a value refused by the validation source: the rule's error (stable code, field, sentence). The wire
    /// does not carry it (it answers `invalid_argument` with `message`); tests and in-process callers compare it.
    public var validation: ValidationError?

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { message }

    static func notFound(_ message: String) -> EngineError { EngineError(.notFound, message) }
    static func invalid(_ message: String) -> EngineError { EngineError(.invalidArgument, message) }
}
