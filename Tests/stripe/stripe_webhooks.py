#!/usr/bin/env python3
"""Stripe webhooks against a live tollgated, with Stripe's own Python library (PyPI `stripe`).

Every event is built with the library's object model (`stripe.Event.construct_from`, which gives the
`Subscription`/`Invoice` objects and their `ListObject` items) and signed with the library's signature scheme
(`stripe.WebhookSignature.generate_signature_header`). Before a signed event is sent, the library's own verifier
(`stripe.Webhook.construct_event`) is asked whether it accepts the header, so the daemon is held to what Stripe's
libraries accept, not to our reading of the documentation. The event is posted to the daemon's HTTP listener (its
Unix socket) and the effect is then checked through the api socket with the Python client
(`clients/python/tollgate_client.py`): a CHECK with a token of the license.

    python3 Tests/stripe/stripe_webhooks.py BIN_DIR      (BIN_DIR holds tollgated)

Prints ok / not ok lines and ends with "N passed, M failed"; exits 1 when any check failed. Nothing sleeps to let
time pass: times are relative to the wall clock the daemon reads, and waits poll with a bound.
"""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(here, "..", "..", "clients", "python"))
import tollgate_client as tg  # noqa: E402

sys.path.insert(0, os.path.join(here, "..", "lib"))
from live_suite import LiveDaemon, Results  # noqa: E402

try:
    import stripe  # noqa: E402
except ImportError:
    print("not ok - the stripe package is installed (scripts/setup.sh installs it with pip)")
    print("0 passed, 1 failed")
    sys.exit(1)

results = Results()
result = results.record


# --- the daemon ----------------------------------------------------------------------------------------------

bin_dir = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("TOLLGATE_BIN", "")
tollgated = os.path.join(bin_dir, "tollgated")
if not os.access(tollgated, os.X_OK):
    print(f"not ok - tollgated is at {tollgated} (usage: stripe_webhooks.py BIN_DIR)")
    print("0 passed, 1 failed")
    sys.exit(1)

work = tempfile.mkdtemp(prefix="tg-stripe-")
os.chmod(work, 0o700)
SECRET_OLD = "whsec_" + os.urandom(24).hex()
SECRET_NEW = "whsec_" + os.urandom(24).hex()
SECRET_FORGED = "whsec_" + os.urandom(24).hex()
for name, value in (("old", SECRET_OLD), ("new", SECRET_NEW)):
    path = os.path.join(work, f"whsec-{name}")
    with open(path, "w") as f:
        f.write(value + "\n")
    os.chmod(path, 0o600)

api_sock = os.path.join(work, "api.sock")
admin_sock = os.path.join(work, "admin.sock")
http_sock = os.path.join(work, "http.sock")
config_path = os.path.join(work, "tollgated.json")
WEBHOOK = "/hooks/stripe"
MAX_BODY = 16384


def write_config(secret_files):
    config = json.loads(subprocess.run([tollgated, "--print-default-config"], check=True,
                                       capture_output=True, text=True).stdout)
    config["http"] = {
        "socket": http_sock,
        "stripe": {
            "path": WEBHOOK,
            "secret_files": secret_files,
            "tolerance_s": 300,
            "max_body_bytes": MAX_BODY,
            "mapping": {
                "prices": {"price_basic_m": "basic", "price_pro_m": "pro"},
                "lookup_keys": {"team_monthly": "team"},
                "customers": {"cus_acme": "org_acme"},
                "license_metadata_key": "tollgate_license",
                "license_prefix": "lic_",
            },
        },
    }
    with open(config_path, "w") as f:
        json.dump(config, f)


daemon = LiveDaemon(
    [tollgated, "--state-dir", os.path.join(work, "state"), "--socket", api_sock, "--admin-socket", admin_sock,
     "--config", config_path],
    cwd=work, log_path=os.path.join(work, "tollgated.log"),
    ready=lambda: tg.socket_accepts(api_sock) and tg.socket_accepts(admin_sock) and os.path.exists(http_sock))
start, stop = daemon.start, daemon.stop


def read_log() -> str:
    return daemon.read_log(4000)


# --- HTTP over the Unix socket -----------------------------------------------------------------------------

