import TollgateModel
import TollgateProtocol

/// Typed calls. Each throws `TollgateClientError` with code `.server(status)` when the server answers with an
/// error status; a *denied* CHECK or METER is an answer, not an error.
extension TollgateConnection {
    func call<T>(_ request: Request, _ extract: (Response) -> T?) async throws -> T {
        let response = try await send(request)
        if case .error(let status, let message) = response {
            throw TollgateClientError(.server(status), "\(status.name): \(message)")
        }
        guard let value = extract(response) else {
            throw TollgateClientError(.protocolViolation, "unexpected answer to \(request.opcode.name)")
        }
        return value
    }

    public func hello(clientName: String = "tollgate-swift") async throws -> HelloResponse {
        try await call(.hello(HelloRequest(clientName: clientName))) { if case .hello(let h) = $0 { return h } else { return nil } }
    }

    public func ping() async throws {
        try await call(.ping) { if case .pong = $0 { return () } else { return nil } }
    }

    public func check(_ request: CheckRequest) async throws -> CheckResult {
        try await call(.check(request)) { if case .check(let r) = $0 { return r } else { return nil } }
    }

    public func meter(_ request: MeterRequest) async throws -> MeterResult {
        try await call(.meter(request)) { if case .meter(let r) = $0 { return r } else { return nil } }
    }

    public func revoke(_ request: RevokeRequest) async throws -> UInt32 {
        try await call(.revoke(request)) { if case .revoke(let n) = $0 { return n } else { return nil } }
    }

    public func issue(_ request: IssueRequest) async throws -> (secret: String, token: TokenInfo) {
        try await call(.issue(request)) { if case .issue(let s, let t) = $0 { return (s, t) } else { return nil } }
    }

    public func putLicense(_ spec: LicenseSpec) async throws -> LicenseInfo {
        try await call(.licensePut(spec)) { if case .license(let l) = $0 { return l } else { return nil } }
    }

    public func license(id: String) async throws -> LicenseInfo {
        try await call(.licenseGet(licenseID: id)) { if case .license(let l) = $0 { return l } else { return nil } }
    }

    public func putPlan(_ plan: Plan) async throws -> Plan {
        try await call(.planPut(plan)) { if case .plan(let p) = $0 { return p } else { return nil } }
    }

    public func plan(id: String) async throws -> Plan {
        try await call(.planGet(planID: id)) { if case .plan(let p) = $0 { return p } else { return nil } }
    }

    public func token(id: String) async throws -> TokenInfo {
        try await call(.tokenGet(tokenID: id)) { if case .token(let t) = $0 { return t } else { return nil } }
    }

    public func listTokens(_ request: TokenListRequest) async throws -> (tokens: [TokenInfo], next: String) {
        try await call(.tokenList(request)) { if case .tokenList(let t, let n) = $0 { return (t, n) } else { return nil } }
    }

    public func stats() async throws -> [KeyValue] {
        try await call(.stats) { if case .stats(let s) = $0 { return s } else { return nil } }
    }
}
