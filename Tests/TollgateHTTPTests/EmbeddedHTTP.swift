import NIOCore
import NIOEmbedded
import XCTest

@testable import TollgateHTTP

/// The HTTP pipeline tests' way in and out: a front end's pipeline on an `EmbeddedChannel`, raw bytes written in,
/// everything written out read back as text.
extension XCTestCase {
    func embeddedChannel(_ frontEnd: HTTPFrontEnd) throws -> EmbeddedChannel {
        let channel = EmbeddedChannel()
        try HTTPFrontEnd.configure(channel.pipeline.syncOperations, frontEnd: frontEnd, decoderLimits: frontEnd.decoderLimits)
        try channel.connect(to: SocketAddress(unixDomainSocketPath: "/tmp/unused")).wait()
        return channel
    }

    /// Writes raw bytes in; a write to a channel the handler closed is not an error here.
    func write(_ channel: EmbeddedChannel, _ text: String) {
        _ = try? channel.writeInbound(ByteBuffer(string: text))
    }

    /// Everything written out so far, as text.
    func output(_ channel: EmbeddedChannel) throws -> String {
        var text = ""
        while let buffer = try channel.readOutbound(as: ByteBuffer.self) { text += String(buffer: buffer) }
        return text
    }

    /// The status line of each response (a body has no line break of its own: the next response follows it).
    func statusLines(_ text: String) -> [String] {
        text.components(separatedBy: "HTTP/1.").dropFirst().map { "HTTP/1." + $0.components(separatedBy: "\r\n")[0] }
    }
}
