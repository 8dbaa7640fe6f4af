#!/usr/bin/env python3
"""Fleet mode tested as a fleet, on one machine (issue 18 item 7, Protocol/FLEET.md).

A throwaway PostgreSQL cluster (Debian's initdb and pg_ctl, run as the postgres user, never the system's cluster) in
its own network namespace, and three tollgated hosts, each in its own namespace, joined by veth links on a bridge.
The test talks to each host over its Unix sockets (files, reachable from the root namespace); the hosts reach
PostgreSQL only over the veth network, so a host's link going down is a real partition.

Under mixed load from every host (checks with cost, METERs, issues, revocations) it kills hosts with SIGKILL and
PostgreSQL with an immediate shutdown at random moments, partitions a host for longer and for shorter than the
revocation horizon H, and restarts. It asserts:

- every acknowledged change (issued token, revocation, METER) is present on every host after catch-up;
- while connected, a revoked token, once a host has denied it, is never admitted there again, and every host
  denies it within H;
- a partitioned host admits no token revoked elsewhere more than H after the revocation was acknowledged, and
  answers fleet_stale once H has passed since its last catch-up; a partition shorter than H costs no fleet_stale;
- idempotency keys are claimed in PostgreSQL: a METER whose outcome was unknown is retried with the same key on
  another host, and the usage export of the METER-only meter on every host equals the acknowledged sum exactly (each
  key counted once); one key sent to every host at once is counted once; a METER left unconfirmed on a host that is
  then killed is counted nowhere until its retry, and then once everywhere;
- rate limits are split by the live-host count (heartbeat rows): each host admits burst / N, and after a host dies
  the others' share grows to burst / (N - 1);
- the revocation-propagation latency across the three hosts (p50/p99) is measured and printed, not asserted.

Usage: fleet.py TOLLGATED_BINARY. Rounds of faults: TOLLGATE_FLEET_ROUNDS (default 2; the long run uses more).
Prints `ok N - ...` / `not ok N - ...` and `N passed, M failed`. Needs root (network namespaces); where namespaces
cannot be made it prints `# SKIP <reason>` and `0 passed, 0 failed`.
"""
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "clients", "python"))
import tollgate_client as tg  # noqa: E402

HORIZON_MS = 5000
POLL_MS = 250
HOSTS = 3
ROUNDS = int(os.environ.get("TOLLGATE_FLEET_ROUNDS", "2"))
PORT = 55432

passed = 0
failed = 0


def report(ok, name, detail=""):
    global passed, failed
    if ok:
        passed += 1
        print(f"ok {passed + failed} - {name}", flush=True)
    else:
        failed += 1
        print(f"not ok {passed + failed} - {name}" + (f": {detail}" if detail else ""), flush=True)


