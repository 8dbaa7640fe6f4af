#!/usr/bin/env python3
"""Envoy's ext_authz over gRPC against a live tollgated, with a client generated from Envoy's own API definitions.

No Envoy binary runs here (Debian 12 has none), so Envoy's side is played by what Envoy itself is built from: the
`envoy.service.auth.v3` messages and stub of PyPI `xds-protos` (Envoy's published .proto files, compiled) over
`grpcio`. Each CheckRequest is shaped as Envoy's ext_authz filter sends it (attributes.request.http: method, path,
host, lower-case header map), and each CheckResponse is read the way Envoy reads it (status.code OK allows; the
ok_response / denied_response carry headers, status and body). The shipped Envoy configuration
(examples/envoy/envoy-ext-authz-grpc.yaml) is parsed as an Envoy bootstrap with the same definitions, and its
settings are held to what this test relies on.

    python3 Tests/grpc/envoy_ext_authz.py BIN_DIR      (BIN_DIR holds tollgated and tollgate)

Prints ok / not ok lines and ends with "N passed, M failed"; exits 1 when any check failed. Nothing sleeps to let
time pass: waits poll for a condition with a bound.
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

passed = 0
failed = 0


def result(ok: bool, name: str, detail: str = "") -> bool:
    global passed, failed
    if ok:
        passed += 1
        print(f"ok - {name}")
    else:
        failed += 1
        print(f"not ok - {name}")
        for line in str(detail).splitlines()[-30:]:
            print(f"#   {line}")
    return ok


try:
    import grpc
    import yaml
    from google.protobuf import json_format
    from envoy.service.auth.v3 import external_auth_pb2 as authz
    from envoy.service.auth.v3 import external_auth_pb2_grpc as authz_grpc
    from envoy.config.core.v3 import base_pb2
    from envoy.config.bootstrap.v3 import bootstrap_pb2
    from envoy.extensions.filters.http.ext_authz.v3 import ext_authz_pb2
    import envoy.extensions.filters.network.http_connection_manager.v3.http_connection_manager_pb2  # noqa: F401
    import envoy.extensions.filters.http.router.v3.router_pb2  # noqa: F401
    import envoy.extensions.upstreams.http.v3.http_protocol_options_pb2  # noqa: F401
except ImportError as error:
    print(f"not ok - grpcio, xds-protos and PyYAML are installed (scripts/setup.sh installs them with pip): {error}")
    print("0 passed, 1 failed")
    sys.exit(1)

here = os.path.dirname(os.path.abspath(__file__))
repo = os.path.abspath(os.path.join(here, "..", ".."))
bin_dir = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("TOLLGATE_BIN", "")
tollgated = os.path.join(bin_dir, "tollgated")
tollgate = os.path.join(bin_dir, "tollgate")
if not (os.access(tollgated, os.X_OK) and os.access(tollgate, os.X_OK)):
    print(f"not ok - tollgated and tollgate are in {bin_dir!r} (usage: envoy_ext_authz.py BIN_DIR)")
    print("0 passed, 1 failed")
    sys.exit(1)

# --- the shipped Envoy configuration, read with Envoy's own definitions --------------------------------------

example = os.path.join(repo, "examples", "envoy", "envoy-ext-authz-grpc.yaml")
try:
    with open(example) as f:
        bootstrap = json_format.ParseDict(yaml.safe_load(f), bootstrap_pb2.Bootstrap())
    clusters = {c.name: c for c in bootstrap.static_resources.clusters}
    hcm = bootstrap.static_resources.listeners[0].filter_chains[0].filters[0]
    from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm_pb2
    manager = hcm_pb2.HttpConnectionManager()
    hcm.typed_config.Unpack(manager)
    ext = ext_authz_pb2.ExtAuthz()
    manager.http_filters[0].typed_config.Unpack(ext)
    tollgate_cluster = clusters[ext.grpc_service.envoy_grpc.cluster_name]
    pipe = tollgate_cluster.load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.pipe.path
    ok = (not ext.failure_mode_allow and ext.grpc_service.timeout.ToMilliseconds() > 0 and ext.transport_api_version == 2
          and pipe == "/run/tollgate/tollgate-grpc.sock" and manager.http_filters[-1].name == "envoy.filters.http.router")
    result(ok, "the Envoy example parses as an Envoy bootstrap: ext_authz over gRPC to a pipe cluster, failure_mode_allow false, "
               f"a {ext.grpc_service.timeout.ToMilliseconds()} ms timeout, the router last",
           f"failure_mode_allow={ext.failure_mode_allow} timeout={ext.grpc_service.timeout} pipe={pipe}")
    with open(os.path.join(repo, "systemd", "tollgated-grpc.socket")) as f:
        unit = f.read()
    result(f"ListenStream={pipe}\n" in unit and "FileDescriptorName=grpc\n" in unit,
           "the example's pipe path is the socket unit's (tollgated-grpc.socket, FileDescriptorName=grpc)")
except Exception as error:  # noqa: BLE001
    result(False, "the Envoy example parses as an Envoy bootstrap", repr(error))

# --- the daemon ----------------------------------------------------------------------------------------------

work = tempfile.mkdtemp(prefix="tg-grpc-")
state = os.path.join(work, "state")
grpc_sock = os.path.join(work, "grpc.sock")
config_path = os.path.join(work, "tollgated.json")
log_path = os.path.join(work, "tollgated.log")
env = dict(os.environ, TOLLGATE_SOCKET=os.path.join(state, "tollgate.sock"), TOLLGATE_ADMIN_SOCKET=os.path.join(state, "tollgate-admin.sock"))
QUOTA = 5


def write_config(access=None):
    config = {
        "state_dir": state,
        "journal": {"fsync": False},
        "usage_flush_interval_ms": 20,
        "plans": [
            {"id": "gw", "entitlements": ["read", "admin"], "quotas": [{"meter": "requests", "window": "month", "limit": QUOTA}]},
            {"id": "slow", "entitlements": ["read"], "rate_limits": [{"rate_per_second": 1, "burst": 2}]},
        ],
        "http": {
            "socket": os.path.join(work, "http.sock"),
            "default": "deny",
            "token_header": "X-Api-Key",
            "routes": [
                {"method": "GET", "path": "/api/items/{id}", "scopes": ["read"], "meter": "requests", "cost": 1},
                {"method": "GET", "path": "/api/slow/*", "scopes": ["read"]},
                {"method": "*", "path": "/api/admin/*", "scopes": ["admin"]},
            ],
        },
        "grpc": {"socket": grpc_sock, "socket_mode": "0600"},
    }
    if access is not None:
        config["grpc"]["access"] = access
    with open(config_path, "w") as f:
        json.dump(config, f)


def read_log() -> str:
    try:
        with open(log_path, "rb") as f:
            return f.read()[-4000:].decode("utf-8", "replace")
    except OSError:
        return ""


def wait_for(condition, seconds: float = 30) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


def tg(*args, stdin=None) -> subprocess.CompletedProcess:
    return subprocess.run([tollgate, *args], env=env, input=stdin, capture_output=True, text=True, timeout=60)


write_config()
log = open(log_path, "ab")
proc = subprocess.Popen([tollgated, "--config", config_path], cwd=work, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)


def cleanup():
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    shutil.rmtree(work, ignore_errors=True)


try:
    if not result(wait_for(lambda: os.path.exists(grpc_sock) and os.path.exists(env["TOLLGATE_ADMIN_SOCKET"]) or proc.poll() is not None)
                  and proc.poll() is None and oct(os.stat(grpc_sock).st_mode & 0o777) == "0o600",
                  "tollgated serves the grpc socket (mode 0600 from grpc.socket_mode)", read_log()):
        raise SystemExit

    def issue(name: str, license_id: str, scope: str, revoke: bool = False):
        out = tg("issue", "--license", license_id, "--subject", f"svc-{name}", "--scope", scope)
        if out.returncode != 0:
            raise RuntimeError(out.stderr)
        secret = out.stdout.strip().splitlines()[-1]
        token_id = next(word for line in out.stderr.splitlines() for word in line.split() if word.startswith("tok_"))
        if revoke:
            r = tg("revoke", "--secret", "-", "--reason", "grpc test", stdin=secret + "\n")
            if r.returncode != 0:
                raise RuntimeError(r.stderr)
        return secret, token_id

    for lic, plan in (("lic-gw", "gw"), ("lic-slow", "slow")):
        r = tg("license", "set", lic, "--plan", plan)
        if r.returncode != 0:
            raise RuntimeError(r.stderr)
    good, good_id = issue("ok", "lic-gw", "read")
    revoked, _ = issue("revoked", "lic-gw", "read", revoke=True)
    slow, _ = issue("slow", "lic-slow", "read")

    channel = grpc.insecure_channel(f"unix:{grpc_sock}")
    stub = authz_grpc.AuthorizationStub(channel)

    def check_request(method: str, path: str, headers: dict) -> authz.CheckRequest:
        """As Envoy's filter builds it: lower-case header names, the path with its query, the host."""
        request = authz.CheckRequest()
        http = request.attributes.request.http
        http.id = "1"
        http.method = method
        http.path = path
        http.host = "api.example"
        http.scheme = "http"
        http.protocol = "HTTP/1.1"
        for name, value in headers.items():
            http.headers[name.lower()] = value
        http.headers[":authority"] = "api.example"
        return request

    def check(method: str, path: str, headers: dict) -> authz.CheckResponse:
        return stub.Check(check_request(method, path, headers), timeout=10)

    def header_map(options) -> dict:
        return {o.header.key.lower(): o.header.value for o in options}

    def body_reason(response) -> str:
        try:
            return json.loads(response.denied_response.body).get("reason", "")
        except ValueError:
            return ""

    # valid token: OK, identity for the upstream, RateLimit-* for the client
    allowed = 0
    r = check("GET", "/api/items/1", {"Authorization": f"Bearer {good}", "X-Tollgate-Token-Id": "tok_forged"})
    up = header_map(r.ok_response.headers)
    down = header_map(r.ok_response.response_headers_to_add)
    if r.status.code == 0 and r.WhichOneof("http_response") == "ok_response":
        allowed += 1
    overwrite = base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD
    result(r.status.code == 0 and up.get("x-tollgate-token-id") == good_id and up.get("x-tollgate-license") == "lic-gw"
           and up.get("x-tollgate-subject") == "svc-ok" and up.get("x-tollgate-plan") == "gw"
           and all(o.append_action == overwrite for o in r.ok_response.headers)
           and down.get("ratelimit-limit") == str(QUOTA) and down.get("ratelimit-remaining") == str(QUOTA - 1)
           and "ratelimit-reset" in down,
           "a valid token: status OK, ok_response sets X-Tollgate-Token-Id/-License/-Subject/-Plan upstream (overwriting a client's copy) "
           "and RateLimit-Limit/-Remaining/-Reset for the client", str(r))

    # the token in the configured header, Envoy's raw header encoding (encode_raw_headers: header_map, raw_value)
    raw = check_request("GET", "/api/items/2", {})
    raw.attributes.request.http.headers.clear()
    raw.attributes.request.http.header_map.headers.add(key="x-api-key", raw_value=good.encode())
    r = stub.Check(raw, timeout=10)
    if r.status.code == 0:
        allowed += 1
    result(r.status.code == 0 and header_map(r.ok_response.headers).get("x-tollgate-token-id") == good_id,
           "the token in http.token_header, sent as Envoy's raw header map (header_map, raw_value): OK", str(r))

    # revoked: 401 denied
    r = check("GET", "/api/items/3", {"Authorization": f"Bearer {revoked}"})
    denied = header_map(r.denied_response.headers)
    result(r.status.code == grpc.StatusCode.UNAUTHENTICATED.value[0] and r.WhichOneof("http_response") == "denied_response"
           and r.denied_response.status.code == 401 and body_reason(r) == "revoked" and denied.get("cache-control") == "no-store"
           and denied.get("content-type") == "application/json",
           "a revoked token: denied_response 401 with {\"reason\":\"revoked\"}, Cache-Control: no-store (status UNAUTHENTICATED)", str(r))

    # no token: 401
    r = check("GET", "/api/items/3", {})
    result(r.status.code != 0 and r.denied_response.status.code == 401 and body_reason(r) == "missing_token",
           "no token: denied 401 missing_token", str(r))

    # missing scope: 403
    r = check("POST", "/api/admin/users", {"Authorization": f"Bearer {good}"})
    result(r.status.code == grpc.StatusCode.PERMISSION_DENIED.value[0] and r.denied_response.status.code == 403
           and body_reason(r) == "insufficient_scope",
           "a token without the route's scope: denied 403 insufficient_scope (status PERMISSION_DENIED)", str(r))

    # no route: 403 under default deny
    r = check("GET", "/elsewhere", {"Authorization": f"Bearer {good}"})
    result(r.status.code != 0 and r.denied_response.status.code == 403 and body_reason(r) == "no_route",
           "a request no route matches: denied 403 no_route (default deny)", str(r))

    # over the quota: 429 with Retry-After
    for i in range(10):
        r = check("GET", f"/api/items/1{i}", {"Authorization": f"Bearer {good}"})
        if r.status.code != 0:
            break
        allowed += 1
    denied = header_map(r.denied_response.headers)
    result(allowed == QUOTA and r.status.code == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0] and r.denied_response.status.code == 429
           and body_reason(r) == "quota_exceeded" and int(denied.get("retry-after", "0")) >= 1 and denied.get("ratelimit-remaining") == "0",
           f"past the quota of {QUOTA}: denied 429 quota_exceeded with Retry-After: {denied.get('retry-after')} (status RESOURCE_EXHAUSTED)",
           f"{allowed} allowed; last: {r}")

    # over a rate limit: 429 with Retry-After
    codes = []
    for i in range(5):
        r = check("GET", f"/api/slow/{i}", {"Authorization": f"Bearer {slow}"})
        codes.append(r.denied_response.status.code if r.status.code else 200)
        if r.status.code:
            break
    denied = header_map(r.denied_response.headers)
    result(codes[-1] == 429 and codes.count(200) >= 1 and body_reason(r) == "rate_limited" and int(denied.get("retry-after", "0")) >= 1,
           f"past a rate limit (1/s, burst 2): denied 429 rate_limited with Retry-After: {denied.get('retry-after')}", f"{codes}: {r}")

    # the metered route counted each OK exactly once
    def usage() -> int:
        year = time.gmtime().tm_year
        out = tg("usage", "export", "--from", f"{year - 1}-01-01T00:00:00Z", "--to", f"{year + 2}-01-01T00:00:00Z",
                 "--license", "lic-gw", "--format", "jsonl")
        return sum(json.loads(line)["quantity"] for line in out.stdout.splitlines() if line.strip() and json.loads(line).get("meter") == "requests")

    wait_for(lambda: usage() == allowed, 10)
    counted = usage()
    result(counted == allowed == QUOTA, f"the metered route counted each allowed Check once (usage export {counted} = {allowed} OK answers)")

    # malformed requests: clean gRPC errors, and the daemon keeps serving
    raw_call = channel.unary_unary("/envoy.service.auth.v3.Authorization/Check")
    errors = []
    for name, payload in (("not protobuf", b"\xff\xff\xff\xff"), ("an empty CheckRequest", b""),
                          ("a truncated field", b"\x0a\x10\x22")):
        try:
            raw_call(payload, timeout=10)
            errors.append(f"{name}: answered")
        except grpc.RpcError as error:
            if error.code() == grpc.StatusCode.OK or not error.details():
                errors.append(f"{name}: {error.code()} {error.details()!r}")
            else:
                print(f"# {name}: {error.code().name}: {error.details()}")
    try:
        stub.Check(authz.CheckRequest(), timeout=10)
        errors.append("a CheckRequest without attributes: answered")
    except grpc.RpcError as error:
        if error.code() != grpc.StatusCode.INVALID_ARGUMENT:
            errors.append(f"a CheckRequest without attributes: {error.code()}")
    r = check("GET", "/api/admin/x", {"Authorization": f"Bearer {good}"})
    result(not errors and r.denied_response.status.code == 403 and proc.poll() is None,
           "malformed requests (not protobuf, truncated, no HTTP attributes) get gRPC errors with a message; the daemon keeps serving",
           "\n".join(errors) + "\n" + read_log())

    # an unknown gRPC method: UNIMPLEMENTED
    try:
        channel.unary_unary("/envoy.service.auth.v2.Authorization/Check")(b"", timeout=10)
        result(False, "the v2 API (not served) is UNIMPLEMENTED")
    except grpc.RpcError as error:
        result(error.code() == grpc.StatusCode.UNIMPLEMENTED, "the v2 API (not served) is UNIMPLEMENTED", str(error.code()))

    # the allow-list, changed by a reload: a peer not on it is disconnected before any RPC
    write_config(access={"uids": [os.geteuid() + 1]})
    proc.send_signal(signal.SIGHUP)
    wait_for(lambda: "configuration reloaded" in read_log(), 20)
    # A new connection: grpcio would otherwise reuse the one opened before the reload (its global subchannel pool).
    refused = grpc.insecure_channel(f"unix:{grpc_sock}", options=[("grpc.use_local_subchannel_pool", 1)])
    try:
        authz_grpc.AuthorizationStub(refused).Check(check_request("GET", "/api/items/1", {"Authorization": f"Bearer {good}"}), timeout=5)
        result(False, "after a reload, a peer not on grpc.access is refused")
    except grpc.RpcError as error:
        result(error.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED),
               f"after a reload, a peer not on grpc.access is disconnected ({error.code().name}); the daemon runs on",
               f"{error.code()} {error.details()}")
    refused.close()
    channel.close()
    result(proc.poll() is None and "grpc connection from a peer not on the allow-list closed" in read_log(),
           "the refusal is logged, and the daemon is still up", read_log())

    # no secret in the log
    log_text = read_log()
    result(good not in log_text and revoked not in log_text and slow not in log_text, "no token secret in the daemon's log")
except SystemExit:
    pass
except Exception as error:  # noqa: BLE001
    result(False, "the gRPC suite ran to its end", f"{error!r}\n{read_log()}")
finally:
    cleanup()

print(f"{passed} passed, {failed} failed")
sys.exit(0 if failed == 0 else 1)
