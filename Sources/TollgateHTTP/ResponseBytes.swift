import NIOCore
import NIOHTTP1

/// The bytes of one HTTP/1.1 answer of this front end: the status line, the header lines, an empty line, the body.
///
/// Written here instead of through NIOHTTP1's `HTTPResponseEncoder`: the answers are small, always carry a
/// `Content-Length`, and never need what the encoder is for (chunked bodies, trailers, framing headers to correct).
/// Going through `HTTPResponseHead`, `HTTPHeaders` and the encoder cost ~25 k instructions per forward-auth answer
/// (callgrind, Benchmarks/SCALE.md, "Forward auth"); writing the bytes once costs a few hundred per header.
///
/// The lines are gathered in an array (a connection hands back the same storage for every answer) and copied into
/// one `ByteBuffer` at the end, instead of ~20 writes into a `ByteBuffer` that each check its capacity and
/// uniqueness. Measured only together with the other changes of the fast path's first step
/// (`ForwardAuthHandler.write` 21.7 k → 13.0 k instructions per answer; callgrind, Benchmarks/SCALE.md).
///
/// Every header name written is a constant of this module and every value a number, a fixed word or a value passed
/// through `ForwardAuthHeaders.headerSafe`, so no line break can reach a header line (`ResponseBytesTests` decodes
/// the answers with NIOHTTP1's own response parser).
struct ResponseBytes {
    private var bytes: [UInt8]
    private let allocator: ByteBufferAllocator

    /// Starts an answer: `HTTP/1.0` to a 1.0 request (which then closes), `HTTP/1.1` otherwise.
    init(status: HTTPResponseStatus, requestVersion: HTTPVersion, allocator: ByteBufferAllocator) {
        var none: [UInt8] = []
        self.init(status: status, requestVersion: requestVersion, allocator: allocator, storage: &none)
    }

    /// The same, written into `storage`'s memory (taken, left empty; `finish` gives it back).
    init(status: HTTPResponseStatus, requestVersion: HTTPVersion, allocator: ByteBufferAllocator, storage: inout [UInt8]) {
        self.allocator = allocator
        bytes = []
        swap(&bytes, &storage)
        bytes.removeAll(keepingCapacity: true)
        bytes.reserveCapacity(384)
        append(requestVersion.major == 1 && requestVersion.minor == 0 ? "HTTP/1.0 " : "HTTP/1.1 ")
        appendDecimal(UInt64(status.code))
        append(" ")
        append(status.reasonPhrase)
        append("\r\n")
    }

    mutating func header(_ name: String, _ value: String) {
        append(name)
        append(": ")
        append(value)
        append("\r\n")
    }

    /// A header whose value is a number (`Content-Length`), written without making a String of it.
    mutating func header(_ name: StaticString, _ value: Int) {
        append(name)
        append(": ")
        appendDecimal(UInt64(max(0, value)))
        append("\r\n")
    }

    /// Ends the header lines and appends `body`; the result is ready to write. The array's storage is handed back
    /// with it for the next answer.
    mutating func finish(body: some Collection<UInt8>) -> (ByteBuffer, storage: [UInt8]) {
        append("\r\n")
        bytes.append(contentsOf: body)
        var buffer = allocator.buffer(capacity: bytes.count)
        buffer.writeBytes(bytes)
        return (buffer, bytes)
    }

    private mutating func append(_ text: StaticString) {
        bytes.append(contentsOf: UnsafeBufferPointer(start: text.utf8Start, count: text.utf8CodeUnitCount))
    }

    private mutating func append(_ text: String) {
        var text = text
        text.withUTF8 { bytes.append(contentsOf: $0) }
    }

    private mutating func appendDecimal(_ value: UInt64) {
        guard value >= 10 else { return bytes.append(UInt8(ascii: "0") + UInt8(value)) }
        appendDecimal(value / 10)
        bytes.append(UInt8(ascii: "0") + UInt8(value % 10))
    }
}
