import ArgumentParser
import Foundation
import TollgateBilling
import TollgateClient
import TollgateEngine
import TollgateModel
import TollgateProvisioning

#if canImport(Glibc)
import Glibc
#endif

// Reading what the daemon recorded: the usage ledger and the event log.

struct UsageCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "usage", abstract: "Read usage without consuming it: the quotas of a token or license, or the ledger for billing.",
        subcommands: [Show.self, Export.self])

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Show how much of each quota a license or token has used in the current window, without consuming anything.",
            discussion: """
                Read from the usage ledger (USAGE_EXPORT) and the plan (LICENSE_GET, PLAN_GET, TOKEN_GET) on the admin \
                socket: unlike `check --cost 0`, it takes no rate-limit budget and changes no counter. For each calendar \
                quota of the plan it sums the ledger over the quota's current window (months from the license's billing \
                anchor day; org pools from the 1st) at the quota's pool: the token, the license, or the organisation's \
                licenses. It is the ledger's usage: amounts held by open reservations are not in it, and a quota whose \
                (pool, window) pair no plan used before counts from when it was first used while the ledger has all usage. \
                Rolling windows are not shown (the ledger is hourly). With --license, token-level quotas are shown per \
                token that has usage in the window.
                """)
        @OptionGroup var global: GlobalOptions
        @Option(help: "The license whose quotas to show.") var license: String?
        @Option(help: "The token (tok_...) whose quotas to show.") var token: String?

        func validate() throws {
            guard (license == nil) != (token == nil) else { throw ValidationError("give exactly one of --license, --token") }
        }

        /// One quota's reading.
        struct Reading {
            var rule: String
            var owner: String
            var used: UInt64
            var limit: UInt64
            var window: (start: UnixMillis, end: UnixMillis)
        }

        func run() async throws {
            let now = nowMillis()
            let (info, plan, tokenID, readings, skipped) = try await call(global, admin: true) { connection in
                let tokenID = token
                var licenseID = license ?? ""
                if let tokenID { licenseID = try await connection.token(id: tokenID).licenseID }
                let info = try await connection.license(id: licenseID)
                let plan = try await connection.plan(id: info.spec.plan)
                var readings: [Reading] = []
                var skipped: [String] = []
                for rule in plan.quotas {
                    guard case .calendar(let period) = rule.window else {
                        skipped.append(rule.name)
                        continue
                    }
                    let window = UTCCalendar.bounds(of: period, containing: now, anchorDay: rule.pool == .org ? 1 : info.spec.billingAnchorDay)
                    let inOrg = rule.pool == .org && !info.spec.org.isEmpty
                    let rows = try await connection.usage(
                        UsageQuery(from: window.start, to: window.end, org: inOrg ? info.spec.org : "", licenseID: inOrg ? "" : licenseID, granularity: .month))
                        .filter { $0.meter == rule.meter && (rule.pool != .token || tokenID == nil || $0.tokenID == tokenID) }
                    if rule.pool == .token {
                        let byToken = Dictionary(grouping: rows, by: \.tokenID)
                        let owners = tokenID.map { [$0] } ?? byToken.keys.sorted()
                        for owner in owners {
                            readings.append(Reading(rule: rule.name, owner: owner, used: Self.sum(byToken[owner] ?? []), limit: rule.limit, window: window))
                        }
                    } else {
                        readings.append(Reading(rule: rule.name, owner: rule.pool == .org ? info.spec.orgPoolOwner : licenseID, used: Self.sum(rows), limit: rule.limit, window: window))
                    }
                }
                return (info, plan, tokenID, readings, skipped)
            }
            if global.json {
                var object: [String: Any] = [
                    "license_id": info.spec.id, "plan": plan.id, "at": RFC3339.format(now),
                    "quotas": readings.map {
                        [
                            "rule": $0.rule, "owner": $0.owner, "used": $0.used, "limit": $0.limit, "remaining": $0.limit > $0.used ? $0.limit - $0.used : 0,
                            "window_start": RFC3339.format($0.window.start), "window_end": RFC3339.format($0.window.end),
                        ] as [String: Any]
                    },
                    "not_shown": skipped,
                ]
                if let tokenID { object["token_id"] = tokenID }
                printJSON(object)
            } else {
                print("license \(info.spec.id) on plan \(plan.id)\(tokenID.map { ", token \($0)" } ?? ""), at \(RFC3339.format(now))")
                if readings.isEmpty && skipped.isEmpty { print("no quotas") }
                for r in readings {
                    let left = r.limit > r.used ? r.limit - r.used : 0
                    print("\(r.rule) \(r.owner) used \(r.used) of \(r.limit), \(left) left, window \(RFC3339.format(r.window.start)) to \(RFC3339.format(r.window.end))")
                }
                for name in skipped { print("\(name): not shown (rolling windows are not in the hourly ledger)") }
            }
        }

        /// Saturating, as the daemon's counters are.
        static func sum(_ rows: [UsageRow]) -> UInt64 {
            rows.reduce(0) { total, row in
                let (sum, overflow) = total.addingReportingOverflow(row.quantity)
                return overflow ? .max : sum
            }
        }
    }

    struct Export: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Write usage rows in [FROM, TO) as CSV or JSON lines, for billing.",
            discussion: """
                CSV columns: \(UsageExportFormat.csvHeader). period_start is RFC 3339 UTC; quantities are exact integers. \
                JSON lines carry the same fields, one object per row. \
                stripe-meter-events: one Stripe Billing meter event per row (event_name, payload.stripe_customer_id and \
                payload.value, identifier, timestamp), for whole ended periods only; the customer is the license's \
                customer field (a cus_ id, as the Stripe webhook sets it).
                """)
        @OptionGroup var global: GlobalOptions
        @Option(help: "Start (inclusive): RFC 3339 time or Unix milliseconds.") var from: String
        @Option(help: "End (exclusive): RFC 3339 time or Unix milliseconds.") var to: String
        @Option(help: "Only this organisation.") var org: String = ""
        @Option(help: "Only this license.") var license: String = ""
        @Option(help: "Rows summed per hour, day or month (UTC).") var granularity: String = "hour"
        @Option(help: "csv, jsonl or stripe-meter-events (default: csv; jsonl with --json).") var format: String?
        @Option(name: .customLong("meter-event"), help: "With stripe-meter-events: METER=EVENT_NAME, the Stripe meter's event name for a Tollgate meter (repeatable; default: the meter's own name).")
        var meterEvents: [String] = []
        @Option(name: .customLong("stripe-value"), help: "With stripe-meter-events: quantity (all usage) or overage (only the overage). Default: quantity.")
        var stripeValue: String = "quantity"
        @Flag(name: .customLong("skip-unmapped"), help: "With stripe-meter-events: leave out (with a warning) rows whose license has no cus_ customer, instead of failing.")
        var skipUnmapped = false

        func validate() throws { _ = try query() }

        func query() throws -> UsageQuery {
            guard let period = Period(name: granularity) else { throw ValidationError("--granularity must be hour, day or month") }
            guard format == nil || format == "csv" || format == "jsonl" || format == "stripe-meter-events" else {
                throw ValidationError("--format must be csv, jsonl or stripe-meter-events")
            }
            let query = UsageQuery(from: try parseTime(from), to: try parseTime(to), org: org, licenseID: license, granularity: period)
            guard query.to > query.from else { throw ValidationError("--to must be later than --from") }
            if format == "stripe-meter-events" {
                _ = try eventNames()
                guard StripeMeterEvents.Value(rawValue: stripeValue) != nil else { throw ValidationError("--stripe-value must be quantity or overage") }
                // A row's identifier does not depend on its quantity (so a re-sent export is counted once): only
                // whole periods that have ended may be exported, or a row could grow after it was sent.
                for (name, time) in [("--from", query.from), ("--to", query.to)] where UTCCalendar.bounds(of: period, containing: time).start != time {
                    throw ValidationError("\(name) must be the start of a UTC \(period.name) with stripe-meter-events (whole periods only)")
                }
                let now = UnixMillis(Date().timeIntervalSince1970 * 1000)
                guard query.to <= UTCCalendar.bounds(of: period, containing: now).start else {
                    throw ValidationError("--to must not be later than the start of the current \(period.name) with stripe-meter-events (ended periods only)")
                }
            }
            return query
        }

        /// `--meter-event` as a table (meter → event name).
        func eventNames() throws -> [String: String] {
            var names: [String: String] = [:]
            for pair in meterEvents {
                let parts = pair.split(separator: "=", maxSplits: 1).map(String.init)
                guard parts.count == 2, !parts[0].isEmpty, !parts[1].isEmpty, parts[1].utf8.count <= 100 else {
                    throw ValidationError("--meter-event must be METER=EVENT_NAME (an event name of 1–100 characters)")
                }
                names[parts[0]] = parts[1]
            }
            return names
        }

        func run() async throws {
            let query = try query()
            let format = format ?? (global.json ? "jsonl" : "csv")
            if format == "stripe-meter-events" { return try await runStripe(query) }
            let rows = try await call(global, admin: true) { try await $0.usage(query) }
            var output = format == "csv" ? UsageExportFormat.csvHeader + "\n" : ""
            for row in rows {
                output += (format == "csv" ? UsageExportFormat.csvLine(row) : UsageExportFormat.jsonLine(row)) + "\n"
            }
            FileHandle.standardOutput.write(Data(output.utf8))
        }

        /// The rows as Stripe meter events, each license's customer read from the daemon once.
        func runStripe(_ query: UsageQuery) async throws {
            let names = try eventNames()
            let value = StripeMeterEvents.Value(rawValue: stripeValue)!
            let (rows, customers) = try await call(global, admin: true) { connection -> ([UsageRow], [String: String]) in
                let rows = try await connection.usage(query)
                var customers: [String: String] = [:]
                for id in Set(rows.map(\.licenseID)) {
                    // A license deleted since (its ledger rows outlive it) has no customer to bill.
                    customers[id] = try? await connection.license(id: id).spec.customer
                }
                return (rows, customers)
            }
            let unmapped = Set(rows.map(\.licenseID).filter { !StripeMeterEvents.isCustomerID(customers[$0] ?? "") }).sorted()
            if !unmapped.isEmpty {
                let list = unmapped.prefix(20).joined(separator: ", ") + (unmapped.count > 20 ? ", …" : "")
                guard skipUnmapped else {
                    throw CLIError(.invalidRequest, "licenses without a Stripe customer (a cus_ id in their customer field): \(list); set it, or pass --skip-unmapped")
                }
                FileHandleStderr.write("tollgate: left out the usage of licenses without a Stripe customer: \(list)\n")
            }
            var output = ""
            for row in rows {
                guard let customer = customers[row.licenseID], StripeMeterEvents.isCustomerID(customer),
                    let line = StripeMeterEvents.line(row, customer: customer, eventName: names[row.meter] ?? row.meter, value: value, granularity: query.granularity)
                else { continue }
                output += line + "\n"
            }
            FileHandle.standardOutput.write(Data(output.utf8))
        }
    }
}

