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

    /// CHECK with the `details` option (added to `request`'s options): the answer and its details.
    public func checkDetailed(_ request: CheckRequest) async throws -> (CheckResult, CheckDetails) {
        var request = request
        request.options.insert(.details)
        return try await call(.check(request)) { if case .checkDetailed(let r, let d) = $0 { return (r, d) } else { return nil } }
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

    /// Releases a lease taken by a CHECK with the `lease` option; false when it was not held.
    public func release(leaseID: UInt64) async throws -> Bool {
        try await call(.release(leaseID: leaseID)) { if case .released(let r) = $0 { return r } else { return nil } }
    }

    public func settle(_ request: SettleRequest) async throws -> CheckResult {
        try await call(.settle(request)) { if case .check(let r) = $0 { return r } else { return nil } }
    }

    /// Exchanges a token for a short-lived child. A denied parent is an answer (`result.allowed == false`).
    public func derive(_ request: DeriveRequest) async throws -> (result: CheckResult, secret: String, token: TokenInfo?) {
        try await call(.derive(request)) { if case .derive(let r, let s, let t) = $0 { return (r, s, t) } else { return nil } }
    }

    /// Exchanges an identity provider's JWT for a short-lived token (EXCHANGE). A refusal is thrown as a
    /// `TollgateClientError` with status `exchange_refused` (its message starts with the reason's code) or
    /// `identity_unavailable`.
    public func exchange(_ request: ExchangeRequest) async throws -> (secret: String, token: TokenInfo) {
        try await call(.exchange(request)) { if case .issue(let s, let t) = $0 { return (s, t) } else { return nil } }
    }

    /// Deprovisions (`active` false: every token of the subject revoked) or reactivates a subject (SUBJECT_STATUS).
    /// Returns how many tokens were revoked.
    public func setSubjectStatus(_ request: SubjectStatusRequest) async throws -> UInt32 {
        try await call(.subjectStatus(request)) { if case .revoke(let n) = $0 { return n } else { return nil } }
    }

    public func rotate(_ request: RotateRequest) async throws -> (secret: String, token: TokenInfo) {
        try await call(.rotate(request)) { if case .issue(let s, let t) = $0 { return (s, t) } else { return nil } }
    }

    public func endRotation(tokenID: String) async throws -> TokenInfo {
        try await call(.rotationEnd(tokenID: tokenID)) { if case .token(let t) = $0 { return t } else { return nil } }
    }

    public func putOrg(_ org: OrgSpec) async throws -> OrgSpec {
        try await call(.orgPut(org)) { if case .org(let o) = $0 { return o } else { return nil } }
    }

    public func org(id: String) async throws -> OrgSpec {
        try await call(.orgGet(orgID: id)) { if case .org(let o) = $0 { return o } else { return nil } }
    }

    /// Adds prepaid credits; returns the pool's prepaid balance after the grant.
    public func grantCredits(_ grant: CreditsGrant) async throws -> UInt64 {
        try await call(.creditsGrant(grant)) { if case .credits(let b) = $0 { return b } else { return nil } }
    }

    public func usagePage(_ request: UsageExportRequest) async throws -> (rows: [UsageRow], next: UInt32) {
        try await call(.usageExport(request)) { if case .usage(let r, let n) = $0 { return (r, n) } else { return nil } }
    }

    /// Every row of a usage export, page by page.
    public func usage(_ query: UsageQuery) async throws -> [UsageRow] {
        var rows: [UsageRow] = []
        var offset: UInt32 = 0
        repeat {
            let page = try await usagePage(UsageExportRequest(query: query, offset: offset))
            rows += page.rows
            offset = page.next
        } while offset != 0
        return rows
    }

    public func events(after: UInt64 = 0, limit: UInt16 = 0) async throws -> [LicensingEvent] {
        try await call(.events(after: after, limit: limit)) { if case .events(let e) = $0 { return e } else { return nil } }
    }
}

// MARK: - Listing and deleting licenses, plans and organisations

