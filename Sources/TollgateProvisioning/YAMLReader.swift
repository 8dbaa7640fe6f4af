import TollgateModel
import Yams

/// Reads one YAML mapping strictly: each field with the type it must have, and, at `finish()`, every key the
/// caller did not ask for is an error, because a misspelt key silently ignored is a limit silently not enforced.
///
/// Types come from YAML's own resolution (YAML 1.1 core rules, as Yams applies them), so the file means to this
/// reader what it means to any other YAML tool: an unquoted `2024` is an integer, not an id, and an unquoted `no`
/// is a boolean, not a name. Where the YAML 1.1 rules surprise people (a leading zero makes a number octal,
/// `1:30` is sexagesimal) the reader refuses the value instead of guessing.
///
/// Merge keys (`<<: *defaults`) are expanded, keys written in the mapping itself winning, so operators can share
/// a block of settings between plans with anchors.
struct MappingReader {
    let path: String
    /// The mapping itself, for readers that take a whole object as a `DocumentNode` (plans).
    let node: Node
    private let entries: [(key: String, value: Node)]
    private var seen = Set<String>()

    init(_ node: Node, path: String) throws(ProvisioningError) {
        guard case .mapping(let mapping) = node else { throw .wrongType(path: path.isEmpty ? "the document" : path, expected: "a mapping") }
        self.path = path
        self.node = node
        self.entries = try Self.entries(of: mapping, path: path)
    }

    /// The mapping's own pairs, then those merged in with `<<` that it does not already have.
    static func entries(of mapping: Node.Mapping, path: String) throws(ProvisioningError) -> [(key: String, value: Node)] {
        var own: [(key: String, value: Node)] = []
        var merged: [Node] = []
        for (key, value) in mapping {
            guard case .scalar(let scalar) = key else {
                throw .invalidValue(path: path.isEmpty ? "the document" : path, reason: "keys must be plain names, not lists or mappings")
            }
            if YAMLValue.tag(of: key) == .merge {
                if case .sequence(let sources) = value { merged.append(contentsOf: sources) } else { merged.append(value) }
            } else {
                own.append((scalar.string, value))
            }
        }
        var names = Set(own.map(\.key))
        for source in merged {
            guard case .mapping(let sourceMapping) = source else {
                throw .wrongType(path: YAMLValue.child(path, "<<"), expected: "a mapping or a list of mappings (an alias such as *defaults)")
            }
            for entry in try entries(of: sourceMapping, path: path) where names.insert(entry.key).inserted {
                own.append(entry)
            }
        }
        return own
    }

    func child(_ key: String) -> String { YAMLValue.child(path, key) }

    /// The value under `key`; nil when the key is absent or its value is null (`~`, `null`, or nothing), so that an
    /// optional field can be written out empty.
    mutating func value(_ key: String) -> Node? {
        seen.insert(key)
        guard let node = entries.first(where: { $0.key == key })?.value, !YAMLValue.isNull(node) else { return nil }
        return node
    }

    /// Keys present that no reader has asked for yet.
    var unreadKeys: [String] { entries.map(\.key).filter { !seen.contains($0) } }

    func has(_ key: String) -> Bool {
        entries.contains { $0.key == key && !YAMLValue.isNull($0.value) }
    }

    mutating func string(_ key: String) throws(ProvisioningError) -> String? {
        guard let node = value(key) else { return nil }
        return try YAMLValue.string(node, child(key))
    }

    mutating func requiredString(_ key: String) throws(ProvisioningError) -> String {
        guard let value = try string(key) else { throw .missingKey(path: child(key)) }
        return value
    }

    mutating func bool(_ key: String) throws(ProvisioningError) -> Bool? {
        guard let node = value(key) else { return nil }
        return try YAMLValue.bool(node, child(key))
    }

    mutating func integer<T: FixedWidthInteger>(_ key: String, in range: ClosedRange<T>) throws(ProvisioningError) -> T? {
        guard let node = value(key) else { return nil }
        return try YAMLValue.integer(node, child(key), in: range)
    }

    mutating func timestamp(_ key: String) throws(ProvisioningError) -> UnixMillis? {
        guard let node = value(key) else { return nil }
        return try YAMLValue.timestamp(node, child(key))
    }

