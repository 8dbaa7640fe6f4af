import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2Posix
import TollgateGRPC

/// The gRPC benchmark's limit (scripts/bench-grpc.sh): Envoy's Authorization service on the same grpc-swift stack
/// and transport as tollgated's, over a Unix socket, with a Check that always answers OK and does nothing else. What
/// tollgated's gRPC path costs beyond this is Tollgate's: the translation, the route match and the core's CHECK.
///
///     tollgate-grpc-empty SOCKET_PATH
struct EmptyAuthorization: Envoy_Service_Auth_V3_Authorization.SimpleServiceProtocol {
    func check(request: Envoy_Service_Auth_V3_CheckRequest, context: ServerContext) async throws -> Envoy_Service_Auth_V3_CheckResponse {
        var response = Envoy_Service_Auth_V3_CheckResponse()
        response.okResponse = Envoy_Service_Auth_V3_OkHttpResponse()
        return response
    }
}

guard CommandLine.arguments.count == 2 else {
    print("usage: tollgate-grpc-empty SOCKET_PATH")
    exit(2)
}
var config = HTTP2ServerTransport.Posix.Config.defaults
config.rpc.maxRequestPayloadSize = TollgateGRPCServer.maxRequestBytes
let server = GRPCServer(
    transport: .http2NIOPosix(address: .unixDomainSocket(path: CommandLine.arguments[1]), transportSecurity: .plaintext, config: config),
    services: [EmptyAuthorization()])
try await server.serve()
