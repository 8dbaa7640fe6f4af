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

/// A page of the usage export: rows `offset ..< offset + limit` of the query's ordered rows.
public struct UsageExportRequest: Sendable, Hashable {
    public var query: UsageQuery
    public var offset: UInt32
    /// 0: the server's default.
    public var limit: UInt16
    public init(query: UsageQuery, offset: UInt32 = 0, limit: UInt16 = 0) {
        self.query = query
        self.offset = offset
        self.limit = limit
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
    case release(leaseID: UInt64)
    case settle(SettleRequest)
    case derive(DeriveRequest)
    case rotate(RotateRequest)
    case rotationEnd(tokenID: String)
    case orgPut(OrgSpec)
    case orgGet(orgID: String)
    case creditsGrant(CreditsGrant)
    case usageExport(UsageExportRequest)
    case events(after: UInt64, limit: UInt16)
    case licenseList(LicenseListRequest)
    case planList(ListPageRequest)
    case orgList(ListPageRequest)
    case licenseDelete(DeleteRequest)
    case planDelete(DeleteRequest)
    case orgDelete(DeleteRequest)
    /// Streams decisions (6.22): only those of `licenseID` when it is not empty.
    case watch(licenseID: String)
    case exchange(ExchangeRequest)
    case subjectStatus(SubjectStatusRequest)
    case rolePut(IdentityRole)
    /// The role's name and who asks.
    case roleDelete(DeleteRequest)
    case roleList(ListPageRequest)

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
        case .release: return .release
        case .settle: return .settle
        case .derive: return .derive
        case .rotate: return .rotate
        case .rotationEnd: return .rotationEnd
        case .orgPut: return .orgPut
        case .orgGet: return .orgGet
        case .creditsGrant: return .creditsGrant
        case .usageExport: return .usageExport
        case .events: return .events
        case .licenseList: return .licenseList
        case .planList: return .planList
        case .orgList: return .orgList
        case .licenseDelete: return .licenseDelete
        case .planDelete: return .planDelete
        case .orgDelete: return .orgDelete
        case .watch: return .watch
        case .exchange: return .exchange
        case .subjectStatus: return .subjectStatus
        case .rolePut: return .rolePut
        case .roleDelete: return .roleDelete
        case .roleList: return .roleList
        }
    }
}

/// Every response of protocol version 1. `error` stands for every status without a response body.
public enum Response: Sendable, Hashable {
    case hello(HelloResponse)
    case pong
    case check(CheckResult)
    /// CHECK with the `details` option: the answer and the Check details block after it.
    case checkDetailed(CheckResult, CheckDetails)
    case meter(MeterResult)
    case revoke(revoked: UInt32)
    case issue(secret: String, token: TokenInfo)
    case license(LicenseInfo)
    case plan(Plan)
    case token(TokenInfo)
    case tokenList(tokens: [TokenInfo], next: String)
    case stats([KeyValue])
    case released(Bool)
    /// DERIVE: the parent's check, and the child when it was allowed.
    case derive(CheckResult, secret: String, token: TokenInfo?)
    case org(OrgSpec)
    case credits(balance: UInt64)
    /// USAGE_EXPORT: a page of rows and the offset of the next page (0: this was the last).
    case usage(rows: [UsageRow], next: UInt32)
    case events([LicensingEvent])
    /// LICENSE_LIST, PLAN_LIST, ORG_LIST: a page in id order and the id to continue after (empty: the last page).
    /// (LICENSE_DELETE, PLAN_DELETE and ORG_DELETE answer `.license`, `.plan`, `.org`: the object as it was.)
    case licenseList(licenses: [LicenseInfo], next: String)
    case planList(plans: [Plan], next: String)
    case orgList(orgs: [OrgSpec], next: String)
    /// ROLE_PUT (the role as stored) and ROLE_DELETE (the role as it was).
    case role(IdentityRole)
    /// ROLE_LIST: a page in name order and the name to continue after (empty: the last page).
    case roleList(roles: [IdentityRole], next: String)
    /// One frame of a WATCH stream; a stream is many of them answering one request (6.22).
    case watch(WatchBatch)
    case error(Status, String)

