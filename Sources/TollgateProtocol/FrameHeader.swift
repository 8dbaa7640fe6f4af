import NIOCore

/// The protocol version this codec speaks (`Protocol/PROTOCOL.md`).
public let tollgateProtocolVersion: UInt8 = 1

/// Request kinds. Raw values are the wire opcodes.
public enum Opcode: UInt8, Sendable, CaseIterable, Hashable {
    case hello = 0x01
    case ping = 0x02
    case check = 0x10
    case meter = 0x11
    case revoke = 0x12
    case release = 0x13
    case settle = 0x14
    case derive = 0x15
    /// An identity provider's JWT in exchange for a short-lived token (issue 17).
    case exchange = 0x16
    case issue = 0x20
    case licensePut = 0x21
    case licenseGet = 0x22
    case planPut = 0x23
    case planGet = 0x24
    case tokenGet = 0x25
    case tokenList = 0x26
    case stats = 0x27
    case rotate = 0x28
    case rotationEnd = 0x29
    case orgPut = 0x2A
    case orgGet = 0x2B
    case creditsGrant = 0x2C
    case usageExport = 0x2D
    case events = 0x2E
    case licenseList = 0x2F
    case planList = 0x30
    case orgList = 0x31
    case licenseDelete = 0x32
    case planDelete = 0x33
    case orgDelete = 0x34
    case watch = 0x35
    /// Deprovision or reactivate a subject (issue 17; what the SCIM endpoint sends).
    case subjectStatus = 0x38
    /// Identity roles as policy (issue 17 item 4): put, delete and list (what `tollgate apply` manages).
    case rolePut = 0x39
    case roleDelete = 0x3A
    case roleList = 0x3B

    public var name: String {
        switch self {
        case .hello: return "HELLO"
        case .ping: return "PING"
        case .check: return "CHECK"
        case .meter: return "METER"
        case .revoke: return "REVOKE"
        case .issue: return "ISSUE"
        case .licensePut: return "LICENSE_PUT"
        case .licenseGet: return "LICENSE_GET"
        case .planPut: return "PLAN_PUT"
        case .planGet: return "PLAN_GET"
        case .tokenGet: return "TOKEN_GET"
        case .tokenList: return "TOKEN_LIST"
        case .stats: return "STATS"
        case .release: return "RELEASE"
        case .settle: return "SETTLE"
        case .derive: return "DERIVE"
        case .rotate: return "ROTATE"
        case .rotationEnd: return "ROTATION_END"
        case .orgPut: return "ORG_PUT"
        case .orgGet: return "ORG_GET"
        case .creditsGrant: return "CREDITS_GRANT"
        case .usageExport: return "USAGE_EXPORT"
        case .events: return "EVENTS"
        case .licenseList: return "LICENSE_LIST"
        case .planList: return "PLAN_LIST"
        case .orgList: return "ORG_LIST"
        case .licenseDelete: return "LICENSE_DELETE"
        case .planDelete: return "PLAN_DELETE"
        case .orgDelete: return "ORG_DELETE"
        case .watch: return "WATCH"
        case .exchange: return "EXCHANGE"
        case .subjectStatus: return "SUBJECT_STATUS"
        case .rolePut: return "ROLE_PUT"
        case .roleDelete: return "ROLE_DELETE"
        case .roleList: return "ROLE_LIST"
        }
    }

    /// Whether a response may carry status `denied` (a decision about a token).
    public var mayBeDenied: Bool {
        switch self {
        case .check, .meter, .settle, .derive: return true
        default: return false
        }
    }
}

