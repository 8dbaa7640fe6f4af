/// Route rules of the HTTP forward-auth front end: which scopes, features, meter and cost a proxied request needs,
/// by its method and path. Plain values and pure matching, so that the daemon's configuration, the HTTP front end
/// and the tests share one meaning; the rules a route must obey are `Validation.route`'s (the one validation source).
///
/// Path patterns (matched against the request's normalized path, without its query):
///
/// - `/v1/items` — exact: that path only (`/v1/items/` is another path);
/// - `/v1/items/{id}` — a `{name}` segment matches exactly one non-empty segment;
/// - `/v1/*` — a final `*` segment matches anything under the prefix, and the prefix itself (`/v1`, `/v1/`,
///   `/v1/a/b`); `/*` matches every path. `*` is allowed only as the whole last segment.
///
/// The method is an HTTP method in upper case (`GET`) or `*` for any. Rules are tried in order; the first that
/// matches decides. A request that no rule matches is answered as `RouteTable.fallback` says, and is never metered.
public struct RouteRule: Sendable, Hashable {
    /// Upper-case method, or `*`.
    public var method: String
    public var path: PathPattern
    public var scopes: [String]
    public var features: [String]
    /// Empty: nothing is metered (rate limits still apply).
    public var meter: String
    public var cost: UInt64

    public init(method: String, path: PathPattern, scopes: [String] = [], features: [String] = [], meter: String = "", cost: UInt64 = 0) {
        self.method = method
        self.path = path
        self.scopes = scopes
        self.features = features
        self.meter = meter
        self.cost = cost
    }

    public func matches(method: String, segments: [Substring]) -> Bool {
        (self.method == "*" || self.method == method) && path.matches(segments)
    }
}

/// A parsed path pattern (see `RouteRule`). Build one with `PathPattern.parse`, which `Validation.pathPattern` calls.
public struct PathPattern: Sendable, Hashable, CustomStringConvertible {
    public enum Segment: Sendable, Hashable {
        case literal(String)
        case parameter(String)
    }

    public var segments: [Segment]
    /// Ends in `/*`: matches the prefix and anything under it.
    public var isPrefix: Bool
    /// As written, for messages and logs.
    public var description: String

    /// The pattern, or a message saying what is wrong with it (the validation source turns it into an error).
    public static func parse(_ text: String) -> Result<PathPattern, PatternProblem> {
        guard text.hasPrefix("/") else { return .failure(PatternProblem("must start with /")) }
        guard text.utf8.count <= Limits.maxPathPattern else { return .failure(PatternProblem("must be at most \(Limits.maxPathPattern) bytes")) }
        guard text.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F }) else {
            return .failure(PatternProblem("must be printable ASCII without spaces"))
        }
        guard !text.contains("?"), !text.contains("#") else { return .failure(PatternProblem("matches the path only: no ? or #")) }
        var parts = text.dropFirst().split(separator: "/", omittingEmptySubsequences: false)
        var isPrefix = false
        if parts.last == "*" {
            isPrefix = true
            parts.removeLast()
        }
        var segments: [Segment] = []
        var names = Set<Substring>()
        for part in parts {
            if part.contains("*") { return .failure(PatternProblem("* is allowed only as the whole last segment (/prefix/*)")) }
            if part.hasPrefix("{") || part.hasSuffix("}") || part.contains("{") || part.contains("}") {
                let name = part.dropFirst().dropLast()
                guard part.hasPrefix("{"), part.hasSuffix("}"), !name.isEmpty, name.utf8.allSatisfy(Validation.isIdentifierByte) else {
                    return .failure(PatternProblem("a parameter is a whole segment {name}, name of A-Z a-z 0-9 _ . : -"))
                }
                guard names.insert(name).inserted else { return .failure(PatternProblem("parameter {\(name)} is used twice")) }
                segments.append(.parameter(String(name)))
            } else if part == "." || part == ".." {
                return .failure(PatternProblem("has a . or .. segment, which no normalized path has"))
            } else {
                segments.append(.literal(String(part)))
            }
        }
        // "/" alone is one empty literal segment; "/*" is a prefix of nothing, i.e. everything.
        return .success(PathPattern(segments: segments, isPrefix: isPrefix, description: text))
    }

    /// Whether the request path whose bytes after the leading `/` are `rest` matches: the same answer as
    /// `matches(_:)` with `rest` split on `/` (empty segments kept), read in place. Splitting into an array of
    /// Substrings for every request cost ~4 k instructions per forward-auth request (callgrind, Benchmarks/SCALE.md).
    public func matches(afterSlash rest: Substring.UTF8View) -> Bool {
        let slash = UInt8(ascii: "/")
        var start = rest.startIndex
        var matched = 0
        while true {
            var end = start
            while end != rest.endIndex, rest[end] != slash { rest.formIndex(after: &end) }
            // A path segment beyond the pattern's: only a prefix pattern takes it (and everything after it).
            guard matched < segments.count else { return isPrefix }
            switch segments[matched] {
            case .literal(let literal):
                guard rest[start..<end].elementsEqual(literal.utf8) else { return false }
            case .parameter:
                guard start != end else { return false }
            }
            matched += 1
            guard end != rest.endIndex else { break }
            start = rest.index(after: end)
        }
        return matched == segments.count
    }

    /// `segments` are the request path's (after the leading `/`, split on `/`, empty ones kept).
    public func matches(_ path: [Substring]) -> Bool {
        // `/v1/*` (segments ["v1"]) matches `/v1` itself and everything under it.
        guard isPrefix ? path.count >= segments.count : path.count == segments.count else { return false }
        for (index, segment) in segments.enumerated() {
            switch segment {
            case .literal(let literal):
                guard path[index] == literal else { return false }
            case .parameter:
                guard !path[index].isEmpty else { return false }
            }
        }
        return true
    }
}

