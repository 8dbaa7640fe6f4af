import NIOCore

/// Adapts the pure `FrameDecoder` to NIO's `ByteToMessageDecoder`, so NIO does the buffering.
public struct FrameByteDecoder: ByteToMessageDecoder {
    public typealias InboundOut = FrameDecoder.Event

    public let decoder: FrameDecoder
    /// After a framing error that closes the connection, everything else on the stream is ignored.
    var poisoned = false
    /// Whether bytes of an unfinished frame are waiting; changes are announced as `PartialFrameEvent`s so that the
    /// connection can time out a client that starts a frame and stalls.
    var partial = false

    public init(decoder: FrameDecoder) {
        self.decoder = decoder
    }

    public mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        if poisoned {
            buffer.moveReaderIndex(to: buffer.writerIndex)
            return .needMoreData
        }
        guard let event = decoder.next(from: &buffer) else {
            announcePartial(buffer.readableBytes > 0, context: context)
            return .needMoreData
        }
        announcePartial(false, context: context)
        if case .framingError(_, _, true) = event { poisoned = true }
        context.fireChannelRead(Self.wrapInboundOut(event))
        return .continue
    }

    private mutating func announcePartial(_ now: Bool, context: ChannelHandlerContext) {
        guard now != partial else { return }
        partial = now
        context.fireUserInboundEventTriggered(now ? PartialFrameEvent.started : PartialFrameEvent.finished)
    }

    public mutating func decodeLast(context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool) throws -> DecodingState {
        // A partial frame at EOF is simply dropped: the client went away.
        while try decode(context: context, buffer: &buffer) == .continue {}
        buffer.moveReaderIndex(to: buffer.writerIndex)
        return .needMoreData
    }
}

/// Announced by `FrameByteDecoder` when an unfinished frame starts or stops waiting in its buffer.
public enum PartialFrameEvent: Sendable, Hashable {
    case started
    case finished
}
