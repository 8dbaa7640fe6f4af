import Foundation
import TollgateSystemd
import TollgateTestSupport
import XCTest

#if canImport(Glibc)
import Glibc
#endif

/// The optional listeners of socket activation (`http`, `http-tcp`): absent is nil, present must be one listening
/// socket of the right kind, looked up by name.
final class ListenDescriptorsTests: XCTestCase {
    private var open: [CInt] = []

    override func tearDown() {
        for fd in open { close(fd) }
    }

    private func listeningUnixSocket() throws -> CInt {
        let directory = try makeTemporaryDirectory()
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            let bytes = Array((directory + "/s.sock").utf8)
            raw.copyBytes(from: bytes)
            raw[bytes.count] = 0
        }
        let bound = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) } }
        guard bound == 0, listen(fd, 4) == 0 else { throw TestSupportError("cannot listen: errno \(errno)") }
        open.append(fd)
        return fd
    }

    private func listeningTCPSocket() throws -> CInt {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let bound = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        guard bound == 0, listen(fd, 4) == 0 else { throw TestSupportError("cannot listen: errno \(errno)") }
        open.append(fd)
        return fd
    }

    func testOptionalListenersByName() throws {
        let unix = try listeningUnixSocket()
        let tcp = try listeningTCPSocket()
        let passed = ListenDescriptors(byName: ["api": [unix], "http": [unix], "http-tcp": [tcp]])
        XCTAssertEqual(try passed.optionalDescriptor(named: "http"), unix)
        XCTAssertEqual(try passed.optionalDescriptor(named: "http-tcp", unix: false), tcp)
        XCTAssertNil(try ListenDescriptors(byName: ["api": [unix]]).optionalDescriptor(named: "http"), "not passed: no HTTP listener")
        XCTAssertThrowsError(try ListenDescriptors(byName: ["http": [tcp]]).optionalDescriptor(named: "http"), "http must be a Unix socket")
        XCTAssertThrowsError(try ListenDescriptors(byName: ["http-tcp": [tcp, tcp]]).optionalDescriptor(named: "http-tcp", unix: false), "exactly one")
        let notListening = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        open.append(notListening)
        XCTAssertThrowsError(try ListenDescriptors(byName: ["http-tcp": [notListening]]).optionalDescriptor(named: "http-tcp", unix: false))
    }
}