/// What is wrong with a path pattern, in a sentence without the pattern itself.
public struct PatternProblem: Error, Sendable, Hashable {
    public var message: String
    public init(_ message: String) { self.message = message }
}

/// What a request that no route matches gets.
public enum RouteFallback: String, Sendable, Hashable, CaseIterable {
    /// 403 `no_route`, without looking at the token.
    case deny
    /// The token is checked (valid, not revoked, the license in good standing, rate limits) with no scope, no
    /// feature and no meter: nothing is counted against a quota.
    case allowUnmetered = "allow_unmetered"

    public var name: String { rawValue }
    public init?(name: String) { self.init(rawValue: name) }
}

/// The ordered rules and the fallback.
public struct RouteTable: Sendable, Hashable {
    public var rules: [RouteRule]
    public var fallback: RouteFallback

    public init(rules: [RouteRule] = [], fallback: RouteFallback = .deny) {
        self.rules = rules
        self.fallback = fallback
    }

    /// The first rule matching `method` and the normalized `path` (which starts with `/`), or nil.
    public func match(method: String, path: String) -> RouteRule? {
        guard path.utf8.first == UInt8(ascii: "/") else { return rules.first { $0.matches(method: method, segments: []) } }
        let rest = Substring(path).dropFirst().utf8
        return rules.first { ($0.method == "*" || $0.method == method) && $0.path.matches(afterSlash: rest) }
    }
}

/// The request path as routes see it: percent-escapes decoded, repeated slashes merged, `.` and `..` resolved, the
/// way nginx resolves the path it routes on. Routing on the raw path instead would let `/public/../admin` match a
/// rule for `/public/*` while the proxy serves `/admin`.
public enum RequestPath {
    /// The normalized path of `target` (an origin-form request target, query dropped), or nil when it cannot be a
    /// path: not starting with `/`, a bad or NUL escape, invalid UTF-8, or `..` above the root.
    public static func normalize(_ target: Substring) -> String? {
        // Cut on the bytes (`?` and `#` are ASCII, so the cut is a character boundary): no grapheme breaking.
        let utf8 = target.utf8
        let pathPart = target[..<(utf8.firstIndex { $0 == UInt8(ascii: "?") || $0 == UInt8(ascii: "#") } ?? utf8.endIndex)]
        var path = String(pathPart)
        if path.withUTF8({ isAlreadyNormal($0) }) { return path }
        return normalizeInGeneral(pathPart)
    }

