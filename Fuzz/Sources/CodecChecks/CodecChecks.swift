import FuzzSupport
import NIOCore
import TollgateModel
import TollgateProtocol

/// Decodes `body` as the request of `opcode`. If it decodes, it must re-encode to exactly the same body (and the
/// right length prefix); a decoder error must be a `WireError`.
public func checkRequestBody(opcode: Opcode, body: ByteBuffer) {
    let bytes = Array(body.readableBytesView)
    do {
        let request = try decodeRequest(opcode: opcode, body: body)
        fuzzCheck(request.opcode == opcode, "decoded \(request.opcode) for opcode \(opcode)")
        var out = ByteBuffer()
        do {
            try out.writeRequest(request, requestID: 1)
        } catch {
            fuzzCheck(false, "a decoded \(opcode.name) request does not encode: \(error)")
        }
        fuzzCheck(out.getInteger(at: 0, as: UInt32.self) == UInt32(12 + bytes.count), "length prefix of the re-encoded request")
        let reencoded = Array(out.readableBytesView.dropFirst(16))
        fuzzCheck(reencoded == bytes, "\(opcode.name) request round trip: \(fuzzHex(bytes)) -> \(fuzzHex(reencoded))")
    } catch is WireError {
    } catch {
        fuzzCheck(false, "decodeRequest threw a non-WireError: \(error)")
    }
}

/// Decodes `body` as the response of `opcode` with `status`. If it decodes, it must keep the status and re-encode
/// to exactly the same body; a decoder error must be a `WireError`.
public func checkResponseBody(opcode: Opcode, status: Status, body: ByteBuffer) {
    let bytes = Array(body.readableBytesView)
    do {
        let response = try decodeResponse(opcode: opcode, status: status, body: body)
        fuzzCheck(response.status == status, "\(opcode.name) response decoded with status \(response.status) from \(status)")
        var out = ByteBuffer()
        out.writeResponse(response, opcode: opcode.rawValue, requestID: 1)
        fuzzCheck(out.getInteger(at: 9, as: UInt8.self) == status.rawValue, "\(opcode.name) response re-encoded with another status")
        let reencoded = Array(out.readableBytesView.dropFirst(16))
        fuzzCheck(reencoded == bytes, "\(opcode.name)/\(status.name) response round trip: \(fuzzHex(bytes)) -> \(fuzzHex(reencoded))")
    } catch is WireError {
    } catch {
        fuzzCheck(false, "decodeResponse threw a non-WireError: \(error)")
    }
}
