import TollgateServer

/// The `grpc` section: Envoy's external authorization over gRPC (`ext_authz`, `envoy.service.auth.v3`) on a Unix
/// socket.
///
/// ```json
/// "grpc": { "socket": "/run/tollgate/tollgate-grpc.sock", "socket_mode": "0660", "access": { "groups": ["envoy"] } }
/// ```
///
/// The route rules and token sources are the `http` section's (`routes`, `default`, `token_header`, `token_query`):
/// one set of rules for both proxy front ends, whichever a proxy speaks. Without an `http` section they take its
/// defaults (no routes, `deny`). A reload (SIGHUP) applies them and `grpc.access` (from the next connection); the
/// socket and its mode need a restart.
public struct GRPCConfiguration: Sendable, Equatable {
    /// Empty: `<state dir>/tollgate-grpc.sock`.
    public var socket = ""
    public var socketMode: UInt32 = 0o660
    /// Who may connect, by peer credentials, checked when a connection opens.
    public var access = SocketAccess.anyone

    public init() {}

    public func resolvedSocket(stateDirectory: String) -> String { socket.isEmpty ? stateDirectory + "/tollgate-grpc.sock" : socket }

    static func read(_ object: ObjectReader) throws -> GRPCConfiguration {
        var reader = object
        var grpc = GRPCConfiguration()
        grpc.socket = try reader.string("socket") ?? ""
        grpc.socketMode = try reader.mode("socket_mode") ?? grpc.socketMode
        if var access = try reader.object("access") { grpc.access = try DaemonConfiguration.socketAccess(&access) }
        try reader.finish()
        return grpc
    }
}
