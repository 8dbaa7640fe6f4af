#if canImport(Glibc)
import Glibc
#endif

/// Stops the process with a message when a fuzz invariant does not hold. libFuzzer sees the trap as a crash
/// and saves the input. Unlike `precondition`, it is kept in every build configuration.
@inline(never)
public func fuzzCheck(_ condition: @autoclosure () -> Bool, _ message: @autoclosure () -> String, file: StaticString = #fileID, line: UInt = #line) {
    if !condition() {
        let text = "FUZZ INVARIANT VIOLATED (\(file):\(line)): \(message())\n"
        text.withCString { _ = fputs($0, stderr) }
        fflush(stderr)
        abort()
    }
}

/// Hex text of at most `limit` bytes, for invariant messages.
public func fuzzHex<C: Collection>(_ bytes: C, limit: Int = 64) -> String where C.Element == UInt8 {
    let digits = Array("0123456789abcdef")
    var out = ""
    for (i, b) in bytes.enumerated() {
        if i == limit { out += "…"; break }
        out.append(digits[Int(b >> 4)])
        out.append(digits[Int(b & 15)])
    }
    return out
}

/// Reads the fuzz input front to back; every read past the end yields zeros, so any input is usable.
public struct FuzzInput {
    public let bytes: [UInt8]
    public private(set) var position = 0

    public init(_ data: UnsafePointer<UInt8>?, _ size: Int) {
        bytes = size > 0 && data != nil ? Array(UnsafeBufferPointer(start: data, count: size)) : []
    }

    public init(bytes: [UInt8]) { self.bytes = bytes }

    public var isAtEnd: Bool { position >= bytes.count }
    public var remaining: Int { max(0, bytes.count - position) }

    public mutating func u8() -> UInt8 {
        guard position < bytes.count else { return 0 }
        defer { position += 1 }
        return bytes[position]
    }

    public mutating func u16() -> UInt16 { UInt16(u8()) | UInt16(u8()) << 8 }

    public mutating func take(_ n: Int) -> [UInt8] {
        let n = max(0, min(n, remaining))
        defer { position += n }
        return Array(bytes[position..<position + n])
    }

    public mutating func rest() -> [UInt8] { take(remaining) }
}

import CLibFuzzer

/// The entry point of every fuzz target: runs libFuzzer's driver (with the process's arguments) on `testOneInput`.
public func runLibFuzzer(_ testOneInput: @convention(c) (UnsafePointer<UInt8>?, Int) -> Int32) -> Never {
    var argc = CommandLine.argc
    var argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = CommandLine.unsafeArgv
    exit(LLVMFuzzerRunDriver(&argc, &argv, testOneInput))
}
