import NIOCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Why bytes could not be encoded or decoded. Both the wire codec and the journal's record payloads use it.
public struct WireError: Error, Hashable, CustomStringConvertible {
    public enum Code: Hashable, Sendable {
        /// The bytes do not follow the format: too short, bytes left over, bad UTF-8, unknown enum code.
        case malformed
        /// A value is too long to be encoded (a string over 65535 bytes, a list over 65535 elements).
        case valueTooLong
    }

    public var code: Code
    /// Says what was wrong and where; never contains the bytes themselves (they may hold a secret).
    public var message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { message }
}

/// Writes the primitive types of `Protocol/PROTOCOL.md` section 3 (big-endian integers, `u16`-prefixed
/// UTF-8 strings, `u16`-counted lists).
extension ByteBuffer {
    @inlinable
    public mutating func writeWireString(_ string: String) throws {
        let count = string.utf8.count
        guard count <= Int(UInt16.max) else {
            throw WireError(.valueTooLong, "a string of \(count) bytes exceeds 65535")
        }
        self.writeInteger(UInt16(count))
        self.writeString(string)
    }

    @inlinable
    public mutating func writeWireCount(_ count: Int) throws {
        guard count <= Int(UInt16.max) else {
            throw WireError(.valueTooLong, "a list of \(count) elements exceeds 65535")
        }
        self.writeInteger(UInt16(count))
    }

    @inlinable
    public mutating func writeWireStrings(_ strings: [String]) throws {
        try writeWireCount(strings.count)
        for string in strings { try writeWireString(string) }
    }

    @inlinable
    public mutating func writeWirePairs(_ pairs: [KeyValue]) throws {
        try writeWireCount(pairs.count)
        for pair in pairs {
            try writeWireString(pair.key)
            try writeWireString(pair.value)
        }
    }

    @inlinable
    public mutating func writeWireBool(_ value: Bool) {
        self.writeInteger(value ? 1 as UInt8 : 0)
    }
}

/// Reads the primitive types of `Protocol/PROTOCOL.md` section 3 from a body, checking every length
/// against the bytes present *before* converting anything.
public struct WireReader {
    public var buffer: ByteBuffer
    /// Names the structure being read, for error messages.
    public let context: String

    public init(_ buffer: ByteBuffer, context: String) {
        self.buffer = buffer
        self.context = context
    }

    @inlinable
    public mutating func integer<T: FixedWidthInteger>(_ field: StaticString, as: T.Type = T.self) throws -> T {
        guard let value = buffer.readInteger(as: T.self) else {
            throw WireError(.malformed, "\(context): body ends inside field \(field)")
        }
        return value
    }

    @inlinable
    public mutating func u8(_ field: StaticString) throws -> UInt8 { try integer(field) }
    @inlinable
    public mutating func u16(_ field: StaticString) throws -> UInt16 { try integer(field) }
    @inlinable
    public mutating func u32(_ field: StaticString) throws -> UInt32 { try integer(field) }
    @inlinable
    public mutating func u64(_ field: StaticString) throws -> UInt64 { try integer(field) }
    @inlinable
    public mutating func i64(_ field: StaticString) throws -> Int64 { try integer(field) }

    @inlinable
    public mutating func bool(_ field: StaticString) throws -> Bool {
        switch try u8(field) {
        case 0: return false
        case 1: return true
        default: throw WireError(.malformed, "\(context): field \(field) must be 0 or 1")
        }
    }

    /// Reads a `u8` code and maps it to an enum, rejecting unknown codes.
    @inlinable
    public mutating func code<E: RawRepresentable>(_ field: StaticString, as: E.Type) throws -> E where E.RawValue == UInt8 {
        let raw = try u8(field)
        guard let value = E(rawValue: raw) else {
            throw WireError(.malformed, "\(context): unknown code \(raw) in field \(field)")
        }
        return value
    }

