import TollgateModel

/// Limits on what callers may store, so that one request cannot bloat the state or the journal.
public enum Limits {
    public static let maxIdentifier = 128
    public static let maxSubject = 256
    public static let maxScopes = 64
    public static let maxScope = 128
    public static let maxMetadataPairs = 32
    public static let maxMetadataKey = 64
    public static let maxMetadataValue = 256
    public static let maxMeterName = 64
    public static let maxIdempotencyKey = 128
    public static let maxReason = 256
    public static let maxCustomer = 256
    public static let maxQuotas = 64
    /// Above this the GCRA interval (1 s / rate) would fall below a microsecond.
    public static let maxRatePerSecond: UInt32 = 1_000_000
}

enum Validate {
    /// Ids of licenses, plans: 1–128 bytes of `[A-Za-z0-9_.:-]`.
    static func identifier(_ value: String, _ what: String) throws -> Void {
        guard !value.isEmpty, value.utf8.count <= Limits.maxIdentifier,
            value.utf8.allSatisfy({ isIdentifierByte($0) })
        else {
            throw EngineError.invalid("\(what) must be 1–\(Limits.maxIdentifier) characters of A-Z a-z 0-9 _ . : -")
        }
    }

    static func isIdentifierByte(_ b: UInt8) -> Bool {
        switch b {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
            UInt8(ascii: "_"), UInt8(ascii: "."), UInt8(ascii: ":"), UInt8(ascii: "-"):
            return true
        default:
            return false
        }
    }

    /// Scopes: 1–128 bytes of printable ASCII without spaces.
    static func scopes(_ scopes: [String], _ what: String) throws {
        guard scopes.count <= Limits.maxScopes else { throw EngineError.invalid("at most \(Limits.maxScopes) \(what) are allowed") }
        for scope in scopes {
            guard !scope.isEmpty, scope.utf8.count <= Limits.maxScope, scope.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F }) else {
                throw EngineError.invalid("each of the \(what) must be 1–\(Limits.maxScope) printable ASCII characters without spaces")
            }
        }
    }

    static func length(_ value: String, max: Int, _ what: String, allowEmpty: Bool = true) throws {
        guard value.utf8.count <= max, allowEmpty || !value.isEmpty else {
            throw EngineError.invalid("\(what) must be \(allowEmpty ? 0 : 1)–\(max) bytes")
        }
    }
}

extension Validate {
    /// Token metadata: bounded pairs; keys under `tollgate.` are reserved, and the one defined must parse.
    static func metadata(_ pairs: [KeyValue]) throws {
        guard pairs.count <= Limits.maxMetadataPairs else { throw EngineError.invalid("at most \(Limits.maxMetadataPairs) metadata pairs are allowed") }
        for pair in pairs {
            try length(pair.key, max: Limits.maxMetadataKey, "a metadata key", allowEmpty: false)
            try length(pair.value, max: Limits.maxMetadataValue, "a metadata value")
            guard pair.key.hasPrefix(TokenBinding.reservedPrefix) else { continue }
            guard pair.key == TokenBinding.metadataKey else {
                throw EngineError.invalid("metadata keys starting with \(TokenBinding.reservedPrefix) are reserved; the only one defined is \(TokenBinding.metadataKey)")
            }
            guard TokenBinding.parse(pair.value) != nil else {
                throw EngineError.invalid("\(TokenBinding.metadataKey) must be a comma-separated list of 1 to 16 uids")
            }
        }
    }
}
