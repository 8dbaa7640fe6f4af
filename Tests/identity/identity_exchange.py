#!/usr/bin/env python3
"""Identity providers against a live tollgated (issue 17), with independent libraries.

JWTs are minted by PyJWT (PyPI `pyjwt[crypto]`) with RSA, EC and Ed25519 keys from `cryptography`; their JWKS and an
OpenID discovery document are served by a small HTTP server in this process (loopback, a free port), which counts
fetches, can rotate its key and can fail. Exchanges go through the api socket (the spec-only Python client) and
through RFC 8693 on the HTTP listener; SCIM requests are sent in the shapes Okta and Microsoft Entra ID document for
deactivation, reactivation and deletion. Roles are policy: put, changed and deleted by `tollgate apply` and the
admin opcodes, kept across restarts. A second provider's JWKS URL is served by a raw socket server that can accept
a connection and never answer, or close it in the middle of the answer: exchanges with a known kid go on from the
cache, an unknown kid is refused identity_unavailable, and CHECKs issued while the fetch hangs are answered.

    python3 Tests/identity/identity_exchange.py BIN_DIR      (BIN_DIR holds tollgated and tollgate)

Prints ok / not ok lines and ends with "N passed, M failed"; exits 1 when any check failed. Nothing sleeps to let
time pass: waits poll a condition with a bound.
"""
import base64
import hashlib
import hmac
import http.server
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(here, "..", "..", "clients", "python"))
import tollgate_client as tg  # noqa: E402

sys.path.insert(0, os.path.join(here, "..", "lib"))
from live_suite import LiveDaemon, Results  # noqa: E402

try:
    import jwt  # noqa: E402
    from cryptography.hazmat.primitives import serialization  # noqa: E402
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa  # noqa: E402
except ImportError:
    print("not ok - pyjwt[crypto] is installed (scripts/setup.sh installs it with pip)")
    print("0 passed, 1 failed")
    sys.exit(1)

results = Results()
result = results.record


bin_dir = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("TOLLGATE_BIN", "")
tollgated = os.path.join(bin_dir, "tollgated")
tollgate_cli = os.path.join(bin_dir, "tollgate")
if not os.access(tollgated, os.X_OK):
    print(f"not ok - tollgated is at {tollgated} (usage: identity_exchange.py BIN_DIR)")
    print("0 passed, 1 failed")
    sys.exit(1)

# --- keys and the identity provider --------------------------------------------------------------------------

rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
ec_key = ec.generate_private_key(ec.SECP256R1())
ed_key = ed25519.Ed25519PrivateKey.generate()
rotated_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
forger_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def jwk(key, kid: str, alg: str) -> dict:
    algorithm = {"RS256": jwt.algorithms.RSAAlgorithm, "ES256": jwt.algorithms.ECAlgorithm,
                 "EdDSA": jwt.algorithms.OKPAlgorithm}[alg]
    public = algorithm.to_jwk(key.public_key(), as_dict=True)
    public.update({"kid": kid, "use": "sig", "alg": alg})
    return public


class IdP:
    """The provider's published state: which keys the JWKS holds, and whether it answers."""
    lock = threading.Lock()
    keys = [jwk(rsa_key, "rsa-1", "RS256"), jwk(ec_key, "ec-1", "ES256")]
    failing = False
    jwks_fetches = 0
    discovery_fetches = 0
    issuer = ""


class Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        with IdP.lock:
            failing = IdP.failing
            if self.path == "/.well-known/openid-configuration":
                IdP.discovery_fetches += 1
                body = {"issuer": IdP.issuer, "jwks_uri": IdP.issuer + "/keys", "id_token_signing_alg_values_supported": ["RS256", "ES256"]}
            elif self.path == "/keys":
                IdP.jwks_fetches += 1
                body = {"keys": list(IdP.keys)}
            else:
                body = None
        if failing or body is None:
            self.send_response(503 if failing else 404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


idp_server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
IdP.issuer = f"http://127.0.0.1:{idp_server.server_address[1]}"
threading.Thread(target=idp_server.serve_forever, daemon=True).start()
K8S_ISSUER = "https://kubernetes.default.svc.cluster.local"


hang_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
HANG_ISSUER = "https://hanging-idp.example"


class HangingIdP:
    """A JWKS URL on a raw socket: `serve` answers the key set; `hang` reads the request and never answers (until
    the client gives up and closes); `truncate` sends the head and half the body, then closes. Each event is set
    when a request of that mode arrives (and `hang_closed` when the client closed a hanging connection), so the
    test waits on what happened, not on time."""
    mode = "serve"
    requests = {"serve": threading.Event(), "hang": threading.Event(), "truncate": threading.Event()}
    hang_closed = threading.Event()
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)

    @classmethod
    def handle(cls, conn: socket.socket):
        conn.settimeout(120)
        try:
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(4096)
                if not chunk:
                    return
                data += chunk
            mode = cls.mode
            body = json.dumps({"keys": [jwk(hang_key, "hang-1", "RS256")]}).encode()
            if mode == "serve":
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n"
                             + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
            elif mode == "truncate":
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                             + f"Content-Length: {len(body)}\r\n\r\n".encode() + body[: len(body) // 2])
            cls.requests[mode].set()
            if mode == "hang":
                while conn.recv(4096):  # until the daemon gives up and closes
                    pass
                cls.hang_closed.set()
        except OSError:
            pass
        finally:
            conn.close()

    @classmethod
    def serve_forever(cls):
        while True:
            try:
                conn, _ = cls.listener.accept()
            except OSError:
                return
            threading.Thread(target=cls.handle, args=(conn,), daemon=True).start()


HangingIdP.listener.bind(("127.0.0.1", 0))
HangingIdP.listener.listen(16)
threading.Thread(target=HangingIdP.serve_forever, daemon=True).start()
HANG_JWKS = f"http://127.0.0.1:{HangingIdP.listener.getsockname()[1]}/keys"

# --- the daemon ----------------------------------------------------------------------------------------------

work = tempfile.mkdtemp(prefix="tg-identity-")
os.chmod(work, 0o700)
api_sock = os.path.join(work, "api.sock")
admin_sock = os.path.join(work, "admin.sock")
http_sock = os.path.join(work, "http.sock")
config_path = os.path.join(work, "tollgated.json")
k8s_jwks = os.path.join(work, "k8s-jwks.json")
with open(k8s_jwks, "w") as f:
    json.dump({"keys": [jwk(ed_key, "sa-1", "EdDSA")]}, f)
SCIM_SECRET = "scim-" + os.urandom(24).hex()
scim_secret_file = os.path.join(work, "scim-secret")
with open(scim_secret_file, "w") as f:
    f.write(SCIM_SECRET + "\n")
os.chmod(scim_secret_file, 0o600)
ROLE_MAX_TTL = 600

config = json.loads(subprocess.run([tollgated, "--print-default-config"], check=True, capture_output=True, text=True).stdout)
config["http"] = {"socket": http_sock, "token_exchange_path": "/oauth2/token", "scim": {"secret_file": scim_secret_file}}
config["identity"] = {
    "max_token_bytes": 4096, "fetch_timeout_ms": 5000,
    "providers": [
        {"issuer": IdP.issuer, "discovery": True, "min_refresh_interval_s": 1},
        {"issuer": K8S_ISSUER, "jwks_file": k8s_jwks},
        {"issuer": HANG_ISSUER, "jwks_url": HANG_JWKS, "min_refresh_interval_s": 1},
    ],
    "roles": [
        {"name": "ci", "issuer": IdP.issuer, "bound_audiences": ["tollgate"], "bound_claims": {"repository": "acme/*"},
         "bound_claims_type": "glob", "user_claim": "sub", "license_claim": "repository_owner",
         "license_mapping": {"acme": "lic_acme"}, "scopes": ["read", "write"], "max_ttl_s": ROLE_MAX_TTL,
         "leeway_s": {"exp": 5, "nbf": 5, "iat": 5}},
        {"name": "people", "issuer": IdP.issuer, "bound_audiences": ["tollgate-people"], "user_claim": "email",
         "license": "lic_acme", "scopes": ["read"], "scope_claim": "scope", "max_ttl_s": 300},
        {"name": "workloads", "issuer": K8S_ISSUER, "bound_audiences": ["tollgate"],
         "bound_claims": {"kubernetes.io/namespace": ["billing", "reports"]}, "org_claim": "org",
         "org_mapping": {"acme": "org_acme"}, "scopes": ["read"], "max_ttl_s": 900},
        {"name": "hang", "issuer": HANG_ISSUER, "bound_audiences": ["tollgate-hang"], "license": "lic_acme",
         "scopes": ["read"], "max_ttl_s": 300},
    ],
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
    return daemon.read_log()


def http_request(method: str, path: str, body: bytes = b"", headers: dict | None = None):
    """One request over the HTTP listener's Unix socket; (status, headers dict, body bytes)."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(15)
    s.connect(http_sock)
    head = f"{method} {path} HTTP/1.1\r\nHost: localhost\r\n"
    for k, v in (headers or {}).items():
        head += f"{k}: {v}\r\n"
    head += f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    s.sendall(head.encode() + body)
    data = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    s.close()
    header, _, payload = data.partition(b"\r\n\r\n")
    lines = header.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1]) if lines and lines[0] else 0
    fields = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        fields[k.strip().lower()] = v.strip()
    return status, fields, payload


def exchange_http(token: str, token_type: str = "urn:ietf:params:oauth:token-type:jwt",
                  grant: str = "urn:ietf:params:oauth:grant-type:token-exchange", extra: dict | None = None):
    form = {"grant_type": grant, "subject_token": token, "subject_token_type": token_type}
    form.update(extra or {})
    status, fields, payload = http_request("POST", "/oauth2/token", urllib.parse.urlencode(form).encode(),
                                           {"Content-Type": "application/x-www-form-urlencoded"})
    try:
        return status, fields, json.loads(payload)
    except ValueError:
        return status, fields, payload.decode("utf-8", "replace")


def scim(method: str, user: str, body=None, secret: str | None = SCIM_SECRET):
    headers = {"Content-Type": "application/scim+json"}
    if secret is not None:
        headers["Authorization"] = f"Bearer {secret}"
    data = json.dumps(body).encode() if body is not None else b""
    status, fields, payload = http_request(method, f"/scim/v2/Users/{urllib.parse.quote(user, safe='')}", data, headers)
    return status, fields, payload


# --- tokens --------------------------------------------------------------------------------------------------

def claims(**extra) -> dict:
    now = int(time.time())
    c = {"iss": IdP.issuer, "aud": "tollgate", "sub": "repo:acme/api:ref:refs/heads/main", "repository": "acme/api",
         "repository_owner": "acme", "iat": now, "nbf": now, "exp": now + 3600}
    c.update(extra)
    return {k: v for k, v in c.items() if v is not None}


def rs256(c: dict, kid: str = "rsa-1", key=None) -> str:
    return jwt.encode(c, key or rsa_key, algorithm="RS256", headers={"kid": kid})


def es256(c: dict, kid: str = "ec-1") -> str:
    return jwt.encode(c, ec_key, algorithm="ES256", headers={"kid": kid})


def k8s(**extra) -> str:
    now = int(time.time())
    c = {"iss": K8S_ISSUER, "aud": ["tollgate", "https://kubernetes.default.svc"], "sub": "system:serviceaccount:billing:exporter",
         "kubernetes.io/namespace": "billing", "org": "acme", "iat": now, "exp": now + 3600}
    c.update(extra)
    return jwt.encode(c, ed_key, algorithm="EdDSA", headers={"kid": "sa-1"})


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def refusal(token: str) -> str:
    """The reason code EXCHANGE answers on the api socket ('' when it was granted)."""
    try:
        api.exchange(token)
        return ""
    except tg.TollgateError as e:
        return e.message.split(":", 1)[0] if e.status_name in ("exchange_refused", "identity_unavailable") else f"{e.status_name}: {e.message}"


def hang_jwt(kid: str = "hang-1") -> str:
    now = int(time.time())
    return jwt.encode({"iss": HANG_ISSUER, "aud": "tollgate-hang", "sub": "svc-hang", "iat": now, "exp": now + 3600},
                      hang_key, algorithm="RS256", headers={"kid": kid})


def answer_of(token: str) -> str:
    """`status_name code` of an EXCHANGE on its own connection ('ok' when granted): safe from any thread."""
    client = tg.Client(api_sock)
    try:
        client.exchange(token)
        return "ok"
    except tg.TollgateError as e:
        return f"{e.status_name} {e.message.split(':', 1)[0]}"
    finally:
        client.close()


def cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([tollgate_cli, "--socket", api_sock, "--admin-socket", admin_sock, *args], input=stdin,
                          capture_output=True, text=True)


def refetch_while(mode: str, token: str) -> tuple[str, bool]:
    """Sets the hanging IdP to `mode` and exchanges `token` (an unknown kid) in a thread until the daemon's refresh
    reaches the IdP in that mode (the daemon refreshes at most once per second, so an earlier try is answered from
    what it holds). Returns the answer of the exchange that caused the fetch, and whether CHECKs and an exchange with
    a known kid, issued while that fetch was outstanding, were all answered (allowed) before it ended."""
    HangingIdP.mode = mode
    event = HangingIdP.requests[mode]
    event.clear()
    HangingIdP.hang_closed.clear()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        outcome = []
        worker = threading.Thread(target=lambda: outcome.append(answer_of(token)), daemon=True)
        worker.start()
        while worker.is_alive() and not event.is_set():
            event.wait(0.05)
        if not event.is_set():
            worker.join()
            time.sleep(0.2)  # polling for the refresh interval (1 s) to allow the next refresh
            continue
        checks_answered = True
        if mode == "hang":
            # The fetch is hanging now: CHECKs of existing tokens, on connections of their own, concurrently.
            answers = []

            def one_check():
                client = tg.Client(api_sock)
                try:
                    answers.append(client.check(answer_secret, scopes=["read"])["decision"])
                finally:
                    client.close()
            threads = [threading.Thread(target=one_check, daemon=True) for _ in range(8)]
            for t in threads:
                t.start()
            known = answer_of(hang_jwt())  # a known kid, from the cache, meanwhile
            for t in threads:
                t.join(60)
            checks_answered = answers == [1] * 8 and known == "ok" and worker.is_alive() and not HangingIdP.hang_closed.is_set()
        worker.join(120)
        return (outcome[0] if outcome else "no answer"), checks_answered
    return "the IdP never saw the refresh", False


def fetches() -> int:
    with IdP.lock:
        return IdP.jwks_fetches


try:
    start()
    admin = tg.Client(admin_sock)
    api = tg.Client(api_sock)
    admin.plan_put("pro", entitlements=["read", "write"], max_token_lifetime_s=86400)
    admin.org_put("org_acme", name="Acme")
    admin.license_put("lic_acme", customer="Acme", plan="pro", status="active", org="org_acme")

    # --- granted, three algorithms, through discovery and a file ---------------------------------------------
    before = time.time()
    answer = api.exchange(rs256(claims()))
    answer_secret = answer["secret"]
    token = answer["token"]
    result(token["license_id"] == "lic_acme" and token["subject"] == "repo:acme/api:ref:refs/heads/main"
           and sorted(token["scopes"]) == ["read", "write"], "RS256 via discovery: subject and license mapped", answer)
    result(token["expires_at"] <= (before + ROLE_MAX_TTL + 2) * 1000, "the token lives at most the role's max_ttl_s", token)
    result(api.check(answer["secret"], scopes=["write"])["decision"] == 1, "the exchanged token passes CHECK")
    result(IdP.discovery_fetches == 1 and fetches() == 1, "one discovery document and one JWKS fetch",
           f"discovery={IdP.discovery_fetches} jwks={fetches()}")
    es = api.exchange(es256(claims()))
    result(es["token"]["license_id"] == "lic_acme" and fetches() == 1, "ES256 with the cached key set", fetches())
    workload = api.exchange(k8s())
    result(workload["token"]["license_id"] == "lic_acme" and workload["token"]["subject"] == "system:serviceaccount:billing:exporter",
           "EdDSA (Kubernetes-style) from a JWKS file, organisation mapped to its license", workload["token"])
    short = api.exchange(rs256(claims(exp=int(time.time()) + 90)))
    result(short["token"]["expires_at"] <= (int(time.time()) + 91) * 1000, "never beyond the JWT's own exp", short["token"])
    scoped = api.exchange(rs256(claims(aud="tollgate-people", email="alice@example.com", scope="read admin")))
    result(scoped["token"]["scopes"] == ["read"] and scoped["token"]["subject"] == "alice@example.com",
           "audience picks the role; scopes = role ∩ scope claim", scoped["token"])
    derived = None
    try:
        api.derive(answer["secret"], ttl_s=60)
    except tg.TollgateError as e:
        derived = e.status_name
    result(derived == "invalid_argument", "an exchanged token cannot DERIVE further", derived)

    # --- every refusal ---------------------------------------------------------------------------------------
    header = b64url(json.dumps({"alg": "none", "kid": "rsa-1"}).encode())
    body = b64url(json.dumps(claims()).encode())
    result(refusal(f"{header}.{body}.") == "unsigned_token", "alg none is refused")
    public_pem = rsa_key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    hs_header = b64url(json.dumps({"alg": "HS256", "kid": "rsa-1", "typ": "JWT"}).encode())
    signing_input = f"{hs_header}.{body}".encode()
    confused = f"{hs_header}.{body}.{b64url(hmac.new(public_pem, signing_input, hashlib.sha256).digest())}"
    result(refusal(confused) == "algorithm_not_allowed", "HS256 signed with the public key (algorithm confusion) is refused")
    result(refusal(rs256(claims(), key=forger_key)) == "bad_signature", "a signature by another key is refused")
    before_unknown = fetches()
    result(refusal(rs256(claims(), kid="nobody")) == "unknown_key", "an unknown kid is refused after one refresh")
    result(refusal(rs256(claims(), kid="nobody")) == "unknown_key" and fetches() - before_unknown <= 2,
           "repeated unknown kids do not make a fetch each", f"{fetches() - before_unknown} fetches")
    result(refusal(rs256(claims(iss="https://evil.example"))) == "wrong_issuer", "a wrong issuer is refused")
    result(refusal(rs256(claims(aud="someone-else"))) == "wrong_audience", "a wrong audience is refused")
    result(refusal(rs256(claims(exp=int(time.time()) - 60))) == "expired", "an expired JWT is refused (past the leeway)")
    result(refusal(rs256(claims(nbf=int(time.time()) + 600))) == "not_yet_valid", "a JWT not valid yet is refused")
    result(refusal(rs256(claims(iat=int(time.time()) + 600))) == "issued_in_future", "a JWT issued in the future is refused")
    result(refusal(rs256(claims(exp=None))) == "missing_claim", "a JWT without exp is refused")
    result(refusal(rs256(claims(sub=None))) == "missing_claim", "a JWT without the user claim is refused")
    result(refusal(rs256(claims(repository="evil/api"))) == "claim_mismatch", "a bound claim that does not match is refused")
    result(refusal(rs256(claims(repository_owner="globex"))) == "unmapped_claim", "an unmapped license claim is refused")
    result(refusal(rs256(claims(padding="x" * 5000))) == "token_too_large", "a token over max_token_bytes is refused")
    result(refusal(k8s(**{"kubernetes.io/namespace": "default"})) == "claim_mismatch", "a service account of another namespace is refused")
    try:
        api.exchange(rs256(claims()), scopes=["admin"])
        scope_answer = ""
    except tg.TollgateError as e:
        scope_answer = e.message.split(":", 1)[0]
    result(scope_answer == "invalid_scope", "a scope the role does not grant is refused", scope_answer)

    # --- RFC 8693 on the HTTP listener -----------------------------------------------------------------------
    status, fields, body = exchange_http(es256(claims()))
    ok = status == 200 and isinstance(body, dict) and body.get("issued_token_type") == "urn:ietf:params:oauth:token-type:access_token" \
        and body.get("token_type") == "Bearer" and 0 < body.get("expires_in", 0) <= ROLE_MAX_TTL and "no-store" in fields.get("cache-control", "")
    result(ok, "RFC 8693: 200 with access_token, issued_token_type, token_type, expires_in; no-store", (status, fields, body))
    if ok:
        result(api.check(body["access_token"], scopes=["read"])["decision"] == 1, "RFC 8693: the access_token passes CHECK")
    status, _, body = exchange_http(es256(claims()), grant="authorization_code")
    result(status == 400 and body.get("error") == "unsupported_grant_type", "RFC 8693: another grant_type is unsupported_grant_type", body)
    status, _, body = exchange_http(es256(claims()), token_type="urn:ietf:params:oauth:token-type:saml2")
    result(status == 400 and body.get("error") == "invalid_request", "RFC 8693: a non-JWT subject_token_type is invalid_request", body)
    status, _, body = exchange_http(rs256(claims(exp=int(time.time()) - 60)))
    result(status == 400 and body.get("error") == "invalid_request" and body.get("error_description", "").startswith("expired:"),
           "RFC 8693: an expired subject token is invalid_request with its reason", body)
    status, _, body = exchange_http(rs256(claims()), extra={"scope": "admin"})
    result(status == 400 and body.get("error") == "invalid_scope", "RFC 8693: an ungranted scope is invalid_scope", body)
    status, _, _ = http_request("GET", "/oauth2/token")
    result(status == 405, "RFC 8693: GET is 405", status)

    # --- key rotation at the IdP -----------------------------------------------------------------------------
    with IdP.lock:
        IdP.keys = [jwk(rotated_key, "rsa-2", "RS256"), jwk(ec_key, "ec-1", "ES256")]
    rotated = rs256(claims(), kid="rsa-2", key=rotated_key)
    started, reason = time.monotonic(), "unknown_key"
    while reason == "unknown_key" and time.monotonic() - started < 15:
        reason = refusal(rotated)
        if reason == "unknown_key":
            time.sleep(0.2)  # polling for the refresh interval (1 s) to allow the next refresh
    elapsed = time.monotonic() - started
    result(reason == "", "a new kid at the IdP is picked up by a refresh", reason)
    result(fetches() - before_unknown <= 3 + int(elapsed) + 1, "refreshes stay within one per interval", f"{fetches() - before_unknown} fetches in {elapsed:.1f} s")

    # --- an unreachable IdP ----------------------------------------------------------------------------------
    with IdP.lock:
        IdP.failing = True
    result(api.check(answer["secret"])["decision"] == 1, "CHECK of an existing token while the IdP is down")
    result(refusal(es256(claims())) == "", "a known key still verifies while the IdP is down (keys kept)")

    with IdP.lock:
        IdP.failing = False

    # --- SCIM ------------------------------------------------------------------------------------------------
    alice_token = api.exchange(es256(claims(aud="tollgate-people", email="alice@example.com", scope="read")))
    bob_token = api.exchange(es256(claims(aud="tollgate-people", email="bob@example.com", scope="read")))
    status, fields, _ = scim("PATCH", "alice@example.com", {"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                                                           "Operations": [{"op": "replace", "value": {"active": False}}]}, secret="wrong")
    result(status == 401 and "bearer" in fields.get("www-authenticate", "").lower(), "SCIM: a wrong bearer secret is 401", (status, fields))
    result(api.check(alice_token["secret"])["decision"] == 1, "SCIM: a refused request revokes nothing")
    # Okta's deactivation: PATCH with a PatchOp replacing {"active": false}.
    okta_off = {"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": [{"op": "replace", "value": {"active": False}}]}
    status, fields, payload = scim("PATCH", "alice@example.com", okta_off)
    body = json.loads(payload or b"{}")
    result(status == 200 and fields.get("content-type") == "application/scim+json" and body.get("active") is False
           and body.get("id") == "alice@example.com", "SCIM (Okta PATCH active false): 200 application/scim+json", (status, fields, payload))
    result(api.check(alice_token["secret"])["reason"] == tg.REASON["revoked"], "SCIM: the subject's tokens are revoked")
    result(api.check(bob_token["secret"])["decision"] == 1, "SCIM: other subjects' tokens are not")
    revoked_by = admin.token_get(alice_token["token"]["token_id"]).get("revoked_by", "")
    result(revoked_by.startswith("scim"), "SCIM: audited with actor scim", revoked_by)
    result(refusal(es256(claims(aud="tollgate-people", email="alice@example.com", scope="read"))) == "subject_deprovisioned",
           "SCIM: a deprovisioned subject cannot exchange")
    # Restart: the deprovisioned set is durable.
    stop()
    start()
    api = tg.Client(api_sock)
    admin = tg.Client(admin_sock)
    result(refusal(es256(claims(aud="tollgate-people", email="alice@example.com", scope="read"))) == "subject_deprovisioned",
           "SCIM: still deprovisioned after a restart")
    okta_on = {"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": [{"op": "replace", "value": {"active": True}}]}
    status, _, _ = scim("PATCH", "alice@example.com", okta_on)
    again = api.exchange(es256(claims(aud="tollgate-people", email="alice@example.com", scope="read")))
    result(status == 200 and api.check(again["secret"])["decision"] == 1, "SCIM (Okta reactivation): the user can exchange again")
    result(api.check(alice_token["secret"])["reason"] == tg.REASON["revoked"], "SCIM: old tokens stay revoked after reactivation")
    # Entra ID's deactivation: op "Replace", path "active", value the string "False".
    entra_off = {"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                 "Operations": [{"op": "Replace", "path": "active", "value": "False"}]}
    status, _, _ = scim("PATCH", "bob@example.com", entra_off)
    result(status == 200 and api.check(bob_token["secret"])["reason"] == tg.REASON["revoked"], "SCIM (Entra ID PATCH path active 'False'): revoked", status)
    # DELETE (both document it for deprovisioning).
    status, _, payload = scim("DELETE", "alice@example.com")
    result(status == 204 and payload == b"" and api.check(again["secret"])["reason"] == tg.REASON["revoked"], "SCIM DELETE: 204, revoked", (status, payload))
    status, fields, payload = scim("PATCH", "alice@example.com", {"Operations": "nope"})
    result(status == 400 and b"urn:ietf:params:scim:api:messages:2.0:Error" in payload, "SCIM: a malformed PatchOp is a SCIM error 400", (status, payload))

    # --- the CLI: the JWT from standard input and from a file, never argv ------------------------------------
    cli_jwt = es256(claims())
    run = subprocess.run([tollgate_cli, "--socket", api_sock, "--json", "exchange"], input=cli_jwt, capture_output=True, text=True)
    ok = run.returncode == 0 and json.loads(run.stdout or "{}").get("license_id") == "lic_acme"
    result(ok, "tollgate exchange reads the JWT from standard input", run.stdout + run.stderr)
    jwt_file = os.path.join(work, "token.jwt")
    with open(jwt_file, "w") as f:
        f.write(es256(claims(exp=int(time.time()) - 60)) + "\n")
    run = subprocess.run([tollgate_cli, "--socket", api_sock, "exchange", "--token-file", jwt_file], capture_output=True, text=True)
    result(run.returncode == 3 and "expired" in run.stderr, "tollgate exchange --token-file: a refusal exits 3 with its reason", (run.returncode, run.stderr))

    # --- roles are policy: tollgate apply, the admin opcodes, restarts --------------------------------------
    listed = {r["name"]: r for r in admin.role_list_all()}
    result(sorted(listed) == ["ci", "hang", "people", "workloads"], "the configuration's roles are seeded into the state", sorted(listed))
    run = cli("--json", "role", "list")
    lines = [json.loads(line) for line in run.stdout.splitlines() if line.strip()]
    result(run.returncode == 0 and [r["name"] for r in lines] == ["ci", "hang", "people", "workloads"]
           and lines[0]["bound_claims"] == {"repository": ["acme/*"]}, "tollgate role list --json", run.stdout + run.stderr)
    roles_file = os.path.join(work, "roles.yaml")

    def write_roles(audience: str, ci_ttl: int = ROLE_MAX_TTL):
        with open(roles_file, "w") as f:
            f.write(f"""roles:
  - name: deploy
    issuer: "{IdP.issuer}"
    bound_audiences: [{audience}]
    bound_claims: {{repository: "acme/*"}}
    bound_claims_type: glob
    license: lic_acme
    scopes: [read]
    max_ttl_s: 120
  - name: ci
    issuer: "{IdP.issuer}"
    bound_audiences: [tollgate]
    bound_claims: {{repository: "acme/*"}}
    bound_claims_type: glob
    license_claim: repository_owner
    license_mapping: {{acme: lic_acme}}
    scopes: [read, write]
    max_ttl_s: {ci_ttl}
    leeway_s: {{exp: 5, nbf: 5, iat: 5}}
""")
    write_roles("tollgate-deploy")
    run = cli("apply", roles_file)
    result(run.returncode == 0 and "+ role deploy" in run.stdout and "1 to create, 0 to update, 1 unchanged" in run.stdout,
           "tollgate apply creates a role; the configured role it restates is unchanged", run.stdout + run.stderr)
    granted = api.exchange(es256(claims(aud="tollgate-deploy")))
    result(dict(granted["token"]["metadata"]).get("tollgate.exchange.role") == "deploy"
           and api.check(granted["secret"], scopes=["read"])["decision"] == 1, "an exchange under the applied role", granted["token"])
    write_roles("tollgate-deploy-2", ci_ttl=120)
    run = cli("apply", "--dry-run", roles_file)
    result(run.returncode == 0 and "~ role deploy: bound_audiences [tollgate-deploy] -> [tollgate-deploy-2]" in run.stdout
           and f"~ role ci: max_ttl_s {ROLE_MAX_TTL} -> 120" in run.stdout and "dry run" in run.stdout,
           "apply --dry-run shows the role changes field by field", run.stdout + run.stderr)
    run = cli("apply", roles_file)
    result(run.returncode == 0 and "0 created, 2 updated" in run.stdout, "apply changes the roles", run.stdout + run.stderr)
    result(refusal(es256(claims(aud="tollgate-deploy"))) == "wrong_audience",
           "after the bound audience changed, the old audience is refused at once (no reload)")
    moved = api.exchange(es256(claims(aud="tollgate-deploy-2")))
    result(moved["token"]["expires_at"] - moved["token"]["issued_at"] <= 120_000, "the new audience is granted, with the role's new lifetime", moved["token"])
    run = cli("apply", roles_file)
    result(run.returncode == 0 and "0 created, 0 updated, 2 unchanged" in run.stdout, "applying the same file again changes nothing", run.stdout)
    try:
        admin.role_put("stray", "https://no-provider.example", ["x"], ["read"], license="lic_acme")
        stray = "accepted"
    except tg.TollgateError as e:
        stray = f"{e.status_name}: {e.message}"
    result(stray.startswith("invalid_argument") and "no provider" in stray, "ROLE_PUT of an issuer with no provider is refused", stray)
    try:
        api.role_list()
        on_api = "served"
    except tg.TollgateError as e:
        on_api = e.status_name
    result(on_api == "not_permitted", "the role opcodes are admin-only", on_api)
    run = cli("role", "delete", "people", "--actor", "ops")
    result(run.returncode == 0 and "deleted role people" in run.stdout, "tollgate role delete", run.stdout + run.stderr)
    result(refusal(es256(claims(aud="tollgate-people", email="carol@example.com", scope="read"))) == "wrong_audience",
           "an exchange under a deleted role is refused")
    stop()
    start()
    api = tg.Client(api_sock)
    admin = tg.Client(admin_sock)
    after = {r["name"]: r for r in admin.role_list_all()}
    result(sorted(after) == ["ci", "deploy", "hang", "workloads"] and after["ci"]["max_ttl_s"] == 120,
           "after a restart: the applied roles stay, the configuration neither resets ci nor seeds the deleted people again",
           {k: v["max_ttl_s"] for k, v in after.items()})
    result(api.exchange(es256(claims(aud="tollgate-deploy-2")))["token"]["license_id"] == "lic_acme"
           and refusal(es256(claims(aud="tollgate-people", email="carol@example.com", scope="read"))) == "wrong_audience",
           "after a restart: exchange under the applied role works, the deleted one stays refused")
    export = cli("export")
    result(export.returncode == 0 and "roles:" in export.stdout and "  - name: deploy" in export.stdout,
           "tollgate export writes the roles", export.stdout[-600:] + export.stderr)
    audit = read_log()
    result("role put" in audit and "role deleted" in audit and "identity role seeded from the configuration" in audit,
           "role puts, deletions and seeding are audited")

    # --- a hanging identity provider ------------------------------------------------------------------------
    HangingIdP.mode = "serve"
    warm = answer_of(hang_jwt())
    result(warm == "ok", "the second provider's keys are fetched from its JWKS URL", warm)
    outcome, checks_ok = refetch_while("hang", hang_jwt("hang-unknown"))
    result(checks_ok, "while the IdP's JWKS fetch hangs: CHECKs of existing tokens are answered, and a known kid exchanges from the cache")
    result(outcome == "identity_unavailable keys_unavailable",
           "an unknown kid is refused identity_unavailable when the refresh hangs (bounded by fetch_timeout_ms)", outcome)
    result(HangingIdP.hang_closed.wait(30), "the daemon closed the hanging connection itself")
    result(answer_of(hang_jwt()) == "ok", "a known kid still exchanges from the cache after the hang")
    outcome, _ = refetch_while("truncate", hang_jwt("hang-unknown-2"))
    result(outcome == "identity_unavailable keys_unavailable", "an unknown kid is refused identity_unavailable when the IdP closes mid-answer", outcome)
    result(answer_of(hang_jwt()) == "ok", "a known kid still exchanges from the cache after a truncated answer")
    status, _, body = exchange_http(hang_jwt("hang-unknown-3"))
    result(status == 503 and isinstance(body, dict) and body.get("error") == "temporarily_unavailable",
           "RFC 8693: an unknown kid of a failing IdP is 503 temporarily_unavailable", (status, body))

    # --- no secret in the log --------------------------------------------------------------------------------
    stop()
    log = read_log()
    leaked = [name for name, secret in (("JWT", cli_jwt), ("SCIM secret", SCIM_SECRET), ("issued secret", answer["secret"]),
                                         ("JWT signature", cli_jwt.rsplit(".", 1)[1])) if secret in log]
    journal_dir = os.path.join(work, "state", "journal")
    journal = b"".join(open(os.path.join(journal_dir, n), "rb").read() for n in os.listdir(journal_dir))
    leaked += [name for name, secret in (("JWT in journal", cli_jwt), ("issued secret in journal", answer["secret"])) if secret.encode() in journal]
    result(leaked == [], "no JWT, SCIM secret or issued secret in the log or the journal", leaked)
except Exception as e:  # a crash of the suite is a failure, with the daemon's log
    import traceback
    result(False, "the suite ran to the end", traceback.format_exc() + "\n" + read_log()[-3000:])
finally:
    stop()
    idp_server.shutdown()
results.finish()

