import Logging
import NIOCore
import TollgateModel
import TollgateProtocol

/// Serves one connection: validates headers, dispatches requests to the core, and writes responses in
/// request order even when a durable request is answered later than a check pipelined behind it.
final class RequestChannelHandler: ChannelInboundHandler {
    typealias InboundIn = FrameDecoder.Event
    typealias OutboundOut = ByteBuffer

    private let core: TollgateCore
    private let role: SocketRole
    private let logger: Logger

    /// Responses not yet written because an earlier response is still waiting for the journal.
    private var queue: CircularBuffer<Slot> = CircularBuffer(initialCapacity: 4)
    /// Responses gathered during one read burst, written with one flush.
    private var output: ByteBuffer
    private var wantsFlush = false
    private var closeAfterFlush = false

    private struct Slot {
        var token: UInt64
        var bytes: ByteBuffer?
    }

    private var nextToken: UInt64 = 0

    init(core: TollgateCore, role: SocketRole, logger: Logger) {
        self.core = core
        self.role = role
        self.logger = logger
        self.output = ByteBufferAllocator().buffer(capacity: 0)
    }

    func handlerAdded(context: ChannelHandlerContext) {
        output = context.channel.allocator.buffer(capacity: 4096)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .framingError(let status, let message, let close):
            logger.debug("framing error", metadata: ["tollgate.status": "\(status.name)", "tollgate.error": "\(message)"])
            emit(context: context, .error(status, message), opcode: 0, requestID: 0)
            if close { closeAfterFlush = true }
        case .frame(let frame):
            handle(context: context, frame: frame)
        }
    }

    private func handle(context: ChannelHandlerContext, frame: Frame) {
        let header = frame.header
        guard header.version == tollgateProtocolVersion else {
            return emit(context: context, .error(.unsupportedVersion, "frame version \(header.version) is not served; this server speaks version \(tollgateProtocolVersion)"), opcode: header.opcode, requestID: header.requestID)
        }
        guard header.flags == 0, header.status == 0, header.reserved == 0 else {
            return emit(context: context, .error(.malformed, "a request must have flags, status and reserved bytes set to 0"), opcode: header.opcode, requestID: header.requestID)
        }
        guard let opcode = Opcode(rawValue: header.opcode) else {
            return emit(context: context, .error(.unknownOpcode, "unknown opcode 0x\(String(header.opcode, radix: 16))"), opcode: header.opcode, requestID: header.requestID)
        }
        let request: Request
        do {
            request = try decodeRequest(opcode: opcode, body: frame.body)
        } catch {
            return emit(context: context, .error(.malformed, "\(error)"), opcode: header.opcode, requestID: header.requestID)
        }

        let token = nextToken
        nextToken &+= 1
        let loop = context.eventLoop
        let boundContext = NIOLoopBound(context, eventLoop: loop)
        let bound = NIOLoopBound(self, eventLoop: loop)
        let immediate = core.handle(request, role: role) { response in
            loop.execute {
                bound.value.complete(context: boundContext.value, token: token, response, opcode: header.opcode, requestID: header.requestID)
            }
        }
        if let immediate {
            emit(context: context, immediate, opcode: header.opcode, requestID: header.requestID)
        } else {
            queue.append(Slot(token: token, bytes: nil))
        }
    }

    /// Writes a response now if nothing is waiting ahead of it, or parks it in order.
    private func emit(context: ChannelHandlerContext, _ response: Response, opcode: UInt8, requestID: UInt32) {
        if queue.isEmpty {
            output.writeResponse(response, opcode: opcode, requestID: requestID)
            wantsFlush = true
        } else {
            var bytes = context.channel.allocator.buffer(capacity: 64)
            bytes.writeResponse(response, opcode: opcode, requestID: requestID)
            queue.append(Slot(token: nextToken, bytes: bytes))
            nextToken &+= 1
        }
    }

    /// A durable response arrived: fill its slot and write every completed slot at the head of the queue.
    private func complete(context: ChannelHandlerContext, token: UInt64, _ response: Response, opcode: UInt8, requestID: UInt32) {
        guard let index = queue.firstIndex(where: { $0.token == token }) else { return }
        var bytes = context.channel.allocator.buffer(capacity: 64)
        bytes.writeResponse(response, opcode: opcode, requestID: requestID)
        queue[index].bytes = bytes
        while let head = queue.first, var ready = head.bytes {
            queue.removeFirst()
            output.writeBuffer(&ready)
            wantsFlush = true
        }
        flushIfNeeded(context: context)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        flushIfNeeded(context: context)
    }

    private func flushIfNeeded(context: ChannelHandlerContext) {
        guard context.channel.isActive else { return }
        if wantsFlush {
            wantsFlush = false
            let chunk = output
            output = context.channel.allocator.buffer(capacity: 4096)
            if closeAfterFlush && queue.isEmpty {
                context.writeAndFlush(wrapOutboundOut(chunk)).whenComplete { _ in context.close(promise: nil) }
                return
            }
            context.writeAndFlush(wrapOutboundOut(chunk), promise: nil)
        } else if closeAfterFlush && queue.isEmpty {
            context.close(promise: nil)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        logger.debug("connection error", metadata: ["tollgate.error": "\(error)"])
        context.close(promise: nil)
    }
}
