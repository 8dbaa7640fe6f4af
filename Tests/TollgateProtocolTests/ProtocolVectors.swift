import NIOCore
import TollgateModel
import TollgateProtocol

/// The golden examples of `Protocol/vectors/`: each is a message, the exact bytes it encodes to, and (for the
/// JSON index that other-language clients read) its fields as plain values.
struct ProtocolVector {
    enum Message {
        case request(Request)
        case response(Response, opcode: UInt8)
    }

    var name: String
    var requestID: UInt32
    var message: Message
    /// The decoded fields, as written to `vectors.json` for clients in other languages.
    var fields: [String: Any]

    var bytes: [UInt8] {
        var buffer = ByteBufferAllocator().buffer(capacity: 256)
        switch message {
        case .request(let request): try! buffer.writeRequest(request, requestID: requestID)
        case .response(let response, let opcode): buffer.writeResponse(response, opcode: opcode, requestID: requestID)
        }
        return Array(buffer.readableBytesView)
    }
}

enum ProtocolVectors {
    static let sampleToken = "tg_test_00000000000000000000000000000000000000000003waIaM"
    static let sampleTokenInfo = TokenInfo(
        id: "tok_0000000000000000000001", licenseID: "lic_acme", subject: "svc-reports", scopes: ["read", "write"],
        issuedAt: 1_767_225_600_000, notBefore: 0, expiresAt: 1_798_761_600_000,
        metadata: [KeyValue("team", "billing")], environment: .test)
    static let tokenFields: [String: Any] = [
        "token_id": "tok_0000000000000000000001", "license_id": "lic_acme", "subject": "svc-reports", "scopes": ["read", "write"],
        "issued_at": 1_767_225_600_000, "not_before": 0, "expires_at": 1_798_761_600_000, "revoked_at": 0, "revoke_reason": "",
        "metadata": [["team", "billing"]], "environment": 1,
    ]
    static let plan = Plan(id: "pro", entitlements: ["read", "write"], quotas: [QuotaRule(meter: "requests", period: .month, limit: 100_000)], ratePerSecond: 50, burst: 100)
    static let planFields: [String: Any] = [
        "plan_id": "pro", "entitlements": ["read", "write"], "quotas": [["meter": "requests", "period": 2, "limit": 100_000]],
        "rate_per_second": 50, "burst": 100,
    ]
    static let license = LicenseSpec(id: "lic_acme", customer: "Acme Corp", plan: "pro", status: .active, validUntil: 0)
    static let licenseFields: [String: Any] = ["license_id": "lic_acme", "customer": "Acme Corp", "plan": "pro", "status": 0, "valid_until": 0]
    static let quota = QuotaState(limit: 100_000, remaining: 99_999, resetAt: 1_769_904_000_000)
    static let quotaFields: [String: Any] = ["present": 1, "limit": 100_000, "remaining": 99_999, "reset_at": 1_769_904_000_000]
    static let noQuotaFields: [String: Any] = ["present": 0, "limit": 0, "remaining": 0, "reset_at": 0]

