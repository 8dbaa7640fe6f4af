import NIOCore
import TollgateAuthorization

/// A parser for exactly one kind of HTTP/1.1 request: a proxy's forward-auth call (`GET` or `HEAD` of
/// `/v1/forward-auth`, no body), the request nginx `auth_request`, Caddy `forward_auth` and Traefik ForwardAuth send
/// for every request they protect. It reads the head in place and keeps only where each header line lies.
///
/// Why it exists: through NIOHTTP1 (llhttp and `HTTPRequestHead` ~15 k, `ByteToMessageHandler` ~3 k, the connection
/// state's look at the head ~7 k, then a case-insensitive search over `HTTPHeaders` per header the translation asks
/// for) this request cost ~25 k of the ~119 k instructions of a forward-auth answer; read here it costs ~4 k
/// (callgrind, Benchmarks/SCALE.md, "Forward auth").
///
/// It accepts a strict subset of what NIOHTTP1 accepts, and reads it the same way; anything else is `unsupported`
/// and the connection is handed to NIOHTTP1 from that request on (`ForwardAuthFastPath`), which answers it as
/// before: a body, chunked or `Content-Length` framing, `Upgrade`, `Expect`, any other method or path, HTTP/1.0, a
/// folded or non-ASCII header line, a bare LF, a head longer than `maxHeaderBytes` (NIOHTTP1's own limits then say
/// 431), more than `maxHeaderFields` fields, a `Connection` other than `keep-alive` or `close`. So every limit and
/// every 400 stays NIOHTTP1's and `HTTPConnectionState`'s, and this parser can only ever answer well-formed,
/// bounded requests, or decline them.
struct ForwardAuthRequestParser {
    /// Where one header line's name and value lie, as offsets from the start of the request.
    struct Field: Equatable {
        var nameStart: Int
        var nameLength: Int
        var valueStart: Int
        var valueLength: Int
    }

    /// A complete request head the fast path serves.
    struct Request: Equatable {
        var isHead: Bool
        var keepAlive: Bool
        /// Bytes of the request head, the empty line included.
        var length: Int
    }

    enum Outcome: Equatable {
        /// The head is complete: `fields` holds its header lines.
        case complete(Request)
        /// More bytes are needed (at most `maxHeaderBytes` are ever held for this).
        case incomplete
        /// Not a request this parser serves (or not HTTP at all): NIOHTTP1 takes the connection from here.
        case unsupported
    }

    /// The bound on the head (request line and header lines), the listener's `max_header_bytes`.
    let maxHeaderBytes: Int
    /// NIOHTTP1's bound on the number of header fields (`HTTPFrontEnd.decoderLimits`).
    let maxHeaderFields: Int

