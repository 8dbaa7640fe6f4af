import HeapModule
import TollgateModel

/// Listing and deleting the policy objects (licenses, plans, organisations): what `tollgate export` and
/// `apply --prune` read and remove.
extension LicensingState {
    // MARK: - Listing

    /// Licenses in ascending id order after `after`, optionally only those of organisation `org` and/or on `plan`
    /// (empty: any), at most `limit`; `more` when others follow.
    public func listLicenses(org: String = "", plan: String = "", after: String, limit: Int) -> (licenses: [LicenseInfo], more: Bool) {
        let matching = licenses.lazy.filter { (org.isEmpty || $0.value.spec.org == org) && (plan.isEmpty || $0.value.spec.plan == plan) }.map(\.key)
        let ids = Self.firstIDs(matching, after: after, count: limit + 1)
        return (ids.prefix(limit).compactMap { licenseInfo(id: $0) }, ids.count > limit)
    }

    public func listPlans(after: String, limit: Int) -> (plans: [Plan], more: Bool) {
        let ids = Self.firstIDs(plans.keys, after: after, count: limit + 1)
        return (ids.prefix(limit).compactMap { plans[$0] }, ids.count > limit)
    }

    public func listOrgs(after: String, limit: Int) -> (orgs: [OrgSpec], more: Bool) {
        let ids = Self.firstIDs(orgs.keys, after: after, count: limit + 1)
        return (ids.prefix(limit).compactMap { orgs[$0]?.spec }, ids.count > limit)
    }

    /// The `count` smallest ids above `after`, ascending. A bounded heap instead of sorting every id: a page costs
    /// one pass over the table and O(count) memory, and the caller holds the state lock for it (a million licenses
    /// would otherwise be copied and sorted under the lock for every page).
    static func firstIDs<IDs: Sequence<String>>(_ ids: IDs, after: String, count: Int) -> [String] {
        guard count > 0 else { return [] }
        var heap = Heap<String>()
        for id in ids where id > after {
            if heap.count < count {
                heap.insert(id)
            } else if let largest = heap.max, id < largest {
                _ = heap.replaceMax(with: id)
            }
        }
        return heap.unordered.sorted()
    }

    // MARK: - Deleting

    /// Deletes a license that holds no live token (`Validation.deletion`). Its revoked and expired tokens stay until
    /// the sweep forgets them; its usage stays in the ledger (billing) and its prepaid credits in their pool, found
    /// again if a license with the same id is put later. Returns the license as it was.
    public mutating func deleteLicense(_ request: DeleteRequest, at now: Timestamp) throws -> (info: LicenseInfo, change: StateChange) {
        try validateDeletion(request, .license)
        guard let info = licenseInfo(id: request.id) else { throw EngineError.notFound("license \(Self.printable(request.id)) does not exist") }
        try Validate.run { () throws(ValidationError) in try Validation.deletion(of: .license, request.id, usedBy: liveTokenIDs(license: request.id, at: now.millis)) }
        return (info, delete(.license, request, at: now))
    }

    /// Deletes a plan no license is on. Returns the plan as it was.
    public mutating func deletePlan(_ request: DeleteRequest, at now: Timestamp) throws -> (plan: Plan, change: StateChange) {
        try validateDeletion(request, .plan)
        guard let plan = plans[request.id] else { throw EngineError.notFound("plan \(Self.printable(request.id)) does not exist") }
        let users = licenses.values.filter { $0.spec.plan == request.id }.map(\.spec.id).sorted()
        try Validate.run { () throws(ValidationError) in try Validation.deletion(of: .plan, request.id, usedBy: users) }
        return (plan, delete(.plan, request, at: now))
    }

    /// Deletes an organisation no license names. Its prepaid credits stay in their pool. Returns it as it was.
    public mutating func deleteOrg(_ request: DeleteRequest, at now: Timestamp) throws -> (org: OrgSpec, change: StateChange) {
        try validateDeletion(request, .org)
        guard let org = orgs[request.id]?.spec else { throw EngineError.notFound("organisation \(Self.printable(request.id)) does not exist") }
        let users = licenses.values.filter { $0.spec.org == request.id }.map(\.spec.id).sorted()
        try Validate.run { () throws(ValidationError) in try Validation.deletion(of: .org, request.id, usedBy: users) }
        return (org, delete(.org, request, at: now))
    }

    /// Tokens of a license that are neither revoked nor expired at `time`, in id order.
    func liveTokenIDs(license: String, at time: UnixMillis) -> [String] {
        tokens.ids(license: license).filter { id in
            guard let info = tokens.record(id: id)?.info, info.revokedAt == 0 else { return false }
            return info.expiresAt == 0 || info.expiresAt > time
        }.sorted()
    }

    private func validateDeletion(_ request: DeleteRequest, _ kind: PolicyObjectKind) throws {
        try Validate.run { () throws(ValidationError) in
            try Validation.identifier(request.id, "the \(kind.name) id", field: kind == .org ? "org_id" : "\(kind.name)_id")
            try Validation.text(request.actor, max: Limits.maxReason, "the actor", field: "actor")
        }
    }

    private mutating func delete(_ kind: PolicyObjectKind, _ request: DeleteRequest, at now: Timestamp) -> StateChange {
        let change = StateChange.objectDeleted(kind, id: request.id, actor: request.actor, at: now.millis)
        apply(change)
        return change
    }
}
