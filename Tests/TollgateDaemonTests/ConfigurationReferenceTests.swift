import Foundation
import TollgateDaemon
import TollgateModel
import XCTest

/// The configuration reference is held to the parser: every key `DaemonConfiguration.parse` accepts must be named in
/// each reference document, so a new key (a new section, say) fails this test until it is documented.
///
/// The keys are not listed here: they are recorded while the parser reads the embedded default, with every object
/// the parser asks for and the default lacks filled in as `{}` (and every list of objects as `[{}]`), again until no
/// new object appears. A new section is found that way even when the embedded default does not carry it.
final class ConfigurationReferenceTests: XCTestCase {
    /// The documents that must name every key: the README's configuration table (in backticks) and the manual page.
    static let references: [(path: String, names: @Sendable (String) -> [String])] = [
        ("README.md", { key in ["`\(key)`"] }),
        ("packaging/man/tollgated.json.5", { key in [key] }),
    ]

    static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    /// Dotted paths of every key the parser reads, with its kind; `[n]` of lists of objects dropped (`a.b`).
    static func acceptedKeys() throws -> [String: ConfigurationKeyRecorder.Kind] {
        var document = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(DaemonConfiguration.embeddedDefaultJSON.utf8)) as? [String: Any])
        for _ in 0..<16 {
            let recorder = ConfigurationKeyRecorder()
            let data = try JSONSerialization.data(withJSONObject: document)
            _ = try recorder.recording { try DaemonConfiguration.parse(json: data) }
            var added = false
            for (path, kind) in recorder.recorded where kind == .object || kind == .listOfObjects {
                let filler: Any = kind == .object ? [String: Any]() : [[String: Any]()]
                if insert(filler, at: path.replacingOccurrences(of: #"\[[0-9]+\]"#, with: "", options: .regularExpression), into: &document) {
                    added = true
                }
            }
            if !added {
                var keys: [String: ConfigurationKeyRecorder.Kind] = [:]
                for (path, kind) in recorder.recorded {
                    keys[path.replacingOccurrences(of: #"\[[0-9]+\]"#, with: "", options: .regularExpression)] = kind
                }
                return keys
            }
        }
        XCTFail("the configuration's objects did not settle after 16 rounds")
        return [:]
    }

    /// Puts `value` at the dotted `path` unless something is there; true when it was put.
    static func insert(_ value: Any, at path: String, into document: inout [String: Any]) -> Bool {
        let parts = path.split(separator: ".").map(String.init)
        guard let first = parts.first else { return false }
        if parts.count == 1 {
            guard document[first] == nil else { return false }
            document[first] = value
            return true
        }
        if var list = document[first] as? [[String: Any]], !list.isEmpty {
            let added = insert(value, at: parts.dropFirst().joined(separator: "."), into: &list[0])
            document[first] = list
            return added
        }
        var child = document[first] as? [String: Any] ?? [:]
        let added = insert(value, at: parts.dropFirst().joined(separator: "."), into: &child)
        document[first] = child
        return added
    }

    /// True when `name` occurs in `text` not as part of a longer key (`limits.max_tokens` is not in `limits.max_tokens_x`).
    static func mentions(_ text: String, _ name: String) -> Bool {
        var searchRange = text.startIndex..<text.endIndex
        while let found = text.range(of: name, range: searchRange) {
            let before = found.lowerBound == text.startIndex ? nil : text[text.index(before: found.lowerBound)]
            let after = found.upperBound == text.endIndex ? nil : text[found.upperBound]
            let keyCharacter: (Character?) -> Bool = { c in c.map { $0.isLetter || $0.isNumber || $0 == "_" || $0 == "." } ?? false }
            if !keyCharacter(before) && !keyCharacter(after) { return true }
            searchRange = found.upperBound..<text.endIndex
        }
        return false
    }

    func testTheParserReadsTheKeysThisTestExpectsToFind() throws {
        // A sanity check of the recording itself: known keys of each kind, nested and not.
        let keys = try Self.acceptedKeys()
        XCTAssertEqual(keys["state_dir"], .value)
        XCTAssertEqual(keys["journal"], .object)
        XCTAssertEqual(keys["limits.max_durable_backlog"], .value)
        XCTAssertEqual(keys["access.admin"], .object)
        XCTAssertEqual(keys["access.api.allow_own_user"], .value, "objects the default lacks (access.api) are filled in and read")
        XCTAssertEqual(keys["licensing.ledger_retention_days"], .value)
        XCTAssertEqual(keys["plans"], .list)
        XCTAssertGreaterThanOrEqual(keys.count, 40)
    }

    func testEveryConfigurationKeyIsDocumented() throws {
        let keys = try Self.acceptedKeys()
        // Objects are documented through their keys; values and lists by name.
        let documented = keys.filter { $0.value != .object && $0.value != .listOfObjects }.keys.sorted()
        for reference in Self.references {
            let text = try String(contentsOf: Self.repository.appendingPathComponent(reference.path), encoding: .utf8)
            let missing = documented.filter { key in !reference.names(key).contains { Self.mentions(text, $0) } }
            XCTAssertEqual(missing, [], "configuration keys the parser accepts but \(reference.path) does not document: \(missing.joined(separator: ", "))")
        }
    }

    func testEveryPlanKeyIsDocumented() throws {
        for reference in Self.references {
            let text = try String(contentsOf: Self.repository.appendingPathComponent(reference.path), encoding: .utf8)
            let missing = PlanDocument.keys.filter { key in !reference.names(key).contains { Self.mentions(text, $0) } }
            XCTAssertEqual(missing, [], "plan keys (PlanDocument.keys) \(reference.path) does not document: \(missing.joined(separator: ", "))")
        }
    }

    func testTheCheckFindsAnUndocumentedKey() {
        // The check can fail: a key documented nowhere is not mentioned, and a longer key does not count for a shorter one.
        XCTAssertFalse(Self.mentions("`limits.max_tokens_total` and journal.fsync", "limits.max_tokens"))
        XCTAssertFalse(Self.mentions("licensing.ledger_retention_days", "ledger_retention_days"))
        XCTAssertTrue(Self.mentions("| `licensing.ledger_retention_days` | 100 |", "`licensing.ledger_retention_days`"))
        XCTAssertTrue(Self.mentions(".BR access.api.uids \", \" access.admin.uids", "access.admin.uids"))
    }
}