/// The export's two formats. Numbers are written from the integers themselves, never through a floating-point
/// type, so a quantity near 2^64 is exported exactly.
enum UsageExportFormat {
    static let csvHeader = "period_start,org,project,license_id,token_id,meter,quantity,overage"

    static func fields(_ row: UsageRow) -> [String] {
        [rfc3339(row.periodStart), row.org, row.project, row.licenseID, row.tokenID, row.meter, String(row.quantity), String(row.overage)]
    }

    /// RFC 4180: a field with a comma, a double quote, CR or LF is quoted, its quotes doubled.
    static func csvField(_ field: String) -> String {
        guard field.contains(where: { $0 == "," || $0 == "\"" || $0 == "\n" || $0 == "\r" || $0 == "\r\n" }) else { return field }
        return "\"" + field.replacingOccurrences(of: "\"", with: "\"\"") + "\""
    }

    static func csvLine(_ row: UsageRow) -> String {
        fields(row).map(csvField).joined(separator: ",")
    }

    static func jsonLine(_ row: UsageRow) -> String {
        let strings = [
            ("period_start", rfc3339(row.periodStart)), ("org", row.org), ("project", row.project), ("license_id", row.licenseID),
            ("token_id", row.tokenID), ("meter", row.meter),
        ]
        let members = strings.map { "\(JSONText.quoted($0.0)):\(JSONText.quoted($0.1))" } + ["\"quantity\":\(row.quantity)", "\"overage\":\(row.overage)"]
        return "{" + members.joined(separator: ",") + "}"
    }

