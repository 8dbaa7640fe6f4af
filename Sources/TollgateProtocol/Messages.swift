import NIOCore
import TollgateModel

/// Which socket a connection arrived on; it decides which opcodes are served.
public enum SocketRole: UInt8, Sendable, Hashable {
    case api = 0
    case admin = 1

    public var name: String { self == .api ? "api" : "admin" }
}

public struct HelloRequest: Sendable, Hashable {
    public var minVersion: UInt8
    public var maxVersion: UInt8
    public var clientName: String
    public init(minVersion: UInt8 = 1, maxVersion: UInt8 = 1, clientName: String) {
        self.minVersion = minVersion
        self.maxVersion = maxVersion
        self.clientName = clientName
    }
}

public struct HelloResponse: Sendable, Hashable {
    public var version: UInt8
    public var role: SocketRole
    public var maxFrameSize: UInt32
    public var server: String
    public init(version: UInt8, role: SocketRole, maxFrameSize: UInt32, server: String) {
        self.version = version
        self.role = role
        self.maxFrameSize = maxFrameSize
        self.server = server
    }
}

/// Every request of protocol version 1.
public enum Request: Sendable, Hashable {
    case hello(HelloRequest)
    case ping
    case check(CheckRequest)
    case meter(MeterRequest)
    case revoke(RevokeRequest)
    case issue(IssueRequest)
    case licensePut(LicenseSpec)
    case licenseGet(licenseID: String)
    case planPut(Plan)
    case planGet(planID: String)
    case tokenGet(tokenID: String)
    case tokenList(TokenListRequest)
    case stats

    public var opcode: Opcode {
        switch self {
        case .hello: return .hello
        case .ping: return .ping
        case .check: return .check
        case .meter: return .meter
        case .revoke: return .revoke
        case .issue: return .issue
        case .licensePut: return .licensePut
        case .licenseGet: return .licenseGet
        case .planPut: return .planPut
        case .planGet: return .planGet
        case .tokenGet: return .tokenGet
        case .tokenList: return .tokenList
        case .stats: return .stats
        }
    }
}

/// Every response of protocol version 1. `error` stands for every status without a response body.
public enum Response: Sendable, Hashable {
    case hello(HelloResponse)
    case pong
    case check(CheckResult)
    case meter(MeterResult)
    case revoke(revoked: UInt32)
    case issue(secret: String, token: TokenInfo)
    case license(LicenseInfo)
    case plan(Plan)
    case token(TokenInfo)
    case tokenList(tokens: [TokenInfo], next: String)
    case stats([KeyValue])
    case error(Status, String)

    public var status: Status {
        switch self {
        case .check(let result): return result.allowed ? .ok : .denied
        case .meter(let result): return result.allowed ? .ok : .denied
        case .error(let status, _): return status
        default: return .ok
        }
    }
}

// MARK: - Frames

extension ByteBuffer {
    /// Writes `request` as one whole frame.
    public mutating func writeRequest(_ request: Request, requestID: UInt32) throws {
        let start = writerIndex
        do {
            try writeFrame(header: FrameHeader(opcode: request.opcode.rawValue, requestID: requestID)) { try $0.writeRequestBody(request) }
        } catch {
            moveWriterIndex(to: start)
            throw error
        }
    }

    /// Writes `response` as one whole frame answering a request with `opcode` (raw: an unknown opcode is echoed).
    /// A response too big to encode becomes an `internal` error frame rather than a broken stream.
    public mutating func writeResponse(_ response: Response, opcode: UInt8, requestID: UInt32) {
        let start = writerIndex
        do {
            try writeFrame(header: FrameHeader(opcode: opcode, flags: FrameHeader.responseFlag, status: response.status.rawValue, requestID: requestID)) {
                try $0.writeResponseBody(response)
            }
        } catch {
            moveWriterIndex(to: start)
            writeResponse(.error(.internal, "the response could not be encoded: \(error)"), opcode: opcode, requestID: requestID)
        }
    }
}