    /// Parses the request at the start of `bytes`, its header lines into `fields` (cleared first).
    func parse(_ bytes: UnsafeRawBufferPointer, into fields: inout [Field]) -> Outcome {
        fields.removeAll(keepingCapacity: true)
        // Within the bound, or the bytes so far within it: a longer head is NIOHTTP1's to refuse (431).
        let count = bytes.count
        let limit = min(count, maxHeaderBytes)
        var index = 0

        // The request line: `GET ` or `HEAD `, the endpoint's path, an optional query, ` HTTP/1.1`, CRLF.
        let isHead: Bool
        if Self.matches(bytes, at: 0, "GET ", limit: limit) {
            isHead = false
            index = 4
        } else if Self.matches(bytes, at: 0, "HEAD ", limit: limit) {
            isHead = true
            index = 5
        } else {
            return Self.prefixOfAny(bytes, limit: limit, ["GET ", "HEAD "]) ? .needingMore(count, maxHeaderBytes) : .unsupported
        }
        let path = ForwardAuth.endpointPath
        guard Self.matchesString(bytes, at: index, path, limit: limit) else {
            return Self.isPrefix(bytes, from: index, limit: limit, of: path) ? .needingMore(count, maxHeaderBytes) : .unsupported
        }
        index += path.utf8.count
        if index < limit, bytes[index] == UInt8(ascii: "?") {
            index += 1
            while index < limit, Self.isQueryByte(bytes[index]) { index += 1 }
        }
        guard Self.matches(bytes, at: index, " HTTP/1.1\r\n", limit: limit) else {
            return Self.isPrefix(bytes, from: index, limit: limit, of: " HTTP/1.1\r\n") ? .needingMore(count, maxHeaderBytes) : .unsupported
        }
        index += 11

        // Header lines until the empty line.
        var keepAlive = true
        while true {
            guard index + 1 < limit else { return .needingMore(count, maxHeaderBytes) }
            if bytes[index] == UInt8(ascii: "\r") {
                guard bytes[index + 1] == UInt8(ascii: "\n") else { return .unsupported }
                return .complete(Request(isHead: isHead, keepAlive: keepAlive, length: index + 2))
            }
            let nameStart = index
            while index < limit, Self.isTokenByte(bytes[index]) { index += 1 }
            guard index < limit else { return .needingMore(count, maxHeaderBytes) }
            guard bytes[index] == UInt8(ascii: ":"), index > nameStart else { return .unsupported }
            let nameLength = index - nameStart
            index += 1
            while index < limit, bytes[index] == UInt8(ascii: " ") || bytes[index] == UInt8(ascii: "\t") { index += 1 }
            let valueStart = index
            while index < limit {
                let byte = bytes[index]
                if byte == UInt8(ascii: "\r") { break }
                // Visible ASCII, space and tab only: no obs-text, no control byte, no bare LF.
                guard (byte >= 0x20 && byte < 0x7F) || byte == UInt8(ascii: "\t") else { return .unsupported }
                index += 1
            }
            // Trailing spaces stay part of the value, as NIOHTTP1 keeps them.
            let valueEnd = index
            guard index + 1 < limit else { return .needingMore(count, maxHeaderBytes) }
            guard bytes[index + 1] == UInt8(ascii: "\n") else { return .unsupported }
            index += 2
            guard fields.count < maxHeaderFields else { return .unsupported }
            let field = Field(nameStart: nameStart, nameLength: nameLength, valueStart: valueStart, valueLength: valueEnd - valueStart)
            switch Self.framing(of: field, in: bytes) {
            case .none: break
            case .refused: return .unsupported
            case .close: keepAlive = false
            }
            fields.append(field)
        }
    }

    private enum Framing { case none, refused, close }

    /// Header fields that change how the request is framed or the connection is used: this parser serves none of
    /// them but `Connection: keep-alive` and `Connection: close`.
    private static func framing(of field: Field, in bytes: UnsafeRawBufferPointer) -> Framing {
        switch field.nameLength {
        case 6: return equalsIgnoringCase(bytes, field.nameStart, 6, "expect") ? .refused : .none
        case 7: return equalsIgnoringCase(bytes, field.nameStart, 7, "upgrade") ? .refused : .none
        case 10:
            guard equalsIgnoringCase(bytes, field.nameStart, 10, "connection") else { return .none }
            if equalsIgnoringCase(bytes, field.valueStart, field.valueLength, "close") { return .close }
            return equalsIgnoringCase(bytes, field.valueStart, field.valueLength, "keep-alive") ? .none : .refused
        case 14: return equalsIgnoringCase(bytes, field.nameStart, 14, "content-length") ? .refused : .none
        case 17: return equalsIgnoringCase(bytes, field.nameStart, 17, "transfer-encoding") ? .refused : .none
        default: return .none
        }
    }

    /// The value of the first field named `name` (ASCII, any case), as NIOHTTP1's `HTTPHeaders.first(name:)` gives
    /// it: without the spaces and tabs before it, with any after it.
    static func firstValue(_ name: String, fields: [Field], in bytes: UnsafeRawBufferPointer) -> String? {
        let length = name.utf8.count
        for field in fields where field.nameLength == length && equalsIgnoringCase(bytes, field.nameStart, length, name) {
            return String(decoding: UnsafeRawBufferPointer(rebasing: bytes[field.valueStart..<(field.valueStart + field.valueLength)]), as: UTF8.self)
        }
        return nil
    }

