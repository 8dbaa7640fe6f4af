import NIOCore
import NIOHTTP1
import TollgateAuthorization

/// The first handler of every HTTP connection: answers the proxies' forward-auth calls read by
/// `ForwardAuthRequestParser`, and hands the connection to NIOHTTP1 (its decoder inserted in front of
/// `ForwardAuthHandler`, the bytes not yet answered passed to it, this handler removed) at the first request the
/// parser declines. From then on the connection is served exactly as before this handler existed: every limit, every
/// 400, 413 and 431, bodies, the reserved and body endpoints, HTTP/1.0, Envoy's request-line shape.
///
/// The connection's state (its place under `max_connections`, its peer, the idle timer) stays
/// `ForwardAuthHandler`'s; this handler asks it whether it may answer (`servesFast`) and has it answer
/// (`serveFast`), so both paths decide and write through the same code. Requests are answered in order as they
/// are read, as the NIOHTTP1 path does; what waits for more bytes is at most `max_header_bytes`.
final class ForwardAuthFastPath: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    private let connection: ForwardAuthHandler
    private let parser: ForwardAuthRequestParser
    private let makeDecoder: () -> ByteToMessageHandler<HTTPRequestDecoder>
    /// The start of a request whose head has not all arrived.
    private var pending: ByteBuffer?
    /// The header lines of the request being answered (the storage kept from request to request).
    private var fields: [ForwardAuthRequestParser.Field] = []
    /// NIOHTTP1 has the connection (this handler is on its way out of the pipeline).
    private var handedOver = false
    /// A request asked to close: nothing after it is read.
    private var closing = false
    /// How many times the parser has read a head (what `ForwardAuthFastPathTests` bounds for a head in pieces).
    private(set) var parses = 0
    /// A pending start of at most this many bytes is parsed on every read, so a request line this parser declines
    /// (another method or path) goes to NIOHTTP1 at once; beyond it, only bytes that could end the head are.
    static let eagerlyParsedBytes = 64

    init(connection: ForwardAuthHandler, limits: HTTPLimits, maxHeaderFields: Int, makeDecoder: @escaping () -> ByteToMessageHandler<HTTPRequestDecoder>) {
        self.connection = connection
        self.parser = ForwardAuthRequestParser(maxHeaderBytes: limits.maxHeaderBytes, maxHeaderFields: maxHeaderFields)
        self.makeDecoder = makeDecoder
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if handedOver { return context.fireChannelRead(data) }
        if closing { return }
        var buffer = unwrapInboundIn(data)
        if var held = pending {
            pending = nil
            let scanned = held.readableBytes
            held.writeBuffer(&buffer)
            buffer = held
            // Parsing the whole head again for every piece would cost O(max_header_bytes²) for a client sending
            // one byte at a time: until the new bytes could end it (or the head is past its bound, NIOHTTP1's
            // 431), nothing the parser answers can change from `incomplete` but an early `unsupported`, which
            // NIOHTTP1 is then handed with the head's end.
            if connection.servesFast, buffer.readableBytes > Self.eagerlyParsedBytes, buffer.readableBytes < parser.maxHeaderBytes,
                !Self.mayEndHead(buffer, from: max(0, scanned - 2))
            {
                pending = buffer
                return
            }
        }
        while buffer.readableBytes > 0 {
            guard connection.servesFast else {
                // Closed meanwhile (an answer asked to): nothing more is read.
                guard connection.isOpen else { return }
                return handOver(buffer, context: context)
            }
            let outcome = buffer.withUnsafeReadableBytes { bytes -> ForwardAuthRequestParser.Outcome in
                parses &+= 1
                let outcome = parser.parse(bytes, into: &fields)
                if case .complete(let request) = outcome {
                    connection.serveFast(request, headers: ForwardAuthRequestHeaders(bytes: bytes, fields: fields), context: context)
                }
                return outcome
            }
            switch outcome {
            case .complete(let request):
                buffer.moveReaderIndex(forwardBy: request.length)
                if !request.keepAlive {
                    closing = true
                    return
                }
            case .incomplete:
                pending = buffer
                return
            case .unsupported:
                return handOver(buffer, context: context)
            }
        }
    }

    /// Whether the readable bytes from `offset` on hold an LF followed by LF or CRLF: the end of a head (the parser's
    /// CRLF CRLF, or a bare-LF one it declines and NIOHTTP1 reads), the only place `incomplete` can end.
    static func mayEndHead(_ buffer: ByteBuffer, from offset: Int) -> Bool {
        buffer.withUnsafeReadableBytes { bytes in
            let lf = UInt8(ascii: "\n")
            var index = offset
            while index + 1 < bytes.count {
                if bytes[index] == lf {
                    if bytes[index + 1] == lf { return true }
                    if bytes[index + 1] == UInt8(ascii: "\r"), index + 2 < bytes.count, bytes[index + 2] == lf { return true }
                }
                index += 1
            }
            return false
        }
    }

    /// NIOHTTP1 from this request on: its decoder goes in front of `ForwardAuthHandler` and gets the bytes not yet
    /// answered; this handler leaves the pipeline.
    private func handOver(_ buffer: ByteBuffer, context: ChannelHandlerContext) {
        do {
            try context.pipeline.syncOperations.addHandler(makeDecoder(), position: .before(connection))
        } catch {
            // The pipeline refused the decoder (the channel is closing): nothing more is read or answered here, and
            // raw bytes must never reach `ForwardAuthHandler`, which reads only decoded request parts.
            closing = true
            context.close(promise: nil)
            return
        }
        handedOver = true
        context.fireChannelRead(wrapInboundOut(buffer))
        context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
    }
}
