#!/usr/bin/env python3
"""Bursts of never-reading METER clients against a real tollgated (issue 11's scenario), measured.

Each burst: CLIENTS connections pipeline METERs as fast as the daemon reads them and never read an answer, for
SECONDS; then they disconnect. During the burst a fresh admin client times ISSUE + REVOKE; afterwards the script
waits until nothing waits for the journal (STATS journal_pending and durable_backlog at 0) and for the heap to be
given back. It reports RSS idle, the peak of each burst (sampled every 50 ms) and RSS after each burst; then a last
burst is interrupted by SIGTERM and the time to exit is reported. One line per measurement, `# ...`, and a closing
"N passed, M failed" over its checks (a ceiling on RSS after bursts, answers during bursts, exit on SIGTERM).

    python3 scripts/backlog-bursts.py --tollgated .build/release/tollgated [--clients 40] [--seconds 12] [--bursts 3]
"""
import argparse
import json
import os
import selectors
import signal
import socket
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "clients", "python"))
import tollgate_client as tg  # noqa: E402


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return 0.0


def rss_parts(pid: int) -> str:
    """Anonymous (heap) and file-backed resident memory: a mapped journal or snapshot counts in RSS too."""
    parts = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key = line.split(":")[0]
            if key in ("RssAnon", "RssFile"):
                parts[key] = int(line.split()[1]) / 1024.0
    return f"anon {parts.get('RssAnon', 0):.1f}, file {parts.get('RssFile', 0):.1f}"


def start(binary: str, d: str):
    config = os.path.join(d, "config.json")
    with open(config, "w") as f:
        json.dump({"state_dir": d, "journal": {"fsync": True}, "log_level": os.environ.get("TOLLGATE_LOG_LEVEL", "notice"),
                   "limits": {"max_connections": 4096}}, f)
    api, admin = os.path.join(d, "api.sock"), os.path.join(d, "admin.sock")
    log = open(os.path.join(d, "tollgated.log"), "ab")
    proc = __import__("subprocess").Popen([binary, "--config", config, "--socket", api, "--admin-socket", admin],
                                          cwd=d, stdout=log, stderr=log, stdin=__import__("subprocess").DEVNULL)
    deadline = time.monotonic() + 30
    while not (tg.socket_accepts(api) and tg.socket_accepts(admin)):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("tollgated did not start")
        time.sleep(0.05)
    return proc, api, admin


def flood(api: str, frame: bytes, clients: int, seconds: float, stop: threading.Event, sent: list):
    """Never-reading clients: write whole batches of METERs while the kernel takes them, never read."""
    batch = frame * 512
    sel = selectors.DefaultSelector()
    conns = []
    for _ in range(clients):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(api)
        s.setblocking(False)
        conns.append([s, 0])
        sel.register(s, selectors.EVENT_WRITE, conns[-1])
    end = time.monotonic() + seconds
    total = 0
    while time.monotonic() < end and not stop.is_set():
        for key, _ in sel.select(timeout=0.05):
            c = key.data
            try:
                n = c[0].send(batch[c[1]:])
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                sel.unregister(c[0])
                continue
            total += n
            c[1] = (c[1] + n) % len(batch)
    for s, _ in conns:
        s.close()
    sent.append(total // len(frame))


def wait_quiet(admin: str, timeout: float) -> float:
    started = time.monotonic()
    c = tg.Client(admin, timeout=60)
    try:
        while time.monotonic() - started < timeout:
            st = c.stats_map()
            if st.get("journal_pending") == "0" and st.get("durable_backlog") == "0":
                return time.monotonic() - started
            time.sleep(0.05)
    finally:
        c.close()
    return -1.0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tollgated", required=True)
    ap.add_argument("--clients", type=int, default=40)
    ap.add_argument("--seconds", type=float, default=12)
    ap.add_argument("--bursts", type=int, default=3)
    ap.add_argument("--settle", type=float, default=15, help="seconds allowed after a burst for memory to come back")
    ap.add_argument("--rss-after-margin-mib", type=float, default=40,
                    help="how far above idle RSS may stay once a burst is over (three bursts must not ratchet it up)")
    a = ap.parse_args()
    passed = failed = 0

    def check(ok: bool, what: str):
        nonlocal passed, failed
        print(("ok " if ok else "not ok ") + what, flush=True)
        passed, failed = passed + ok, failed + (not ok)

    d = tempfile.mkdtemp(prefix="tg-bursts-")
    proc, api, admin = start(a.tollgated, d)
    try:
        A = tg.Client(admin, timeout=120)
        A.plan_put("burst", ["*"])
        A.license_put("lic_burst", "Burst Test", "burst")
        token = A.issue("lic_burst", "burst", ["*"])["secret"]
        frame = tg.encode_request(0x11, {"token": token, "meter": "events", "quantity": 1, "idempotency_key": ""}, 1)
        time.sleep(1)
        idle = rss_mib(proc.pid)
        print(f"# RSS idle {idle:.1f} MiB", flush=True)
        for burst in range(1, a.bursts + 1):
            stop, sent, peak = threading.Event(), [], [0.0]
            t = threading.Thread(target=flood, args=(api, frame, a.clients, a.seconds, stop, sent))
            t.start()
            answered = []

            def probe():
                time.sleep(a.seconds / 3)
                started = time.monotonic()
                issued = A.issue("lic_burst", f"probe-{burst}", ["read"])
                A.revoke(1, issued["token"]["token_id"], "probe")
                answered.append(time.monotonic() - started)
            p = threading.Thread(target=probe)
            p.start()
            while t.is_alive():
                peak[0] = max(peak[0], rss_mib(proc.pid))
                time.sleep(0.05)
            p.join()
            drained = wait_quiet(admin, 300)
            deadline = time.monotonic() + a.settle
            after = rss_mib(proc.pid)
            while time.monotonic() < deadline and after > idle + 20:
                time.sleep(0.25)
                after = rss_mib(proc.pid)
            st = A.stats_map()
            print(f"# burst {burst}: {a.clients} clients x {a.seconds:.0f} s, {sent[0]} METERs sent; RSS peak {peak[0]:.1f} MiB, "
                  f"after {after:.1f} MiB ({rss_parts(proc.pid)}); drained {drained:.2f} s after the clients left; ISSUE+REVOKE during the burst "
                  f"{answered[0] * 1000:.0f} ms; durable_backlog_peak {st.get('durable_backlog_peak')}, "
                  f"meters_total {st.get('meters_total')}", flush=True)
            check(bool(answered), f"burst {burst}: ISSUE and REVOKE answered during the burst")
            check(drained >= 0, f"burst {burst}: the backlog drained")
            check(after <= idle + a.rss_after_margin_mib,
                  f"burst {burst}: RSS after the burst {after:.1f} MiB <= idle {idle:.1f} + {a.rss_after_margin_mib:.0f} MiB")
        # A last burst interrupted by SIGTERM: the stop is bounded whatever the backlog.
        stop, sent = threading.Event(), []
        t = threading.Thread(target=flood, args=(api, frame, a.clients, a.seconds, stop, sent))
        t.start()
        time.sleep(a.seconds / 2)
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=60)
        except Exception:
            code = None
        took = time.monotonic() - started
        stop.set()
        t.join()
        print(f"# SIGTERM during a burst: exit {code} after {took:.2f} s", flush=True)
        check(code == 0 and took < 20, f"SIGTERM during a burst exits 0 within 20 s ({took:.2f} s)")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    print(f"{passed} passed, {failed} failed")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