/// Decodes a whole request frame whose header has been checked by the caller.
public func decodeRequest(opcode: Opcode, body: ByteBuffer) throws -> Request {
    var r = WireReader(body, context: opcode.name)
    let request: Request
    switch opcode {
    case .hello:
        request = .hello(HelloRequest(minVersion: try r.u8("min_version"), maxVersion: try r.u8("max_version"), clientName: try r.string("client_name")))
    case .ping:
        request = .ping
    case .check:
        request = .check(CheckRequest(token: try r.string("token"), scopes: try r.strings("scopes"), meter: try r.string("meter"), cost: try r.u64("cost")))
    case .meter:
        request = .meter(MeterRequest(token: try r.string("token"), meter: try r.string("meter"), quantity: try r.u64("quantity"), idempotencyKey: try r.string("idempotency_key")))
    case .revoke:
        let by = try r.u8("by")
        let value = try r.string("value")
        guard let target = RevokeTarget(code: by, value: value) else {
            throw WireError(.malformed, "REVOKE: unknown code \(by) in field by")
        }
        request = .revoke(RevokeRequest(target: target, reason: try r.string("reason")))
    case .issue:
        request = .issue(IssueRequest(
            licenseID: try r.string("license_id"), subject: try r.string("subject"), scopes: try r.strings("scopes"),
            notBefore: try r.i64("not_before"), expiresAt: try r.i64("expires_at"), metadata: try r.pairs("metadata"),
            environment: try r.code("environment", as: TokenEnvironment.self)))
    case .licensePut:
        request = .licensePut(try r.licenseSpec())
    case .licenseGet:
        request = .licenseGet(licenseID: try r.string("license_id"))
    case .planPut:
        request = .planPut(try r.plan())
    case .planGet:
        request = .planGet(planID: try r.string("plan_id"))
    case .tokenGet:
        request = .tokenGet(tokenID: try r.string("token_id"))
    case .tokenList:
        request = .tokenList(TokenListRequest(licenseID: try r.string("license_id"), after: try r.string("after"), limit: try r.u16("limit")))
    case .stats:
        request = .stats
    }
    try r.expectEnd()
    return request
}

/// Decodes a response body. Statuses other than `ok`/`denied` decode to `.error`.
public func decodeResponse(opcode: Opcode, status: Status, body: ByteBuffer) throws -> Response {
    var r = WireReader(body, context: "\(opcode.name) response")
    guard status.carriesResponseBody else {
        let message = try r.string("message")
        try r.expectEnd()
        return .error(status, message)
    }
    guard status == .ok || opcode == .check || opcode == .meter else {
        throw WireError(.malformed, "\(opcode.name) response: status denied is only defined for CHECK and METER")
    }
    let response: Response
    switch opcode {
    case .hello:
        response = .hello(HelloResponse(version: try r.u8("version"), role: try r.code("role", as: SocketRole.self), maxFrameSize: try r.u32("max_frame"), server: try r.string("server")))
    case .ping:
        response = .pong
    case .check:
        let decision = try r.code("decision", as: DecisionByte.self)
        let result = CheckResult(
            reason: try r.code("reason", as: DenyReason.self), tokenID: try r.string("token_id"),
            licenseID: try r.string("license_id"), subject: try r.string("subject"), quota: try r.quotaBlock(),
            retryAfterMillis: try r.u32("retry_after_ms"))
        guard (result.allowed ? 1 : 0) == decision.rawValue, (status == .ok) == result.allowed else {
            throw WireError(.malformed, "CHECK response: decision, reason and status disagree")
        }
        response = .check(result)
    case .meter:
        let decision = try r.code("decision", as: DecisionByte.self)
        let result = MeterResult(
            reason: try r.code("reason", as: DenyReason.self), tokenID: try r.string("token_id"),
            licenseID: try r.string("license_id"), duplicate: try r.bool("duplicate"), quota: try r.quotaBlock())
        guard (result.allowed ? 1 : 0) == decision.rawValue, (status == .ok) == result.allowed else {
            throw WireError(.malformed, "METER response: decision, reason and status disagree")
        }
        response = .meter(result)
    case .revoke:
        response = .revoke(revoked: try r.u32("revoked"))
    case .issue:
        response = .issue(secret: try r.string("secret"), token: try r.tokenInfo())
    case .licensePut, .licenseGet:
        response = .license(try r.licenseInfo())
    case .planPut, .planGet:
        response = .plan(try r.plan())
    case .tokenGet:
        response = .token(try r.tokenInfo())
    case .tokenList:
        let n = try r.count("tokens", minimumElementSize: 40)
        var tokens: [TokenInfo] = []
        tokens.reserveCapacity(n)
        for _ in 0..<n { tokens.append(try r.tokenInfo()) }
        response = .tokenList(tokens: tokens, next: try r.string("next"))
    case .stats:
        response = .stats(try r.pairs("stats"))
    }
    try r.expectEnd()
    return response
}

