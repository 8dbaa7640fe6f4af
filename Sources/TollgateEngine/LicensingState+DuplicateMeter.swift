import TollgateModel

extension LicensingState {
    /// The quota reading of a METER answered `duplicate` without this state holding its key (fleet mode: the log
    /// found the key claimed, `Protocol/FLEET.md` 10): the usage as it stands, without this request's quantity, as
    /// `meter` answers a key it holds. Nil when the token is refused or no quota reads this meter.
    public func quotaWithoutServing(_ request: MeterRequest, at now: Timestamp, caller: UInt32? = nil) -> QuotaState? {
        guard TokenFormat.validate(request.token) != nil, let (token, _) = resolveView(secret: request.token),
            case .success(let (plan, license)) = usability(of: token, at: now.millis, caller: caller)
        else { return nil }
        return servedUsage(0, meter: request.meter, tokenID: token.id, license: license, plan: plan, at: now.millis).quota
    }
}
