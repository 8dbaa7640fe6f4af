import TollgateModel

/// Why a provisioning file was refused.
///
/// Every case names where the problem is, as a path into the document (`licenses[2].plan`,
/// `plans[0].quotas[1].window`) or, for YAML syntax, a line and column, because the operator's next step is to open
/// the file at that place. `code` is stable (scripts and tests compare it); the wording of `message` is not.
///
/// Nothing is applied from a file that has any error: `tollgate apply` parses the whole file first.
public enum ProvisioningError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The text is not YAML (or uses a YAML feature this reader refuses, such as several documents).
    case invalidYAML(line: Int, column: Int, problem: String)
    /// A mapping names the same key twice. YAML readers disagree on which one wins, so neither does.
    case duplicateKey(key: String, line: Int, column: Int)
    /// A key this format does not have; usually a typo, which must not be silently ignored.
    case unknownKey(path: String, suggestion: String?)
    /// A key the object cannot do without.
    case missingKey(path: String)
    /// The value has the wrong YAML type, e.g. a list where a string is expected, or an unquoted `2024` where an id
    /// (a string) is expected.
    case wrongType(path: String, expected: String)
    /// A name outside a closed set (status, pool, overage, window, period).
    case invalidName(path: String, value: String, allowed: [String])
    /// A well-typed value that breaks a rule of the model (id syntax, a quota given twice, valid_from after
    /// valid_until, …).
    case invalidValue(path: String, reason: String)
    /// A number outside the range its field takes.
    case outOfRange(path: String, value: String, range: String)
    /// A timestamp that is neither RFC 3339 nor integer milliseconds.
    case invalidTimestamp(path: String, value: String, reason: String)
    /// Two objects of one kind in the file share an id; `firstPath` is where the id was first used.
    case duplicateID(path: String, id: String, firstPath: String)
    /// A license names a plan that is neither in the file nor on the daemon.
    case unknownPlan(path: String, id: String)
    /// A license names an organisation that is neither in the file nor on the daemon.
    case unknownOrg(path: String, id: String)
    /// A value refused by the validation source (`TollgateModel.Validation`), which the daemon's configuration,
    /// the engine and the CLI apply too: its code (`invalid_value`, `out_of_range`, `invalid_name`, `wrong_type`,
    /// …) and its sentence are theirs, so a value gets the same verdict wherever it is written.
    case rule(ValidationError)

    /// A validation error as a file error: missing and unknown keys keep their own cases (and an unknown key its
    /// suggestion); any other rule is carried whole.
    public init(_ error: ValidationError) {
        switch error.code {
        case .missingKey: self = .missingKey(path: error.field)
        case .unknownKey: self = .unknownKey(path: error.field, suggestion: error.suggestion)
        default: self = .rule(error)
        }
    }

    /// The stable, machine-readable name of the error.
    public var code: String {
        switch self {
        case .invalidYAML: return "invalid_yaml"
        case .duplicateKey: return "duplicate_key"
        case .unknownKey: return "unknown_key"
        case .missingKey: return "missing_key"
        case .wrongType: return "wrong_type"
        case .invalidName: return "invalid_name"
        case .invalidValue: return "invalid_value"
        case .outOfRange: return "out_of_range"
        case .invalidTimestamp: return "invalid_timestamp"
        case .duplicateID: return "duplicate_id"
        case .unknownPlan: return "unknown_plan"
        case .unknownOrg: return "unknown_org"
        case .rule(let error): return error.code.rawValue
        }
    }

    /// Where in the document: a path such as `licenses[2].plan`, or `line 4, column 7` for YAML-level errors, which
    /// are found before there is a document to have paths in.
    public var path: String {
        switch self {
        case .invalidYAML(let line, let column, _), .duplicateKey(_, let line, let column):
            return "line \(line), column \(column)"
        case .unknownKey(let path, _), .missingKey(let path), .wrongType(let path, _), .invalidName(let path, _, _),
            .invalidValue(let path, _), .outOfRange(let path, _, _), .invalidTimestamp(let path, _, _),
            .duplicateID(let path, _, _), .unknownPlan(let path, _), .unknownOrg(let path, _):
            return path
        case .rule(let error):
            return error.field
        }
    }

    /// One sentence for a person, starting with the path.
    public var message: String {
        switch self {
        case .invalidYAML(_, _, let problem):
            return "\(path): not valid YAML: \(problem)"
        case .duplicateKey(let key, _, _):
            return "\(path): the key \(key) appears twice in one mapping"
        case .unknownKey(let path, let suggestion):
            return "\(path): unknown key" + (suggestion.map { " (did you mean \($0)?)" } ?? "")
        case .missingKey(let path):
            return "\(path) is required"
        case .wrongType(let path, let expected):
            return "\(path) must be \(expected)"
        case .invalidName(let path, let value, let allowed):
            return "\(path): \(Self.quoted(value)) is not one of \(allowed.joined(separator: ", "))"
        case .invalidValue(let path, let reason):
            return "\(path): \(reason)"
        case .outOfRange(let path, let value, let range):
            return "\(path): \(value) is out of range (\(range))"
        case .invalidTimestamp(let path, let value, let reason):
            return "\(path): \(Self.quoted(value)) is not a timestamp: \(reason) (write RFC 3339 such as 2026-01-01T00:00:00Z, or integer milliseconds)"
        case .duplicateID(let path, let id, let firstPath):
            return "\(path): the id \(id) is already used at \(firstPath)"
        case .unknownPlan(let path, let id):
            return "\(path): no plan \(Self.quoted(id)) in the file or on the daemon"
        case .unknownOrg(let path, let id):
            return "\(path): no organisation \(Self.quoted(id)) in the file or on the daemon"
        case .rule(let error):
            return error.description
        }
    }

    public var description: String { message }

    /// Values from the file are shown bounded and without control characters, so a stray binary blob cannot wreck
    /// the operator's terminal.
    static func quoted(_ value: String) -> String {
        let cut = value.unicodeScalars.prefix(64).map { $0.value < 0x20 || $0.value == 0x7F ? "?" : Character($0) }
        return "'" + String(cut) + (value.unicodeScalars.count > 64 ? "…" : "") + "'"
    }
}

extension ValidationError {
    /// A YAML scalar's refusal (an octal number, say) carried into the document tree; its sentence without the
    /// path, which the reader puts back as `field`.
    init(_ error: ProvisioningError) {
        let message = error.message
        let prefix = error.path + ": "
        self.init(Code(rawValue: error.code), field: error.path, message.hasPrefix(prefix) ? String(message.dropFirst(prefix.count)) : message)
    }
}