    public var status: Status {
        switch self {
        case .check(let result), .checkDetailed(let result, _): return result.allowed ? .ok : .denied
        case .derive(let result, _, _): return result.allowed ? .ok : .denied
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
        // The common CHECK answer (no explanation) is written in one pass over reserved bytes: the generic path
        // costs a capacity and uniqueness check per field. Same bytes as the generic encoder.
        if case .check(let result) = response, result.explanation.isEmpty, writeCheckFrame(result, opcode: opcode, requestID: requestID) { return }
        if case .meter(let result) = response, writeMeterFrame(result, opcode: opcode, requestID: requestID) { return }
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

extension ByteBuffer {
    /// Writes the answer to a CHECK: the same bytes as `writeResponse(.check(result), opcode: CHECK, ...)`,
    /// without wrapping the result in a `Response` (a copy of every field) on the server's hot path.
    public mutating func writeCheckResponse(_ result: CheckResult, requestID: UInt32) {
        if result.explanation.isEmpty, writeCheckFrame(result, opcode: Opcode.check.rawValue, requestID: requestID) { return }
        writeResponse(.check(result), opcode: Opcode.check.rawValue, requestID: requestID)
    }
    /// Writes a whole CHECK (or SETTLE) answer frame with an empty explanation, in one pass. Returns false, having
    /// written nothing, when a string is too long for the wire (the generic encoder then reports the error).
    @usableFromInline
    mutating func writeCheckFrame(_ result: CheckResult, opcode: UInt8, requestID: UInt32) -> Bool {
        let strings = (result.tokenID.utf8.count, result.licenseID.utf8.count, result.subject.utf8.count)
        guard strings.0 <= Int(UInt16.max), strings.1 <= Int(UInt16.max), strings.2 <= Int(UInt16.max) else { return false }
        // Body: allowed, reason, 3 strings, quota block (1 + 3 × 8), retry (4), lease (8), reservation (8), credits
        // flag and value (1 + 8), overage (8), explanation count (2).
        let body = 2 + 6 + strings.0 + strings.1 + strings.2 + 25 + 4 + 8 + 8 + 9 + 8 + 2
        let frame = 4 + FrameHeader.size + body
        let status = result.allowed ? Status.ok : Status.denied
        var tokenID = result.tokenID, licenseID = result.licenseID, subject = result.subject
        let written = tokenID.withUTF8 { token in
            licenseID.withUTF8 { license in
                subject.withUTF8 { subject in
                    writeWithUnsafeMutableBytes(minimumWritableBytes: frame) { raw -> Int in
                        var o = 0
                        func put<T: FixedWidthInteger>(_ value: T) {
                            raw.storeBytes(of: value.bigEndian, toByteOffset: o, as: T.self)
                            o += MemoryLayout<T>.size
                        }
                        func put(_ bytes: UnsafeBufferPointer<UInt8>) {
                            put(UInt16(bytes.count))
                            if let base = bytes.baseAddress, bytes.count > 0 {
                                (raw.baseAddress! + o).copyMemory(from: base, byteCount: bytes.count)
                            }
                            o += bytes.count
                        }
                        put(UInt32(FrameHeader.size + body))
                        put(FrameHeader.magic)
                        put(tollgateProtocolVersion)
                        put(opcode)
                        put(FrameHeader.responseFlag)
                        put(status.rawValue)
                        put(UInt16(0))
                        put(requestID)
                        put(UInt8(result.allowed ? 1 : 0))
                        put(result.reason.rawValue)
                        put(token)
                        put(license)
                        put(subject)
                        put(UInt8(result.quota != nil ? 1 : 0))
                        put(result.quota?.limit ?? 0)
                        put(result.quota?.remaining ?? 0)
                        put(result.quota?.resetAt ?? 0)
                        put(result.retryAfterMillis)
                        put(result.leaseID)
                        put(result.reservationID)
                        put(UInt8(result.creditsRemaining != nil ? 1 : 0))
                        put(result.creditsRemaining ?? 0)
                        put(result.overage)
                        put(UInt16(0))
                        return o
                    }
                }
            }
        }
        assert(written == frame)
        return true
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
        request = .check(try r.checkRequest(reusingListsOf: CheckRequest(token: "")))
    case .meter:
        request = .meter(MeterRequest(token: try r.string("token"), meter: try r.string("meter"), quantity: try r.u64("quantity"), idempotencyKey: try r.string("idempotency_key")))
    case .revoke:
        let by = try r.u8("by")
        let value = try r.string("value")
        guard let target = RevokeTarget(code: by, value: value) else {
            throw WireError(.malformed, "REVOKE: unknown code \(by) in field by")
        }
        request = .revoke(RevokeRequest(target: target, reason: try r.string("reason"), actor: try r.string("actor")))
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
    case .release:
        request = .release(leaseID: try r.u64("lease_id"))
    case .settle:
        request = .settle(SettleRequest(reservationID: try r.u64("reservation_id"), actualCost: try r.u64("actual_cost")))
    case .derive:
        request = .derive(DeriveRequest(parent: try r.string("parent"), scopes: try r.strings("scopes"), ttlSeconds: try r.u32("ttl_s")))
    case .rotate:
        request = .rotate(RotateRequest(tokenID: try r.string("token_id"), graceSeconds: try r.u32("grace_s")))
    case .rotationEnd:
        request = .rotationEnd(tokenID: try r.string("token_id"))
    case .orgPut:
        request = .orgPut(try r.orgSpec())
    case .orgGet:
        request = .orgGet(orgID: try r.string("org_id"))
    case .creditsGrant:
        request = .creditsGrant(CreditsGrant(pool: try r.code("pool", as: PoolLevel.self), owner: try r.string("owner"), amount: try r.u64("amount"), reason: try r.string("reason")))
    case .usageExport:
        let query = UsageQuery(
            from: try r.i64("from"), to: try r.i64("to"), org: try r.string("org"), licenseID: try r.string("license_id"),
            granularity: try r.code("granularity", as: Period.self))
        request = .usageExport(UsageExportRequest(query: query, offset: try r.u32("offset"), limit: try r.u16("limit")))
    case .events:
        request = .events(after: try r.u64("after"), limit: try r.u16("limit"))
    case .licenseList:
        request = .licenseList(LicenseListRequest(org: try r.string("org"), plan: try r.string("plan"), after: try r.string("after"), limit: try r.u16("limit")))
    case .planList:
        request = .planList(ListPageRequest(after: try r.string("after"), limit: try r.u16("limit")))
    case .orgList:
        request = .orgList(ListPageRequest(after: try r.string("after"), limit: try r.u16("limit")))
    case .licenseDelete:
        request = .licenseDelete(DeleteRequest(id: try r.string("license_id"), actor: try r.string("actor")))
    case .planDelete:
        request = .planDelete(DeleteRequest(id: try r.string("plan_id"), actor: try r.string("actor")))
    case .orgDelete:
        request = .orgDelete(DeleteRequest(id: try r.string("org_id"), actor: try r.string("actor")))
    case .watch:
        request = .watch(licenseID: try r.string("license_id"))
    case .exchange:
        request = .exchange(ExchangeRequest(subjectToken: try r.string("subject_token"), role: try r.string("role"), scopes: try r.strings("scopes"), ttlSeconds: try r.u32("ttl_s")))
    case .subjectStatus:
        let subject = try r.string("subject")
        let active = try r.u8("active")
        guard active <= 1 else { throw WireError(.malformed, "SUBJECT_STATUS: active must be 0 or 1") }
        request = .subjectStatus(SubjectStatusRequest(subject: subject, active: active == 1, actor: try r.string("actor")))
    case .rolePut:
        request = .rolePut(try r.identityRole())
    case .roleDelete:
        request = .roleDelete(DeleteRequest(id: try r.string("name"), actor: try r.string("actor")))
    case .roleList:
        request = .roleList(ListPageRequest(after: try r.string("after"), limit: try r.u16("limit")))
    }
    try r.expectEnd()
    return request
}

/// Decodes the body of a CHECK request without going through `Request`, for the server's hot path. The scope and
/// feature lists (and a meter name too long to be stored inline) of `previous`, the connection's last CHECK, are
/// shared instead of allocated again when the wire repeats them byte for byte. Errors are those of `decodeRequest`.
public func decodeCheckRequest(body: ByteBuffer, reusingListsOf previous: CheckRequest) throws -> CheckRequest {
    var r = WireReader(body, context: Opcode.check.name)
    let request = try r.checkRequest(reusingListsOf: previous)
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
    guard status == .ok || opcode.mayBeDenied else {
        throw WireError(.malformed, "\(opcode.name) response: status denied is only defined for CHECK, METER, SETTLE and DERIVE")
    }
    let response: Response
    switch opcode {
    case .hello:
        response = .hello(HelloResponse(version: try r.u8("version"), role: try r.code("role", as: SocketRole.self), maxFrameSize: try r.u32("max_frame"), server: try r.string("server")))
    case .ping:
        response = .pong
    case .check:
        let result = try r.checkResult(status: status)
        // The details block follows only when the request asked for it (option `details`): bytes left say so.
        if r.hasMore {
            response = .checkDetailed(result, try r.checkDetails())
        } else {
            response = .check(result)
        }
    case .settle:
        response = .check(try r.checkResult(status: status))
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
    case .release:
        response = .released(try r.bool("released"))
    case .derive:
        let result = try r.checkResult(status: status)
        if result.allowed {
            response = .derive(result, secret: try r.string("secret"), token: try r.tokenInfo())
        } else {
            response = .derive(result, secret: "", token: nil)
        }
    case .rotate:
        response = .issue(secret: try r.string("secret"), token: try r.tokenInfo())
    case .rotationEnd:
        response = .token(try r.tokenInfo())
    case .orgPut, .orgGet:
        response = .org(try r.orgSpec())
    case .creditsGrant:
        response = .credits(balance: try r.u64("balance"))
    case .usageExport:
        var rows: [UsageRow] = []
        for _ in 0..<(try r.count("rows", minimumElementSize: 34)) {
            rows.append(try r.usageRow())
        }
        response = .usage(rows: rows, next: try r.u32("next"))
    case .events:
        var events: [LicensingEvent] = []
        for _ in 0..<(try r.count("events", minimumElementSize: 21)) {
            events.append(try r.event())
        }
        response = .events(events)
    case .licenseList:
        var licenses: [LicenseInfo] = []
        for _ in 0..<(try r.count("licenses", minimumElementSize: 64)) { licenses.append(try r.licenseInfo()) }
        response = .licenseList(licenses: licenses, next: try r.string("next"))
    case .planList:
        var plans: [Plan] = []
        for _ in 0..<(try r.count("plans", minimumElementSize: 36)) { plans.append(try r.plan()) }
        response = .planList(plans: plans, next: try r.string("next"))
    case .orgList:
        var orgs: [OrgSpec] = []
        for _ in 0..<(try r.count("orgs", minimumElementSize: 5)) { orgs.append(try r.orgSpec()) }
        response = .orgList(orgs: orgs, next: try r.string("next"))
    case .licenseDelete:
        response = .license(try r.licenseInfo())
    case .planDelete:
        response = .plan(try r.plan())
    case .orgDelete:
        response = .org(try r.orgSpec())
    case .watch:
        response = .watch(try r.watchBatch())
    case .exchange:
        response = .issue(secret: try r.string("secret"), token: try r.tokenInfo())
    case .subjectStatus:
        response = .revoke(revoked: try r.u32("revoked"))
    case .rolePut, .roleDelete:
        response = .role(try r.identityRole())
    case .roleList:
        var roles: [IdentityRole] = []
        for _ in 0..<(try r.count("roles", minimumElementSize: 41)) { roles.append(try r.identityRole()) }
        response = .roleList(roles: roles, next: try r.string("next"))
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
            try writeWireStrings(check.features)
            writeInteger(check.options.rawValue)
        case .meter(let meter):
            try writeWireString(meter.token)
            try writeWireString(meter.meter)
            writeInteger(meter.quantity)
            try writeWireString(meter.idempotencyKey)
        case .revoke(let revoke):
            writeInteger(revoke.target.code)
            try writeWireString(revoke.target.value)
            try writeWireString(revoke.reason)
            try writeWireString(revoke.actor)
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
        case .licenseGet(let id), .planGet(let id), .tokenGet(let id), .rotationEnd(let id), .orgGet(let id):
            try writeWireString(id)
        case .release(let id):
            writeInteger(id)
        case .settle(let settle):
            writeInteger(settle.reservationID)
            writeInteger(settle.actualCost)
        case .derive(let derive):
            try writeWireString(derive.parent)
            try writeWireStrings(derive.scopes)
            writeInteger(derive.ttlSeconds)
        case .exchange(let exchange):
            try writeWireString(exchange.subjectToken)
            try writeWireString(exchange.role)
            try writeWireStrings(exchange.scopes)
            writeInteger(exchange.ttlSeconds)
        case .subjectStatus(let status):
            try writeWireString(status.subject)
            writeInteger(UInt8(status.active ? 1 : 0))
            try writeWireString(status.actor)
        case .rotate(let rotate):
            try writeWireString(rotate.tokenID)
            writeInteger(rotate.graceSeconds)
        case .orgPut(let org):
            try writeOrgSpec(org)
        case .creditsGrant(let grant):
            writeInteger(grant.pool.rawValue)
            try writeWireString(grant.owner)
            writeInteger(grant.amount)
            try writeWireString(grant.reason)
        case .usageExport(let export):
            writeInteger(export.query.from)
            writeInteger(export.query.to)
            try writeWireString(export.query.org)
            try writeWireString(export.query.licenseID)
            writeInteger(export.query.granularity.rawValue)
            writeInteger(export.offset)
            writeInteger(export.limit)
        case .events(let after, let limit):
            writeInteger(after)
            writeInteger(limit)
        case .planPut(let plan):
            try writePlan(plan)
        case .tokenList(let list):
            try writeWireString(list.licenseID)
            try writeWireString(list.after)
            writeInteger(list.limit)
        case .licenseList(let list):
            try writeWireString(list.org)
            try writeWireString(list.plan)
            try writeWireString(list.page.after)
            writeInteger(list.page.limit)
        case .planList(let page), .orgList(let page):
            try writeWireString(page.after)
            writeInteger(page.limit)
        case .licenseDelete(let delete), .planDelete(let delete), .orgDelete(let delete), .roleDelete(let delete):
            try writeWireString(delete.id)
            try writeWireString(delete.actor)
        case .rolePut(let role):
            try writeIdentityRole(role)
        case .roleList(let page):
            try writeWireString(page.after)
            writeInteger(page.limit)
        case .watch(let licenseID):
            try writeWireString(licenseID)
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
            try writeCheckResult(result)
        case .checkDetailed(let result, let details):
            // Only a CHECK that asked for them (option `details`) gets them; never SETTLE or DERIVE.
            try writeCheckResult(result)
            try writeCheckDetails(details)
        case .derive(let result, let secret, let token):
            try writeCheckResult(result)
            if result.allowed, let token {
                try writeWireString(secret)
                try writeTokenInfo(token)
            }
        case .released(let released):
            writeWireBool(released)
        case .org(let org):
            try writeOrgSpec(org)
        case .credits(let balance):
            writeInteger(balance)
        case .usage(let rows, let next):
            try writeWireCount(rows.count)
            for row in rows { try writeUsageRow(row) }
            writeInteger(next)
        case .events(let events):
            try writeWireCount(events.count)
            for event in events { try writeEvent(event) }
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
        case .licenseList(let licenses, let next):
            try writeWireCount(licenses.count)
            for license in licenses { try writeLicenseInfo(license) }
            try writeWireString(next)
        case .planList(let plans, let next):
            try writeWireCount(plans.count)
            for plan in plans { try writePlan(plan) }
            try writeWireString(next)
        case .orgList(let orgs, let next):
            try writeWireCount(orgs.count)
            for org in orgs { try writeOrgSpec(org) }
            try writeWireString(next)
        case .role(let role):
            try writeIdentityRole(role)
        case .roleList(let roles, let next):
            try writeWireCount(roles.count)
            for role in roles { try writeIdentityRole(role) }
            try writeWireString(next)
        case .watch(let batch):
            try writeWatchBatch(batch)
        case .error(_, let message):
            try writeWireString(message)
        }
    }

    /// The answer block shared by CHECK, SETTLE and DERIVE.
    mutating func writeCheckResult(_ result: CheckResult) throws {
        writeWireBool(result.allowed)
        writeInteger(result.reason.rawValue)
        try writeWireString(result.tokenID)
        try writeWireString(result.licenseID)
        try writeWireString(result.subject)
        writeQuotaBlock(result.quota)
        writeInteger(result.retryAfterMillis)
        writeInteger(result.leaseID)
        writeInteger(result.reservationID)
        writeWireBool(result.creditsRemaining != nil)
        writeInteger(result.creditsRemaining ?? 0)
        writeInteger(result.overage)
        try writeWireCount(result.explanation.count)
        for evaluation in result.explanation {
            try writeWireString(evaluation.rule)
            try writeWireString(evaluation.owner)
            writeInteger(evaluation.limit)
            writeInteger(evaluation.used)
            writeWireBool(evaluation.denied)
        }
    }

    /// The block after a CHECK answer's explanation when the request set the `details` option.
    mutating func writeCheckDetails(_ details: CheckDetails) throws {
        writeWireBool(details.rateLimit != nil)
        writeInteger(details.rateLimit?.limit ?? 0)
        writeInteger(details.rateLimit?.remaining ?? 0)
        writeInteger(details.rateLimit?.resetMillis ?? 0)
        writeInteger(details.tokenExpiresAt)
        try writeWireString(details.planID)
    }

    mutating func writeQuotaBlock(_ quota: QuotaState?) {
        writeWireBool(quota != nil)
        writeInteger(quota?.limit ?? 0)
        writeInteger(quota?.remaining ?? 0)
        writeInteger(quota?.resetAt ?? 0)
    }
}

extension WireReader {
    /// The CHECK body, shared by `decodeRequest` and `decodeCheckRequest`.
    mutating func checkRequest(reusingListsOf previous: CheckRequest) throws -> CheckRequest {
        CheckRequest(
            token: try string("token"), scopes: try strings("scopes", reusing: previous.scopes),
            meter: try string("meter", reusing: previous.meter), cost: try u64("cost"),
            features: try strings("features", reusing: previous.features), options: try checkOptions())
    }

    mutating func checkOptions() throws -> CheckOptions {
        let raw = try u8("options")
        guard raw & ~CheckOptions.all.rawValue == 0 else { throw WireError(.malformed, "\(context): unknown bits in options") }
        return CheckOptions(rawValue: raw)
    }

    mutating func checkResult(status: Status) throws -> CheckResult {
        let decision = try code("decision", as: DecisionByte.self)
        var result = CheckResult(
            reason: try code("reason", as: DenyReason.self), tokenID: try string("token_id"),
            licenseID: try string("license_id"), subject: try string("subject"), quota: try quotaBlock(),
            retryAfterMillis: try u32("retry_after_ms"), leaseID: try u64("lease_id"), reservationID: try u64("reservation_id"))
        let hasCredits = try bool("credits.present")
        let credits = try u64("credits.remaining")
        guard hasCredits || credits == 0 else { throw WireError(.malformed, "\(context): absent credits must be zero") }
        result.creditsRemaining = hasCredits ? credits : nil
        result.overage = try u64("overage")
        for _ in 0..<(try count("explanation", minimumElementSize: 21)) {
            result.explanation.append(RuleEvaluation(
                rule: try string("rule"), owner: try string("owner"), limit: try u64("limit"), used: try u64("used"), denied: try bool("denied")))
        }
        guard (result.allowed ? 1 : 0) == decision.rawValue, (status == .ok) == result.allowed else {
            throw WireError(.malformed, "\(context): decision, reason and status disagree")
        }
        return result
    }

    mutating func checkDetails() throws -> CheckDetails {
        let present = try bool("rate_limit.present")
        let rate = RateLimitState(limit: try u64("rate_limit.limit"), remaining: try u64("rate_limit.remaining"), resetMillis: try u32("rate_limit.reset_ms"))
        guard present || rate == RateLimitState(limit: 0, remaining: 0, resetMillis: 0) else {
            throw WireError(.malformed, "\(context): an absent rate limit must have zero fields")
        }
        return CheckDetails(rateLimit: present ? rate : nil, tokenExpiresAt: try i64("token_expires_at"), planID: try string("plan_id"))
    }

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
