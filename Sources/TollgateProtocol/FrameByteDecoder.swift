import NIOCore

/// Adapts the pure `FrameDecoder` to NIO's `ByteToMessageDecoder`, so NIO does the buffering.
public struct FrameByteDecoder: ByteToMessageDecoder {
    public typealias InboundOut = FrameDecoder.Event

    /// The frame cutting rules, shared with the server's connection handler.
    var cutter: FrameCutter
    public var decoder: FrameDecoder { cutter.decoder }
    /// Whether bytes of an unfinished frame are waiting; changes are announced as `PartialFrameEvent`s so that the
    /// connection can time out a client that starts a frame and stalls.
    var partial = false

    public init(decoder: FrameDecoder) {
        self.cutter = FrameCutter(maxFrameSize: decoder.maxFrameSize)
    }

    public mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        guard let event = cutter.next(from: &buffer) else {
            announcePartial(buffer.readableBytes > 0, context: context)
            return .needMoreData
        }
        announcePartial(false, context: context)
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
