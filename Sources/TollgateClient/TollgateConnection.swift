import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import TollgateModel
import TollgateProtocol

#if canImport(Glibc)
import Glibc
#endif

/// Why a client call failed. Codes are stable; `message` is for people.
public struct TollgateClientError: Error, Hashable, CustomStringConvertible {
    public enum Code: Hashable, Sendable {
        /// Nothing listens on the socket path (the daemon is not running, or the path is wrong).
        case daemonNotRunning
        /// The socket exists but this user may not connect to it.
        case permissionDenied
        /// Connecting failed for another reason.
        case connectFailed
        /// The connection closed before the answer arrived.
        case connectionClosed
        /// The server's bytes did not follow the protocol.
        case protocolViolation
        /// The server answered with an error status.
        case server(Status)
        /// The request could not be encoded (a value too long).
        case invalidRequest
    }

    public var code: Code
    public var message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { message }
}

/// One connection to a Tollgate socket. Requests may be sent concurrently; they are pipelined on the connection
/// and each answer is matched to its request by request id.
public final class TollgateConnection: Sendable {
    let channel: Channel
    let handler: ClientChannelHandler
    public let path: String

    private init(channel: Channel, handler: ClientChannelHandler, path: String) {
        self.channel = channel
        self.handler = handler
        self.path = path
    }

    /// Connects to the Unix socket at `path`.
    public static func connect(path: String, group: EventLoopGroup = MultiThreadedEventLoopGroup.singleton, maxFrameSize: Int = 16 << 20) async throws -> TollgateConnection {
        let handler = ClientChannelHandler()
        let bootstrap = ClientBootstrap(group: group).channelInitializer { channel in
            channel.eventLoop.makeCompletedFuture {
                try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(FrameByteDecoder(decoder: FrameDecoder(maxFrameSize: maxFrameSize))))
                try channel.pipeline.syncOperations.addHandler(handler)
            }
        }
        do {
            let channel = try await bootstrap.connect(unixDomainSocketPath: path).get()
            return TollgateConnection(channel: channel, handler: handler, path: path)
        } catch let error as IOError {
            switch error.errnoCode {
            case ENOENT, ECONNREFUSED:
                throw TollgateClientError(.daemonNotRunning, "cannot connect to \(path): no tollgated is listening there (is the daemon running?)")
            case EACCES, EPERM:
                throw TollgateClientError(.permissionDenied, "cannot connect to \(path): permission denied (is this user in the socket's group?)")
            default:
                throw TollgateClientError(.connectFailed, "cannot connect to \(path): \(error)")
            }
        } catch {
            throw TollgateClientError(.connectFailed, "cannot connect to \(path): \(error)")
        }
    }

    /// Sends one request and waits for its answer. Error statuses come back as `.error` responses, not thrown.
    public func send(_ request: Request) async throws -> Response {
        var buffer = channel.allocator.buffer(capacity: 128)
        let promise = channel.eventLoop.makePromise(of: Response.self)
        let id = handler.register(promise: promise, opcode: request.opcode)
        do {
            try buffer.writeRequest(request, requestID: id)
        } catch {
            handler.fail(id: id, TollgateClientError(.invalidRequest, "the request cannot be encoded: \(error)"))
            return try await promise.futureResult.get()
        }
        channel.writeAndFlush(buffer).whenFailure { [handler] error in
            handler.fail(id: id, TollgateClientError(.connectionClosed, "the request could not be sent: \(error)"))
        }
        return try await promise.futureResult.get()
    }

    /// Starts a WATCH (6.22): the decisions the daemon makes from now on, of `licenseID` only when it is not empty,
    /// one `WatchBatch` per frame. The stream finishes after the end frame (see `stopWatching`), and fails when the
    /// server answers with an error (`unknown_opcode` from a server that predates WATCH, `not_permitted` on the api
    /// socket) or the connection closes. Batches are buffered until read.
    public func watch(licenseID: String = "") -> AsyncThrowingStream<WatchBatch, Error> {
        let (stream, continuation) = AsyncThrowingStream<WatchBatch, Error>.makeStream()
        let id = handler.registerStream(continuation)
        var buffer = channel.allocator.buffer(capacity: 32)
        do {
            try buffer.writeRequest(.watch(licenseID: licenseID), requestID: id)
        } catch {
            handler.failStream(id: id, TollgateClientError(.invalidRequest, "the request cannot be encoded: \(error)"))
            return stream
        }
        channel.writeAndFlush(buffer).whenFailure { [handler] error in
            handler.failStream(id: id, TollgateClientError(.connectionClosed, "the request could not be sent: \(error)"))
        }
        return stream
    }

    /// Ends a WATCH on this connection the protocol's way: any request does; a PING is sent, and answered after
    /// the stream's end frame.
    public func stopWatching() async throws {
        _ = try await send(.ping)
    }

    /// Sends bytes as they are (conformance and robustness tests).
    public func sendRaw(_ bytes: [UInt8]) async throws {
        try await channel.writeAndFlush(channel.allocator.buffer(bytes: bytes))
    }

    /// Waits for the next frame that no request registered for (answers to `sendRaw`).
    public func nextUnsolicitedFrame() async throws -> Frame {
        let promise = channel.eventLoop.makePromise(of: Frame.self)
        handler.awaitUnsolicited(promise)
        return try await promise.futureResult.get()
    }

    public func close() async {
        try? await channel.close()
    }

    public var closeFuture: EventLoopFuture<Void> { channel.closeFuture }
}

/// Matches answers to requests by id. Everything is guarded by a lock because `send` registers from any thread.
final class ClientChannelHandler: ChannelInboundHandler, Sendable {
    typealias InboundIn = FrameDecoder.Event

