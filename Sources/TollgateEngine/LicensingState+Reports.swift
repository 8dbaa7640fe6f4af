import TollgateModel

/// Read-only reports over the usage book: the billing export and the event log.
extension LicensingState {
    /// The usage ledger between `query.from` (inclusive) and `query.to` (exclusive), summed per token, meter and
    /// period of `query.granularity`, ordered by period, organisation, license, token and meter. Totals equal the
    /// sum of acknowledged usage exactly: the ledger is built by the same `apply` that replays the journal.
    public func usageRows(_ query: UsageQuery) -> [UsageRow] {
        struct RowKey: Hashable {
            var licenseID: String
            var tokenID: String
            var meter: String
            var start: UnixMillis
        }
        var sums: [RowKey: LedgerValue] = [:]
        for (hour, bucket) in book.ledger where hour >= query.from && hour < query.to {
            for (key, value) in bucket {
            let start = UTCCalendar.bounds(of: query.granularity, containing: key.hourStart).start
            if !query.licenseID.isEmpty && key.licenseID != query.licenseID { continue }
            let rowKey = RowKey(licenseID: key.licenseID, tokenID: key.tokenID, meter: key.meter, start: start)
            sums[rowKey, default: LedgerValue()].quantity.saturatingAdd(value.quantity)
            sums[rowKey]!.overage.saturatingAdd(value.overage)
            }
        }
        var rows: [UsageRow] = []
        rows.reserveCapacity(sums.count)
        for (key, value) in sums {
            let licenseID = key.licenseID
            let license = licenses[licenseID]?.spec
            if !query.org.isEmpty && license?.org != query.org { continue }
            rows.append(UsageRow(
                org: license?.org ?? "", project: license?.project ?? "", licenseID: licenseID, tokenID: key.tokenID,
                meter: key.meter, periodStart: key.start, quantity: value.quantity, overage: value.overage))
        }
        rows.sort { ($0.periodStart, $0.org, $0.licenseID, $0.tokenID, $0.meter) < ($1.periodStart, $1.org, $1.licenseID, $1.tokenID, $1.meter) }
        return rows
    }

    /// Events with a sequence number above `after`, oldest first, at most `limit`.
    public func events(after: UInt64, limit: Int) -> [LicensingEvent] {
        Array(book.events.lazy.filter { $0.sequence > after }.prefix(limit))
    }
}