    mutating func strings(_ key: String) throws(ProvisioningError) -> [String]? {
        guard let node = value(key) else { return nil }
        guard case .sequence(let sequence) = node else { throw .wrongType(path: child(key), expected: "a list of strings") }
        var strings: [String] = []
        for (index, element) in sequence.enumerated() {
            strings.append(try YAMLValue.string(element, "\(child(key))[\(index)]"))
        }
        return strings
    }

    mutating func mapping(_ key: String) throws(ProvisioningError) -> MappingReader? {
        guard let node = value(key) else { return nil }
        return try MappingReader(node, path: child(key))
    }

    /// The mappings of a list; an absent key is an empty list.
    mutating func mappings(_ key: String) throws(ProvisioningError) -> [MappingReader] {
        guard let node = value(key) else { return [] }
        guard case .sequence(let sequence) = node else { throw .wrongType(path: child(key), expected: "a list") }
        var readers: [MappingReader] = []
        for (index, element) in sequence.enumerated() {
            readers.append(try MappingReader(element, path: "\(child(key))[\(index)]"))
        }
        return readers
    }

    /// Refuses, before any field is read, the first key outside `keys`: a misspelt key must be reported as such
    /// (with the key it was probably meant to be), not as the required key it was meant to be being missing.
    func allowOnly(_ keys: [String], orKeysWhere extra: (String) -> Bool = { _ in false }) throws(ProvisioningError) {
        let allowed = Set(keys)
        guard let unknown = entries.first(where: { !allowed.contains($0.key) && !extra($0.key) })?.key else { return }
        throw .unknownKey(path: child(unknown), suggestion: Self.suggestion(for: unknown, among: allowed))
    }

    /// Refuses the first key that no reader asked for (a safety net behind `allowOnly`).
    func finish() throws(ProvisioningError) {
        guard let unknown = entries.first(where: { !seen.contains($0.key) })?.key else { return }
        throw .unknownKey(path: child(unknown), suggestion: Self.suggestion(for: unknown, among: seen))
    }

    /// Known keys a person might reach for instead of ours: the one rule of the document model.
    static func suggestion(for key: String, among known: Set<String>) -> String? {
        DocumentReader.suggestion(for: key, among: known)
    }
}

/// Typed reading of single YAML values, shared by mappings and list elements.
enum YAMLValue {
    static func child(_ path: String, _ key: String) -> String { path.isEmpty ? key : "\(path).\(key)" }

    /// The resolved tag: the explicit one, `str` for a quoted scalar, or what the plain text resolves to.
    static func tag(of node: Node) -> Tag.Name { Tag.Name(rawValue: node.tag.rawValue) }

    static func isNull(_ node: Node) -> Bool {
        if case .scalar = node { return tag(of: node) == .null }
        return false
    }

    static func string(_ node: Node, _ path: String) throws(ProvisioningError) -> String {
        guard case .scalar(let scalar) = node else { throw .wrongType(path: path, expected: "a string") }
        guard tag(of: node) == .str else {
            throw .wrongType(path: path, expected: "a string (YAML reads \(scalar.string) as another type; quote it: \"\(scalar.string)\")")
        }
        return scalar.string
    }

    /// Only `true` and `false`: YAML 1.1 also reads `yes`, `no`, `on` and `off` as booleans, which is too easy to
    /// write by accident (`suspended: no` next to `name: no`).
    static func bool(_ node: Node, _ path: String) throws(ProvisioningError) -> Bool {
        guard case .scalar(let scalar) = node, tag(of: node) == .bool else { throw .wrongType(path: path, expected: "true or false") }
        switch scalar.string.lowercased() {
        case "true": return true
        case "false": return false
        default: throw .wrongType(path: path, expected: "true or false (not \(scalar.string))")
        }
    }

