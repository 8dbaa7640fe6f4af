import Foundation
import TollgateModel
import XCTest

/// The one JSON string escaper of the hand-written JSON lines (usage export, Stripe meter events): what it writes
/// parses back to the same text, and control characters never appear raw.
final class JSONTextTests: XCTestCase {
    func testQuotedTextParsesBackUnchanged() throws {
        for text in ["plain", "a \"quoted\" \\ word", "line\nbreak\r\ttab", "\u{01}\u{1F}\u{7F}", "ünïcødé ✓", ""] {
            let quoted = JSONText.quoted(text)
            XCTAssertFalse(quoted.unicodeScalars.contains { $0.value < 0x20 || $0.value == 0x7F }, quoted)
            let parsed = try JSONSerialization.jsonObject(with: Data("[\(quoted)]".utf8)) as? [String]
            XCTAssertEqual(parsed, [text])
        }
        XCTAssertEqual(JSONText.quoted("a\n\u{01}"), #""a\n\u0001""#)
    }
}