    @inlinable
    public mutating func string(_ field: StaticString) throws -> String {
        guard let length = buffer.readInteger(as: UInt16.self) else {
            throw WireError(.malformed, "\(context): body ends inside the length of field \(field)")
        }
        guard buffer.readableBytes >= Int(length) else {
            throw WireError(.malformed, "\(context): field \(field) declares \(length) bytes but \(buffer.readableBytes) remain")
        }
        // Empty (an absent meter, say): nothing to validate or copy.
        if length == 0 { return "" }
        // Validated over the contiguous bytes (NIO's readUTF8ValidatedString validates through the generic byte
        // view). ASCII, which ids, tokens and meters are, is valid UTF-8 as it is: it skips the generic validator
        // (which instantiates generic metadata at run time) for the specialised decoding initialiser.
        let string = buffer.withUnsafeReadableBytes { raw -> String? in
            let bytes = UnsafeRawBufferPointer(rebasing: raw[..<Int(length)]).assumingMemoryBound(to: UInt8.self)
            var high: UInt8 = 0
            for byte in bytes { high |= byte }
            return high < 0x80 ? String(decoding: bytes, as: UTF8.self) : String(validating: bytes, as: UTF8.self)
        }
        guard let string else {
            throw WireError(.malformed, "\(context): field \(field) is not valid UTF-8")
        }
        buffer.moveReaderIndex(forwardBy: Int(length))
        return string
    }

    @inlinable
    public mutating func count(_ field: StaticString, minimumElementSize: Int) throws -> Int {
        let count = Int(try u16(field))
        // Refuse counts that cannot fit in what is left, before reserving any storage for them.
        guard count * minimumElementSize <= buffer.readableBytes else {
            throw WireError(.malformed, "\(context): field \(field) declares \(count) elements but \(buffer.readableBytes) bytes remain")
        }
        return count
    }

    @inlinable
    public mutating func strings(_ field: StaticString) throws -> [String] {
        let n = try count(field, minimumElementSize: 2)
        var result: [String] = []
        result.reserveCapacity(n)
        for _ in 0..<n { result.append(try string(field)) }
        return result
    }

    /// Reads a string list like `strings(_:)`, but returns `previous` itself when the wire holds exactly its
    /// strings, byte for byte: a client sends the same scopes and features on every CHECK, and sharing the array
    /// saves the allocations of a new one and its strings. Anything else (including every malformed list) is
    /// decoded, and refused, by `strings(_:)` exactly as without a `previous`.
    @inlinable
    public mutating func strings(_ field: StaticString, reusing previous: [String]) throws -> [String] {
        if !previous.isEmpty {
            let start = buffer.readerIndex
            if skipIfEqual(previous) { return previous }
            buffer.moveReaderIndex(to: start)
        }
        return try strings(field)
    }

    /// Reads a string like `string(_:)`, but returns `previous` itself when the wire holds exactly its bytes.
    @inlinable
    public mutating func string(_ field: StaticString, reusing previous: String) throws -> String {
        // Strings of up to 15 UTF-8 bytes are stored inline: decoding them allocates nothing to save.
        if previous.utf8.count > 15 {
            let start = buffer.readerIndex
            if skipIfEqual(previous) { return previous }
            buffer.moveReaderIndex(to: start)
        }
        return try string(field)
    }

    /// Consumes a counted string list when it equals `strings`; leaves the reader anywhere when it does not.
    @usableFromInline
    mutating func skipIfEqual(_ strings: [String]) -> Bool {
        guard let count = buffer.readInteger(as: UInt16.self), Int(count) == strings.count else { return false }
        for string in strings {
            guard skipIfEqual(string) else { return false }
        }
        return true
    }

    /// Consumes a length-prefixed string when its bytes equal `string`'s UTF-8; leaves the reader anywhere when not.
    @usableFromInline
    mutating func skipIfEqual(_ string: String) -> Bool {
        guard let length = buffer.readInteger(as: UInt16.self) else { return false }
        let n = Int(length)
        guard buffer.readableBytes >= n else { return false }
        let equal = string.utf8.withContiguousStorageIfAvailable { expected -> Bool in
            expected.count == n && buffer.withUnsafeReadableBytes { raw in
                n == 0 || memcmp(raw.baseAddress!, expected.baseAddress!, n) == 0
            }
        } ?? false
        guard equal else { return false }
        buffer.moveReaderIndex(forwardBy: n)
        return true
    }

    @inlinable
    public mutating func pairs(_ field: StaticString) throws -> [KeyValue] {
        let n = try count(field, minimumElementSize: 4)
        var result: [KeyValue] = []
        result.reserveCapacity(n)
        for _ in 0..<n {
            let key = try string(field)
            let value = try string(field)
            result.append(KeyValue(key, value))
        }
        return result
    }

    /// A body must hold exactly its fields: bytes left over are malformed.
    @inlinable
    /// Whether bytes are left after what was read (an optional trailing block).
    public var hasMore: Bool { buffer.readableBytes > 0 }

    public func expectEnd() throws {
        guard buffer.readableBytes == 0 else {
            throw WireError(.malformed, "\(context): \(buffer.readableBytes) unexpected bytes after the last field")
        }
    }
}