/// The decision byte of CHECK and METER responses.
enum DecisionByte: UInt8 {
    case deny = 0
    case allow = 1
}

// MARK: - Bodies

extension ByteBuffer {
    mutating func writeRequestBody(_ request: Request) throws {
        switch request {
        case .hello(let hello):
            writeInteger(hello.minVersion)
            writeInteger(hello.maxVersion)
            try writeWireString(hello.clientName)
        case .ping, .stats:
            break
        case .check(let check):
            try writeWireString(check.token)
            try writeWireStrings(check.scopes)
            try writeWireString(check.meter)
            writeInteger(check.cost)
        case .meter(let meter):
            try writeWireString(meter.token)
            try writeWireString(meter.meter)
            writeInteger(meter.quantity)
            try writeWireString(meter.idempotencyKey)
        case .revoke(let revoke):
            writeInteger(revoke.target.code)
            try writeWireString(revoke.target.value)
            try writeWireString(revoke.reason)
        case .issue(let issue):
            try writeWireString(issue.licenseID)
            try writeWireString(issue.subject)
            try writeWireStrings(issue.scopes)
            writeInteger(issue.notBefore)
            writeInteger(issue.expiresAt)
            try writeWirePairs(issue.metadata)
            writeInteger(issue.environment.rawValue)
        case .licensePut(let spec):
            try writeLicenseSpec(spec)
        case .licenseGet(let id), .planGet(let id), .tokenGet(let id):
            try writeWireString(id)
        case .planPut(let plan):
            try writePlan(plan)
        case .tokenList(let list):
            try writeWireString(list.licenseID)
            try writeWireString(list.after)
            writeInteger(list.limit)
        }
    }

    mutating func writeResponseBody(_ response: Response) throws {
        switch response {
        case .hello(let hello):
            writeInteger(hello.version)
            writeInteger(hello.role.rawValue)
            writeInteger(hello.maxFrameSize)
            try writeWireString(hello.server)
        case .pong:
            break
        case .check(let result):
            writeWireBool(result.allowed)
            writeInteger(result.reason.rawValue)
            try writeWireString(result.tokenID)
            try writeWireString(result.licenseID)
            try writeWireString(result.subject)
            writeQuotaBlock(result.quota)
            writeInteger(result.retryAfterMillis)
        case .meter(let result):
            writeWireBool(result.allowed)
            writeInteger(result.reason.rawValue)
            try writeWireString(result.tokenID)
            try writeWireString(result.licenseID)
            writeWireBool(result.duplicate)
            writeQuotaBlock(result.quota)
        case .revoke(let revoked):
            writeInteger(revoked)
        case .issue(let secret, let token):
            try writeWireString(secret)
            try writeTokenInfo(token)
        case .license(let info):
            try writeLicenseInfo(info)
        case .plan(let plan):
            try writePlan(plan)
        case .token(let token):
            try writeTokenInfo(token)
        case .tokenList(let tokens, let next):
            try writeWireCount(tokens.count)
            for token in tokens { try writeTokenInfo(token) }
            try writeWireString(next)
        case .stats(let pairs):
            try writeWirePairs(pairs)
        case .error(_, let message):
            try writeWireString(message)
        }
    }

    mutating func writeQuotaBlock(_ quota: QuotaState?) {
        writeWireBool(quota != nil)
        writeInteger(quota?.limit ?? 0)
        writeInteger(quota?.remaining ?? 0)
        writeInteger(quota?.resetAt ?? 0)
    }
}

extension WireReader {
    mutating func quotaBlock() throws -> QuotaState? {
        let present = try bool("quota.present")
        let quota = QuotaState(limit: try u64("quota.limit"), remaining: try u64("quota.remaining"), resetAt: try i64("quota.reset_at"))
        guard present else {
            guard quota == QuotaState(limit: 0, remaining: 0, resetAt: 0) else {
                throw WireError(.malformed, "\(context): an absent quota must have zero fields")
            }
            return nil
        }
        return quota
    }
}
