import NIOCore
import TollgateEngine

/// One row of the fleet log (`Protocol/FLEET.md` 2.1), as read back.
public struct LogRow: Sendable, Hashable {
    public var sequence: UInt64
    public var origin: String
    public var incarnation: UInt64
    /// The record's sequence in its origin's own journal.
    public var reference: UInt64
    public var type: UInt8
    public var payload: [UInt8]

    public init(sequence: UInt64, origin: String, incarnation: UInt64, reference: UInt64, type: UInt8, payload: [UInt8]) {
        self.sequence = sequence
        self.origin = origin
        self.incarnation = incarnation
        self.reference = reference
        self.type = type
        self.payload = payload
    }
}

/// Why a page of the log could not be applied past some row. The rows before it are applied; nothing after it is.
public enum LogCursorError: Error, Equatable, Sendable {
    /// A sequence number is missing: the log was pruned or damaged. Never skipped (FLEET.md 4.3 step 1).
    case gap(position: UInt64, found: UInt64)
    /// A row's record does not decode (a newer format, or damage), or is of a type the log never holds.
    case undecodable(sequence: UInt64, message: String)
}

/// The pure rule a host follows for every row after its position (`Protocol/FLEET.md` 4.3): contiguity, the own
/// records it already applied, and the changes to apply (wrapped with their sequence, as the journal keeps them).
public struct LogCursor: Sendable {
    public let hostID: String
    public let incarnation: UInt64
    /// The local journal's last sequence when this run started: own records of earlier runs at or below it are in the
    /// journal, and replay applied them.
    public let journalSequenceAtStart: UInt64
    /// Every row at or below it is applied.
    public private(set) var position: UInt64

    public init(hostID: String, incarnation: UInt64, journalSequenceAtStart: UInt64, position: UInt64) {
        self.hostID = hostID
        self.incarnation = incarnation
        self.journalSequenceAtStart = journalSequenceAtStart
        self.position = position
    }

    /// Whether `row` is this host's own and already applied here. A METER (type 5) never is: every host, its origin
    /// included, counts a METER only when it reads it from the log (`Protocol/FLEET.md` 10).
    public func isOwnAndApplied(_ row: LogRow) -> Bool {
        row.origin == hostID && row.type != Self.usageType && (row.incarnation == incarnation || row.reference <= journalSequenceAtStart)
    }

    /// The METER record's type: counted from the log only.
    static let usageType: UInt8 = 5

    /// Takes rows in the order read: returns the changes to apply (each `.fleetApplied` with its sequence), and moves
    /// the position over them and over own records. Rows at or below the position (read twice) are ignored. Stops at
    /// the first gap or undecodable row and returns what came before it with the error.
    public mutating func advance(over rows: [LogRow]) -> (changes: [StateChange], error: LogCursorError?) {
        var changes: [StateChange] = []
        for row in rows where row.sequence > position {
            guard row.sequence == position + 1 else { return (changes, .gap(position: position, found: row.sequence)) }
            if !isOwnAndApplied(row) {
                guard StateChange.replicatedTypes.contains(row.type) else {
                    return (changes, .undecodable(sequence: row.sequence, message: "record type \(row.type) is never in the fleet log"))
                }
                do {
                    let change = try StateChange.decode(type: row.type, payload: ByteBuffer(bytes: row.payload))
                    changes.append(.fleetApplied(sequence: row.sequence, change))
                } catch {
                    return (changes, .undecodable(sequence: row.sequence, message: "\(error)"))
                }
            }
            position = row.sequence
        }
        return (changes, nil)
    }
}