    /// Whether the `length` bytes at `start` spell `word` (lower-case ASCII) in any case.
    static func equalsIgnoringCase(_ bytes: UnsafeRawBufferPointer, _ start: Int, _ length: Int, _ word: String) -> Bool {
        guard word.utf8.count == length else { return false }
        // The word's bytes in place (a literal's are): no iterator over a String per byte.
        var word = word
        return word.withUTF8 { expected in
            for offset in 0..<length {
                var byte = bytes[start + offset]
                if byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "Z") { byte |= 0x20 }
                var lower = expected[offset]
                if lower >= UInt8(ascii: "A") && lower <= UInt8(ascii: "Z") { lower |= 0x20 }
                guard byte == lower else { return false }
            }
            return true
        }
    }

    private static func matches(_ bytes: UnsafeRawBufferPointer, at start: Int, _ text: StaticString, limit: Int) -> Bool {
        let length = text.utf8CodeUnitCount
        guard start + length <= limit else { return false }
        return text.withUTF8Buffer { expected in
            for offset in 0..<length where bytes[start + offset] != expected[offset] { return false }
            return true
        }
    }

    private static func matchesString(_ bytes: UnsafeRawBufferPointer, at start: Int, _ text: String, limit: Int) -> Bool {
        guard start + text.utf8.count <= limit else { return false }
        var index = start
        for expected in text.utf8 {
            guard bytes[index] == expected else { return false }
            index += 1
        }
        return true
    }

    /// Whether the bytes from `start` to `limit` (all there is so far) begin `text`: more may complete it.
    private static func isPrefix(_ bytes: UnsafeRawBufferPointer, from start: Int, limit: Int, of text: some StringProtocol) -> Bool {
        guard limit - start < text.utf8.count else { return false }
        var index = start
        for expected in text.utf8 {
            guard index < limit else { return true }
            guard bytes[index] == expected else { return false }
            index += 1
        }
        return true
    }

    private static func prefixOfAny(_ bytes: UnsafeRawBufferPointer, limit: Int, _ texts: [String]) -> Bool {
        texts.contains { isPrefix(bytes, from: 0, limit: limit, of: $0) }
    }

    /// RFC 9110's token characters: a header field's name.
    private static func isTokenByte(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"):
            return true
        case UInt8(ascii: "!"), UInt8(ascii: "#"), UInt8(ascii: "$"), UInt8(ascii: "%"), UInt8(ascii: "&"), UInt8(ascii: "'"), UInt8(ascii: "*"),
            UInt8(ascii: "+"), UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "^"), UInt8(ascii: "_"), UInt8(ascii: "`"), UInt8(ascii: "|"),
            UInt8(ascii: "~"):
            return true
        default:
            return false
        }
    }

    /// RFC 3986's query characters (unreserved, sub-delims, `:`, `@`, `/`, `?`, `%`): a stricter set than any HTTP
    /// parser accepts, so that nothing here is read differently by NIOHTTP1.
    private static func isQueryByte(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"):
            return true
        case UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "~"), UInt8(ascii: "!"), UInt8(ascii: "$"), UInt8(ascii: "&"),
            UInt8(ascii: "'"), UInt8(ascii: "("), UInt8(ascii: ")"), UInt8(ascii: "*"), UInt8(ascii: "+"), UInt8(ascii: ","), UInt8(ascii: ";"),
            UInt8(ascii: "="), UInt8(ascii: ":"), UInt8(ascii: "@"), UInt8(ascii: "/"), UInt8(ascii: "?"), UInt8(ascii: "%"):
            return true
        default:
            return false
        }
    }
}

extension ForwardAuthRequestParser.Outcome {
    /// More bytes may complete the head, unless `count` bytes are already past the bound (then NIOHTTP1 refuses it).
    fileprivate static func needingMore(_ count: Int, _ maxHeaderBytes: Int) -> Self {
        count >= maxHeaderBytes ? .unsupported : .incomplete
    }
}

/// The header lines of a request the fast path serves, read where they lie: what the shared translation asks for.
/// Valid only while the request's bytes are (inside `ByteBuffer.withUnsafeReadableBytes`).
struct ForwardAuthRequestHeaders: AuthorizationHeaders {
    let bytes: UnsafeRawBufferPointer
    let fields: [ForwardAuthRequestParser.Field]

    func firstValue(name: String) -> String? {
        ForwardAuthRequestParser.firstValue(name, fields: fields, in: bytes)
    }

    /// Whether a field named `name` (ASCII, any case) is there, without making a String of its value.
    func contains(name: String) -> Bool {
        let length = name.utf8.count
        return fields.contains { $0.nameLength == length && ForwardAuthRequestParser.equalsIgnoringCase(bytes, $0.nameStart, length, name) }
    }
}