    /// Decimal integers, with `_` separators and `0x`/`0o`/`0b` prefixes as YAML allows. A leading zero (`010`,
    /// octal in YAML 1.1, ten in YAML 1.2) and sexagesimal (`1:30`) are refused as ambiguous.
    static func integer<T: FixedWidthInteger>(_ node: Node, _ path: String, in range: ClosedRange<T>) throws(ProvisioningError) -> T {
        guard case .scalar(let scalar) = node, tag(of: node) == .int else { throw .wrongType(path: path, expected: "an integer") }
        let rangeText = "\(range.lowerBound)–\(range.upperBound)"
        var text = Substring(scalar.string.filter { $0 != "_" })
        let negative = text.first == "-"
        if text.first == "-" || text.first == "+" { text = text.dropFirst() }
        var radix = 10
        for (prefix, base) in [("0x", 16), ("0o", 8), ("0b", 2)] where text.hasPrefix(prefix) {
            text = text.dropFirst(2)
            radix = base
        }
        if text.contains(":") {
            throw .invalidValue(path: path, reason: "\(scalar.string) is a YAML 1.1 sexagesimal number; write the value in decimal")
        }
        if radix == 10, text.count > 1, text.first == "0" {
            throw .invalidValue(path: path, reason: "\(scalar.string) has a leading zero, which YAML 1.1 reads as octal; remove the zero (or write 0o… for octal)")
        }
        guard let magnitude = UInt64(text, radix: radix) else { throw .outOfRange(path: path, value: scalar.string, range: rangeText) }
        let value: T?
        if negative {
            value = magnitude <= UInt64(Int64.max) + 1 ? T(exactly: magnitude == UInt64(Int64.max) + 1 ? Int64.min : -Int64(magnitude)) : nil
        } else {
            value = T(exactly: magnitude)
        }
        guard let value, range.contains(value) else { throw .outOfRange(path: path, value: scalar.string, range: rangeText) }
        return value
    }

    /// The format-neutral tree of a YAML node (`TollgateModel.DocumentNode`), with YAML's own typing: merge keys
    /// expanded, scalars resolved by their tags, and a scalar these rules refuse (an octal `010`, a sexagesimal
    /// `1:30`) carried as `.invalid` so that it is reported, with its path, only if its field is read.
    static func document(_ node: Node, _ path: String) throws(ProvisioningError) -> DocumentNode {
        switch node {
        case .mapping(let mapping):
            var entries: [DocumentEntry] = []
            for (key, value) in try MappingReader.entries(of: mapping, path: path) {
                entries.append(DocumentEntry(key, try document(value, child(path, key))))
            }
            return .mapping(entries)
        case .sequence(let sequence):
            var elements: [DocumentNode] = []
            for (index, element) in sequence.enumerated() { elements.append(try document(element, "\(path)[\(index)]")) }
            return .list(elements)
        case .scalar(let scalar):
            switch tag(of: node) {
            case .null: return .null
            case .str: return .string(scalar.string)
            case .bool: return (try? bool(node, path)).map { DocumentNode.bool($0) } ?? .other(type: "bool", text: scalar.string)
            case .int:
                do throws(ProvisioningError) {
                    return .integer(String(try integer(node, path, in: Int64.min...Int64.max)))
                } catch {
                    if let value = try? integer(node, path, in: UInt64.min...UInt64.max) { return .integer(String(value)) }
                    // Too large for any field: the reader reports it as out of range of the field's type.
                    if case .outOfRange = error { return .integer(scalar.string.filter { $0 != "_" }) }
                    return .invalid(ValidationError(error))
                }
            default:
                return .other(type: tag(of: node).rawValue, text: scalar.string)
            }
        default:
            return .other(type: "alias", text: "*")
        }
    }

    /// Integer milliseconds since the epoch, or an RFC 3339 date-time (plain or quoted). Instants before 1970 are
    /// refused: 0 already means "none" in the model and nothing is licensed before the epoch.
    static func timestamp(_ node: Node, _ path: String) throws(ProvisioningError) -> UnixMillis {
        guard case .scalar(let scalar) = node else { throw .wrongType(path: path, expected: "a timestamp") }
        let millis: UnixMillis
        switch tag(of: node) {
        case .int:
            return try integer(node, path, in: 0...Int64.max)
        case .timestamp, .str:
            do {
                millis = try RFC3339.parse(scalar.string)
            } catch {
                throw .invalidTimestamp(path: path, value: scalar.string, reason: error.reason)
            }
        default:
            throw .wrongType(path: path, expected: "a timestamp (RFC 3339 such as 2026-01-01T00:00:00Z, or integer milliseconds)")
        }
        guard millis >= 0 else { throw .outOfRange(path: path, value: scalar.string, range: "1970-01-01T00:00:00Z or later") }
        return millis
    }
}
