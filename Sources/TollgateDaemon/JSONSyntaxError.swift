/// Where a configuration file stops being JSON, as a line and column (1-based, columns in bytes), so the message
/// says where to look (issue 13 §3): Foundation's own error says only "The data is not in the correct format."
///
/// A small recursive-descent scan of RFC 8259's grammar, run only after `JSONSerialization` has refused the file,
/// so it never decides whether a file is accepted; it only locates the first byte that cannot continue the text.
struct JSONSyntaxError: Equatable {
    var line: Int
    var column: Int
    var problem: String

    /// The first syntax error of `bytes`, or nil when the scan finds none (then Foundation's reason is shown alone).
    static func locate(_ bytes: [UInt8]) -> JSONSyntaxError? {
        var scanner = Scanner(bytes: bytes)
        do throws(JSONSyntaxError) {
            scanner.skipSpace()
            try scanner.value(depth: 0)
            scanner.skipSpace()
            guard scanner.index == bytes.count else { throw scanner.failure("unexpected text after the end of the document") }
            return nil
        } catch {
            return error
        }
    }

    private struct Scanner {
        let bytes: [UInt8]
        var index = 0

        init(bytes: [UInt8]) { self.bytes = bytes }

        func failure(_ problem: String) -> JSONSyntaxError {
            var line = 1
            var lineStart = 0
            for i in 0..<min(index, bytes.count) where bytes[i] == UInt8(ascii: "\n") {
                line += 1
                lineStart = i + 1
            }
            return JSONSyntaxError(line: line, column: index - lineStart + 1, problem: problem)
        }

        var current: UInt8? { index < bytes.count ? bytes[index] : nil }

        mutating func skipSpace() {
            while let b = current, b == 0x20 || b == 0x09 || b == 0x0A || b == 0x0D { index += 1 }
        }

        func describe(_ b: UInt8?) -> String {
            guard let b else { return "the end of the file" }
            return b >= 0x21 && b < 0x7F ? "'\(Character(UnicodeScalar(b)))'" : "byte 0x\(String(b, radix: 16))"
        }

        mutating func expect(_ byte: UInt8, _ what: String) throws(JSONSyntaxError) {
            guard current == byte else { throw failure("expected \(what), found \(describe(current))") }
            index += 1
        }

        mutating func value(depth: Int) throws(JSONSyntaxError) {
            guard depth < 512 else { throw failure("nested too deeply") }
            switch current {
            case UInt8(ascii: "{"):
                index += 1
                skipSpace()
                if current == UInt8(ascii: "}") { index += 1; return }
                while true {
                    skipSpace()
                    guard current == UInt8(ascii: "\"") else { throw failure("expected a key in double quotes, found \(describe(current))") }
                    try string()
                    skipSpace()
                    try expect(UInt8(ascii: ":"), "':' after the key")
                    skipSpace()
                    try value(depth: depth + 1)
                    skipSpace()
                    if current == UInt8(ascii: ",") { index += 1; continue }
                    try expect(UInt8(ascii: "}"), "',' or '}'")
                    return
                }
            case UInt8(ascii: "["):
                index += 1
                skipSpace()
                if current == UInt8(ascii: "]") { index += 1; return }
                while true {
                    skipSpace()
                    try value(depth: depth + 1)
                    skipSpace()
                    if current == UInt8(ascii: ",") { index += 1; continue }
                    try expect(UInt8(ascii: "]"), "',' or ']'")
                    return
                }
            case UInt8(ascii: "\""):
                try string()
            case UInt8(ascii: "t"): try literal("true")
            case UInt8(ascii: "f"): try literal("false")
            case UInt8(ascii: "n"): try literal("null")
            case let b? where b == UInt8(ascii: "-") || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(b):
                try number()
            default:
                throw failure("expected a value, found \(describe(current))")
            }
        }

        mutating func literal(_ word: String) throws(JSONSyntaxError) {
            for byte in word.utf8 {
                guard current == byte else { throw failure("expected \(word), found \(describe(current))") }
                index += 1
            }
        }

        mutating func string() throws(JSONSyntaxError) {
            let start = index
            index += 1
            while let b = current {
                switch b {
                case UInt8(ascii: "\""):
                    index += 1
                    return
                case UInt8(ascii: "\\"):
                    index += 1
                    guard let e = current, "\"\\/bfnrtu".utf8.contains(e) else { throw failure("invalid escape in a string") }
                    index += 1
                    if e == UInt8(ascii: "u") {
                        for _ in 0..<4 {
                            guard let h = current, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(h) || (UInt8(ascii: "a")...UInt8(ascii: "f")).contains(h | 0x20) else {
                                throw failure("invalid \\u escape in a string")
                            }
                            index += 1
                        }
                    }
                case 0..<0x20:
                    throw failure("a control character (such as a line break) inside a string")
                default:
                    index += 1
                }
            }
            index = start
            throw failure("a string that is not closed")
        }

        mutating func number() throws(JSONSyntaxError) {
            if current == UInt8(ascii: "-") { index += 1 }
            func digits(_ scanner: inout Scanner) throws(JSONSyntaxError) {
                guard let d = scanner.current, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(d) else {
                    throw scanner.failure("expected a digit, found \(scanner.describe(scanner.current))")
                }
                while let d = scanner.current, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(d) { scanner.index += 1 }
            }
            if current == UInt8(ascii: "0") {
                index += 1
                if let d = current, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(d) { throw failure("a number with a leading zero") }
            } else {
                try digits(&self)
            }
            if current == UInt8(ascii: ".") {
                index += 1
                try digits(&self)
            }
            if current == UInt8(ascii: "e") || current == UInt8(ascii: "E") {
                index += 1
                if current == UInt8(ascii: "+") || current == UInt8(ascii: "-") { index += 1 }
                try digits(&self)
            }
        }
    }
}

extension JSONSyntaxError: Error {}
