import CodecChecks
import FuzzSupport
import NIOCore
import TollgateModel
import TollgateProtocol

/// The first input byte names the opcode (a byte that is not an opcode picks one by `byte % 13`); the rest is a
/// message body. The body goes through `decodeRequest` and through `decodeResponse` for every status (the body
/// decoders of `ok`/`denied` and the error-body decoder). Every body that decodes must re-encode to exactly the
/// same bytes, with the same status; decoder errors must be `WireError`s.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzTestOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    guard size >= 1, let data else { return 0 }
    let first = data[0]
    let opcode = Opcode(rawValue: first) ?? Opcode.allCases[Int(first) % Opcode.allCases.count]
    let body = ByteBuffer(bytes: UnsafeBufferPointer(start: data + 1, count: size - 1))
    checkRequestBody(opcode: opcode, body: body)
    for status in [Status.ok, .denied, .malformed] { checkResponseBody(opcode: opcode, status: status, body: body) }
    return 0
}

@main
struct FuzzMain {
    static func main() { runLibFuzzer(fuzzTestOneInput) }
}