    /// `2026-01-01T00:00:00Z` (period starts are whole seconds; milliseconds are shown only when present): the
    /// provisioning module's formatter, the one `apply` reads and writes.
    static func rfc3339(_ millis: UnixMillis) -> String { RFC3339.format(millis) }
}

struct Events: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show thresholds crossed (quota 80%/100%, credits low, token expiring): sequence, time, kind, owner, detail.",
        discussion: "With --follow, asks every second for events after the last one shown, until interrupted (SIGINT).")
    @OptionGroup var global: GlobalOptions
    @Option(help: "Only events after this sequence number.") var after: UInt64 = 0
    @Option(help: "Most events to show (0: all; with --follow, only limits the first batch).") var limit: Int = 0
    @Flag(help: "Keep polling for new events every second.") var follow = false

    func validate() throws {
        guard limit >= 0 else { throw ValidationError("--limit must be 0 or more") }
    }

    func run() async throws {
        let json = global.json
        let connection = try await wrap { try await global.connect(admin: true) }
        defer { Task { await connection.close() } }
        var last = after
        var remaining = limit
        // Catch up: page until the log is exhausted or the limit is reached.
        while true {
            let want = remaining > 0 ? UInt16(Swift.min(remaining, 1000)) : 0
            let page = try await wrap { try await connection.events(after: last, limit: want) }
            show(page, json: json)
            last = page.last?.sequence ?? last
            if remaining > 0 {
                remaining -= page.count
                if remaining <= 0 { break }
            }
            if page.isEmpty { break }
        }
        guard follow else { return }

        // SIGINT ends following normally (exit 0) rather than killing the process mid-line.
        signal(SIGINT, SIG_IGN)
        let poller = Task { [last] in
            var last = last
            while !Task.isCancelled {
                let page = try await wrap { try await connection.events(after: last, limit: 0) }
                show(page, json: json)
                last = page.last?.sequence ?? last
                if page.isEmpty { try await Task.sleep(nanoseconds: 1_000_000_000) }
            }
        }
        let interrupt = DispatchSource.makeSignalSource(signal: SIGINT, queue: .global())
        interrupt.setEventHandler { poller.cancel() }
        interrupt.resume()
        defer { interrupt.cancel() }
        do {
            try await poller.value
        } catch is CancellationError {
            return
        }
    }

    func show(_ events: [LicensingEvent], json: Bool) {
        for event in events {
            if json {
                printJSON(event.json)
            } else {
                print("\(event.sequence) \(UsageExportFormat.rfc3339(event.at)) \(event.kind.name) \(event.owner) \(event.detail)")
            }
        }
        fflush(nil)  // all streams: `stdout` is a C global Swift 6 refuses to read without isolation
    }
}