    private struct State {
        var nextID: UInt32 = 1
        var outstanding: [UInt32: (EventLoopPromise<Response>, Opcode)] = [:]
        var unsolicited: [Frame] = []
        var unsolicitedWaiters: [EventLoopPromise<Frame>] = []
        /// Open WATCH streams by request id.
        var streams: [UInt32: AsyncThrowingStream<WatchBatch, Error>.Continuation] = [:]
        var closed = false
    }

    private let state = NIOLockedValueBox(State())

    func register(promise: EventLoopPromise<Response>, opcode: Opcode) -> UInt32 {
        let closed: Bool
        let id: UInt32
        (id, closed) = state.withLockedValue { s in
            let id = s.nextID
            s.nextID = s.nextID == UInt32.max ? 1 : s.nextID + 1
            if !s.closed { s.outstanding[id] = (promise, opcode) }
            return (id, s.closed)
        }
        if closed { promise.fail(TollgateClientError(.connectionClosed, "the connection is closed")) }
        return id
    }

    func registerStream(_ continuation: AsyncThrowingStream<WatchBatch, Error>.Continuation) -> UInt32 {
        let (id, closed) = state.withLockedValue { s in
            let id = s.nextID
            s.nextID = s.nextID == UInt32.max ? 1 : s.nextID + 1
            if !s.closed { s.streams[id] = continuation }
            return (id, s.closed)
        }
        if closed { continuation.finish(throwing: TollgateClientError(.connectionClosed, "the connection is closed")) }
        return id
    }

    func failStream(id: UInt32, _ error: Error) {
        state.withLockedValue { $0.streams.removeValue(forKey: id) }?.finish(throwing: error)
    }

    /// A frame of a WATCH stream: a batch yielded, the end frame or an error status finishing it.
    private func streamFrame(_ frame: Frame, _ continuation: AsyncThrowingStream<WatchBatch, Error>.Continuation) {
        let id = frame.header.requestID
        guard frame.header.isResponse, frame.header.opcode == Opcode.watch.rawValue || frame.header.status != Status.ok.rawValue,
            let status = Status(rawValue: frame.header.status)
        else {
            return failStream(id: id, TollgateClientError(.protocolViolation, "a WATCH frame with opcode \(frame.header.opcode), status \(frame.header.status)"))
        }
        do {
            switch try decodeResponse(opcode: .watch, status: status, body: frame.body) {
            case .watch(let batch):
                continuation.yield(batch)
                if batch.kind == .end {
                    state.withLockedValue { _ = $0.streams.removeValue(forKey: id) }
                    continuation.finish()
                }
            case .error(let status, let message):
                failStream(id: id, TollgateClientError(.server(status), message))
            default:
                failStream(id: id, TollgateClientError(.protocolViolation, "a WATCH frame that is not a batch"))
            }
        } catch {
            failStream(id: id, TollgateClientError(.protocolViolation, "a WATCH frame does not decode: \(error)"))
        }
    }

    func fail(id: UInt32, _ error: Error) {
        state.withLockedValue { $0.outstanding.removeValue(forKey: id) }?.0.fail(error)
    }

    func awaitUnsolicited(_ promise: EventLoopPromise<Frame>) {
        enum Outcome { case ready(Frame), closed, waiting }
        let outcome: Outcome = state.withLockedValue { s in
            if !s.unsolicited.isEmpty { return .ready(s.unsolicited.removeFirst()) }
            if s.closed { return .closed }
            s.unsolicitedWaiters.append(promise)
            return .waiting
        }
        switch outcome {
        case .ready(let frame): promise.succeed(frame)
        case .closed: promise.fail(TollgateClientError(.connectionClosed, "the connection closed"))
        case .waiting: break
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .framingError(_, let message, _):
            failAll(TollgateClientError(.protocolViolation, "the server's answer is not well framed: \(message)"))
            context.close(promise: nil)
        case .frame(let frame):
            if let stream = state.withLockedValue({ $0.streams[frame.header.requestID] }) { return streamFrame(frame, stream) }
            let entry = state.withLockedValue { $0.outstanding.removeValue(forKey: frame.header.requestID) }
            guard let (promise, opcode) = entry else {
                let waiter: EventLoopPromise<Frame>? = state.withLockedValue { s in
                    if s.unsolicitedWaiters.isEmpty {
                        s.unsolicited.append(frame)
                        return nil
                    }
                    return s.unsolicitedWaiters.removeFirst()
                }
                waiter?.succeed(frame)
                return
            }
            guard frame.header.isResponse, let status = Status(rawValue: frame.header.status) else {
                return promise.fail(TollgateClientError(.protocolViolation, "the answer to request \(frame.header.requestID) has an unknown status \(frame.header.status)"))
            }
            do {
                promise.succeed(try decodeResponse(opcode: opcode, status: status, body: frame.body))
            } catch {
                promise.fail(TollgateClientError(.protocolViolation, "the answer to \(opcode.name) does not decode: \(error)"))
            }
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        failAll(TollgateClientError(.connectionClosed, "the server closed the connection"))
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        failAll(TollgateClientError(.connectionClosed, "connection error: \(error)"))
        context.close(promise: nil)
    }

    private func failAll(_ error: TollgateClientError) {
        let (pending, waiters, streams) = state.withLockedValue { s in
            s.closed = true
            let pending = s.outstanding.values.map(\.0)
            s.outstanding.removeAll()
            let waiters = s.unsolicitedWaiters
            s.unsolicitedWaiters.removeAll()
            let streams = Array(s.streams.values)
            s.streams.removeAll()
            return (pending, waiters, streams)
        }
        pending.forEach { $0.fail(error) }
        waiters.forEach { $0.fail(error) }
        streams.forEach { $0.finish(throwing: error) }
    }
}