/// The status of a response. Raw values are the wire codes; see `Protocol/PROTOCOL.md` section 5.
public enum Status: UInt8, Sendable, CaseIterable, Hashable {
    case ok = 0
    case denied = 1
    case malformed = 2
    case unsupportedVersion = 3
    case unknownOpcode = 4
    case tooLarge = 5
    case notPermitted = 6
    case `internal` = 7
    case notFound = 8
    case invalidArgument = 9
    case unavailable = 10
    /// A DELETE of an object that something still uses (answered only to the DELETE opcodes, so clients that
    /// predate them never see it).
    case inUse = 11
    /// EXCHANGE refused the subject token; the message starts with the reason's code (`expired: …`). Answered only
    /// to EXCHANGE.
    case exchangeRefused = 12
    /// EXCHANGE could not get the issuer's keys in time; retry. Answered only to EXCHANGE.
    case identityUnavailable = 13
    /// Fleet mode: the fleet log (PostgreSQL) is unreachable; the change was not made (`Protocol/FLEET.md` 4.1).
    case fleetUnavailable = 14
    /// Fleet mode: the change is made on this host, but its commit to the fleet log was not confirmed in time; it is
    /// committed when the log is reachable again. Unknown to the caller, like a timeout.
    case fleetUnconfirmed = 15

    public var name: String {
        switch self {
        case .ok: return "ok"
        case .denied: return "denied"
        case .malformed: return "malformed"
        case .unsupportedVersion: return "unsupported_version"
        case .unknownOpcode: return "unknown_opcode"
        case .tooLarge: return "too_large"
        case .notPermitted: return "not_permitted"
        case .internal: return "internal"
        case .notFound: return "not_found"
        case .invalidArgument: return "invalid_argument"
        case .unavailable: return "unavailable"
        case .inUse: return "in_use"
        case .exchangeRefused: return "exchange_refused"
        case .identityUnavailable: return "identity_unavailable"
        case .fleetUnavailable: return "fleet_unavailable"
        case .fleetUnconfirmed: return "fleet_unconfirmed"
        }
    }

    /// `ok` and `denied` carry the opcode's response body; every other status carries an error message.
    public var carriesResponseBody: Bool { self == .ok || self == .denied }
}

/// The 12 bytes after the length prefix.
public struct FrameHeader: Sendable, Hashable {
    public static let magic: UInt16 = 0x5447  // "TG"
    /// Bytes of header counted by the length prefix (everything but the prefix itself).
    public static let size = 12
    public static let responseFlag: UInt8 = 0x01

    public var version: UInt8
    /// Raw, because an unknown opcode must still be echoed in the error response.
    public var opcode: UInt8
    public var flags: UInt8
    public var status: UInt8
    public var reserved: UInt16
    public var requestID: UInt32

    public init(version: UInt8 = tollgateProtocolVersion, opcode: UInt8, flags: UInt8 = 0, status: UInt8 = 0, reserved: UInt16 = 0, requestID: UInt32) {
        self.version = version
        self.opcode = opcode
        self.flags = flags
        self.status = status
        self.reserved = reserved
        self.requestID = requestID
    }

    public var isResponse: Bool { flags & Self.responseFlag != 0 }
}

/// One whole frame: header and body bytes, as cut from the stream.
public struct Frame: Sendable, Hashable {
    public var header: FrameHeader
    public var body: ByteBuffer

    public init(header: FrameHeader, body: ByteBuffer) {
        self.header = header
        self.body = body
    }
}

extension ByteBuffer {
    /// Writes a frame: length prefix, header, body. Returns nothing; the caller sized the body.
    @inlinable
    public mutating func writeFrame(header: FrameHeader, body: ByteBuffer) {
        writeFrame(header: header) { _ = $0.writeImmutableBuffer(body) }
    }

    /// Writes a frame whose body is produced in place by `writeBody`, then patches the length prefix.
    /// This avoids building the body in a second buffer on the hot path.
    @inlinable
    public mutating func writeFrame<R>(header: FrameHeader, _ writeBody: (inout ByteBuffer) throws -> R) rethrows -> R {
        let lengthIndex = writerIndex
        writeInteger(UInt32(0))
        writeInteger(FrameHeader.magic)
        writeInteger(header.version)
        writeInteger(header.opcode)
        writeInteger(header.flags)
        writeInteger(header.status)
        writeInteger(header.reserved)
        writeInteger(header.requestID)
        let result = try writeBody(&self)
        setInteger(UInt32(writerIndex - lengthIndex - 4), at: lengthIndex)
        return result
    }
}
