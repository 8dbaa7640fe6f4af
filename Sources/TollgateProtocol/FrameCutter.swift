import NIOCore

/// Cuts frames out of one connection's byte stream: `FrameDecoder`'s rules, plus the one rule a connection adds
/// around them: after a framing error that closes the connection, the rest of the stream is never cut (it cannot
/// be trusted, or its body was never read). The server's connection handler and the client's `FrameByteDecoder`
/// both cut with it, so the two sides cannot drift apart.
public struct FrameCutter: Sendable {
    public let decoder: FrameDecoder
    /// A framing error closed the stream: everything after it is dropped.
    public private(set) var poisoned = false

    public init(maxFrameSize: Int) {
        self.decoder = FrameDecoder(maxFrameSize: maxFrameSize)
    }

    /// The next frame or framing error at the front of `buffer`, consuming its bytes; nil when more bytes are needed
    /// (they stay in `buffer`: an unfinished frame) or when the stream is poisoned (then `buffer` is drained).
    public mutating func next(from buffer: inout ByteBuffer) -> FrameDecoder.Event? {
        guard !poisoned else {
            buffer.moveReaderIndex(to: buffer.writerIndex)
            return nil
        }
        guard let event = decoder.next(from: &buffer) else { return nil }
        if case .framingError(_, _, true) = event { poisoned = true }
        return event
    }
}