def run(*args, check=True, **kw):
    return subprocess.run(args, check=check, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def skip(reason):
    print(f"# SKIP {reason}")
    print("0 passed, 0 failed")
    sys.exit(0)


def wait_for(condition, timeout, what):
    """Waits for a condition by re-checking it (each check is a real request); fails after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.02)
    raise TimeoutError(f"{what} did not happen within {timeout} s")


class Network:
    """Namespaces tgdb-S, tgh1-S… with veth pairs on a bridge tgbr-S; addresses 10.77.X.0/24."""

    def __init__(self):
        self.suffix = "%04x" % random.randrange(0x10000)
        self.net = random.randrange(1, 250)
        self.bridge = f"tgbr{self.suffix}"
        self.namespaces = []
        self.made_bridge = False

    def address(self, index):  # 0: the database, 1..: the hosts
        return f"10.77.{self.net}.{1 if index == 0 else 10 + index}"

    def ns(self, index):
        return f"tg{'db' if index == 0 else 'h%d' % index}-{self.suffix}"

    def veth(self, index):
        return f"v{'d' if index == 0 else index}{self.suffix}"

    def setup(self, count):
        run("ip", "link", "add", self.bridge, "type", "bridge")
        self.made_bridge = True
        run("ip", "link", "set", self.bridge, "up")
        for index in range(count + 1):
            ns, veth = self.ns(index), self.veth(index)
            run("ip", "netns", "add", ns)
            self.namespaces.append(ns)
            run("ip", "link", "add", veth, "type", "veth", "peer", "name", veth + "h")
            run("ip", "link", "set", veth, "netns", ns)
            run("ip", "link", "set", veth + "h", "master", self.bridge)
            run("ip", "link", "set", veth + "h", "up")
            run("ip", "-n", ns, "addr", "add", self.address(index) + "/24", "dev", veth)
            run("ip", "-n", ns, "link", "set", veth, "up")
            run("ip", "-n", ns, "link", "set", "lo", "up")

    def partition(self, index, down):
        run("ip", "-n", self.ns(index), "link", "set", self.veth(index), "down" if down else "up")

    def teardown(self):
        for ns in self.namespaces:
            run("ip", "netns", "del", ns, check=False)
        if self.made_bridge:
            run("ip", "link", "del", self.bridge, check=False)


class Database:
    def __init__(self, work, network):
        self.work = work
        self.network = network
        versions = sorted(os.listdir("/usr/lib/postgresql")) if os.path.isdir("/usr/lib/postgresql") else []
        if not versions:
            skip("Debian's postgresql is not installed (scripts/setup.sh installs it)")
        self.bin = f"/usr/lib/postgresql/{versions[-1]}/bin"
        self.data = os.path.join(work, "pgdata")
        self.socket_dir = work

    def pg(self, *args):
        return run("ip", "netns", "exec", self.network.ns(0), "runuser", "-u", "postgres", "--", *args)

    def init(self):
        run("runuser", "-u", "postgres", "--", f"{self.bin}/initdb", "-D", self.data, "-A", "trust", "-U", "tollgate")
        with open(os.path.join(self.data, "pg_hba.conf"), "a") as f:
            f.write(f"host all all 10.77.{self.network.net}.0/24 trust\n")
        self.start()
        run(f"{self.bin}/psql", "-h", self.socket_dir, "-p", str(PORT), "-U", "tollgate", "-d", "postgres", "-qc", "CREATE DATABASE tollgate")

    def start(self):
        options = f"-c listen_addresses={self.network.address(0)} -c unix_socket_directories={self.socket_dir} -p {PORT} -c fsync=on"
        self.pg(f"{self.bin}/pg_ctl", "-D", self.data, "-o", options, "-l", os.path.join(self.work, "pg.log"), "-w", "start")

    def crash(self):
        self.pg(f"{self.bin}/pg_ctl", "-D", self.data, "-m", "immediate", "stop")

    def stop(self):
        if os.path.exists(os.path.join(self.data, "postmaster.pid")):
            run("runuser", "-u", "postgres", "--", f"{self.bin}/pg_ctl", "-D", self.data, "-m", "immediate", "stop", check=False)

    def sql(self, query):
        return run(f"{self.bin}/psql", "-h", self.socket_dir, "-p", str(PORT), "-U", "tollgate", "-d", "tollgate", "-Atqc", query).stdout.strip()


class Host:
    def __init__(self, index, binary, work, network):
        self.index = index
        self.binary = binary
        self.network = network
        self.dir = os.path.join(work, f"h{index}")
        os.makedirs(self.dir, exist_ok=True)
        self.api = os.path.join(self.dir, "api.sock")
        self.admin = os.path.join(self.dir, "admin.sock")
        self.log = os.path.join(self.dir, "tollgated.log")
        self.config = os.path.join(self.dir, "config.json")
        self.proc = None
        with open(self.config, "w") as f:
            json.dump({
                "state_dir": self.dir, "usage_flush_interval_ms": 50,
                "access": {"admin": {"uids": [0]}},
                "fleet": {
                    "enabled": True, "host_id": f"h{index}", "host": network.address(0), "port": PORT,
                    "database": "tollgate", "user": "tollgate",
                    "revocation_horizon_ms": HORIZON_MS, "poll_interval_ms": POLL_MS,
                    "commit_timeout_ms": 4000, "query_timeout_ms": 1500,
                },
            }, f)

    def start(self):
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                ["ip", "netns", "exec", self.network.ns(self.index), self.binary, "--config", self.config,
                 "--socket", self.api, "--admin-socket", self.admin],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        wait_for(lambda: self.proc.poll() is None and tg.socket_accepts(self.api) and tg.socket_accepts(self.admin)
                 or (self.proc.poll() is not None and self.fail_start()), 60, f"host {self.index} serving")

    def fail_start(self):
        raise RuntimeError(f"host {self.index} exited {self.proc.returncode}:\n{self.tail()}")

    def tail(self):
        with open(self.log, "rb") as f:
            return f.read()[-3000:].decode("utf-8", "replace")

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()

    def admin_client(self):
        return tg.Client(self.admin, timeout=10)

    def stats(self):
        with self.admin_client() as c:
            return c.stats_map()


class Ledger:
    """What the clients were told, per outcome: acknowledged, refused (not made), unknown (may or may not be made)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.tokens = {}          # token id -> secret, acknowledged issues
        self.revoked = {}         # token id -> monotonic time the revocation was acknowledged
        self.meter_keys = set()   # idempotency keys acknowledged (counted once each, quantity 1)
        self.meters_unknown = 0   # answers that did not come (retried with the same key until one did)
        self.meter_duplicates = 0  # retries answered 'duplicate': the key was counted by an earlier try
        self.refused = 0
        self.meter_denied = []    # METERs denied (must stay empty: the load's tokens are never revoked)
        self.load_secrets = []    # tokens the load uses; never revoked, so a retried METER is never denied
        self.last_status = ""     # the last error a METER try was answered with


def main():
    if len(sys.argv) != 2:
        print(__doc__)
        sys.exit(2)
    binary = os.path.abspath(sys.argv[1])
    if os.geteuid() != 0:
        skip("needs root to make network namespaces")
    probe = f"tgprobe{os.getpid()}"
    if subprocess.run(["ip", "netns", "add", probe], capture_output=True).returncode != 0:
        skip("ip netns add failed: network namespaces are not available here")
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)

    work = tempfile.mkdtemp(prefix="tollgate-fleet-")
    os.chmod(work, 0o755)
    shutil.chown(work, "postgres")
    network = Network()
    database = Database(work, network)
    hosts = []
    try:
        network.setup(HOSTS)
        database.init()
        hosts = [Host(i, binary, work, network) for i in range(1, HOSTS + 1)]
        for host in hosts:
            host.start()
        scenario(hosts, network, database)
    except Exception as error:  # a set-up failure or an unexpected exception is a failure, with the logs
        report(False, "the fleet scenario ran to its end", f"{type(error).__name__}: {error}")
        for host in hosts:
            print(f"# host {host.index} log tail:\n" + "\n".join("#   " + l for l in host.tail().splitlines()[-25:]))
    finally:
        for host in hosts:
            host.stop()
        database.stop()
        network.teardown()
        shutil.rmtree(work, ignore_errors=True)
    print(f"{passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


def connected(host):
    try:
        s = host.stats()
        return s.get("fleet.connected") == "1" and s.get("fleet.stale") == "0"
    except Exception:
        return False


def check(host, secret, cost=0):
    with tg.Client(host.api, timeout=10) as c:
        return c.check(secret, meter="requests" if cost else "", cost=cost)


def scenario(hosts, network, database):
    ledger = Ledger()
    for host in hosts:
        wait_for(lambda: connected(host), 30, f"host {host.index} connected and caught up")
    report(True, f"{len(hosts)} hosts in their own network namespaces connected to PostgreSQL over veth")

    with hosts[0].admin_client() as c:
        c.plan_put("fleet", entitlements=["read"])
        c.license_put("lic", "customer", "fleet")
    # The plan and license reach every host.
    for host in hosts:
        wait_for(lambda: host_has_license(host), 10, f"license on host {host.index}")
    report(True, "a plan and license put on one host are on every host")

    # Tokens issued on every host, each usable everywhere.
    for n in range(9):
        ledger.load_secrets.append(issue(hosts[n % len(hosts)], ledger)[1])
    missing = [(h.index, t) for h in hosts for t, s in ledger.tokens.items() if not wait_allowed(h, s)]
    report(not missing, "a token issued on any host is admitted on every host", f"{missing[:5]}")

    latencies = measure_revocation_latency(hosts, ledger)
    latencies.sort()
    if latencies:
        p50 = latencies[len(latencies) // 2] * 1000
        p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000
        print(f"# fleet revocation propagation across {len(hosts)} hosts: n={len(latencies)} p50={p50:.1f} ms "
              f"p99={p99:.1f} ms max={latencies[-1] * 1000:.1f} ms (poll {POLL_MS} ms, H {HORIZON_MS} ms; measured, not asserted)")
    report(all(l * 1000 < HORIZON_MS for l in latencies), "while connected, every host denied each revocation within H")

    same_key_on_every_host(hosts, database, ledger)
    rate_split(hosts, ledger, network)

    stop = threading.Event()
    pending = []
    load = [threading.Thread(target=load_loop, args=(hosts, h, ledger, stop, i, pending), daemon=True) for i, h in enumerate(hosts)]
    for thread in load:
        thread.start()
    rng = random.Random(int(os.environ.get("TOLLGATE_FLEET_SEED", str(random.randrange(1 << 30)))))
    print(f"# fleet rounds={ROUNDS}")
    try:
        for round_ in range(ROUNDS):
            faults = ["kill_host", "kill_postgres", "long_partition", "short_partition"]
            rng.shuffle(faults)
            for fault in faults:
                print(f"# fleet round {round_ + 1}: {fault}", flush=True)
                globals()[fault](hosts, network, database, ledger, rng)
                for host in hosts:
                    wait_for(lambda: connected(host), 60, f"host {host.index} connected again after {fault}")
    finally:
        stop.set()
        for thread in load:
            thread.join(60)
    # A METER whose answer never came is retried with its key until one does, as a client would.
    unresolved = [key for secret, key in pending if not meter_until_answered(hosts, hosts[0], secret, key, ledger)]
    report(not unresolved, f"every METER left unanswered by a fault ({len(pending)}) was answered on a retry with its key", f"{unresolved[:5]}")
    unconfirmed_then_killed(hosts, network, database, ledger)

    # Convergence: nothing left in any host's queue for the log, then every host at the log's head, every
    # acknowledged change everywhere.
    head = converge(hosts, database)
    report(True, f"every host caught up to the log head ({head} records)")
    gaps = [h.stats().get("fleet.gaps") for h in hosts]
    report(all(g == "0" for g in gaps), "no host met a gap in the log", f"{gaps}")
    missing = []
    for host in hosts:
        with host.admin_client() as c:
            for token_id in ledger.tokens:
                try:
                    info = c.token_get(token_id)
                except tg.TollgateError as e:
                    missing.append((host.index, token_id, e.status_name))
                    continue
                if token_id in ledger.revoked and not info["revoked_at"]:
                    missing.append((host.index, token_id, "not revoked"))
    report(not missing, f"every acknowledged issue and revocation ({len(ledger.tokens)} tokens, {len(ledger.revoked)} revoked) is on every host",
           f"{missing[:5]}")
    not_denied = [(h.index, t) for h in hosts for t in ledger.revoked if check(h, ledger.tokens[t])["reason"] != tg.REASON["revoked"]]
    report(not not_denied, "every revoked token is denied 'revoked' on every host", f"{not_denied[:5]}")
    # Exact on every host: each acknowledged key counted once, whichever host and try counted it (FLEET.md 10).
    exports = [meter_total(h) for h in hosts]
    acked = len(ledger.meter_keys)
    print(f"# fleet METER exports per host: {exports}")
    report(all(e == acked for e in exports),
           f"every host's exported METER sum equals the acknowledged keys ({acked}), under kills and partitions", f"exports {exports}")
    report(not ledger.meter_denied, "no METER of a token never revoked was denied", f"{ledger.meter_denied[:5]}")
    claimed = int(database.sql("SELECT count(*) FROM tollgate_idempotency_keys WHERE key LIKE 'h%' OR key LIKE 'same-%' OR key LIKE 'killed-%'"))
    report(claimed == acked, f"PostgreSQL holds one claim per acknowledged key ({claimed})", f"claims {claimed}, acknowledged {acked}")
    print(f"# fleet load: {acked} METER keys acknowledged, {ledger.meter_duplicates} of them on a retry answered duplicate, "
          f"{ledger.meters_unknown} tries unanswered or unconfirmed (retried), "
          f"{ledger.refused} refused (fleet_unavailable while cut off; retried)")


def any_live_secret(ledger):
    return ledger.load_secrets[0]


def same_key_on_every_host(hosts, database, ledger):
    """One key sent to every host at once: one of them counts it, the others answer duplicate, and every host's
    export grows by exactly one (the claim in PostgreSQL, FLEET.md 10)."""
    secret = any_live_secret(ledger)
    converge(hosts, database)
    before = [meter_total(h) for h in hosts]
    answers = [None] * len(hosts)
    start = threading.Barrier(len(hosts))

    def send(i):
        start.wait()
        answers[i] = meter_once(hosts[i], secret, "same-1", ledger)
    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(hosts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    ledger.meter_keys.add("same-1")
    for host in hosts:
        wait_for(lambda: meter_total(host) > before[hosts.index(host)], 10, f"the METER on host {host.index}")
    grown = [meter_total(h) - b for h, b in zip(hosts, before)]
    report(sorted(answers) == ["acked"] + ["duplicate"] * (len(hosts) - 1) and grown == [1] * len(hosts),
           "one idempotency key sent to every host at once is counted once, on every host", f"answers {answers}, growth {grown}")
    # The same key again, later, on each host: a duplicate everywhere.
    again = [meter_once(h, secret, "same-1", ledger) for h in hosts]
    report(again == ["duplicate"] * len(hosts) and [meter_total(h) - b for h, b in zip(hosts, before)] == [1] * len(hosts),
           "the key repeated later on any host is answered duplicate and not counted", f"answers {again}")


def converge(hosts, database):
    """Waits until nothing is left in any host's queue for the log and every host is at the log's head."""
    for host in hosts:
        wait_for(lambda: host.stats().get("fleet.queued") == "0", 60, f"host {host.index} has committed what it queued")
    head = int(database.sql("SELECT seq FROM tollgate_log_head"))
    for host in hosts:
        wait_for(lambda: int(host.stats().get("fleet.position", "0")) >= head, 30, f"host {host.index} at the log head {head}")
    return head


def unconfirmed_then_killed(hosts, network, database, ledger):
    """The gap FLEET.md 10 closes: a METER a host accepted but could not commit (cut off), the host then killed.
    It is counted nowhere (not even on that host, after its restart) until the client retries its key elsewhere,
    and then once on every host."""
    victim, other = hosts[-1], hosts[0]
    secret = any_live_secret(ledger)
    converge(hosts, database)
    before = [meter_total(h) for h in hosts]
    network.partition(victim.index, True)
    try:
        outcome = meter_once(victim, secret, "killed-1", ledger)
        counted_there = meter_total(victim) - before[-1]
        victim.kill()
    finally:
        network.partition(victim.index, False)
    victim.start()
    wait_for(lambda: connected(victim), 60, f"host {victim.index} connected after its restart")
    print(f"# the cut-off host answered the METER: {ledger.last_status} (fleet_unconfirmed: it was queued when killed)")
    report(outcome is None and counted_there == 0 and meter_total(victim) == before[-1],
           f"a METER unconfirmed on host {victim.index}, then killed: not counted there, before or after the restart",
           f"outcome {outcome}, counted {counted_there}, after restart {meter_total(victim) - before[-1]}")
    meter_until_answered(hosts, other, secret, "killed-1", ledger)
    for host in hosts:
        wait_for(lambda: meter_total(host) - before[hosts.index(host)] >= 1, 10, f"the retried METER on host {host.index}")
    grown = [meter_total(h) - b for h, b in zip(hosts, before)]
    report(grown == [1] * len(hosts), "its retry with the same key on another host is counted once on every host", f"growth {grown}")


def live_hosts(host):
    try:
        return int(host.stats().get("fleet.live_hosts", "0"))
    except Exception:
        return 0


def burst_on(host, secret, tries=60):
    """Checks as fast as one connection goes: (admitted, seconds it took)."""
    began = time.monotonic()
    with tg.Client(host.api, timeout=10) as c:
        admitted = sum(c.check(secret)["decision"] for _ in range(tries))
    return admitted, time.monotonic() - began


def rate_split(hosts, ledger, network):
    """FLEET.md 9: a rate rule of rate r and burst b is enforced on each of N live hosts as floor(r/N), floor(b/N)
    (at least 1). With r = 3/s, b = 30: each host admits 10 + at most 1 a second; the fleet at most 30 + 3 a second.
    After a host dies the others count N - 1 live within 3 polls and admit 15 each."""
    with hosts[0].admin_client() as c:
        c.plan_put("rated", entitlements=["read"], rate_limits=[{"pool": "license", "rate_per_second": 3, "burst": 30}])
        c.license_put("rated-1", "customer", "rated")
        c.license_put("rated-2", "customer", "rated")
    issued = []
    for lic in ("rated-1", "rated-2"):
        def call(lic=lic):
            with hosts[0].admin_client() as c:
                return c.issue(lic, "svc", ["read"])
        issued.append(retrying(call))
    secrets = [r["secret"] for r in issued]
    for host in hosts:
        wait_for(lambda: live_hosts(host) == len(hosts), 30, f"host {host.index} counting {len(hosts)} live hosts")
        for r in issued:  # known there, asked without spending the burst
            wait_for(lambda: token_known(host, r["token"]["token_id"]), 10, f"token on host {host.index}")
    results = [burst_on(h, secrets[0]) for h in hosts]
    total = sum(a for a, _ in results)
    bound_ok = all(10 <= a <= 10 + int(t * 1) + 1 for a, t in results) and total <= 30 + 3 * int(max(t for _, t in results) + 1)
    report(bound_ok, f"rate 3/s burst 30 on {len(hosts)} live hosts: each admitted its share of 10 (+1/s), the fleet at most 30 (+3/s)",
           f"admitted {results}")
    victim = hosts[-1]
    victim.kill()
    try:
        for host in hosts[:-1]:
            wait_for(lambda: live_hosts(host) == len(hosts) - 1, 30, f"host {host.index} counting {len(hosts) - 1} live hosts")
        admitted, took = burst_on(hosts[0], secrets[1])
        report(15 <= admitted <= 15 + int(took) + 1, f"after host {victim.index} died the others counted {len(hosts) - 1} live and admitted 15 each",
               f"admitted {admitted} in {took:.2f} s")
    finally:
        victim.start()
        wait_for(lambda: connected(victim), 60, f"host {victim.index} connected after its restart")


def token_known(host, token_id):
    try:
        with host.admin_client() as c:
            c.token_get(token_id)
        return True
    except tg.TollgateError:
        return False


def host_has_license(host):
    try:
        with host.admin_client() as c:
            c.license_get("lic")
            return True
    except tg.TollgateError:
        return False


def wait_allowed(host, secret):
    try:
        return wait_for(lambda: check(host, secret)["decision"] == 1, 10, "allowed")
    except TimeoutError:
        return False


def retrying(call):
    """Retries a change answered fleet_unavailable (not made) or fleet_unconfirmed (made here, not yet in the log) for
    up to 30 s, as a client does; the calls retried here (ISSUE, REVOKE by id) are harmless to repeat."""
    deadline = time.monotonic() + 30
    while True:
        try:
            return call()
        except tg.TollgateError as e:
            if e.status_name not in ("fleet_unavailable", "fleet_unconfirmed") or time.monotonic() > deadline:
                raise
        time.sleep(0.05)


def issue(host, ledger):
    def call():
        with host.admin_client() as c:
            return c.issue("lic", "svc", ["read"])
    r = retrying(call)
    with ledger.lock:
        ledger.tokens[r["token"]["token_id"]] = r["secret"]
    return r["token"]["token_id"], r["secret"]


def measure_revocation_latency(hosts, ledger):
    """Revokes on each host in turn and times, on the others, from the acknowledgement to the first denial; then
    asserts a host that denied it never admits it again."""
    latencies = []
    for n in range(12):
        origin = hosts[n % len(hosts)]
        token_id, secret = issue(origin, ledger)
        others = [h for h in hosts if h is not origin]
        for h in others:
            wait_allowed(h, secret)
        clients = {h.index: tg.Client(h.api, timeout=10) for h in others}
        try:
            def revoke():
                with origin.admin_client() as c:
                    c.revoke("token_id", token_id)
            retrying(revoke)
            acked = time.monotonic()
            with ledger.lock:
                ledger.revoked[token_id] = acked
            pending = set(clients)
            while pending and time.monotonic() - acked < HORIZON_MS / 1000 * 2:
                for index in list(pending):
                    if clients[index].check(secret)["decision"] == 0:
                        latencies.append(time.monotonic() - acked)
                        pending.discard(index)
            for index, client in clients.items():
                again = [client.check(secret)["decision"] for _ in range(20)]
                if any(again):
                    report(False, f"host {index} admitted a token again after denying its revocation")
        finally:
            for client in clients.values():
                client.close()
    return latencies


def meter_once(host, secret, key, ledger):
    """One METER try: 'acked', 'duplicate' (the key was counted already), or None (no answer, or not made)."""
    try:
        with tg.Client(host.api, timeout=6) as c:
            r = c.meter(secret, "fleet_meter", 1, idempotency_key=key)
        if r["decision"] != 1:  # the load's tokens are never revoked: a denial is a failure, counted
            with ledger.lock:
                ledger.meter_denied.append(r["reason"])
            return None
        return "duplicate" if r["duplicate"] else "acked"
    except tg.TollgateError as e:
        with ledger.lock:
            ledger.last_status = e.status_name
            if e.status_name in ("fleet_unconfirmed", "unavailable"):
                ledger.meters_unknown += 1
            else:
                ledger.refused += 1
        return None
    except (OSError, tg.ProtocolError) as e:
        with ledger.lock:
            ledger.last_status = type(e).__name__
            ledger.meters_unknown += 1
        return None


def meter_until_answered(hosts, first, secret, key, ledger, stop=None, deadline_s=120):
    """A client's retry: the same key, on the next host each time, until one answers. Returns True when answered."""
    deadline = time.monotonic() + deadline_s
    index = hosts.index(first)
    while time.monotonic() < deadline and not (stop is not None and stop.is_set()):
        outcome = meter_once(hosts[index], secret, key, ledger)
        if outcome:
            with ledger.lock:
                ledger.meter_keys.add(key)
                if outcome == "duplicate":
                    ledger.meter_duplicates += 1
            return True
        index = (index + 1) % len(hosts)
        time.sleep(0.05)
    return False


def load_loop(hosts, host, ledger, stop, seed, pending):
    """Mixed load on one host: checks with cost, METERs on their own meter, each key retried on the other hosts
    until answered. A key still unanswered when the load stops goes to `pending`, resolved after the faults."""
    rng = random.Random(seed)
    n = 0
    while not stop.is_set():
        try:
            with tg.Client(host.api, timeout=5) as c:
                while not stop.is_set():
                    secret = rng.choice(ledger.load_secrets)
                    c.check(secret, meter="requests", cost=1)
                    n += 1
                    key = f"h{host.index}-{seed}-{n}"
                    if not meter_until_answered(hosts, host, secret, key, ledger, stop):
                        pending.append((secret, key))
        except (OSError, tg.ProtocolError):
            if stop.wait(0.05):  # the host is down: try again shortly
                return


def meter_total(host):
    with host.admin_client() as c:
        rows = c.usage_export_all(0, 4102444800000)
    return sum(r["quantity"] for r in rows if r["meter"] == "fleet_meter")


def kill_host(hosts, network, database, ledger, rng):
    host = rng.choice(hosts)
    host.kill()
    host.start()
    report(True, f"host {host.index} killed with SIGKILL and restarted")


def kill_postgres(hosts, network, database, ledger, rng):
    database.crash()
    # While PostgreSQL is down, checks still answer from memory (no fleet_stale before H) and changes are refused
    # or left unconfirmed, never acknowledged.
    token_id, secret = next(iter((t, s) for t, s in ledger.tokens.items() if t not in ledger.revoked))
    answers = [check(h, secret)["reason"] for h in hosts]
    database.start()
    report(all(a == 0 for a in answers), "PostgreSQL crashed (immediate shutdown): every host still admitted from memory", f"{answers}")


def long_partition(hosts, network, database, ledger, rng):
    """A host cut off for longer than H: a token revoked elsewhere meanwhile is not admitted there more than H after
    the revocation's acknowledgement, and the host answers fleet_stale after H."""
    victim = rng.choice(hosts)
    other = next(h for h in hosts if h is not victim)
    token_id, secret = issue(other, ledger)
    wait_allowed(victim, secret)
    network.partition(victim.index, True)
    cut = time.monotonic()
    try:
        def revoke():
            with other.admin_client() as c:
                c.revoke("token_id", token_id)
        retrying(revoke)
        acked = time.monotonic()
        with ledger.lock:
            ledger.revoked[token_id] = acked
        violations, saw_stale = [], False
        while time.monotonic() - cut < HORIZON_MS / 1000 * 1.6:
            r = check(victim, secret)
            now = time.monotonic()
            if r["decision"] == 1 and now - acked > HORIZON_MS / 1000:
                violations.append(round(now - acked, 3))
            saw_stale = saw_stale or r["reason"] == tg.REASON["fleet_stale"]
        try:
            with victim.admin_client() as c:
                c.org_put("partitioned", "x")
            refused = False
        except tg.TollgateError as e:
            refused = e.status_name in ("fleet_unavailable", "fleet_unconfirmed")
            with ledger.lock:
                ledger.refused += 1
    finally:
        network.partition(victim.index, False)
    report(not violations, f"partitioned host {victim.index}: the revoked token was not admitted more than H after its revocation",
           f"admitted at {violations[:3]} s")
    report(saw_stale, f"partitioned host {victim.index} answered fleet_stale after H without the fleet log")
    report(refused, f"partitioned host {victim.index} refused a change it could not commit to the fleet log")
    wait_for(lambda: check(victim, secret)["reason"] == tg.REASON["revoked"], 30, "the revocation after healing")
    report(True, f"host {victim.index} caught up after the partition healed and denies the token 'revoked'")


def short_partition(hosts, network, database, ledger, rng):
    """A partition much shorter than H: the host keeps admitting from memory, no fleet_stale."""
    victim = rng.choice(hosts)
    secret = next(iter(s for t, s in ledger.tokens.items() if t not in ledger.revoked))
    network.partition(victim.index, True)
    cut = time.monotonic()
    reasons = set()
    try:
        while time.monotonic() - cut < HORIZON_MS / 1000 / 4:
            reasons.add(check(victim, secret)["reason"])
    finally:
        network.partition(victim.index, False)
    report(reasons == {0}, f"host {victim.index} partitioned for H/4 kept admitting from memory", f"reasons {sorted(reasons)}")


if __name__ == "__main__":
    main()
