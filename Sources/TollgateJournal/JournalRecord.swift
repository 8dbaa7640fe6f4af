/// One entry of the journal: an opaque payload tagged with a type byte, numbered by the journal.
///
/// The journal knows nothing of what payloads mean; the licensing engine encodes and decodes them.
public struct JournalRecord: Equatable, Hashable, Sendable {
    /// Assigned by `Journal.append`: contiguous, starting at 1.
    public var sequence: UInt64
    /// Chosen by the owner of the payload format.
    public var type: UInt8
    public var payload: [UInt8]

    public init(sequence: UInt64, type: UInt8, payload: [UInt8]) {
        self.sequence = sequence
        self.type = type
        self.payload = payload
    }
}

/// The recovered result of a snapshot file.
public struct SnapshotFile: Equatable, Sendable {
    public var sequence: UInt64
    public var payload: [UInt8]

    public init(sequence: UInt64, payload: [UInt8]) {
        self.sequence = sequence
        self.payload = payload
    }
}