def post(body: bytes, signature: str | None, path: str = WEBHOOK, method: str = "POST"):
    """One request on a fresh connection; returns (status, body as dict or text)."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    s.connect(http_sock)
    head = f"{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
    if signature is not None:
        head += f"Stripe-Signature: {signature}\r\n"
    head += f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    try:
        s.sendall(head.encode() + body)
    except BrokenPipeError:
        pass  # refused before the body was read (413): the answer is still there
    data = b""
    while True:
        try:
            chunk = s.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        data += chunk
    s.close()
    header, _, payload = data.partition(b"\r\n\r\n")
    status = int(header.split(b" ", 2)[1]) if header else 0
    try:
        return status, json.loads(payload)
    except ValueError:
        return status, payload.decode("utf-8", "replace")


# --- events with Stripe's object model ---------------------------------------------------------------------

counter = 0


def new_event(event_type: str, obj: dict, created: int | None = None) -> stripe.Event:
    global counter
    counter += 1
    return stripe.Event.construct_from({
        "id": f"evt_test_{os.getpid()}_{counter}",
        "object": "event",
        "api_version": "2024-06-20",
        "type": event_type,
        "created": int(time.time()) if created is None else created,
        "livemode": False,
        "pending_webhooks": 1,
        "data": {"object": obj},
    }, None)


def subscription(sub_id: str, price: str, status: str = "active", customer: str = "cus_acme", lookup_key=None,
                 trial_end=None, cancel_at=None, ended_at=None, metadata=None) -> dict:
    now = int(time.time())
    return {
        "id": sub_id, "object": "subscription", "customer": customer, "status": status,
        "metadata": metadata or {}, "billing_cycle_anchor": now,
        "current_period_start": now, "current_period_end": now + 30 * 86400,
        "cancel_at": cancel_at, "cancel_at_period_end": cancel_at is not None, "ended_at": ended_at,
        "trial_end": trial_end,
        "items": {"object": "list", "data": [{
            "id": "si_" + sub_id[4:], "object": "subscription_item",
            "price": {"id": price, "object": "price", "product": "prod_api", "lookup_key": lookup_key},
        }]},
    }


def invoice(sub_id: str, customer: str = "cus_acme") -> dict:
    return {"id": f"in_{os.getpid()}_{counter}", "object": "invoice", "customer": customer,
            "subscription": sub_id, "status": "open"}


def payload_of(event: stripe.Event) -> str:
    return json.dumps(event.to_dict())


def sign(payload: str, secret: str, timestamp: int | None = None) -> str:
    return stripe.WebhookSignature.generate_signature_header(payload, secret,
                                                             timestamp=int(time.time()) if timestamp is None else timestamp)


def stripe_accepts(payload: str, header: str, secret: str) -> bool:
    try:
        stripe.Webhook.construct_event(payload, header, secret)
        return True
    except stripe.SignatureVerificationError:
        return False


def deliver(event: stripe.Event, secret: str = None, payload: str | None = None, header: str | None = None):
    """Signs (unless a header is given) and posts; the library must accept what we sign."""
    secret = secret or SECRET_OLD
    payload = payload or payload_of(event)
    header = header or sign(payload, secret)
    if not stripe_accepts(payload, header, secret):
        raise AssertionError("stripe.Webhook.construct_event refused our own header")
    return post(payload.encode(), header)


# --- checks through the api socket -------------------------------------------------------------------------

def check(token: str, scopes=()) -> tuple[str, bool]:
    with tg.Client(api_sock) as c:
        r = c.check(token, scopes)
    return tg.REASON_NAMES[r["reason"]], r["decision"] == 1


def license_of(license_id: str) -> dict:
    with tg.Client(admin_sock) as a:
        return a.license_get(license_id)


def token_for(license_id: str) -> str:
    with tg.Client(admin_sock) as a:
        return a.issue(license_id, "stripe-test")["secret"]


def stats() -> dict:
    with tg.Client(admin_sock) as a:
        return a.stats_map()


def status_name(info: dict) -> str:
    code = info.get("status", info.get("spec", {}).get("status"))
    return {v: k for k, v in tg.LICENSE_STATUS.items()}.get(code, str(code))


def info_field(info: dict, name: str):
    return info.get(name, info.get("spec", {}).get(name))


# --- the tests ---------------------------------------------------------------------------------------------

def main() -> int:
    write_config([os.path.join(work, "whsec-old"), os.path.join(work, "whsec-new")])
    start()
    with tg.Client(admin_sock) as a:
        a.plan_put("basic", ["read"])
        a.plan_put("pro", ["read", "write"], past_due_grace_s=3600)
        a.plan_put("team", ["read", "write", "admin"], past_due_grace_s=0)
        a.org_put("org_acme", "Acme")

    # Upgrade: created on basic, a token; `write` denied; the upgrade; `write` allowed on the next check.
    sub = "sub_up1"
    status, body = deliver(new_event("customer.subscription.created", subscription(sub, "price_basic_m")))
    result(status == 200 and body.get("outcome") == "applied", "subscription.created puts the license", (status, body))
    info = license_of("lic_up1")
    result(info_field(info, "plan") == "basic" and info_field(info, "org") == "org_acme",
           "the license maps price → plan and customer → organisation", info)
    token = token_for("lic_up1")
    reason, allowed = check(token, ["write"])
    result(not allowed, "before the upgrade: basic does not grant write", reason)
    status, body = deliver(new_event("customer.subscription.updated", subscription(sub, "price_pro_m")))
    reason, allowed = check(token, ["write"])
    result(status == 200 and allowed, "upgrade: the next check is on pro (write allowed)", (status, body, reason))

    # Downgrade by lookup key to team, then to basic.
    deliver(new_event("customer.subscription.updated", subscription(sub, "price_unknown", lookup_key="team_monthly")))
    reason, allowed = check(token, ["admin"])
    result(allowed, "a price mapped by lookup key: team grants admin", reason)
    deliver(new_event("customer.subscription.updated", subscription(sub, "price_basic_m")))
    reason, allowed = check(token, ["write"])
    result(not allowed and check(token, ["read"])[1], "downgrade: write denied, read allowed", reason)

    # Duplicate: the upgrade event again, after an operator changed the plan by hand: not applied again.
    upgrade = new_event("customer.subscription.updated", subscription(sub, "price_pro_m"), created=int(time.time()) + 2)
    payload = payload_of(upgrade)
    header = sign(payload, SECRET_OLD)
    first = deliver(upgrade, payload=payload, header=header)
    with tg.Client(admin_sock) as a:
        a.license_put("lic_up1", "cus_acme", "basic", "active", org="org_acme")
    second = deliver(upgrade, payload=payload, header=header)
    result(first[1].get("outcome") == "applied" and second[0] == 200 and second[1].get("outcome") == "duplicate"
           and info_field(license_of("lic_up1"), "plan") == "basic",
           "a repeated event is acknowledged (2xx) and not applied again", (first, second))

    # Reverse order: the newer event (basic) delivered first, the older one (pro) after: basic stays.
    sub = "sub_rev1"
    base = int(time.time()) + 10
    older = new_event("customer.subscription.updated", subscription(sub, "price_pro_m"), created=base)
    newer = new_event("customer.subscription.updated", subscription(sub, "price_basic_m"), created=base + 60)
    s1 = deliver(newer)
    s2 = deliver(older)
    result(s1[1].get("outcome") == "applied" and s2[0] == 200 and s2[1].get("outcome") == "stale"
           and info_field(license_of("lic_rev1"), "plan") == "basic",
           "events in reverse order: the older one does not overwrite the newer", (s1, s2))

    # Trial start and end: trialing with trial_end → allowed as trialing; trial_will_end keeps it; then active.
    sub = "sub_trial1"
    trial_end = int(time.time()) + 7 * 86400
    deliver(new_event("customer.subscription.created", subscription(sub, "price_pro_m", "trialing", trial_end=trial_end)))
    token = token_for("lic_trial1")
    info = license_of("lic_trial1")
    reason, allowed = check(token, ["write"])
    result(allowed and status_name(info) == "trialing" and info_field(info, "trial_ends_at") == trial_end * 1000,
           "trial start: trialing with trial_end, allowed", (info, reason))
    status, body = deliver(new_event("customer.subscription.trial_will_end", subscription(sub, "price_pro_m", "trialing", trial_end=trial_end)))
    result(status == 200 and check(token, ["write"])[1], "trial_will_end: acknowledged, still allowed", (status, body))
    deliver(new_event("customer.subscription.updated", subscription(sub, "price_pro_m", "active")))
    info = license_of("lic_trial1")
    result(status_name(info) == "active" and check(token, ["write"])[1], "trial end with payment: active", info)
    # A trial that ends without a payment method: Stripe pauses the subscription; paused is inactive until resumed.
    sub = "sub_trial2"
    deliver(new_event("customer.subscription.created", subscription(sub, "price_pro_m", "trialing", trial_end=trial_end)))
    token2 = token_for("lic_trial2")
    deliver(new_event("customer.subscription.paused", subscription(sub, "price_pro_m", "paused")))
    reason, allowed = check(token2, ["read"])
    result(not allowed and reason == "license_inactive", "trial end without payment (paused): denied as inactive", reason)
    deliver(new_event("customer.subscription.resumed", subscription(sub, "price_pro_m", "active")))
    result(check(token2, ["read"])[1], "resumed: allowed again", check(token2, ["read"]))

    # Payment failure then recovery inside the grace (pro: one hour of grace).
    sub = "sub_pay1"
    deliver(new_event("customer.subscription.created", subscription(sub, "price_pro_m")))
    token = token_for("lic_pay1")
    status, body = deliver(new_event("invoice.payment_failed", invoice(sub)))
    info = license_of("lic_pay1")
    reason, allowed = check(token, ["write"])
    result(status == 200 and status_name(info) == "past_due" and allowed,
           "payment failure: past_due, still allowed inside the plan's grace", (status, body, info, reason))
    status, body = deliver(new_event("invoice.paid", invoice(sub)))
    info = license_of("lic_pay1")
    result(status == 200 and status_name(info) == "active" and check(token, ["write"])[1],
           "recovery inside the grace: invoice.paid makes it active", (status, body, info))

    # Payment failure past the grace (team: no grace).
    sub = "sub_pay2"
    deliver(new_event("customer.subscription.created", subscription(sub, "price_unknown", lookup_key="team_monthly")))
    token = token_for("lic_pay2")
    deliver(new_event("invoice.payment_failed", invoice(sub)))
    reason, allowed = check(token, ["read"])
    result(not allowed and reason == "payment_overdue", "payment failure past the grace: denied payment_overdue", reason)
    # Stripe gives up: unpaid → inactive.
    deliver(new_event("customer.subscription.updated", subscription(sub, "price_unknown", "unpaid", lookup_key="team_monthly")))
    reason, allowed = check(token, ["read"])
    result(not allowed and reason == "license_inactive", "unpaid: inactive", reason)

    # Cancellation at period end: still allowed until cancel_at (the validity), then deleted → denied.
    sub = "sub_cancel1"
    deliver(new_event("customer.subscription.created", subscription(sub, "price_pro_m")))
    token = token_for("lic_cancel1")
    cancel_at = int(time.time()) + 20 * 86400
    deliver(new_event("customer.subscription.updated", subscription(sub, "price_pro_m", cancel_at=cancel_at)))
    info = license_of("lic_cancel1")
    result(info_field(info, "valid_until") == cancel_at * 1000 and check(token, ["read"])[1],
           "cancel at period end: valid until cancel_at, allowed meanwhile", info)
    ended = int(time.time())
    deliver(new_event("customer.subscription.deleted", subscription(sub, "price_pro_m", "canceled", cancel_at=cancel_at, ended_at=ended)))
    reason, allowed = check(token, ["read"])
    info = license_of("lic_cancel1")
    result(not allowed and status_name(info) == "canceled" and info_field(info, "valid_until") == ended * 1000,
           "the period ends (subscription.deleted): denied", (reason, info))

    # License by metadata.
    deliver(new_event("customer.subscription.created",
                      subscription("sub_meta1", "price_pro_m", metadata={"tollgate_license": "lic_named"})))
    result(info_field(license_of("lic_named"), "plan") == "pro", "subscription metadata names the license", "")

    # Forged signature: 400 and nothing applied.
    event = new_event("customer.subscription.updated", subscription("sub_up1", "price_pro_m"), created=int(time.time()) + 100)
    payload = payload_of(event)
    forged = sign(payload, SECRET_FORGED)
    status, body = post(payload.encode(), forged)
    result(not stripe_accepts(payload, forged, SECRET_OLD) and status == 400 and info_field(license_of("lic_up1"), "plan") == "basic",
           "a forged signature: 400, not applied", (status, body))
    # A tampered body with a genuine header: 400.
    header = sign(payload, SECRET_OLD)
    tampered = payload.replace("price_pro_m", "price_basic_m")
    status, body = post(tampered.encode(), header)
    result(status == 400 and not stripe_accepts(tampered, header, SECRET_OLD), "a body changed after signing: 400", (status, body))
    status, body = post(payload.encode(), None)
    result(status == 400, "no Stripe-Signature header: 400", (status, body))

    # Expired timestamp: Stripe's library refuses it too (its tolerance is 300 s).
    old_header = sign(payload, SECRET_OLD, timestamp=int(time.time()) - 301)
    status, body = post(payload.encode(), old_header)
    result(not stripe_accepts(payload, old_header, SECRET_OLD) and status == 400
           and info_field(license_of("lic_up1"), "plan") == "basic", "an expired timestamp: 400, not applied", (status, body))

    # Rotated secret: signed with the new secret, and with both (as Stripe does during a roll), both accepted.
    status, body = deliver(event, secret=SECRET_NEW)
    result(status == 200 and info_field(license_of("lic_up1"), "plan") == "pro", "signed with the second (rotated) secret: applied", (status, body))
    event = new_event("customer.subscription.updated", subscription("sub_up1", "price_basic_m"), created=int(time.time()) + 110)
    payload = payload_of(event)
    both = sign(payload, SECRET_NEW) + ",v1=" + sign(payload, SECRET_OLD).split("v1=")[1]
    status, body = post(payload.encode(), both)
    result(status == 200 and body.get("outcome") == "applied", "a header with two v1 signatures: applied", (status, body))
    # The rotation ends: the old secret is removed by a reload (SIGHUP); its signatures are then refused.
    write_config([os.path.join(work, "whsec-new")])
    daemon.proc.send_signal(signal.SIGHUP)
    refused = False
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not refused:
        probe = new_event("customer.subscription.updated", subscription("sub_up1", "price_basic_m"), created=int(time.time()) + 120)
        probe_payload = payload_of(probe)
        refused = post(probe_payload.encode(), sign(probe_payload, SECRET_OLD))[0] == 400
        if not refused:
            time.sleep(0.05)
    status, body = deliver(new_event("customer.subscription.updated", subscription("sub_up1", "price_basic_m"), created=int(time.time()) + 130), secret=SECRET_NEW)
    result(refused and status == 200, "after the rotation's end (reload): the old secret refused, the new one accepted", (refused, status, body))

    # Unknown event types: 2xx, counted, not applied.
    before = int(stats().get("stripe_events_unknown_type", "0"))
    status, body = deliver(new_event("charge.succeeded", {"id": "ch_1", "object": "charge"}), secret=SECRET_NEW)
    after = int(stats().get("stripe_events_unknown_type", "0"))
    result(status == 200 and body.get("outcome") == "ignored" and after == before + 1, "an unknown event type: 200, counted", (status, body, before, after))

    # Body over the limit: 413.
    big = json.dumps({"id": "evt_big", "type": "invoice.paid", "created": int(time.time()), "pad": "x" * (MAX_BODY + 1)})
    status, body = post(big.encode(), sign(big, SECRET_NEW))
    result(status == 413, "a body over the limit: 413", (status, body))
    status, body = post(b"", None, method="GET")
    result(status == 405, "GET on the webhook path: 405", (status, body))

    # Exactly once across a restart: the journal's record carries the event id.
    replay = new_event("customer.subscription.updated", subscription("sub_rev1", "price_pro_m"), created=int(time.time()) + 200)
    payload = payload_of(replay)
    header = sign(payload, SECRET_NEW)
    first = post(payload.encode(), header)
    with tg.Client(admin_sock) as a:
        a.license_put("lic_rev1", "cus_acme", "basic", "active", org="org_acme")
    stop()
    start()
    second = post(payload.encode(), header)
    older = new_event("customer.subscription.updated", subscription("sub_rev1", "price_pro_m"), created=int(time.time()) + 150)
    third = deliver(older, secret=SECRET_NEW)
    result(first[1].get("outcome") == "applied" and second[1].get("outcome") == "duplicate" and third[1].get("outcome") == "stale"
           and info_field(license_of("lic_rev1"), "plan") == "basic",
           "after a restart: a repeat is a duplicate and an older event stale", (first, second, third))

    # Reconciliation: an export of subscriptions (Stripe's list shape, built with the library's ListObject) for
    # webhooks that never came: one new subscription, one changed (lic_pay1 becomes past_due on team), one unmapped.
    listing = stripe.ListObject.construct_from({
        "object": "list", "url": "/v1/subscriptions", "has_more": False,
        "data": [subscription("sub_missed1", "price_pro_m"),
                 subscription("sub_pay1", "price_unknown", "past_due", lookup_key="team_monthly"),
                 subscription("sub_alien1", "price_not_ours")],
    }, None)
    export_path = os.path.join(work, "subscriptions.json")
    with open(export_path, "w") as f:
        json.dump(listing.to_dict(), f)
    def sync(*extra):
        return subprocess.run([os.path.join(bin_dir, "tollgate"), "--admin-socket", admin_sock, "sync", "stripe", export_path,
                               "--config", config_path, *extra], capture_output=True, text=True, timeout=60)
    dry = sync("--dry-run")
    missing_before = True
    try:
        license_of("lic_missed1")
        missing_before = False
    except tg.TollgateError:
        pass
    result(dry.returncode == 0 and "create lic_missed1" in dry.stdout and "update lic_pay1" in dry.stdout and "plan pro -> team" in dry.stdout
           and "skip" in dry.stdout and missing_before and info_field(license_of("lic_pay1"), "plan") == "pro",
           "sync stripe --dry-run shows the differences and changes nothing", dry.stdout + dry.stderr)
    applied = sync()
    token = token_for("lic_missed1")
    pay1 = license_of("lic_pay1")
    result(applied.returncode == 0 and check(token, ["write"])[1] and info_field(pay1, "plan") == "team" and status_name(pay1) == "past_due",
           "sync stripe applies the export through the same mapping", applied.stdout + applied.stderr)
    again = sync("--dry-run")
    result(again.returncode == 0 and "0 to create, 0 to update, 2 unchanged, 1 skipped" in again.stdout,
           "after the sync, the export and the licenses agree", again.stdout + again.stderr)

    # Usage back to Stripe: meter events for whole ended periods only (a re-sent export must not grow a row).
    tollgate = os.path.join(bin_dir, "tollgate")
    hour = int(time.time()) // 3600 * 3600
    def export(start, end):
        return subprocess.run([tollgate, "--admin-socket", admin_sock, "usage", "export", "--format", "stripe-meter-events",
                               "--from", str(start * 1000), "--to", str(end * 1000), "--meter-event", "requests=api_requests"],
                              capture_output=True, text=True, timeout=60)
    current = export(hour, hour + 3600)
    previous = export(hour - 3600, hour)
    result(current.returncode != 0 and "current hour" in current.stderr and previous.returncode == 0,
           "usage export --format stripe-meter-events: ended periods only", (current.returncode, current.stderr, previous.returncode, previous.stderr))

    # Secrets stay out of the log.
    log = daemon.read_log()
    result(all(s not in log for s in (SECRET_OLD, SECRET_NEW)), "no signing secret in the daemon's log", "")
    # Audited with actor stripe and the event id.
    result('tollgate.actor=stripe' in log and "tollgate.stripe.event=evt_test_" in log, "applied events audited with actor stripe and the event id",
           "\n".join(l for l in log.splitlines() if "billing" in l)[-2000:])
    return 0


try:
    main()
except Exception as error:  # a crash is a failure, with the daemon's log
    import traceback
    result(False, f"the suite ran to its end ({error!r})", traceback.format_exc() + "\n" + read_log())
finally:
    stop()
    shutil.rmtree(work, ignore_errors=True)

results.finish()
