import NIOCore
import NIOHTTP1

/// The bytes of one HTTP/1.1 answer of this front end: the status line, the header lines, an empty line, the body.
///
/// Written here instead of through NIOHTTP1's `HTTPResponseEncoder`: the answers are small, always carry a
/// `Content-Length`, and never need what the encoder is for (chunked bodies, trailers, framing headers to correct).
/// Going through `HTTPResponseHead`, `HTTPHeaders` and the encoder cost ~25 k instructions per forward-auth answer
/// (callgrind, Benchmarks/SCALE.md, "Forward auth"); writing the bytes once costs a few hundred per header.
///
/// Every header name written is a constant of this module and every value a number, a fixed word or a value passed
/// through `ForwardAuthHeaders.headerSafe`, so no line break can reach a header line (`ResponseBytesTests` decodes
/// the answers with NIOHTTP1's own response parser).
struct ResponseBytes {
    private var buffer: ByteBuffer

    /// Starts an answer: `HTTP/1.0` to a 1.0 request (which then closes), `HTTP/1.1` otherwise.
    init(status: HTTPResponseStatus, requestVersion: HTTPVersion, allocator: ByteBufferAllocator) {
        buffer = allocator.buffer(capacity: 320)
        buffer.writeStaticString(requestVersion.major == 1 && requestVersion.minor == 0 ? "HTTP/1.0 " : "HTTP/1.1 ")
        buffer.writeString(String(status.code))
        buffer.writeStaticString(" ")
        buffer.writeString(status.reasonPhrase)
        buffer.writeStaticString("\r\n")
    }

    mutating func header(_ name: String, _ value: String) {
        buffer.writeString(name)
        buffer.writeStaticString(": ")
        buffer.writeString(value)
        buffer.writeStaticString("\r\n")
    }

    /// Ends the header lines and appends `body`; the result is ready to write.
    mutating func finish(body: some Collection<UInt8>) -> ByteBuffer {
        buffer.writeStaticString("\r\n")
        buffer.writeBytes(body)
        return buffer
    }
}
