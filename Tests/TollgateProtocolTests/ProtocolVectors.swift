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

    /// The decisions of the WATCH vector: an allowed CHECK on the binary socket and a forward-auth denial.
    static let watchEvents = [
        DecisionEvent(
            sequence: 41, at: 1_767_225_600_000, latencyNanoseconds: 5_300, source: .socket, reason: .none,
            tokenID: "tok_0000000000000000000001", licenseID: "lic_acme", subject: "svc-billing", route: "read"),
        DecisionEvent(
            sequence: 42, at: 1_767_225_600_001, latencyNanoseconds: 12_000, source: .forwardAuth, reason: .rateLimited,
            tokenID: "tok_0000000000000000000002", licenseID: "lic_acme", subject: "svc-web", route: "GET /v1/reports/*"),
    ]
    static var watchEventFields: [[String: Any]] { watchEvents.map {
        [
            "sequence": Int($0.sequence), "at": Int($0.at), "latency_ns": Int($0.latencyNanoseconds), "source": Int($0.source.rawValue),
            "reason": Int($0.reason.rawValue), "token_id": $0.tokenID, "license_id": $0.licenseID, "subject": $0.subject, "route": $0.route,
        ]
    } }
    static let sampleTokenInfo = TokenInfo(
        id: "tok_0000000000000000000001", licenseID: "lic_acme", subject: "svc-reports", scopes: ["read", "write"],
        issuedAt: 1_767_225_600_000, notBefore: 0, expiresAt: 1_798_761_600_000,
        metadata: [KeyValue("team", "billing")], environment: .test)
    static var tokenFields: [String: Any] { [
        "token_id": "tok_0000000000000000000001", "license_id": "lic_acme", "subject": "svc-reports", "scopes": ["read", "write"],
        "issued_at": 1_767_225_600_000, "not_before": 0, "expires_at": 1_798_761_600_000, "revoked_at": 0, "revoke_reason": "",
        "metadata": [["team", "billing"]], "environment": 1, "parent_id": "", "revoked_by": "", "rotated_at": 0,
        "previous_valid_until": 0, "last_used_at": 0, "previous_last_used_at": 0,
    ] }
    static let plan = Plan(
        id: "pro", entitlements: ["read", "write"], features: ["exports"],
        quotas: [QuotaRule(meter: "requests", period: .month, limit: 100_000), QuotaRule(meter: "requests", window: .rolling(seconds: 60), limit: 600, pool: .token)],
        rateLimits: [RateRule(pool: .license, ratePerSecond: 50, burst: 100)], concurrency: [ConcurrencyRule(pool: .token, max: 8)],
        credits: CreditPolicy(pool: .org, included: 5000, period: .month), overage: .allowAndRecord,
        maxTokenLifetimeSeconds: 7_776_000, maxActiveTokens: 100, pastDueGraceSeconds: 604_800)
    static var planFields: [String: Any] { [
        "plan_id": "pro", "entitlements": ["read", "write"], "features": ["exports"],
        "quotas": [["meter": "requests", "window": 2, "seconds": 0, "limit": 100_000, "pool": 1], ["meter": "requests", "window": 3, "seconds": 60, "limit": 600, "pool": 0]],
        "rate_limits": [["pool": 1, "rate_per_second": 50, "burst": 100]], "concurrency": [["pool": 0, "max": 8]],
        "credits": ["present": 1, "pool": 2, "included": 5000, "period": 2], "overage": 1,
        "max_token_lifetime_s": 7_776_000, "max_active_tokens": 100, "past_due_grace_s": 604_800,
    ] }
    static let license = LicenseSpec(
        id: "lic_acme", customer: "Acme Corp", plan: "pro", status: .trialing, validUntil: 0, validFrom: 1_767_225_600_000,
        trialEndsAt: 1_768_435_200_000, org: "acme", project: "checkout", billingAnchorDay: 15)
    static var licenseFields: [String: Any] { [
        "license_id": "lic_acme", "customer": "Acme Corp", "plan": "pro", "status": 1, "valid_until": 0, "valid_from": 1_767_225_600_000,
        "trial_ends_at": 1_768_435_200_000, "org": "acme", "project": "checkout", "billing_anchor_day": 15,
    ] }
    static let quota = QuotaState(limit: 100_000, remaining: 99_999, resetAt: 1_769_904_000_000)
    static var quotaFields: [String: Any] { ["present": 1, "limit": 100_000, "remaining": 99_999, "reset_at": 1_769_904_000_000] }
    static var noQuotaFields: [String: Any] { ["present": 0, "limit": 0, "remaining": 0, "reset_at": 0] }

    static let sampleJWT = "eyJhbGciOiJFUzI1NiIsImtpZCI6ImsxIn0.eyJpc3MiOiJodHRwczovL2lkcC5leGFtcGxlIiwiYXVkIjoidG9sbGdhdGUifQ.c2lnbmF0dXJl"
    static let exchangedInfo = TokenInfo(
        id: "tok_0000000000000000000004", licenseID: "lic_acme", subject: "repo:acme/api:ref:refs/heads/main", scopes: ["read"],
        issuedAt: 1_767_225_600_000, notBefore: 0, expiresAt: 1_767_226_200_000, metadata: [KeyValue("tollgate.exchange.role", "ci")], environment: .live)
    static let refused = "expired: the JWT has expired"
    /// A secret with a valid checksum (7.1), for the EXCHANGE answer.
    static let exchangedToken = "tg_test_1111111111111111111111111111111111111111111077wHg"

    static var all: [ProtocolVector] {
        var licenseInfoFields = licenseFields
        licenseInfoFields["updated_at"] = 1_767_225_600_000
        licenseInfoFields["active_tokens"] = 1
        licenseInfoFields["past_due_since"] = 0
        licenseInfoFields["prepaid_credits"] = 250
        let checkTail: [String: Any] = ["lease_id": 0, "reservation_id": 0, "credits": ["present": 0, "remaining": 0], "overage": 0, "explanation": [] as [Any]]
        func merged(_ a: [String: Any], _ b: [String: Any]) -> [String: Any] { a.merging(b) { x, _ in x } }
        let explained = CheckResult(
            reason: .quotaExceeded, tokenID: sampleTokenInfo.id, licenseID: "lic_acme", subject: "svc-reports",
            quota: QuotaState(limit: 600, remaining: 0, resetAt: 1_767_225_660_000), leaseID: 0, reservationID: 0, creditsRemaining: nil, overage: 0,
            explanation: [
                RuleEvaluation(rule: "rate:license", owner: "lic_acme", limit: 100, used: 3),
                RuleEvaluation(rule: "quota:requests:rolling:60:token", owner: sampleTokenInfo.id, limit: 600, used: 600, denied: true),
            ])
        let childInfo = TokenInfo(
            id: "tok_0000000000000000000002", licenseID: "lic_acme", subject: "svc-reports", scopes: ["read"], issuedAt: 1_767_225_600_000,
            notBefore: 0, expiresAt: 1_767_226_500_000, metadata: [KeyValue("team", "billing")], environment: .test, parentID: sampleTokenInfo.id)
        // Every secret a vector carries has a valid checksum (7.1); ProtocolVectorTests verifies it with the engine's
        // TokenFormat, so a daemon would not answer one of them `malformed_token`.
        let childToken = "tg_test_1111111111111111111111111111111111111111111077wHg"
        let rotatedToken = "tg_test_22222222222222222222222222222222222222222223Bqtsh"
        let rotatedInfo = TokenInfo(
            id: sampleTokenInfo.id, licenseID: "lic_acme", subject: "svc-reports", scopes: ["read", "write"], issuedAt: 1_767_225_600_000,
            notBefore: 0, expiresAt: 1_798_761_600_000, metadata: [KeyValue("team", "billing")], environment: .test,
            rotatedAt: 1_767_312_000_000, previousSecretValidUntil: 1_767_315_600_000, lastUsedAt: 0, previousSecretLastUsedAt: 1_767_311_999_000)
        let rotatedFields = tokenFields.merging(["rotated_at": 1_767_312_000_000, "previous_valid_until": 1_767_315_600_000, "previous_last_used_at": 1_767_311_999_000]) { _, new in new }
        var overlapEnded = rotatedInfo
        overlapEnded.previousSecretValidUntil = 1_767_313_800_000
        overlapEnded.lastUsedAt = 1_767_313_000_000
        let overlapEndedFields = rotatedFields.merging(["previous_valid_until": 1_767_313_800_000, "last_used_at": 1_767_313_000_000]) { _, new in new }
        // The keys 6.10 says are always present, in the order the daemon sends them.
        let statsKeys: [(String, String)] = [
            ("tokens", "1"), ("tokens_active", "1"), ("licenses", "1"), ("plans", "4"), ("checks_total", "3"), ("checks_denied", "2"),
            ("meters_total", "2"), ("journal_last_seq", "9"), ("journal_repairs", "0"), ("uptime_seconds", "42"),
        ]
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
                fields: ["token": sampleToken, "scopes": ["read"], "meter": "requests", "cost": 1, "features": [] as [Any], "options": 0]),
            ProtocolVector(name: "check.request.options", requestID: 16,
                message: .request(.check(CheckRequest(token: sampleToken, scopes: ["read"], meter: "requests", cost: 1, features: ["exports"], options: [.explain, .lease, .reserve]))),
                fields: ["token": sampleToken, "scopes": ["read"], "meter": "requests", "cost": 1, "features": ["exports"], "options": 7]),
            ProtocolVector(name: "check.response.allow", requestID: 1,
                message: .response(.check(CheckResult(reason: .none, tokenID: sampleTokenInfo.id, licenseID: "lic_acme", subject: "svc-reports", quota: quota)), opcode: Opcode.check.rawValue),
                fields: merged(["decision": 1, "reason": 0, "token_id": sampleTokenInfo.id, "license_id": "lic_acme", "subject": "svc-reports", "quota": quotaFields, "retry_after_ms": 0], checkTail)),
            ProtocolVector(name: "check.response.lease", requestID: 16,
                message: .response(.check(CheckResult(
                    reason: .none, tokenID: sampleTokenInfo.id, licenseID: "lic_acme", subject: "svc-reports", quota: quota,
                    leaseID: 42, reservationID: 43, creditsRemaining: 4_999, overage: 0)), opcode: Opcode.check.rawValue),
                fields: ["decision": 1, "reason": 0, "token_id": sampleTokenInfo.id, "license_id": "lic_acme", "subject": "svc-reports", "quota": quotaFields, "retry_after_ms": 0,
                    "lease_id": 42, "reservation_id": 43, "credits": ["present": 1, "remaining": 4_999], "overage": 0, "explanation": [] as [Any]]),
            ProtocolVector(name: "check.response.explain", requestID: 17, message: .response(.check(explained), opcode: Opcode.check.rawValue),
                fields: ["decision": 0, "reason": 8, "token_id": sampleTokenInfo.id, "license_id": "lic_acme", "subject": "svc-reports",
                    "quota": ["present": 1, "limit": 600, "remaining": 0, "reset_at": 1_767_225_660_000], "retry_after_ms": 0,
                    "lease_id": 0, "reservation_id": 0, "credits": ["present": 0, "remaining": 0], "overage": 0,
                    "explanation": [
                        ["rule": "rate:license", "owner": "lic_acme", "limit": 100, "used": 3, "denied": 0],
                        ["rule": "quota:requests:rolling:60:token", "owner": sampleTokenInfo.id, "limit": 600, "used": 600, "denied": 1],
                    ]]),
            ProtocolVector(name: "check.request.details", requestID: 18,
                message: .request(.check(CheckRequest(token: sampleToken, scopes: ["read"], meter: "requests", cost: 1, options: [.details]))),
                fields: ["token": sampleToken, "scopes": ["read"], "meter": "requests", "cost": 1, "features": [] as [Any], "options": 8]),
            ProtocolVector(name: "check.response.details", requestID: 18,
                message: .response(.checkDetailed(
                    CheckResult(reason: .none, tokenID: sampleTokenInfo.id, licenseID: "lic_acme", subject: "svc-reports", quota: quota),
                    CheckDetails(rateLimit: RateLimitState(limit: 100, remaining: 97, resetMillis: 60), tokenExpiresAt: 1_798_761_600_000, planID: "pro")),
                    opcode: Opcode.check.rawValue),
                fields: merged(["decision": 1, "reason": 0, "token_id": sampleTokenInfo.id, "license_id": "lic_acme", "subject": "svc-reports", "quota": quotaFields, "retry_after_ms": 0,
                    "details": ["rate_limit": ["present": 1, "limit": 100, "remaining": 97, "reset_ms": 60], "token_expires_at": 1_798_761_600_000, "plan_id": "pro"]], checkTail)),
            ProtocolVector(name: "check.response.details.unknown", requestID: 19,
                message: .response(.checkDetailed(CheckResult(reason: .unknownToken), CheckDetails()), opcode: Opcode.check.rawValue),
                fields: merged(["decision": 0, "reason": 2, "token_id": "", "license_id": "", "subject": "", "quota": noQuotaFields, "retry_after_ms": 0,
                    "details": ["rate_limit": ["present": 0, "limit": 0, "remaining": 0, "reset_ms": 0], "token_expires_at": 0, "plan_id": ""]], checkTail)),
            ProtocolVector(name: "check.response.deny", requestID: 2,
                message: .response(.check(CheckResult(reason: .rateLimited, tokenID: sampleTokenInfo.id, licenseID: "lic_acme", subject: "svc-reports", retryAfterMillis: 20)), opcode: Opcode.check.rawValue),
                fields: merged(["decision": 0, "reason": 9, "token_id": sampleTokenInfo.id, "license_id": "lic_acme", "subject": "svc-reports", "quota": noQuotaFields, "retry_after_ms": 20], checkTail)),
            ProtocolVector(name: "meter.request", requestID: 3,
                message: .request(.meter(MeterRequest(token: sampleToken, meter: "bytes", quantity: 4096, idempotencyKey: "evt-42"))),
                fields: ["token": sampleToken, "meter": "bytes", "quantity": 4096, "idempotency_key": "evt-42"]),
            ProtocolVector(name: "meter.response", requestID: 3,
                message: .response(.meter(MeterResult(reason: .none, tokenID: sampleTokenInfo.id, licenseID: "lic_acme", duplicate: true)), opcode: Opcode.meter.rawValue),
                fields: ["decision": 1, "reason": 0, "token_id": sampleTokenInfo.id, "license_id": "lic_acme", "duplicate": 1, "quota": noQuotaFields]),
            ProtocolVector(name: "revoke.request", requestID: 4,
                message: .request(.revoke(RevokeRequest(target: .tokenID(sampleTokenInfo.id), reason: "leaked"))),
                fields: ["by": 1, "value": sampleTokenInfo.id, "reason": "leaked", "actor": ""]),
            ProtocolVector(name: "revoke.request.org", requestID: 18,
                message: .request(.revoke(RevokeRequest(target: .org("acme"), reason: "contract ended", actor: "alice@ops"))),
                fields: ["by": 3, "value": "acme", "reason": "contract ended", "actor": "alice@ops"]),
            ProtocolVector(name: "revoke.response", requestID: 4, message: .response(.revoke(revoked: 1), opcode: Opcode.revoke.rawValue), fields: ["revoked": 1]),
            ProtocolVector(name: "issue.request", requestID: 5,
                message: .request(.issue(IssueRequest(licenseID: "lic_acme", subject: "svc-reports", scopes: ["read", "write"], notBefore: 0, expiresAt: 1_798_761_600_000, metadata: [KeyValue("team", "billing")], environment: .test))),
                fields: ["license_id": "lic_acme", "subject": "svc-reports", "scopes": ["read", "write"], "not_before": 0, "expires_at": 1_798_761_600_000, "metadata": [["team", "billing"]], "environment": 1]),
            ProtocolVector(name: "issue.response", requestID: 5,
                message: .response(.issue(secret: sampleToken, token: sampleTokenInfo), opcode: Opcode.issue.rawValue),
                fields: ["secret": sampleToken, "token": tokenFields]),
            ProtocolVector(name: "license_put.request", requestID: 6, message: .request(.licensePut(license)), fields: licenseFields),
            ProtocolVector(name: "license.response", requestID: 6,
                message: .response(.license(LicenseInfo(spec: license, updatedAt: 1_767_225_600_000, activeTokens: 1, prepaidCredits: 250)), opcode: Opcode.licensePut.rawValue),
                fields: licenseInfoFields),
            ProtocolVector(name: "license_get.request", requestID: 8, message: .request(.licenseGet(licenseID: "lic_acme")), fields: ["license_id": "lic_acme"]),
            ProtocolVector(name: "license_get.response", requestID: 8,
                message: .response(.license(LicenseInfo(spec: license, updatedAt: 1_767_225_600_000, activeTokens: 1, prepaidCredits: 250)), opcode: Opcode.licenseGet.rawValue),
                fields: licenseInfoFields),
            ProtocolVector(name: "plan_put.request", requestID: 9, message: .request(.planPut(plan)), fields: planFields),
            ProtocolVector(name: "plan.response", requestID: 9, message: .response(.plan(plan), opcode: Opcode.planPut.rawValue), fields: planFields),
            ProtocolVector(name: "plan_get.request", requestID: 10, message: .request(.planGet(planID: "pro")), fields: ["plan_id": "pro"]),
            ProtocolVector(name: "plan_get.response", requestID: 10, message: .response(.plan(plan), opcode: Opcode.planGet.rawValue), fields: planFields),
            ProtocolVector(name: "token_get.request", requestID: 11, message: .request(.tokenGet(tokenID: sampleTokenInfo.id)), fields: ["token_id": sampleTokenInfo.id]),
            ProtocolVector(name: "token.response", requestID: 11, message: .response(.token(sampleTokenInfo), opcode: Opcode.tokenGet.rawValue), fields: tokenFields),
            ProtocolVector(name: "token_list.request", requestID: 12, message: .request(.tokenList(TokenListRequest(licenseID: "lic_acme", after: "", limit: 50))),
                fields: ["license_id": "lic_acme", "after": "", "limit": 50]),
            ProtocolVector(name: "token_list.response", requestID: 12,
                message: .response(.tokenList(tokens: [sampleTokenInfo], next: ""), opcode: Opcode.tokenList.rawValue),
                fields: ["tokens": [tokenFields], "next": ""]),
            ProtocolVector(name: "stats.request", requestID: 13, message: .request(.stats), fields: [:]),
            ProtocolVector(name: "stats.response", requestID: 13,
                message: .response(.stats(statsKeys.map { KeyValue($0.0, $0.1) }), opcode: Opcode.stats.rawValue),
                fields: ["stats": statsKeys.map { [$0.0, $0.1] }]),
            ProtocolVector(name: "release.request", requestID: 19, message: .request(.release(leaseID: 42)), fields: ["lease_id": 42]),
            ProtocolVector(name: "release.response", requestID: 19, message: .response(.released(true), opcode: Opcode.release.rawValue), fields: ["released": 1]),
            ProtocolVector(name: "settle.request", requestID: 20, message: .request(.settle(SettleRequest(reservationID: 43, actualCost: 7))),
                fields: ["reservation_id": 43, "actual_cost": 7]),
            ProtocolVector(name: "settle.response", requestID: 20,
                message: .response(.check(CheckResult(reason: .none, tokenID: sampleTokenInfo.id, licenseID: "lic_acme", subject: "svc-reports", quota: quota)), opcode: Opcode.settle.rawValue),
                fields: merged(["decision": 1, "reason": 0, "token_id": sampleTokenInfo.id, "license_id": "lic_acme", "subject": "svc-reports", "quota": quotaFields, "retry_after_ms": 0], checkTail)),
            ProtocolVector(name: "derive.request", requestID: 21, message: .request(.derive(DeriveRequest(parent: sampleToken, scopes: ["read"], ttlSeconds: 900))),
                fields: ["parent": sampleToken, "scopes": ["read"], "ttl_s": 900]),
            ProtocolVector(name: "derive.response.allow", requestID: 21,
                message: .response(.derive(CheckResult(reason: .none, tokenID: sampleTokenInfo.id, licenseID: "lic_acme", subject: "svc-reports"), secret: childToken, token: childInfo), opcode: Opcode.derive.rawValue),
                fields: merged(["decision": 1, "reason": 0, "token_id": sampleTokenInfo.id, "license_id": "lic_acme", "subject": "svc-reports", "quota": noQuotaFields, "retry_after_ms": 0,
                    "secret": childToken, "token": merged(["token_id": childInfo.id, "scopes": ["read"], "expires_at": 1_767_226_500_000, "parent_id": sampleTokenInfo.id], tokenFields)], checkTail)),
            ProtocolVector(name: "derive.response.deny", requestID: 22,
                message: .response(.derive(CheckResult(reason: .revoked, tokenID: sampleTokenInfo.id, licenseID: "lic_acme", subject: "svc-reports"), secret: "", token: nil), opcode: Opcode.derive.rawValue),
                fields: merged(["decision": 0, "reason": 3, "token_id": sampleTokenInfo.id, "license_id": "lic_acme", "subject": "svc-reports", "quota": noQuotaFields, "retry_after_ms": 0], checkTail)),
            ProtocolVector(name: "rotate.request", requestID: 23, message: .request(.rotate(RotateRequest(tokenID: sampleTokenInfo.id, graceSeconds: 3600))),
                fields: ["token_id": sampleTokenInfo.id, "grace_s": 3600]),
            ProtocolVector(name: "rotation_end.request", requestID: 24, message: .request(.rotationEnd(tokenID: sampleTokenInfo.id)), fields: ["token_id": sampleTokenInfo.id]),
            ProtocolVector(name: "rotate.response", requestID: 23,
                message: .response(.issue(secret: rotatedToken, token: rotatedInfo), opcode: Opcode.rotate.rawValue),
                fields: ["secret": rotatedToken, "token": rotatedFields]),
            ProtocolVector(name: "rotation_end.response", requestID: 24,
                message: .response(.token(overlapEnded), opcode: Opcode.rotationEnd.rawValue), fields: overlapEndedFields),
            ProtocolVector(name: "org_put.request", requestID: 25, message: .request(.orgPut(OrgSpec(id: "acme", name: "Acme Corp", suspended: false))),
                fields: ["org_id": "acme", "name": "Acme Corp", "suspended": 0]),
            ProtocolVector(name: "org.response", requestID: 25, message: .response(.org(OrgSpec(id: "acme", name: "Acme Corp", suspended: false)), opcode: Opcode.orgPut.rawValue),
                fields: ["org_id": "acme", "name": "Acme Corp", "suspended": 0]),
            ProtocolVector(name: "org_get.request", requestID: 26, message: .request(.orgGet(orgID: "acme")), fields: ["org_id": "acme"]),
            ProtocolVector(name: "org_get.response", requestID: 26, message: .response(.org(OrgSpec(id: "acme", name: "Acme Corp", suspended: true)), opcode: Opcode.orgGet.rawValue),
                fields: ["org_id": "acme", "name": "Acme Corp", "suspended": 1]),
            ProtocolVector(name: "credits_grant.request", requestID: 27,
                message: .request(.creditsGrant(CreditsGrant(pool: .license, owner: "lic_acme", amount: 250, reason: "top-up"))),
                fields: ["pool": 1, "owner": "lic_acme", "amount": 250, "reason": "top-up"]),
            ProtocolVector(name: "credits_grant.response", requestID: 27, message: .response(.credits(balance: 250), opcode: Opcode.creditsGrant.rawValue), fields: ["balance": 250]),
            ProtocolVector(name: "usage_export.request", requestID: 28,
                message: .request(.usageExport(UsageExportRequest(query: UsageQuery(from: 1_767_225_600_000, to: 1_769_904_000_000, org: "acme", licenseID: "", granularity: .day), offset: 0, limit: 500))),
                fields: ["from": 1_767_225_600_000, "to": 1_769_904_000_000, "org": "acme", "license_id": "", "granularity": 1, "offset": 0, "limit": 500]),
            ProtocolVector(name: "usage_export.response", requestID: 28,
                message: .response(.usage(rows: [UsageRow(org: "acme", project: "checkout", licenseID: "lic_acme", tokenID: sampleTokenInfo.id, meter: "requests", periodStart: 1_767_225_600_000, quantity: 1234, overage: 34)], next: 0), opcode: Opcode.usageExport.rawValue),
                fields: ["rows": [["org": "acme", "project": "checkout", "license_id": "lic_acme", "token_id": sampleTokenInfo.id, "meter": "requests", "period_start": 1_767_225_600_000, "quantity": 1234, "overage": 34]], "next": 0]),
            ProtocolVector(name: "events.request", requestID: 29, message: .request(.events(after: 0, limit: 100)), fields: ["after": 0, "limit": 100]),
            ProtocolVector(name: "events.response", requestID: 29,
                message: .response(.events([LicensingEvent(sequence: 1, at: 1_767_225_600_000, kind: .quota80, owner: "lic_acme", detail: "quota:requests:month:license@1767225600000")]), opcode: Opcode.events.rawValue),
                fields: ["events": [["sequence": 1, "at": 1_767_225_600_000, "kind": 0, "owner": "lic_acme", "detail": "quota:requests:month:license@1767225600000"]]]),
            ProtocolVector(name: "error.unknown_opcode.response", requestID: 14,
                message: .response(.error(.unknownOpcode, "unknown opcode 0x7f"), opcode: 0x7F),
                fields: ["status": 4, "message": "unknown opcode 0x7f"]),
            // The connection-limit refusal (4.1): unsolicited, opcode 0, request id 0, then the server closes.
            ProtocolVector(name: "error.unavailable.connection_limit.response", requestID: 0,
                message: .response(.error(.unavailable, "too many connections (the limit is 4096); retry later"), opcode: 0),
                fields: ["status": 10, "message": "too many connections (the limit is 4096); retry later"]),
            // A declared length above max_frame (4.1): opcode 0, request id 0, then the server closes.
            ProtocolVector(name: "error.too_large.response", requestID: 0,
                message: .response(.error(.tooLarge, "frame length 70000 exceeds the maximum of 65536 bytes"), opcode: 0),
                fields: ["status": 5, "message": "frame length 70000 exceeds the maximum of 65536 bytes"]),
            ProtocolVector(name: "error.not_permitted.response", requestID: 15,
                message: .response(.error(.notPermitted, "ISSUE is served on the admin socket only"), opcode: Opcode.issue.rawValue),
                fields: ["status": 6, "message": "ISSUE is served on the admin socket only"]),
        ] + listingAndDeletion(licenseInfoFields: licenseInfoFields)
    }

    /// LICENSE_LIST … ORG_DELETE (6.20, 6.21) and the `in_use` refusal.
    static func listingAndDeletion(licenseInfoFields: [String: Any]) -> [ProtocolVector] {
        let info = LicenseInfo(spec: license, updatedAt: 1_767_225_600_000, activeTokens: 1, prepaidCredits: 250)
        var deleted = info
        deleted.activeTokens = 0
        var deletedFields = licenseInfoFields
        deletedFields["active_tokens"] = 0
        let globex = OrgSpec(id: "globex", name: "Globex Corporation", suspended: false)
        let globexFields: [String: Any] = ["org_id": "globex", "name": "Globex Corporation", "suspended": 0]
        let inUse = "plan 'pro' is in use: 1 license is on it (lic_acme); move it to another plan or delete it first"
        return [
            ProtocolVector(name: "license_list.request", requestID: 30, message: .request(.licenseList(LicenseListRequest(org: "acme", plan: "", after: "", limit: 100))),
                fields: ["org": "acme", "plan": "", "after": "", "limit": 100]),
            ProtocolVector(name: "license_list.response", requestID: 30,
                message: .response(.licenseList(licenses: [info], next: ""), opcode: Opcode.licenseList.rawValue),
                fields: ["licenses": [licenseInfoFields], "next": ""]),
            ProtocolVector(name: "plan_list.request", requestID: 31, message: .request(.planList(ListPageRequest(after: "", limit: 1))),
                fields: ["after": "", "limit": 1]),
            ProtocolVector(name: "plan_list.response", requestID: 31,
                message: .response(.planList(plans: [plan], next: "pro"), opcode: Opcode.planList.rawValue),
                fields: ["plans": [planFields], "next": "pro"]),
            ProtocolVector(name: "org_list.request", requestID: 32, message: .request(.orgList(ListPageRequest(after: "acme", limit: 0))),
                fields: ["after": "acme", "limit": 0]),
            ProtocolVector(name: "org_list.response", requestID: 32,
                message: .response(.orgList(orgs: [globex], next: ""), opcode: Opcode.orgList.rawValue),
                fields: ["orgs": [globexFields], "next": ""]),
            ProtocolVector(name: "license_delete.request", requestID: 33, message: .request(.licenseDelete(DeleteRequest(id: "lic_acme", actor: "alice@ops"))),
                fields: ["license_id": "lic_acme", "actor": "alice@ops"]),
            ProtocolVector(name: "license_delete.response", requestID: 33,
                message: .response(.license(deleted), opcode: Opcode.licenseDelete.rawValue), fields: deletedFields),
            ProtocolVector(name: "plan_delete.request", requestID: 34, message: .request(.planDelete(DeleteRequest(id: "pro", actor: ""))),
                fields: ["plan_id": "pro", "actor": ""]),
            ProtocolVector(name: "plan_delete.response", requestID: 34, message: .response(.plan(plan), opcode: Opcode.planDelete.rawValue), fields: planFields),
            ProtocolVector(name: "org_delete.request", requestID: 35, message: .request(.orgDelete(DeleteRequest(id: "globex", actor: "alice@ops"))),
                fields: ["org_id": "globex", "actor": "alice@ops"]),
            ProtocolVector(name: "org_delete.response", requestID: 35, message: .response(.org(globex), opcode: Opcode.orgDelete.rawValue), fields: globexFields),
            // 6.21: a plan still in use is not deleted; the message names the licenses on it.
            ProtocolVector(name: "error.in_use.response", requestID: 36, message: .response(.error(.inUse, inUse), opcode: Opcode.planDelete.rawValue),
                fields: ["status": 11, "message": inUse]),
            // 6.22: a WATCH of one license, the stream's first frame (empty), a frame of two decisions after 3 were
            // lost, and the end frame.
            ProtocolVector(name: "watch.request", requestID: 37, message: .request(.watch(licenseID: "lic_acme")), fields: ["license_id": "lic_acme"]),
            ProtocolVector(name: "watch.response.start", requestID: 37,
                message: .response(.watch(WatchBatch(kind: .events, dropped: 0, events: [])), opcode: Opcode.watch.rawValue),
                fields: ["kind": 0, "dropped": 0, "events": [[String: Any]]()]),
            ProtocolVector(name: "watch.response", requestID: 37,
                message: .response(.watch(WatchBatch(kind: .events, dropped: 3, events: watchEvents)), opcode: Opcode.watch.rawValue),
                fields: ["kind": 0, "dropped": 3, "events": watchEventFields]),
            ProtocolVector(name: "watch.response.end", requestID: 37,
                message: .response(.watch(WatchBatch(kind: .end, dropped: 3, events: [])), opcode: Opcode.watch.rawValue),
                fields: ["kind": 1, "dropped": 3, "events": [[String: Any]]()]),
            // 6.23: an identity provider's JWT (the bytes are only an example; its signature is not a real one).
            ProtocolVector(name: "exchange.request", requestID: 37,
                message: .request(.exchange(ExchangeRequest(subjectToken: sampleJWT, role: "ci", scopes: ["read"], ttlSeconds: 600))),
                fields: ["subject_token": sampleJWT, "role": "ci", "scopes": ["read"], "ttl_s": 600]),
            ProtocolVector(name: "exchange.response", requestID: 37,
                message: .response(.issue(secret: exchangedToken, token: exchangedInfo), opcode: Opcode.exchange.rawValue),
                fields: ["secret": exchangedToken, "token": ["token_id": exchangedInfo.id, "subject": "repo:acme/api:ref:refs/heads/main", "scopes": ["read"],
                    "issued_at": 1_767_225_600_000, "expires_at": 1_767_226_200_000, "metadata": [["tollgate.exchange.role", "ci"]], "environment": 0].merging(tokenFields) { x, _ in x }]),
            ProtocolVector(name: "error.exchange_refused.response", requestID: 38,
                message: .response(.error(.exchangeRefused, refused), opcode: Opcode.exchange.rawValue), fields: ["status": 12, "message": refused]),
            ProtocolVector(name: "subject_status.request", requestID: 39,
                message: .request(.subjectStatus(SubjectStatusRequest(subject: "alice@example.com", active: false, actor: "scim"))),
                fields: ["subject": "alice@example.com", "active": 0, "actor": "scim"]),
            ProtocolVector(name: "subject_status.response", requestID: 39, message: .response(.revoke(revoked: 2), opcode: Opcode.subjectStatus.rawValue),
                fields: ["revoked": 2]),
        ] + roleVectors
    }

    /// 6.25: ROLE_PUT, ROLE_DELETE and ROLE_LIST with a role that uses every field.
    static var roleVectors: [ProtocolVector] {
        var ci = IdentityRole(name: "ci", issuer: "https://token.actions.githubusercontent.com", audiences: ["https://tollgate.example.com"], scopes: ["read", "deploy"])
        ci.boundClaims = [.init(claim: "ref", values: ["refs/heads/main", "refs/tags/*"]), .init(claim: "repository", values: ["acme/*"])]
        ci.boundClaimsMatch = .glob
        ci.licenseClaim = "repository_owner"
        ci.licenseMapping = ["acme": "lic_acme", "globex": "lic_globex"]
        ci.scopeClaim = "scope"
        ci.maxTTLSeconds = 900
        ci.leewaySeconds = .init(exp: 30, nbf: 30, iat: 0)
        let ciFields: [String: Any] = [
            "name": "ci", "issuer": "https://token.actions.githubusercontent.com", "bound_audiences": ["https://tollgate.example.com"],
            "bound_claims": [["claim": "ref", "values": ["refs/heads/main", "refs/tags/*"]], ["claim": "repository", "values": ["acme/*"]]],
            "bound_claims_type": 1, "user_claim": "sub", "license": "", "license_claim": "repository_owner",
            "license_mapping": [["acme", "lic_acme"], ["globex", "lic_globex"]], "org_claim": "", "org_mapping": [[String]](),
            "scopes": ["read", "deploy"], "scope_claim": "scope", "max_ttl_s": 900, "leeway_s": ["exp": 30, "nbf": 30, "iat": 0],
        ]
        var people = IdentityRole(name: "people", issuer: "https://login.example.com", audiences: ["0oa1tollgate"], scopes: ["read"])
        people.userClaim = "email"
        people.orgClaim = "org"
        people.orgMapping = ["acme": "org_acme"]
        people.maxTTLSeconds = 3600
        let peopleFields: [String: Any] = [
            "name": "people", "issuer": "https://login.example.com", "bound_audiences": ["0oa1tollgate"], "bound_claims": [[String: Any]](),
            "bound_claims_type": 0, "user_claim": "email", "license": "", "license_claim": "", "license_mapping": [[String]](),
            "org_claim": "org", "org_mapping": [["acme", "org_acme"]], "scopes": ["read"], "scope_claim": "", "max_ttl_s": 3600,
            "leeway_s": ["exp": 0, "nbf": 0, "iat": 0],
        ]
        return [
            ProtocolVector(name: "role_put.request", requestID: 40, message: .request(.rolePut(ci)), fields: ciFields),
            ProtocolVector(name: "role_put.response", requestID: 40, message: .response(.role(ci), opcode: Opcode.rolePut.rawValue), fields: ciFields),
            ProtocolVector(name: "role_list.request", requestID: 41, message: .request(.roleList(ListPageRequest(after: "", limit: 2))),
                fields: ["after": "", "limit": 2]),
            ProtocolVector(name: "role_list.response", requestID: 41,
                message: .response(.roleList(roles: [ci, people], next: "people"), opcode: Opcode.roleList.rawValue),
                fields: ["roles": [ciFields, peopleFields], "next": "people"]),
            ProtocolVector(name: "role_delete.request", requestID: 42, message: .request(.roleDelete(DeleteRequest(id: "people", actor: "alice@ops"))),
                fields: ["name": "people", "actor": "alice@ops"]),
            ProtocolVector(name: "role_delete.response", requestID: 42, message: .response(.role(people), opcode: Opcode.roleDelete.rawValue), fields: peopleFields),
        ]
    }
}
