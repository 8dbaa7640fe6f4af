import NIOCore

/// Adapts the pure `FrameDecoder` to NIO's `ByteToMessageDecoder`, so NIO does the buffering.
public struct FrameByteDecoder: ByteToMessageDecoder {
    public typealias InboundOut = FrameDecoder.Event

    public let decoder: FrameDecoder
    /// After a framing error that closes the connection, everything else on the stream is ignored.
    var poisoned = false

    public init(decoder: FrameDecoder) {
        self.decoder = decoder
    }

    public mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        if poisoned {
            buffer.moveReaderIndex(to: buffer.writerIndex)
            return .needMoreData
        }
        guard let event = decoder.next(from: &buffer) else { return .needMoreData }
        if case .framingError(_, _, true) = event { poisoned = true }
        context.fireChannelRead(Self.wrapInboundOut(event))
        return .continue
    }

    public mutating func decodeLast(context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool) throws -> DecodingState {
        // A partial frame at EOF is simply dropped: the client went away.
        while try decode(context: context, buffer: &buffer) == .continue {}
        buffer.moveReaderIndex(to: buffer.writerIndex)
        return .needMoreData
    }
}
