import NIOCore
import TollgateEngine
import TollgateModel
import TollgateProtocol

/// The control plane's reads: objects by id, and the paged lists (tokens, usage, events), each page sized to fit
/// one answer frame by `AnswerPager`.
extension ApplicationCore {
    func license(_ id: String) -> Response {
        lock.withLock { state.licenseInfo(id: id) }.map(Response.license) ?? .error(.notFound, "license \(LicensingState.printable(id)) does not exist")
    }

    func plan(_ id: String) -> Response {
        lock.withLock { state.plans[id] }.map(Response.plan) ?? .error(.notFound, "plan \(LicensingState.printable(id)) does not exist")
    }

    func token(_ id: String) -> Response {
        lock.withLock { state.token(id: id)?.info }.map(Response.token) ?? .error(.notFound, "token \(LicensingState.printable(id)) does not exist")
    }

    func org(_ id: String) -> Response {
        lock.withLock { state.orgs[id]?.spec }.map(Response.org) ?? .error(.notFound, "organisation \(LicensingState.printable(id)) does not exist")
    }

    var pager: AnswerPager { AnswerPager(maxFrameSize: options.maxFrameSize) }

    func listTokens(_ request: TokenListRequest) -> Response {
        let limit = request.limit == 0 ? 100 : min(Int(request.limit), 500)
        var (tokens, more) = lock.withLock { state.listTokens(licenseID: request.licenseID, after: request.after, limit: limit) }
        // Keep the answer within one frame (the trailing `next` is a token id: at most 2 + 128 bytes).
        let fitting = pager.countFitting(tokens, fixedBytes: 2 + 2 + Limits.maxIdentifier) { try $0.writeTokenInfo($1) }
        if fitting < tokens.count {
            tokens.removeLast(tokens.count - fitting)
            more = true
        }
        return .tokenList(tokens: tokens, next: more ? (tokens.last?.id ?? "") : "")
    }

    /// One page of the usage export. The rows are computed per request (the ledger is not ordered), so a page
    /// costs a scan of the ledger in the range; exports are rare and the sort runs off the lock.
    func usageExport(_ export: UsageExportRequest) -> Response {
        guard export.query.from < export.query.to else { return .error(.invalidArgument, "from must be earlier than to") }
        let rows = lock.withLock { state.usageRows(export.query) }
        let limit = export.limit == 0 ? 100 : Int(export.limit)
        let start = min(Int(export.offset), rows.count)
        let page = rows[start..<min(start + limit, rows.count)]
        // A page ends early (and `next` points at the rest) when the next row would not fit in the frame.
        let end = start + pager.countFitting(page, fixedBytes: 2 + 4) { try $0.writeUsageRow($1) }
        return .usage(rows: Array(rows[start..<end]), next: end < rows.count ? UInt32(clamping: end) : 0)
    }

    /// Events after a sequence number, as many as fit in one frame (the caller asks again after the last one).
    func eventsPage(after: UInt64, limit: UInt16) -> Response {
        let events = lock.withLock { state.events(after: after, limit: limit == 0 ? 200 : Int(limit)) }
        return .events(Array(events.prefix(pager.countFitting(events, fixedBytes: 2) { try $0.writeEvent($1) })))
    }
}

/// Sizes paged answers to one frame: each item is measured with the encoder that will write it, so no
/// hand-counted size formula can drift from the format.
struct AnswerPager {
    let maxFrameSize: Int

    /// How many of `items`, from the first, fit in one answer frame beside `fixedBytes` of the body (list count,
    /// trailing fields); at least one, so paging moves on.
    func countFitting<Items: Collection>(_ items: Items, fixedBytes: Int, encode: (inout ByteBuffer, Items.Element) throws -> Void) -> Int {
        var scratch = ByteBufferAllocator().buffer(capacity: 512)
        var size = FrameHeader.size + fixedBytes
        var count = 0
        for item in items {
            scratch.clear()
            try? encode(&scratch, item)
            size += scratch.readableBytes
            if size > maxFrameSize && count > 0 { break }
            count += 1
        }
        return count
    }
}

// MARK: - Policy object listings (LICENSE_LIST, PLAN_LIST, ORG_LIST)

extension ApplicationCore {
    /// The page size a listing asks for: 0 means 100, and at most 500, as for TOKEN_LIST.
    static func pageLimit(_ limit: UInt16) -> Int { limit == 0 ? 100 : min(Int(limit), 500) }

    func listLicenses(_ request: LicenseListRequest) -> Response {
        let (licenses, more) = lock.withLock {
            state.listLicenses(org: request.org, plan: request.plan, after: request.page.after, limit: Self.pageLimit(request.page.limit))
        }
        let (page, next) = fitted(licenses, more: more, id: \.spec.id) { try $0.writeLicenseInfo($1) }
        return .licenseList(licenses: page, next: next)
    }

    func listPlans(_ request: ListPageRequest) -> Response {
        let (plans, more) = lock.withLock { state.listPlans(after: request.after, limit: Self.pageLimit(request.limit)) }
        let (page, next) = fitted(plans, more: more, id: \.id) { try $0.writePlan($1) }
        return .planList(plans: page, next: next)
    }

    func listOrgs(_ request: ListPageRequest) -> Response {
        let (orgs, more) = lock.withLock { state.listOrgs(after: request.after, limit: Self.pageLimit(request.limit)) }
        let (page, next) = fitted(orgs, more: more, id: \.id) { try $0.writeOrgSpec($1) }
        return .orgList(orgs: page, next: next)
    }

    func listRoles(_ request: ListPageRequest) -> Response {
        let (roles, more) = lock.withLock { state.listRoles(after: request.after, limit: Self.pageLimit(request.limit)) }
        let (page, next) = fitted(roles, more: more, id: \.name) { try $0.writeIdentityRole($1) }
        return .roleList(roles: page, next: next)
    }

    /// Cuts a page to what fits in one answer frame (beside the list count and the trailing `next`, an id of at most
    /// 128 bytes) and names the id to continue after: the last one sent, when anything follows it.
    private func fitted<Item>(_ items: [Item], more: Bool, id: (Item) -> String, encode: (inout ByteBuffer, Item) throws -> Void) -> ([Item], String) {
        var items = items, more = more
        let fitting = pager.countFitting(items, fixedBytes: 2 + 2 + Limits.maxIdentifier, encode: encode)
        if fitting < items.count {
            items.removeLast(items.count - fitting)
            more = true
        }
        return (items, more ? items.last.map(id) ?? "" : "")
    }
}