    /// Whether `path` is its own normal form: it starts with `/` and has no escape, no empty segment (but a
    /// trailing slash) and no `.` or `..` segment. The paths proxies send nearly always are, and this one pass
    /// saves the decoding, splitting and joining of `normalizeInGeneral` (~12 k instructions per forward-auth
    /// request, callgrind: Benchmarks/SCALE.md, "Forward auth"). A test holds it to `normalizeInGeneral`.
    static func isAlreadyNormal<Bytes: Collection<UInt8>>(_ path: Bytes) -> Bool {
        guard path.first == UInt8(ascii: "/") else { return false }
        let slash = UInt8(ascii: "/"), dot = UInt8(ascii: ".")
        // The bytes of the segment read so far: its length, and whether every byte is a dot.
        var length = 0
        var onlyDots = true
        var index = path.index(after: path.startIndex)
        while index != path.endIndex {
            let byte = path[index]
            path.formIndex(after: &index)
            if byte == slash {
                // An empty segment (`//`) or a `.`/`..` one.
                if length == 0 || (onlyDots && length <= 2) { return false }
                length = 0
                onlyDots = true
            } else {
                if byte == UInt8(ascii: "%") { return false }
                length += 1
                onlyDots = onlyDots && byte == dot
            }
        }
        return !(onlyDots && length > 0 && length <= 2)
    }

    /// The normal form of any path: escapes decoded, empty and dot segments resolved.
    static func normalizeInGeneral(_ pathPart: Substring) -> String? {
        let raw = Array(pathPart.utf8)
        guard raw.first == UInt8(ascii: "/") else { return nil }
        var decoded: [UInt8] = []
        decoded.reserveCapacity(raw.count)
        var index = 0
        while index < raw.count {
            let byte = raw[index]
            if byte == UInt8(ascii: "%") {
                guard index + 2 < raw.count, let high = hex(raw[index + 1]), let low = hex(raw[index + 2]) else { return nil }
                let value = high << 4 | low
                guard value != 0 else { return nil }
                decoded.append(value)
                index += 3
            } else {
                decoded.append(byte)
                index += 1
            }
        }
        guard let text = String(validating: decoded, as: UTF8.self) else { return nil }
        var output: [Substring] = []
        let parts = text.split(separator: "/", omittingEmptySubsequences: true)
        for part in parts {
            if part == "." { continue }
            if part == ".." {
                guard !output.isEmpty else { return nil }
                output.removeLast()
                continue
            }
            output.append(part)
        }
        // A trailing slash is kept (`/v1/items/` is not `/v1/items`), as nginx keeps it.
        let trailing = text.count > 1 && (text.hasSuffix("/") || parts.last == "." || parts.last == "..")
        return "/" + output.joined(separator: "/") + (trailing && !output.isEmpty ? "/" : "")
    }

    private static func hex(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return byte - UInt8(ascii: "A") + 10
        default: return nil
        }
    }
}

/// Reads route rules from a document node, as `PlanDocument` reads plans, so that a JSON configuration (and any other
/// file turned into a `DocumentNode`) gets the same verdicts from `Validation.routes`:
///
/// ```json
/// "routes": [
///   { "method": "GET", "path": "/v1/reports/{id}", "scopes": ["reports"], "meter": "requests", "cost": 1 },
///   { "method": "*", "path": "/v1/*", "scopes": ["read"], "features": ["api"] }
/// ],
/// "default": "deny"
/// ```
///
/// `method` defaults to `*`; `cost` defaults to 1 when a `meter` is named, 0 otherwise.
public enum RouteDocument {
    public static let keys = ["method", "path", "scopes", "features", "meter", "cost"]

    /// The rules under `routes` and the fallback under `default` of `reader`'s mapping (both optional).
    public static func readTable(_ reader: inout DocumentReader, routesKey: String = "routes", defaultKey: String = "default") throws(ValidationError) -> RouteTable {
        var table = RouteTable()
        for var rule in try reader.mappings(routesKey) { table.rules.append(try read(&rule)) }
        table.fallback = try reader.named(defaultKey, RouteFallback.init(name:), allowed: RouteFallback.allCases.map(\.name)) ?? .deny
        try Validation.routes(table, field: reader.child(routesKey))
        return table
    }

    public static func read(_ reader: inout DocumentReader) throws(ValidationError) -> RouteRule {
        try reader.allowOnly(keys)
        let method = try reader.string("method") ?? "*"
        let path = try Validation.pathPattern(try reader.requiredString("path"), field: reader.child("path"))
        let meter = try reader.string("meter") ?? ""
        let cost = try reader.integer("cost", UInt64.self) ?? (meter.isEmpty ? 0 : 1)
        let rule = RouteRule(
            method: method, path: path, scopes: try reader.strings("scopes") ?? [], features: try reader.strings("features") ?? [], meter: meter,
            cost: cost)
        try reader.finish()
        do throws(ValidationError) { try Validation.route(rule) } catch { throw error.at(reader.path) }
        return rule
    }
}
