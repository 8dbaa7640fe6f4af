import CodecChecks
import FuzzSupport
import NIOCore
import TollgateModel
import TollgateProtocol

/// The input is a byte stream, as a client (or a server) would send it. `FrameDecoder.next(from:)` cuts it into
/// frames the way `FrameByteDecoder` does on a connection; every frame's body goes through `decodeRequest` and,
/// when its status byte is a known status, `decodeResponse`.
///
/// Invariants (a violation aborts, so libFuzzer keeps the input):
/// - `next(from:)` consumes nothing when it returns nil or `too_large`; it never consumes more than the stream;
///   a `.frame` consumes exactly 16 + body bytes, and re-encoding the frame gives exactly the bytes consumed.
/// - A decoded request or response re-encodes to exactly the body it was decoded from (and the same status).
/// - Decoder errors are `WireError`s.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzTestOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    var stream = ByteBuffer(bytes: size > 0 ? UnsafeBufferPointer(start: data!, count: size) : UnsafeBufferPointer(start: nil, count: 0))
    let decoder = FrameDecoder(maxFrameSize: 65536)
    var iterations = 0
    while true {
        iterations += 1
        fuzzCheck(iterations <= size + 1, "the frame loop did not make progress")
        let before = stream.readerIndex
        let available = stream.readableBytes
        let original = stream
        guard let event = decoder.next(from: &stream) else {
            fuzzCheck(stream.readerIndex == before, "nil consumed \(stream.readerIndex - before) bytes")
            break
        }
        let consumed = stream.readerIndex - before
        fuzzCheck(consumed >= 0 && consumed <= available, "consumed \(consumed) of \(available) bytes")
        fuzzCheck(stream.writerIndex == original.writerIndex, "the decoder changed the writer index")
        switch event {
        case .framingError(let status, _, let close):
            if status == .tooLarge {
                fuzzCheck(consumed == 0 && close, "too_large consumed \(consumed) bytes or kept the connection")
            } else {
                fuzzCheck(status == .malformed && consumed > 0, "framing error \(status) consumed \(consumed)")
            }
            if close { return 0 }  // the server closes the connection: nothing after it is read
        case .frame(let frame):
            fuzzCheck(consumed == 16 + frame.body.readableBytes, "frame of \(frame.body.readableBytes) body bytes consumed \(consumed)")
            var again = ByteBuffer()
            again.writeFrame(header: frame.header, body: frame.body)
            let raw = original.getBytes(at: before, length: consumed)!
            fuzzCheck(Array(again.readableBytesView) == raw, "frame re-encodes to \(fuzzHex(again.readableBytesView)) not \(fuzzHex(raw))")
            checkMessage(opcode: frame.header.opcode, status: frame.header.status, body: frame.body)
        }
    }
    return 0
}

/// Decodes `body` as the request of `opcode` and (for a known status) as its response; checks the round trips.
func checkMessage(opcode rawOpcode: UInt8, status rawStatus: UInt8, body: ByteBuffer) {
    guard let opcode = Opcode(rawValue: rawOpcode) else { return }
    checkRequestBody(opcode: opcode, body: body)
    if let status = Status(rawValue: rawStatus) { checkResponseBody(opcode: opcode, status: status, body: body) }
}

@main
struct FuzzMain {
    static func main() { runLibFuzzer(fuzzTestOneInput) }
}