    static var all: [ProtocolVector] {
        var licenseInfoFields = licenseFields
        licenseInfoFields["updated_at"] = 1_767_225_600_000
        licenseInfoFields["active_tokens"] = 1
        return [
            ProtocolVector(name: "hello.request", requestID: 1, message: .request(.hello(HelloRequest(minVersion: 1, maxVersion: 1, clientName: "example"))),
                fields: ["min_version": 1, "max_version": 1, "client_name": "example"]),
            ProtocolVector(name: "hello.response", requestID: 1,
                message: .response(.hello(HelloResponse(version: 1, role: .api, maxFrameSize: 65536, server: "tollgated/0.1.0")), opcode: Opcode.hello.rawValue),
                fields: ["version": 1, "role": 0, "max_frame": 65536, "server": "tollgated/0.1.0"]),
            ProtocolVector(name: "ping.request", requestID: 7, message: .request(.ping), fields: [:]),
            ProtocolVector(name: "ping.response", requestID: 7, message: .response(.pong, opcode: Opcode.ping.rawValue), fields: [:]),
            ProtocolVector(name: "check.request", requestID: 1,
                message: .request(.check(CheckRequest(token: sampleToken, scopes: ["read"], meter: "requests", cost: 1))),
                fields: ["token": sampleToken, "scopes": ["read"], "meter": "requests", "cost": 1]),
            ProtocolVector(name: "check.response.allow", requestID: 1,
                message: .response(.check(CheckResult(reason: .none, tokenID: sampleTokenInfo.id, licenseID: "lic_acme", subject: "svc-reports", quota: quota)), opcode: Opcode.check.rawValue),
                fields: ["decision": 1, "reason": 0, "token_id": sampleTokenInfo.id, "license_id": "lic_acme", "subject": "svc-reports", "quota": quotaFields, "retry_after_ms": 0]),
            ProtocolVector(name: "check.response.deny", requestID: 2,
                message: .response(.check(CheckResult(reason: .rateLimited, tokenID: sampleTokenInfo.id, licenseID: "lic_acme", subject: "svc-reports", retryAfterMillis: 20)), opcode: Opcode.check.rawValue),
                fields: ["decision": 0, "reason": 9, "token_id": sampleTokenInfo.id, "license_id": "lic_acme", "subject": "svc-reports", "quota": noQuotaFields, "retry_after_ms": 20]),
            ProtocolVector(name: "meter.request", requestID: 3,
                message: .request(.meter(MeterRequest(token: sampleToken, meter: "bytes", quantity: 4096, idempotencyKey: "evt-42"))),
                fields: ["token": sampleToken, "meter": "bytes", "quantity": 4096, "idempotency_key": "evt-42"]),
            ProtocolVector(name: "meter.response", requestID: 3,
                message: .response(.meter(MeterResult(reason: .none, tokenID: sampleTokenInfo.id, licenseID: "lic_acme", duplicate: true)), opcode: Opcode.meter.rawValue),
                fields: ["decision": 1, "reason": 0, "token_id": sampleTokenInfo.id, "license_id": "lic_acme", "duplicate": 1, "quota": noQuotaFields]),
            ProtocolVector(name: "revoke.request", requestID: 4,
                message: .request(.revoke(RevokeRequest(target: .tokenID(sampleTokenInfo.id), reason: "leaked"))),
                fields: ["by": 1, "value": sampleTokenInfo.id, "reason": "leaked"]),
            ProtocolVector(name: "revoke.response", requestID: 4, message: .response(.revoke(revoked: 1), opcode: Opcode.revoke.rawValue), fields: ["revoked": 1]),
            ProtocolVector(name: "issue.request", requestID: 5,
                message: .request(.issue(IssueRequest(licenseID: "lic_acme", subject: "svc-reports", scopes: ["read", "write"], notBefore: 0, expiresAt: 1_798_761_600_000, metadata: [KeyValue("team", "billing")], environment: .test))),
                fields: ["license_id": "lic_acme", "subject": "svc-reports", "scopes": ["read", "write"], "not_before": 0, "expires_at": 1_798_761_600_000, "metadata": [["team", "billing"]], "environment": 1]),
            ProtocolVector(name: "issue.response", requestID: 5,
                message: .response(.issue(secret: sampleToken, token: sampleTokenInfo), opcode: Opcode.issue.rawValue),
                fields: ["secret": sampleToken, "token": tokenFields]),
            ProtocolVector(name: "license_put.request", requestID: 6, message: .request(.licensePut(license)), fields: licenseFields),
            ProtocolVector(name: "license.response", requestID: 6,
                message: .response(.license(LicenseInfo(spec: license, updatedAt: 1_767_225_600_000, activeTokens: 1)), opcode: Opcode.licensePut.rawValue),
                fields: licenseInfoFields),
            ProtocolVector(name: "license_get.request", requestID: 8, message: .request(.licenseGet(licenseID: "lic_acme")), fields: ["license_id": "lic_acme"]),
            ProtocolVector(name: "plan_put.request", requestID: 9, message: .request(.planPut(plan)), fields: planFields),
            ProtocolVector(name: "plan.response", requestID: 9, message: .response(.plan(plan), opcode: Opcode.planPut.rawValue), fields: planFields),
            ProtocolVector(name: "plan_get.request", requestID: 10, message: .request(.planGet(planID: "pro")), fields: ["plan_id": "pro"]),
            ProtocolVector(name: "token_get.request", requestID: 11, message: .request(.tokenGet(tokenID: sampleTokenInfo.id)), fields: ["token_id": sampleTokenInfo.id]),
            ProtocolVector(name: "token.response", requestID: 11, message: .response(.token(sampleTokenInfo), opcode: Opcode.tokenGet.rawValue), fields: tokenFields),
            ProtocolVector(name: "token_list.request", requestID: 12, message: .request(.tokenList(TokenListRequest(licenseID: "lic_acme", after: "", limit: 50))),
                fields: ["license_id": "lic_acme", "after": "", "limit": 50]),
            ProtocolVector(name: "token_list.response", requestID: 12,
                message: .response(.tokenList(tokens: [sampleTokenInfo], next: ""), opcode: Opcode.tokenList.rawValue),
                fields: ["tokens": [tokenFields], "next": ""]),
            ProtocolVector(name: "stats.request", requestID: 13, message: .request(.stats), fields: [:]),
            ProtocolVector(name: "stats.response", requestID: 13,
                message: .response(.stats([KeyValue("tokens", "1"), KeyValue("licenses", "1")]), opcode: Opcode.stats.rawValue),
                fields: ["stats": [["tokens", "1"], ["licenses", "1"]]]),
            ProtocolVector(name: "error.unknown_opcode.response", requestID: 14,
                message: .response(.error(.unknownOpcode, "unknown opcode 0x7f"), opcode: 0x7F),
                fields: ["status": 4, "message": "unknown opcode 0x7f"]),
            ProtocolVector(name: "error.not_permitted.response", requestID: 15,
                message: .response(.error(.notPermitted, "ISSUE is served on the admin socket only"), opcode: Opcode.issue.rawValue),
                fields: ["status": 6, "message": "ISSUE is served on the admin socket only"]),
        ]
    }
}
