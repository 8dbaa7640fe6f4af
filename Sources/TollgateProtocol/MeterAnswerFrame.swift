import NIOCore
import TollgateModel

extension ByteBuffer {
    /// Writes a whole METER answer frame in one pass over reserved bytes: the same bytes as the generic encoder
    /// (`writeFrame` + `writeResponseBody(.meter(...))`), without a capacity and uniqueness check per field. Returns
    /// false, having written nothing, when a string is too long for the wire (the generic encoder then reports it).
    ///
    /// Every durable METER is answered through here: the generic path cost ~6.4 k instructions per answer, this one
    /// well under 1 k (callgrind, `CALLGRIND_OPS=meter bash scripts/scale.sh --callgrind`, Benchmarks/SCALE.md).
    @usableFromInline
    mutating func writeMeterFrame(_ result: MeterResult, opcode: UInt8, requestID: UInt32) -> Bool {
        let strings = (result.tokenID.utf8.count, result.licenseID.utf8.count)
        guard strings.0 <= Int(UInt16.max), strings.1 <= Int(UInt16.max) else { return false }
        // Body: allowed, reason, 2 strings, duplicate, quota block (1 + 3 × 8).
        let body = 2 + 4 + strings.0 + strings.1 + 1 + 25
        let frame = 4 + FrameHeader.size + body
        let status = result.allowed ? Status.ok : Status.denied
        var tokenID = result.tokenID, licenseID = result.licenseID
        let written = tokenID.withUTF8 { token in
            licenseID.withUTF8 { license in
                writeWithUnsafeMutableBytes(minimumWritableBytes: frame) { raw -> Int in
                    var out = ReservedBytes(raw)
                    out.put(UInt32(FrameHeader.size + body))
                    out.put(FrameHeader.magic)
                    out.put(tollgateProtocolVersion)
                    out.put(opcode)
                    out.put(FrameHeader.responseFlag)
                    out.put(status.rawValue)
                    out.put(UInt16(0))
                    out.put(requestID)
                    out.put(UInt8(result.allowed ? 1 : 0))
                    out.put(result.reason.rawValue)
                    out.put(token)
                    out.put(license)
                    out.put(UInt8(result.duplicate ? 1 : 0))
                    out.put(UInt8(result.quota != nil ? 1 : 0))
                    out.put(result.quota?.limit ?? 0)
                    out.put(result.quota?.remaining ?? 0)
                    out.put(result.quota?.resetAt ?? 0)
                    return out.offset
                }
            }
        }
        assert(written == frame)
        return true
    }
}

/// Stores big-endian integers and `u16`-prefixed byte strings into bytes reserved for them beforehand.
@usableFromInline
struct ReservedBytes {
    let raw: UnsafeMutableRawBufferPointer
    var offset = 0

    @inline(__always)
    init(_ raw: UnsafeMutableRawBufferPointer) { self.raw = raw }

    @inline(__always)
    mutating func put<T: FixedWidthInteger>(_ value: T) {
        raw.storeBytes(of: value.bigEndian, toByteOffset: offset, as: T.self)
        offset += MemoryLayout<T>.size
    }

    @inline(__always)
    mutating func put(_ bytes: UnsafeBufferPointer<UInt8>) {
        put(UInt16(bytes.count))
        if let base = bytes.baseAddress, bytes.count > 0 {
            (raw.baseAddress! + offset).copyMemory(from: base, byteCount: bytes.count)
        }
        offset += bytes.count
    }
}