extension TollgateConnection {
    public func licensePage(_ request: LicenseListRequest) async throws -> (licenses: [LicenseInfo], next: String) {
        try await call(.licenseList(request)) { if case .licenseList(let l, let n) = $0 { return (l, n) } else { return nil } }
    }

    public func planPage(_ request: ListPageRequest) async throws -> (plans: [Plan], next: String) {
        try await call(.planList(request)) { if case .planList(let p, let n) = $0 { return (p, n) } else { return nil } }
    }

    public func orgPage(_ request: ListPageRequest) async throws -> (orgs: [OrgSpec], next: String) {
        try await call(.orgList(request)) { if case .orgList(let o, let n) = $0 { return (o, n) } else { return nil } }
    }

    /// Every license (of one organisation and/or plan when given), page by page, in id order.
    public func licenses(org: String = "", plan: String = "") async throws -> [LicenseInfo] {
        var all: [LicenseInfo] = []
        var after = ""
        repeat {
            let page = try await licensePage(LicenseListRequest(org: org, plan: plan, after: after, limit: 500))
            all += page.licenses
            after = page.next
        } while !after.isEmpty
        return all
    }

    /// Every plan, page by page, in id order.
    public func plans() async throws -> [Plan] {
        var all: [Plan] = []
        var after = ""
        repeat {
            let page = try await planPage(ListPageRequest(after: after, limit: 500))
            all += page.plans
            after = page.next
        } while !after.isEmpty
        return all
    }

    /// Every organisation, page by page, in id order.
    public func orgs() async throws -> [OrgSpec] {
        var all: [OrgSpec] = []
        var after = ""
        repeat {
            let page = try await orgPage(ListPageRequest(after: after, limit: 500))
            all += page.orgs
            after = page.next
        } while !after.isEmpty
        return all
    }

    /// Deletes a license that holds no live token; returns it as it was. `in_use` names the tokens that hold it.
    public func deleteLicense(id: String, actor: String = "") async throws -> LicenseInfo {
        try await call(.licenseDelete(DeleteRequest(id: id, actor: actor))) { if case .license(let l) = $0 { return l } else { return nil } }
    }

    /// Deletes a plan no license is on; returns it as it was. `in_use` names the licenses on it.
    public func deletePlan(id: String, actor: String = "") async throws -> Plan {
        try await call(.planDelete(DeleteRequest(id: id, actor: actor))) { if case .plan(let p) = $0 { return p } else { return nil } }
    }

    /// Deletes an organisation no license names; returns it as it was. `in_use` names the licenses in it.
    public func deleteOrg(id: String, actor: String = "") async throws -> OrgSpec {
        try await call(.orgDelete(DeleteRequest(id: id, actor: actor))) { if case .org(let o) = $0 { return o } else { return nil } }
    }
}

// MARK: - Identity roles (ROLE_PUT, ROLE_DELETE, ROLE_LIST)

extension TollgateConnection {
    /// Puts an identity role; returns it as stored. `invalid_argument` when it breaks a rule or names an issuer the
    /// daemon has no provider for.
    public func putRole(_ role: IdentityRole) async throws -> IdentityRole {
        try await call(.rolePut(role)) { if case .role(let r) = $0 { return r } else { return nil } }
    }

    /// Deletes an identity role; returns it as it was (`not_found` when there is none).
    public func deleteRole(name: String, actor: String = "") async throws -> IdentityRole {
        try await call(.roleDelete(DeleteRequest(id: name, actor: actor))) { if case .role(let r) = $0 { return r } else { return nil } }
    }

    public func rolePage(_ request: ListPageRequest) async throws -> (roles: [IdentityRole], next: String) {
        try await call(.roleList(request)) { if case .roleList(let r, let n) = $0 { return (r, n) } else { return nil } }
    }

    /// Every identity role, page by page, in name order.
    public func roles() async throws -> [IdentityRole] {
        var all: [IdentityRole] = []
        var after = ""
        repeat {
            let page = try await rolePage(ListPageRequest(after: after, limit: 500))
            all += page.roles
            after = page.next
        } while !after.isEmpty
        return all
    }
}
