import NIOCore

/// Cuts frames out of a byte stream, as a value-type state machine with no I/O (in the manner of
/// NIOWebSocket's `WSParser`): every declared length is checked against the limit *before* anything is
/// allocated or read, so a hostile length costs nothing.
public struct FrameDecoder: Sendable {
    /// What the decoder found at the front of the stream.
    public enum Event: Sendable, Hashable {
        /// A well-framed frame with a valid magic. Its version, flags and opcode are not judged here.
        case frame(Frame)
        /// The stream violated the framing; answer with `status`. When `closeConnection` is set the stream can no
        /// longer be trusted (or its body will not be read) and the connection must be closed after the answer.
        case framingError(status: Status, message: String, closeConnection: Bool)
    }

    /// The largest value of the length prefix accepted (header + body).
    public let maxFrameSize: Int

    public init(maxFrameSize: Int) {
        precondition(maxFrameSize >= FrameHeader.size, "a frame must at least hold its header")
        self.maxFrameSize = maxFrameSize
    }

    /// Decodes the next event from `buffer`, consuming its bytes, or returns nil when more bytes are needed.
    public func next(from buffer: inout ByteBuffer) -> Event? {
        guard let length = buffer.getInteger(at: buffer.readerIndex, as: UInt32.self) else { return nil }
        guard length <= UInt32(maxFrameSize) else {
            return .framingError(
                status: .tooLarge,
                message: "frame length \(length) exceeds the maximum of \(maxFrameSize) bytes",
                closeConnection: true
            )
        }
        let total = 4 + Int(length)
        guard buffer.readableBytes >= total else { return nil }
        guard Int(length) >= FrameHeader.size else {
            buffer.moveReaderIndex(forwardBy: total)
            return .framingError(
                status: .malformed,
                message: "frame length \(length) is shorter than the \(FrameHeader.size)-byte header",
                closeConnection: false
            )
        }
        let start = buffer.readerIndex + 4
        let magic = buffer.getInteger(at: start, as: UInt16.self)!
        guard magic == FrameHeader.magic else {
            buffer.moveReaderIndex(forwardBy: total)
            return .framingError(status: .malformed, message: "bad magic: the stream is not Tollgate protocol", closeConnection: true)
        }
        let header = FrameHeader(
            version: buffer.getInteger(at: start + 2)!,
            opcode: buffer.getInteger(at: start + 3)!,
            flags: buffer.getInteger(at: start + 4)!,
            status: buffer.getInteger(at: start + 5)!,
            reserved: buffer.getInteger(at: start + 6)!,
            requestID: buffer.getInteger(at: start + 8)!
        )
        let body = buffer.getSlice(at: start + FrameHeader.size, length: Int(length) - FrameHeader.size)!
        buffer.moveReaderIndex(forwardBy: total)
        return .frame(Frame(header: header, body: body))
    }
}
