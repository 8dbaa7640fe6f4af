"""Tollgate wire protocol v1 client (Python 3.11, standard library only).

Written from Protocol/PROTOCOL.md and Protocol/vectors/ alone, as an
independent second implementation of the protocol.

Layers:

* value codec: a small schema language (``u8``/``u16``/``u32``/``u64``/``i64``/
  ``time``/``str``/``list<T>``/``pair``/enums/bit sets/nested blocks and
  fields present only on a condition) with a strict reader that rejects short
  bodies, leftover bytes, invalid UTF-8, unknown ``u8`` codes and option bits,
  and absent blocks (``present = 0``) with non-zero fields;
* frames: :func:`encode_frame`, :func:`parse_header`, :class:`Frame`;
* per-opcode request/response schemas (:data:`REQUEST_SCHEMAS`,
  :data:`RESPONSE_SCHEMAS`) with :func:`encode_request`,
  :func:`decode_response`; field builders :func:`check_fields`,
  :func:`plan_fields`, :func:`quota_fields`;
* :class:`Client`: one connection, typed methods for every opcode, pipelining
  (:meth:`Client.send_request` / :meth:`Client.recv_response`,
  :meth:`Client.call_many`), and raw access (:meth:`Client.send_raw`,
  :meth:`Client.recv_frame`) for conformance tests.

Decoded bodies are dicts keyed by the field names of the spec (the same names as
``vectors.json``); ``list<pair>`` values decode to lists of ``[key, value]``
lists, blocks and nested structures (the quota and credits blocks of the Check
answer, ``TokenInfo`` inside ISSUE, ROTATE, DERIVE and TOKEN_LIST, the quotas,
rate limits, concurrency limits and credits of PlanInfo, usage rows, events)
decode to nested dicts; LicenseInfo is flat (LicenseSpec's fields first). A
denied DERIVE answer has no ``secret``/``token`` keys.
"""

from __future__ import annotations

import re
import selectors
import socket
import struct
import zlib
from collections import namedtuple
from typing import Any, Iterable, Mapping, Sequence

__all__ = [
    "PROTOCOL_VERSION", "HEADER_LEN", "DEFAULT_MAX_FRAME", "MAGIC", "FLAG_RESPONSE",
    "OP", "OPCODE_NAMES", "STATUS", "STATUS_NAMES", "REASON", "REASON_NAMES",
    "LICENSE_STATUS", "PERIOD", "WINDOW", "POOL", "OVERAGE", "EVENT_KIND", "EVENT_KIND_NAMES",
    "REVOKE_BY", "ENVIRONMENT", "ROLE", "DATA_PLANE",
    "OPT_EXPLAIN", "OPT_LEASE", "OPT_RESERVE", "OPT_DETAILS", "CHECK_OPTIONS",
    "TollgateError", "ProtocolError", "DecodeError", "ConnectionClosed",
    "Frame", "encode_frame", "parse_header", "parse_frame",
    "encode_body", "decode_body", "encode_request", "encode_response",
    "decode_response", "decode_response_fields",
    "TOKEN_RE", "TOKEN_ID_RE", "token_checksum", "is_valid_token", "make_token",
    "check_fields", "quota_fields", "plan_fields",
    "Client",
]

# ---------------------------------------------------------------------------
# Constants (sections 4, 5, 6)
# ---------------------------------------------------------------------------

PROTOCOL_VERSION = 1
HEADER_LEN = 12              # bytes after the length field that are header
DEFAULT_MAX_FRAME = 65536
MAGIC = b"TG"
FLAG_RESPONSE = 0x01

OP = {
    "HELLO": 0x01, "PING": 0x02,
    "CHECK": 0x10, "METER": 0x11, "REVOKE": 0x12, "RELEASE": 0x13, "SETTLE": 0x14,
    "DERIVE": 0x15, "EXCHANGE": 0x16,
    "ISSUE": 0x20, "LICENSE_PUT": 0x21, "LICENSE_GET": 0x22, "PLAN_PUT": 0x23,
    "PLAN_GET": 0x24, "TOKEN_GET": 0x25, "TOKEN_LIST": 0x26, "STATS": 0x27,
    "ROTATE": 0x28, "ROTATION_END": 0x29, "ORG_PUT": 0x2A, "ORG_GET": 0x2B,
    "CREDITS_GRANT": 0x2C, "USAGE_EXPORT": 0x2D, "EVENTS": 0x2E,
    # Listing and deleting policy objects (section 6.20, 6.21)
    "LICENSE_LIST": 0x2F, "PLAN_LIST": 0x30, "ORG_LIST": 0x31,
    "LICENSE_DELETE": 0x32, "PLAN_DELETE": 0x33, "ORG_DELETE": 0x34,
    # The decision stream (section 6.22): one request, a stream of answers.
    "WATCH": 0x35,
    # Identity providers (sections 6.23, 6.24) and their roles as policy (section 6.25)
    "SUBJECT_STATUS": 0x38,
    "ROLE_PUT": 0x39, "ROLE_DELETE": 0x3A, "ROLE_LIST": 0x3B,
}
OPCODE_NAMES = {v: k for k, v in OP.items()}
# Opcodes served on the api socket (section 2); the admin socket serves every opcode.
DATA_PLANE = frozenset(OP[n] for n in ("HELLO", "PING", "CHECK", "METER", "REVOKE", "RELEASE",
                                       "SETTLE", "DERIVE", "EXCHANGE"))

STATUS_NAMES = {
    0: "ok", 1: "denied", 2: "malformed", 3: "unsupported_version",
    4: "unknown_opcode", 5: "too_large", 6: "not_permitted", 7: "internal",
    8: "not_found", 9: "invalid_argument", 10: "unavailable",
    11: "in_use",   # answered only to the DELETE opcodes (section 6.21)
    12: "exchange_refused",      # answered only to EXCHANGE (section 6.23)
    13: "identity_unavailable",  # answered only to EXCHANGE (section 6.23)
    14: "fleet_unavailable", 15: "fleet_unconfirmed",   # fleet mode only (Protocol/FLEET.md 4.1)
}
STATUS = {v: k for k, v in STATUS_NAMES.items()}

REASON_NAMES = {
    0: "none", 1: "malformed_token", 2: "unknown_token", 3: "revoked",
    4: "not_yet_valid", 5: "expired", 6: "license_inactive",
    7: "insufficient_scope", 8: "quota_exceeded", 9: "rate_limited", 10: "caller_not_allowed",
    11: "feature_not_entitled", 12: "credits_exhausted", 13: "concurrency_limited",
    14: "trial_ended", 15: "payment_overdue", 16: "license_expired",
    17: "license_not_yet_valid", 18: "org_suspended",
    19: "fleet_stale",   # fleet mode: no confirmed catch-up with the fleet log for the horizon H (FLEET.md 7)
}
REASON = {v: k for k, v in REASON_NAMES.items()}

LICENSE_STATUS = {"active": 0, "trialing": 1, "past_due": 2, "canceled": 3, "expired": 4}
PERIOD = {"hour": 0, "day": 1, "month": 2}
WINDOW = {"hour": 0, "day": 1, "month": 2, "rolling": 3}
POOL = {"token": 0, "license": 1, "org": 2}
OVERAGE = {"hard_stop": 0, "allow_and_record": 1}
EVENT_KIND_NAMES = {0: "quota_80", 1: "quota_100", 2: "credits_low", 3: "token_expiring"}
EVENT_KIND = {v: k for k, v in EVENT_KIND_NAMES.items()}
REVOKE_BY = {"secret": 0, "token_id": 1, "license_id": 2, "org": 3, "subject": 4}
ENVIRONMENT = {"live": 0, "test": 1}
ROLE = {"api": 0, "admin": 1}
# CHECK options (section 6.3)
OPT_EXPLAIN, OPT_LEASE, OPT_RESERVE, OPT_DETAILS = 0x01, 0x02, 0x04, 0x08
CHECK_OPTIONS = OPT_EXPLAIN | OPT_LEASE | OPT_RESERVE | OPT_DETAILS


def socket_accepts(path: str) -> bool:
    """Whether something accepts connections on the Unix socket at ``path`` (used to wait for a daemon)."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.settimeout(1)
        s.connect(path)
        return True
    except OSError:
        return False
    finally:
        s.close()


# ---------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------


class TollgateError(Exception):
    """The server answered with an error status (anything but ok/denied)."""

    def __init__(self, status_code: int, status_name: str, message: str,
                 opcode: int | None = None, request_id: int | None = None):
        super().__init__(f"{status_name} ({status_code}): {message}")
        self.status_code = status_code
        self.status_name = status_name
        self.message = message
        self.opcode = opcode
        self.request_id = request_id


class ProtocolError(Exception):
    """The peer sent something that does not follow PROTOCOL.md."""


class DecodeError(ProtocolError):
    """A body or frame could not be decoded strictly."""


class ConnectionClosed(ProtocolError):
    """The server closed the connection (EOF), possibly mid-frame."""


# ---------------------------------------------------------------------------
# Value codec (section 3)
# ---------------------------------------------------------------------------
#
# A schema is a list of (field_name, type). A type is one of
#   "u8" "u16" "u32" "u64" "i64" "time" "str" "pair"
#   ("enum", frozenset_of_allowed_u8_codes)
#   ("bits", mask)            a u8 bit set; bits outside mask are rejected
#   ("list", element_type)
#   ("struct", schema)        a block; a block whose first field is a "present"
#                             flag of 0 must have every other field 0 (section 3)
#   ("if", field, value, type) present only when the earlier field `field` of
#                             the same structure equals `value` (DERIVE's answer)

_INT_FORMATS = {"u8": ">B", "u16": ">H", "u32": ">I", "u64": ">Q", "i64": ">q", "time": ">q"}
_INT_SIZES = {k: struct.calcsize(v) for k, v in _INT_FORMATS.items()}


def _enum(codes: Iterable[int]):
    return ("enum", frozenset(codes))


def _list(t):
    return ("list", t)


def _struct(schema):
    return ("struct", schema)


def _bits(mask: int):
    return ("bits", mask)


def _trailing(t):
    """A block at the end of a body that is there only when asked for (CHECK's details): read when bytes remain,
    written when the field is given."""
    return ("trailing", t)


def _if(field: str, value: Any, t):
    return ("if", field, value, t)


def _is_zero(v: Any) -> bool:
    if isinstance(v, dict):
        return all(_is_zero(x) for x in v.values())
    return v in (0, "", [])


class _Reader:
    __slots__ = ("buf", "pos")

    def __init__(self, buf: bytes):
        self.buf = memoryview(bytes(buf))
        self.pos = 0

    def take(self, n: int) -> bytes:
        if n > len(self.buf) - self.pos:   # check before slicing/allocating
            raise DecodeError(f"body too short: need {n} bytes at offset {self.pos}, "
                              f"have {len(self.buf) - self.pos}")
        b = self.buf[self.pos:self.pos + n].tobytes()
        self.pos += n
        return b

    def read(self, t, path: str) -> Any:
        if isinstance(t, str):
            if t in _INT_FORMATS:
                return struct.unpack(_INT_FORMATS[t], self.take(_INT_SIZES[t]))[0]
            if t == "str":
                n = struct.unpack(">H", self.take(2))[0]
                raw = self.take(n)
                try:
                    return raw.decode("utf-8", errors="strict")
                except UnicodeDecodeError as e:
                    raise DecodeError(f"{path}: invalid UTF-8: {e}") from None
            if t == "pair":
                return [self.read("str", path + ".key"), self.read("str", path + ".value")]
            raise AssertionError(f"unknown type {t!r}")
        kind = t[0]
        if kind == "enum":
            v = self.take(1)[0]
            if v not in t[1]:
                raise DecodeError(f"{path}: unknown code {v}")
            return v
        if kind == "bits":
            v = self.take(1)[0]
            if v & ~t[1]:
                raise DecodeError(f"{path}: unknown bits {v & ~t[1]:#04x}")
            return v
        if kind == "list":
            n = struct.unpack(">H", self.take(2))[0]
            return [self.read(t[1], f"{path}[{i}]") for i in range(n)]
        if kind == "struct":
            out = self.read_struct(t[1], path)
            if len(t) > 2:
                t[2](out, path)
            return out
        raise AssertionError(f"unknown type {t!r}")

    def read_struct(self, schema, path: str = "") -> dict:
        out = {}
        for name, t in schema:
            if isinstance(t, tuple) and t[0] == "if":
                if out.get(t[1]) != t[2]:
                    continue
                t = t[3]
            if isinstance(t, tuple) and t[0] == "trailing":
                if self.pos == len(self.buf):
                    continue
                t = t[1]
            out[name] = self.read(t, f"{path}.{name}" if path else name)
        if schema and schema[0][0] == "present" and out["present"] == 0 and \
                not all(_is_zero(v) for k, v in out.items() if k != "present"):
            raise DecodeError(f"{path or 'body'}: an absent block must have zero fields")
        return out

    def finish(self) -> None:
        left = len(self.buf) - self.pos
        if left:
            raise DecodeError(f"{left} bytes left over after the body")


def _write(out: bytearray, t, value: Any, path: str) -> None:
    if isinstance(t, str):
        if t in _INT_FORMATS:
            try:
                out += struct.pack(_INT_FORMATS[t], value)
            except (struct.error, TypeError) as e:
                raise ValueError(f"{path}: {value!r} does not fit {t}: {e}") from None
            return
        if t == "str":
            if not isinstance(value, str):
                raise TypeError(f"{path}: expected str, got {type(value).__name__}")
            raw = value.encode("utf-8")
            if len(raw) > 0xFFFF:
                raise ValueError(f"{path}: string of {len(raw)} bytes exceeds 65535")
            out += struct.pack(">H", len(raw)) + raw
            return
        if t == "pair":
            k, v = value
            _write(out, "str", k, path + ".key")
            _write(out, "str", v, path + ".value")
            return
        raise AssertionError(f"unknown type {t!r}")
    kind = t[0]
    if kind in ("enum", "bits"):
        # The client may deliberately send unknown codes (conformance tests),
        # so only the u8 range is enforced here.
        _write(out, "u8", value, path)
        return
    if kind == "list":
        if isinstance(value, Mapping):
            value = list(value.items())
        value = list(value)
        if len(value) > 0xFFFF:
            raise ValueError(f"{path}: list of {len(value)} elements exceeds 65535")
        out += struct.pack(">H", len(value))
        for i, item in enumerate(value):
            _write(out, t[1], item, f"{path}[{i}]")
        return
    if kind == "struct":
        _write_struct(out, t[1], value, path)
        return
    raise AssertionError(f"unknown type {t!r}")


def _write_struct(out: bytearray, schema, fields: Mapping[str, Any], path: str = "") -> None:
    unknown = set(fields) - {name for name, _ in schema}
    if unknown:
        raise ValueError(f"{path or 'body'}: unknown fields {sorted(unknown)}")
    for name, t in schema:
        if isinstance(t, tuple) and t[0] == "if":
            if fields.get(t[1]) != t[2]:
                if name in fields:
                    raise ValueError(f"{path or 'body'}: field {name!r} only exists when "
                                     f"{t[1]} is {t[2]!r}")
                continue
            t = t[3]
        if isinstance(t, tuple) and t[0] == "trailing":
            if name not in fields:
                continue
            t = t[1]
        if name not in fields:
            raise ValueError(f"{path or 'body'}: missing field {name!r}")
        _write(out, t, fields[name], f"{path}.{name}" if path else name)


def encode_body(schema, fields: Mapping[str, Any]) -> bytes:
    out = bytearray()
    _write_struct(out, schema, fields)
    return bytes(out)


def decode_body(schema, body: bytes) -> dict:
    r = _Reader(body)
    out = r.read_struct(schema)
    r.finish()
    return out


# ---------------------------------------------------------------------------
# Shared structures and per-opcode schemas (section 6)
# ---------------------------------------------------------------------------

STR_LIST = _list("str")
PAIR_LIST = _list("pair")
BOOL8 = _enum((0, 1))
REASON_T = _enum(REASON_NAMES)
LICENSE_STATUS_T = _enum(LICENSE_STATUS.values())
PERIOD_T = _enum(PERIOD.values())
WINDOW_T = _enum(WINDOW.values())
POOL_T = _enum(POOL.values())
OVERAGE_T = _enum(OVERAGE.values())
EVENT_KIND_T = _enum(EVENT_KIND_NAMES)
ENV_T = _enum(ENVIRONMENT.values())


def _check_quota_window(q: dict, path: str) -> None:
    # Quota: window 3 (rolling) needs seconds > 0; windows 0-2 need seconds == 0.
    if (q["window"] == WINDOW["rolling"]) != (q["seconds"] > 0):
        raise DecodeError(f"{path}: window {q['window']} with seconds {q['seconds']} is not defined")


# Blocks (section 6, "Shared structures")
QUOTA_BLOCK = [("present", BOOL8), ("limit", "u64"), ("remaining", "u64"), ("reset_at", "time")]
CREDITS_STATE = [("present", BOOL8), ("remaining", "u64")]

TOKEN_INFO = [
    ("token_id", "str"), ("license_id", "str"), ("subject", "str"), ("scopes", STR_LIST),
    ("issued_at", "time"), ("not_before", "time"), ("expires_at", "time"),
    ("revoked_at", "time"), ("revoke_reason", "str"), ("metadata", PAIR_LIST),
    ("environment", ENV_T), ("parent_id", "str"), ("revoked_by", "str"),
    ("rotated_at", "time"), ("previous_valid_until", "time"), ("last_used_at", "time"),
    ("previous_last_used_at", "time"),
]

LICENSE_SPEC = [
    ("license_id", "str"), ("customer", "str"), ("plan", "str"), ("status", LICENSE_STATUS_T),
    ("valid_until", "time"), ("valid_from", "time"), ("trial_ends_at", "time"),
    ("org", "str"), ("project", "str"), ("billing_anchor_day", "u8"),
]

LICENSE_INFO = LICENSE_SPEC + [
    ("updated_at", "time"), ("active_tokens", "u32"), ("past_due_since", "time"),
    ("prepaid_credits", "u64"),
]

ORG_SPEC = [("org_id", "str"), ("name", "str"), ("suspended", BOOL8)]

QUOTA = [("meter", "str"), ("window", WINDOW_T), ("seconds", "u32"), ("limit", "u64"),
         ("pool", POOL_T)]
RATE_LIMIT = [("pool", POOL_T), ("rate_per_second", "u32"), ("burst", "u32")]
CONCURRENCY = [("pool", POOL_T), ("max", "u32")]
CREDITS_POLICY = [("present", BOOL8), ("pool", POOL_T), ("included", "u64"), ("period", PERIOD_T)]

PLAN_INFO = [
    ("plan_id", "str"), ("entitlements", STR_LIST), ("features", STR_LIST),
    ("quotas", _list(("struct", QUOTA, _check_quota_window))),
    ("rate_limits", _list(_struct(RATE_LIMIT))), ("concurrency", _list(_struct(CONCURRENCY))),
    ("credits", _struct(CREDITS_POLICY)), ("overage", OVERAGE_T),
    ("max_token_lifetime_s", "u32"), ("max_active_tokens", "u32"), ("past_due_grace_s", "u32"),
]

# An identity role (section 6.25): mappings are pair lists in key order.
BOUND_CLAIM = [("claim", "str"), ("values", STR_LIST)]
ROLE_INFO = [
    ("name", "str"), ("issuer", "str"), ("bound_audiences", STR_LIST),
    ("bound_claims", _list(_struct(BOUND_CLAIM))), ("bound_claims_type", _enum((0, 1))),
    ("user_claim", "str"), ("license", "str"), ("license_claim", "str"), ("license_mapping", PAIR_LIST),
    ("org_claim", "str"), ("org_mapping", PAIR_LIST), ("scopes", STR_LIST), ("scope_claim", "str"),
    ("max_ttl_s", "u32"), ("leeway_s", _struct([("exp", "u32"), ("nbf", "u32"), ("iat", "u32")])),
]

RULE_EVALUATION = [("rule", "str"), ("owner", "str"), ("limit", "u64"), ("used", "u64"),
                   ("denied", BOOL8)]

# The answer block shared by CHECK, SETTLE and DERIVE.
CHECK_ANSWER = [
    ("decision", BOOL8), ("reason", REASON_T), ("token_id", "str"), ("license_id", "str"),
    ("subject", "str"), ("quota", _struct(QUOTA_BLOCK)), ("retry_after_ms", "u32"),
    ("lease_id", "u64"), ("reservation_id", "u64"), ("credits", _struct(CREDITS_STATE)),
    ("overage", "u64"), ("explanation", _list(_struct(RULE_EVALUATION))),
]

RATE_LIMIT_STATE = [("present", BOOL8), ("limit", "u64"), ("remaining", "u64"), ("reset_ms", "u32")]

# After CHECK's answer when the request set OPT_DETAILS (section 6.3).
CHECK_DETAILS = [("rate_limit", _struct(RATE_LIMIT_STATE)), ("token_expires_at", "time"), ("plan_id", "str")]

USAGE_ROW = [
    ("org", "str"), ("project", "str"), ("license_id", "str"), ("token_id", "str"),
    ("meter", "str"), ("period_start", "time"), ("quantity", "u64"), ("overage", "u64"),
]

EVENT = [("sequence", "u64"), ("at", "time"), ("kind", EVENT_KIND_T), ("owner", "str"),
         ("detail", "str")]

# WATCH (section 6.22): one decision of the stream, and the body of each of its frames.
DECISION_EVENT = [("sequence", "u64"), ("at", "time"), ("latency_ns", "u32"), ("source", _enum((0, 1))),
                  ("reason", REASON_T), ("token_id", "str"), ("license_id", "str"), ("subject", "str"),
                  ("route", "str")]

ERROR_BODY = [("message", "str")]

REQUEST_SCHEMAS: dict[int, list] = {
    OP["HELLO"]: [("min_version", "u8"), ("max_version", "u8"), ("client_name", "str")],
    OP["PING"]: [],
    OP["CHECK"]: [("token", "str"), ("scopes", STR_LIST), ("meter", "str"), ("cost", "u64"),
                  ("features", STR_LIST), ("options", _bits(CHECK_OPTIONS))],
    OP["METER"]: [("token", "str"), ("meter", "str"), ("quantity", "u64"),
                  ("idempotency_key", "str")],
    OP["REVOKE"]: [("by", _enum(REVOKE_BY.values())), ("value", "str"), ("reason", "str"),
                   ("actor", "str")],
    OP["RELEASE"]: [("lease_id", "u64")],
    OP["SETTLE"]: [("reservation_id", "u64"), ("actual_cost", "u64")],
    OP["DERIVE"]: [("parent", "str"), ("scopes", STR_LIST), ("ttl_s", "u32")],
    OP["EXCHANGE"]: [("subject_token", "str"), ("role", "str"), ("scopes", STR_LIST), ("ttl_s", "u32")],
    OP["SUBJECT_STATUS"]: [("subject", "str"), ("active", BOOL8), ("actor", "str")],
    OP["ROLE_PUT"]: ROLE_INFO,
    OP["ROLE_DELETE"]: [("name", "str"), ("actor", "str")],
    OP["ROLE_LIST"]: [("after", "str"), ("limit", "u16")],
    OP["ISSUE"]: [("license_id", "str"), ("subject", "str"), ("scopes", STR_LIST),
                  ("not_before", "time"), ("expires_at", "time"), ("metadata", PAIR_LIST),
                  ("environment", ENV_T)],
    OP["LICENSE_PUT"]: LICENSE_SPEC,
    OP["LICENSE_GET"]: [("license_id", "str")],
    OP["PLAN_PUT"]: PLAN_INFO,
    OP["PLAN_GET"]: [("plan_id", "str")],
    OP["TOKEN_GET"]: [("token_id", "str")],
    OP["TOKEN_LIST"]: [("license_id", "str"), ("after", "str"), ("limit", "u16")],
    OP["STATS"]: [],
    OP["ROTATE"]: [("token_id", "str"), ("grace_s", "u32")],
    OP["ROTATION_END"]: [("token_id", "str")],
    OP["ORG_PUT"]: ORG_SPEC,
    OP["ORG_GET"]: [("org_id", "str")],
    OP["CREDITS_GRANT"]: [("pool", POOL_T), ("owner", "str"), ("amount", "u64"),
                          ("reason", "str")],
    OP["USAGE_EXPORT"]: [("from", "time"), ("to", "time"), ("org", "str"), ("license_id", "str"),
                         ("granularity", PERIOD_T), ("offset", "u32"), ("limit", "u16")],
    OP["EVENTS"]: [("after", "u64"), ("limit", "u16")],
    OP["LICENSE_LIST"]: [("org", "str"), ("plan", "str"), ("after", "str"), ("limit", "u16")],
    OP["PLAN_LIST"]: [("after", "str"), ("limit", "u16")],
    OP["ORG_LIST"]: [("after", "str"), ("limit", "u16")],
    OP["LICENSE_DELETE"]: [("license_id", "str"), ("actor", "str")],
    OP["PLAN_DELETE"]: [("plan_id", "str"), ("actor", "str")],
    OP["ORG_DELETE"]: [("org_id", "str"), ("actor", "str")],
    OP["WATCH"]: [("license_id", "str")],
}

RESPONSE_SCHEMAS: dict[int, list] = {
    OP["HELLO"]: [("version", "u8"), ("role", _enum(ROLE.values())), ("max_frame", "u32"),
                  ("server", "str")],
    OP["PING"]: [],
    OP["CHECK"]: CHECK_ANSWER + [("details", _trailing(_struct(CHECK_DETAILS)))],
    OP["METER"]: [("decision", BOOL8), ("reason", REASON_T), ("token_id", "str"),
                  ("license_id", "str"), ("duplicate", BOOL8), ("quota", _struct(QUOTA_BLOCK))],
    OP["REVOKE"]: [("revoked", "u32")],
    OP["RELEASE"]: [("released", BOOL8)],
    OP["SETTLE"]: CHECK_ANSWER,
    # the child exists only when the parent was allowed (section 6.13)
    OP["DERIVE"]: CHECK_ANSWER + [("secret", _if("decision", 1, "str")),
                                  ("token", _if("decision", 1, _struct(TOKEN_INFO)))],
    OP["ISSUE"]: [("secret", "str"), ("token", _struct(TOKEN_INFO))],
    OP["EXCHANGE"]: [("secret", "str"), ("token", _struct(TOKEN_INFO))],
    OP["SUBJECT_STATUS"]: [("revoked", "u32")],
    OP["ROLE_PUT"]: ROLE_INFO,
    OP["ROLE_DELETE"]: ROLE_INFO,
    OP["ROLE_LIST"]: [("roles", _list(_struct(ROLE_INFO))), ("next", "str")],
    OP["LICENSE_PUT"]: LICENSE_INFO,
    OP["LICENSE_GET"]: LICENSE_INFO,
    OP["PLAN_PUT"]: PLAN_INFO,
    OP["PLAN_GET"]: PLAN_INFO,
    OP["TOKEN_GET"]: TOKEN_INFO,
    OP["TOKEN_LIST"]: [("tokens", _list(_struct(TOKEN_INFO))), ("next", "str")],
    OP["STATS"]: [("stats", PAIR_LIST)],
    OP["ROTATE"]: [("secret", "str"), ("token", _struct(TOKEN_INFO))],
    OP["ROTATION_END"]: TOKEN_INFO,
    OP["ORG_PUT"]: ORG_SPEC,
    OP["ORG_GET"]: ORG_SPEC,
    OP["CREDITS_GRANT"]: [("balance", "u64")],
    OP["USAGE_EXPORT"]: [("rows", _list(_struct(USAGE_ROW))), ("next", "u32")],
    OP["EVENTS"]: [("events", _list(_struct(EVENT)))],
    OP["LICENSE_LIST"]: [("licenses", _list(_struct(LICENSE_INFO))), ("next", "str")],
    OP["PLAN_LIST"]: [("plans", _list(_struct(PLAN_INFO))), ("next", "str")],
    OP["ORG_LIST"]: [("orgs", _list(_struct(ORG_SPEC))), ("next", "str")],
    # a deletion answers the object as it was, with the body of the GET opcode
    OP["LICENSE_DELETE"]: LICENSE_INFO,
    OP["PLAN_DELETE"]: PLAN_INFO,
    OP["ORG_DELETE"]: ORG_SPEC,
    OP["WATCH"]: [("kind", _enum((0, 1))), ("dropped", "u64"), ("events", _list(_struct(DECISION_EVENT)))],
}

# Opcodes whose answer may be `denied` and carries a decision and a reason (section 5).
_DECISION_OPCODES = (OP["CHECK"], OP["METER"], OP["SETTLE"], OP["DERIVE"])


# ---------------------------------------------------------------------------
# Frames (section 4)
# ---------------------------------------------------------------------------

_HEADER = struct.Struct(">I2sBBBBHI")   # 16 bytes including the length field

Frame = namedtuple("Frame", "length magic version opcode flags status reserved request_id body")
Frame.__doc__ = "One decoded frame; ``body`` is the raw body bytes."


def encode_frame(opcode: int, request_id: int, body: bytes = b"", *, flags: int = 0,
                 status: int = 0, version: int = PROTOCOL_VERSION, reserved: int = 0,
                 magic: bytes = MAGIC, length: int | None = None) -> bytes:
    """Build a frame. Keyword overrides exist so tests can build bad frames."""
    if length is None:
        length = HEADER_LEN + len(body)
    return _HEADER.pack(length, magic, version, opcode, flags, status, reserved,
                        request_id) + body


def parse_header(header: bytes) -> Frame:
    """Parse the 16 header bytes (length field included); body is left empty."""
    if len(header) != _HEADER.size:
        raise DecodeError(f"header must be {_HEADER.size} bytes, got {len(header)}")
    return Frame(*_HEADER.unpack(header), b"")


def parse_frame(data: bytes, *, max_frame: int | None = None) -> Frame:
    """Parse exactly one complete frame (no trailing bytes)."""
    if len(data) < 4:
        raise DecodeError("frame shorter than its length field")
    (length,) = struct.unpack(">I", data[:4])
    if length < HEADER_LEN:
        raise DecodeError(f"declared length {length} < {HEADER_LEN}")
    if max_frame is not None and length > max_frame:
        raise DecodeError(f"declared length {length} > max_frame {max_frame}")
    if len(data) != 4 + length:
        raise DecodeError(f"frame declares {length} bytes after the length field, "
                          f"has {len(data) - 4}")
    return parse_header(data[:16])._replace(body=bytes(data[16:]))


def _check_response_header(f: Frame) -> None:
    if f.magic != MAGIC:
        raise DecodeError(f"bad magic {f.magic!r}")
    if f.version != PROTOCOL_VERSION:
        raise DecodeError(f"unsupported response version {f.version}")
    if f.flags != FLAG_RESPONSE:
        raise DecodeError(f"response flags must be 0x01, got {f.flags:#04x}")
    if f.reserved != 0:
        raise DecodeError(f"reserved bytes must be 0, got {f.reserved:#06x}")


# ---------------------------------------------------------------------------
# Request / response bodies
# ---------------------------------------------------------------------------

# Trailing request fields added by the licensing model whose "empty" value means what the older
# body meant: callers that predate them (scripts/soak.py builds CHECK bodies by hand) may leave
# them out of the field dict and get that value. The bytes on the wire always carry every field.
REQUEST_DEFAULTS: dict[int, dict[str, Any]] = {
    OP["CHECK"]: {"features": [], "options": 0},
    OP["REVOKE"]: {"actor": ""},
}


def encode_request(opcode: int, fields: Mapping[str, Any], request_id: int) -> bytes:
    """Encode a complete request frame for ``opcode`` from its field dict (see
    :data:`REQUEST_DEFAULTS` for the fields that may be left out)."""
    try:
        schema = REQUEST_SCHEMAS[opcode]
    except KeyError:
        raise ValueError(f"unknown opcode {opcode:#04x}") from None
    defaults = REQUEST_DEFAULTS.get(opcode)
    if defaults:
        fields = {**defaults, **fields}
    return encode_frame(opcode, request_id, encode_body(schema, fields))


def encode_response(opcode: int, status: int, fields: Mapping[str, Any],
                    request_id: int) -> bytes:
    """Encode a response frame (used by tests to check the codec is symmetric)."""
    if status in (STATUS["ok"], STATUS["denied"]):
        body = encode_body(RESPONSE_SCHEMAS[opcode], fields)
    else:
        body = encode_body(ERROR_BODY, {"message": fields["message"]})
    return encode_frame(opcode, request_id, body, flags=FLAG_RESPONSE, status=status)


def decode_response_fields(frame: Frame) -> dict:
    """Strictly decode a response frame's body into a field dict.

    For ``ok``/``denied`` this is the opcode's response body; for every other
    status (including unknown ones) it is ``{"status": code, "message": str}``.
    Raises :class:`DecodeError` on any violation.
    """
    _check_response_header(frame)
    if frame.status in (STATUS["ok"], STATUS["denied"]):
        if frame.status == STATUS["denied"] and frame.opcode not in _DECISION_OPCODES:
            raise DecodeError(f"status denied on opcode {frame.opcode:#04x}")
        try:
            schema = RESPONSE_SCHEMAS[frame.opcode]
        except KeyError:
            raise DecodeError(f"{STATUS_NAMES[frame.status]} response to unknown opcode "
                              f"{frame.opcode:#04x}") from None
        fields = decode_body(schema, frame.body)
        if frame.opcode in _DECISION_OPCODES:
            allowed = frame.status == STATUS["ok"]
            if fields["decision"] != (1 if allowed else 0):
                raise DecodeError(f"decision {fields['decision']} with status "
                                  f"{STATUS_NAMES[frame.status]}")
            if (fields["reason"] == REASON["none"]) != allowed:
                raise DecodeError(f"reason {fields['reason']} with status "
                                  f"{STATUS_NAMES[frame.status]}")
        return fields
    body = decode_body(ERROR_BODY, frame.body)
    return {"status": frame.status, "message": body["message"]}


def decode_response(frame: Frame) -> dict:
    """Like :func:`decode_response_fields`, but raises :class:`TollgateError`
    for error statuses. Unknown status codes are reported as ``internal``
    (section 5), with the original code kept in ``status_code``."""
    fields = decode_response_fields(frame)
    if frame.status in (STATUS["ok"], STATUS["denied"]):
        return fields
    name = STATUS_NAMES.get(frame.status, "internal")
    raise TollgateError(frame.status, name, fields["message"], frame.opcode, frame.request_id)


# ---------------------------------------------------------------------------
# Tokens (section 7.1)
# ---------------------------------------------------------------------------

BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
TOKEN_RE = re.compile(r"tg_(live|test)_[0-9A-Za-z]{49}")
TOKEN_ID_RE = re.compile(r"tok_[0-9A-Za-z]{22}")


def token_checksum(prefix: str) -> str:
    """Base62 CRC-32 of ``prefix`` (everything before the checksum), 6 chars."""
    n = zlib.crc32(prefix.encode("ascii"))
    digits = []
    while n:
        n, r = divmod(n, 62)
        digits.append(BASE62[r])
    return "".join(reversed(digits)).rjust(6, "0")


def is_valid_token(token: str) -> bool:
    """True if ``token`` has the shape of section 7.1 and a correct checksum."""
    if not isinstance(token, str) or TOKEN_RE.fullmatch(token) is None:
        return False
    return token_checksum(token[:-6]) == token[-6:]


def make_token(environment: str = "test", randomness: str | None = None) -> str:
    """Build a well-formed token (random unless ``randomness``, 43 base62 chars, given)."""
    if randomness is None:
        import secrets
        randomness = "".join(secrets.choice(BASE62) for _ in range(43))
    if environment not in ("live", "test") or len(randomness) != 43 or \
            any(c not in BASE62 for c in randomness):
        raise ValueError("bad environment or randomness")
    prefix = f"tg_{environment}_{randomness}"
    return prefix + token_checksum(prefix)


# ---------------------------------------------------------------------------
# Field builders (shorthands used by Client and the tests)
# ---------------------------------------------------------------------------

def check_fields(token: str, scopes: Sequence[str] = (), meter: str = "", cost: int = 0,
                 features: Sequence[str] = (), options: int = 0) -> dict:
    """The field dict of a CHECK request."""
    return {"token": token, "scopes": list(scopes), "meter": meter, "cost": cost,
            "features": list(features), "options": options}


def _code(table: Mapping[str, int], value: int | str) -> int:
    return table[value] if isinstance(value, str) else value


def quota_fields(q: Mapping[str, Any]) -> dict:
    """A Quota from a dict with ``meter``, ``limit`` and optionally ``window`` (code or
    ``hour``/``day``/``month``/``rolling:SECONDS``; ``period`` is accepted as an alias),
    ``seconds`` and ``pool`` (code or name, default ``license``)."""
    q = dict(q)
    window = q.pop("window", q.pop("period", 2))
    seconds = q.pop("seconds", 0)
    if isinstance(window, str) and window.startswith("rolling:"):
        window, seconds = WINDOW["rolling"], int(window[8:])
    out = {"meter": q.pop("meter"), "window": _code(WINDOW, window), "seconds": seconds,
           "limit": q.pop("limit"), "pool": _code(POOL, q.pop("pool", "license"))}
    if q:
        raise ValueError(f"unknown quota fields {sorted(q)}")
    return out


def role_fields(name: str, issuer: str, bound_audiences: Sequence[str], scopes: Sequence[str], *,
                bound_claims: Mapping[str, str | Sequence[str]] | None = None, bound_claims_type: str = "exact",
                user_claim: str = "sub", license: str = "", license_claim: str = "",
                license_mapping: Mapping[str, str] | None = None, org_claim: str = "",
                org_mapping: Mapping[str, str] | None = None, scope_claim: str = "", max_ttl_s: int = 900,
                leeway_s: Mapping[str, int] | None = None) -> dict:
    """The field dict of a Role (section 6.25), from the keys of the configuration's ``identity.roles``."""
    claims = [{"claim": k, "values": [v] if isinstance(v, str) else list(v)} for k, v in sorted((bound_claims or {}).items())]
    leeway = {"exp": 0, "nbf": 0, "iat": 0}
    leeway.update(leeway_s or {})
    return {
        "name": name, "issuer": issuer, "bound_audiences": list(bound_audiences), "bound_claims": claims,
        "bound_claims_type": {"exact": 0, "glob": 1}[bound_claims_type], "user_claim": user_claim,
        "license": license, "license_claim": license_claim,
        "license_mapping": [[k, v] for k, v in sorted((license_mapping or {}).items())],
        "org_claim": org_claim, "org_mapping": [[k, v] for k, v in sorted((org_mapping or {}).items())],
        "scopes": list(scopes), "scope_claim": scope_claim, "max_ttl_s": max_ttl_s, "leeway_s": leeway,
    }


def plan_fields(plan_id: str, entitlements: Sequence[str] = ("*",),
                quotas: Sequence[Mapping[str, Any]] = (), rate_per_second: int = 0,
                burst: int = 0, *, features: Sequence[str] = (),
                rate_limits: Sequence[Mapping[str, Any]] = (),
                concurrency: Sequence[Mapping[str, Any]] = (),
                credits: Mapping[str, Any] | None = None, overage: int | str = 0,
                max_token_lifetime_s: int = 0, max_active_tokens: int = 0,
                past_due_grace_s: int = 0) -> dict:
    """The field dict of a PlanInfo.

    ``rate_per_second``/``burst`` are a shorthand for one license-level rate limit
    (added first). ``rate_limits``: dicts with ``pool``, ``rate_per_second``, ``burst``;
    ``concurrency``: dicts with ``pool``, ``max``; ``credits``: a dict with ``pool``,
    ``included``, ``period`` (None: no credits). Pools, periods and the overage policy
    may be given by name."""
    rates = []
    if rate_per_second:
        rates.append({"pool": POOL["license"], "rate_per_second": rate_per_second, "burst": burst})
    for r in rate_limits:
        rates.append({"pool": _code(POOL, r.get("pool", "license")),
                      "rate_per_second": r["rate_per_second"], "burst": r.get("burst", 0)})
    conc = [{"pool": _code(POOL, c.get("pool", "license")), "max": c["max"]} for c in concurrency]
    if credits is None:
        cred = {"present": 0, "pool": 0, "included": 0, "period": 0}
    else:
        cred = {"present": 1, "pool": _code(POOL, credits.get("pool", "license")),
                "included": credits.get("included", 0),
                "period": _code(PERIOD, credits.get("period", "month"))}
    return {"plan_id": plan_id, "entitlements": list(entitlements), "features": list(features),
            "quotas": [quota_fields(q) for q in quotas], "rate_limits": rates,
            "concurrency": conc, "credits": cred, "overage": _code(OVERAGE, overage),
            "max_token_lifetime_s": max_token_lifetime_s, "max_active_tokens": max_active_tokens,
            "past_due_grace_s": past_due_grace_s}


# ---------------------------------------------------------------------------
# Client
# ---------------------------------------------------------------------------

class Client:
    """One connection to a tollgated socket (api or admin).

    Request ids start at 1 and increase (wrapping, never 0: the server uses
    request id 0 for connection-level errors). Responses are matched by
    request id; frames that arrive for other outstanding requests while
    waiting are buffered, so :meth:`send_request` may be called many times
    before :meth:`recv_response`.
    """

    def __init__(self, path: str, timeout: float | None = 10.0, *, connect: bool = True):
        self.path = path
        self.timeout = timeout
        self.max_frame = DEFAULT_MAX_FRAME
        self._sock: socket.socket | None = None
        self._rbuf = bytearray()
        self._next_id = 1
        self._pending: dict[int, Frame] = {}
        self._outstanding: set[int] = set()
        if connect:
            self.connect()

    # -- connection ---------------------------------------------------------

    def connect(self) -> None:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        try:
            s.connect(self.path)
        except BaseException:
            s.close()
            raise
        self._sock = s

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- raw I/O ------------------------------------------------------------

    def send_raw(self, data: bytes) -> None:
        """Write bytes as-is (for conformance tests)."""
        self._sock.sendall(data)

    def _fill(self, n: int) -> None:
        while len(self._rbuf) < n:
            chunk = self._sock.recv(max(65536, n - len(self._rbuf)))
            if not chunk:
                raise ConnectionClosed(
                    "connection closed by server" +
                    (f" ({len(self._rbuf)} bytes of a partial frame)" if self._rbuf else ""))
            self._rbuf += chunk

    def recv_frame(self) -> Frame:
        """Read exactly one frame (header checked for length only)."""
        self._fill(4)
        (length,) = struct.unpack(">I", self._rbuf[:4])
        if length < HEADER_LEN or length > max(self.max_frame, DEFAULT_MAX_FRAME):
            raise DecodeError(f"server frame declares length {length}")
        self._fill(4 + length)
        data = bytes(self._rbuf[:4 + length])
        del self._rbuf[:4 + length]
        return parse_frame(data)

    def at_eof(self, timeout: float = 2.0) -> bool:
        """True if the server has closed the connection (and nothing is buffered)."""
        if self._rbuf:
            return False
        old = self._sock.gettimeout()
        self._sock.settimeout(timeout)
        try:
            chunk = self._sock.recv(65536)
        except ConnectionResetError:
            return True
        except socket.timeout:
            return False
        finally:
            self._sock.settimeout(old)
        if chunk:
            self._rbuf += chunk
            return False
        return True

    # -- request / response -------------------------------------------------

    def _alloc_id(self) -> int:
        rid = self._next_id
        self._next_id = rid % 0xFFFFFFFF + 1        # 1..2^32-1, never 0
        return rid

    def encode(self, opcode: int, fields: Mapping[str, Any] | None = None,
               request_id: int | None = None) -> tuple[int, bytes]:
        rid = self._alloc_id() if request_id is None else request_id
        return rid, encode_request(opcode, fields or {}, rid)

    def send_request(self, opcode: int, fields: Mapping[str, Any] | None = None) -> int:
        """Send one request without waiting; returns its request id."""
        rid, frame = self.encode(opcode, fields)
        if len(frame) - 4 > self.max_frame:
            raise ValueError(f"request of {len(frame) - 4} bytes exceeds max_frame "
                             f"{self.max_frame}")
        self.send_raw(frame)
        self._outstanding.add(rid)
        return rid

    def recv_response_frame(self, request_id: int) -> Frame:
        if request_id in self._pending:
            self._outstanding.discard(request_id)
            return self._pending.pop(request_id)
        while True:
            f = self.recv_frame()
            if f.request_id == request_id:
                self._outstanding.discard(request_id)
                return f
            if f.request_id == 0 and f.opcode == 0:
                # connection-level error (too_large / malformed framing)
                decode_response(f)
                raise ProtocolError(f"unexpected frame with request id 0: {f}")
            if f.request_id not in self._outstanding:
                raise ProtocolError(f"response for unknown request id {f.request_id}")
            self._pending[f.request_id] = f

    def recv_response(self, request_id: int) -> dict:
        """Wait for the response to ``request_id``; raise TollgateError on error status."""
        f = self.recv_response_frame(request_id)
        return decode_response(f)

    def call(self, opcode: int, fields: Mapping[str, Any] | None = None) -> dict:
        return self.recv_response(self.send_request(opcode, fields))

    def _send_while_reading(self, data: bytes) -> None:
        """Write ``data`` whole, reading whatever answers arrive meanwhile into the read buffer.

        PROTOCOL.md 4.2: the server stops reading a connection whose answers queue up unread, so a client that
        wrote a long pipeline before reading anything would block forever on its own write.
        """
        view = memoryview(data)
        sel = selectors.DefaultSelector()
        self._sock.setblocking(False)
        try:
            sel.register(self._sock, selectors.EVENT_READ | selectors.EVENT_WRITE)
            while view:
                ready = sel.select(self.timeout)
                if not ready:
                    raise socket.timeout("the server neither read the pipeline nor answered")
                for _, events in ready:
                    if events & selectors.EVENT_READ:
                        try:
                            chunk = self._sock.recv(65536)
                        except BlockingIOError:
                            chunk = None
                        if chunk == b"":
                            raise ConnectionClosed("connection closed by server while writing a pipeline")
                        if chunk:
                            self._rbuf += chunk
                    if events & selectors.EVENT_WRITE and view:
                        try:
                            view = view[self._sock.send(view):]
                        except BlockingIOError:
                            pass
        finally:
            sel.close()
            self._sock.settimeout(self.timeout)

    def call_many(self, requests: Sequence[tuple[int, Mapping[str, Any]]], *,
                  return_exceptions: bool = True) -> list:
        """Pipeline: write all requests, reading answers as they come (PROTOCOL.md 4.2), then decode them.

        Returns results in request order; with ``return_exceptions`` a failed
        request's slot holds its :class:`TollgateError` instead of raising.
        """
        ids, data = [], bytearray()
        for opcode, fields in requests:
            rid, frame = self.encode(opcode, fields)
            ids.append(rid)
            data += frame
        self._outstanding.update(ids)
        self._send_while_reading(bytes(data))
        out = []
        for rid in ids:
            try:
                out.append(self.recv_response(rid))
            except TollgateError as e:
                if not return_exceptions:
                    raise
                out.append(e)
        return out

    # -- typed operations ---------------------------------------------------

    def hello(self, min_version: int = 1, max_version: int = 1,
              client_name: str = "tollgate-python/0.1") -> dict:
        r = self.call(OP["HELLO"], {"min_version": min_version, "max_version": max_version,
                                    "client_name": client_name})
        self.max_frame = r["max_frame"]
        return r

    def ping(self) -> dict:
        return self.call(OP["PING"])

    def check(self, token: str, scopes: Sequence[str] = (), meter: str = "",
              cost: int = 0, features: Sequence[str] = (), options: int = 0, *,
              explain: bool = False, lease: bool = False, reserve: bool = False,
              details: bool = False) -> dict:
        """CHECK. Returns the Check answer for both ``ok`` (allow) and ``denied``.

        ``options`` is the raw bit set; ``explain``/``lease``/``reserve``/``details`` add their bits. With
        ``details`` the answer has a ``details`` dict (tightest rate limit, token expiry, plan)."""
        options |= (OPT_EXPLAIN if explain else 0) | (OPT_LEASE if lease else 0) | \
            (OPT_RESERVE if reserve else 0) | (OPT_DETAILS if details else 0)
        return self.call(OP["CHECK"], check_fields(token, scopes, meter, cost, features, options))

    def meter(self, token: str, meter: str, quantity: int, idempotency_key: str = "") -> dict:
        return self.call(OP["METER"], {"token": token, "meter": meter, "quantity": quantity,
                                       "idempotency_key": idempotency_key})

    def revoke(self, by: int | str, value: str, reason: str = "", actor: str = "") -> dict:
        """REVOKE ``by`` 0 secret, 1 token id, 2 license, 3 organisation, 4 subject
        (or the names of :data:`REVOKE_BY`)."""
        if isinstance(by, str):
            by = REVOKE_BY[by]
        return self.call(OP["REVOKE"], {"by": by, "value": value, "reason": reason,
                                        "actor": actor})

    def release(self, lease_id: int) -> dict:
        """RELEASE: ``{"released": 1}`` if the lease was held."""
        return self.call(OP["RELEASE"], {"lease_id": lease_id})

    def settle(self, reservation_id: int, actual_cost: int) -> dict:
        """SETTLE: charges the actual cost of a reservation; returns a Check answer."""
        return self.call(OP["SETTLE"], {"reservation_id": reservation_id,
                                        "actual_cost": actual_cost})

    def derive(self, parent: str, scopes: Sequence[str] = (), ttl_s: int = 60) -> dict:
        """DERIVE: a Check answer about the parent, plus ``secret`` and ``token`` (the
        child's TokenInfo) when allowed."""
        return self.call(OP["DERIVE"], {"parent": parent, "scopes": list(scopes),
                                        "ttl_s": ttl_s})

    def exchange(self, subject_token: str, role: str = "", scopes: Sequence[str] = (), ttl_s: int = 0) -> dict:
        """EXCHANGE: an identity provider's JWT for a short-lived token: ``secret`` and ``token``.
        A refusal raises TollgateError with status exchange_refused (message ``code: sentence``)."""
        return self.call(OP["EXCHANGE"], {"subject_token": subject_token, "role": role,
                                          "scopes": list(scopes), "ttl_s": ttl_s})

    def subject_status(self, subject: str, active: bool, actor: str = "") -> dict:
        """SUBJECT_STATUS (admin): deprovision (active False) or reactivate a subject; ``revoked``."""
        return self.call(OP["SUBJECT_STATUS"], {"subject": subject, "active": active, "actor": actor})

    def role_put(self, name: str, issuer: str, bound_audiences: Sequence[str], scopes: Sequence[str], *,
                 bound_claims: Mapping[str, str | Sequence[str]] | None = None, bound_claims_type: str = "exact",
                 user_claim: str = "sub", license: str = "", license_claim: str = "",
                 license_mapping: Mapping[str, str] | None = None, org_claim: str = "",
                 org_mapping: Mapping[str, str] | None = None, scope_claim: str = "", max_ttl_s: int = 900,
                 leeway_s: Mapping[str, int] | None = None) -> dict:
        """ROLE_PUT (admin): put an identity role; the role as stored (section 6.25)."""
        return self.call(OP["ROLE_PUT"], role_fields(
            name, issuer, bound_audiences, scopes, bound_claims=bound_claims, bound_claims_type=bound_claims_type,
            user_claim=user_claim, license=license, license_claim=license_claim, license_mapping=license_mapping,
            org_claim=org_claim, org_mapping=org_mapping, scope_claim=scope_claim, max_ttl_s=max_ttl_s, leeway_s=leeway_s))

    def role_delete(self, name: str, actor: str = "") -> dict:
        """ROLE_DELETE (admin): the role as it was; ``not_found`` when there is none."""
        return self.call(OP["ROLE_DELETE"], {"name": name, "actor": actor})

    def role_list(self, after: str = "", limit: int = 0) -> dict:
        """One page of ROLE_LIST: ``{"roles": [Role...], "next": name or ""}``."""
        return self.call(OP["ROLE_LIST"], {"after": after, "limit": limit})

    def role_list_all(self, limit: int = 0) -> list[dict]:
        return self._all_pages(lambda after: self.role_list(after, limit), "roles")

    def issue(self, license_id: str, subject: str, scopes: Sequence[str] = (),
              not_before: int = 0, expires_at: int = 0,
              metadata: Mapping[str, str] | Sequence[Sequence[str]] = (),
              environment: int | str = 0) -> dict:
        if isinstance(environment, str):
            environment = ENVIRONMENT[environment]
        return self.call(OP["ISSUE"], {
            "license_id": license_id, "subject": subject, "scopes": list(scopes),
            "not_before": not_before, "expires_at": expires_at,
            "metadata": metadata, "environment": environment})

    def license_put(self, license_id: str, customer: str, plan: str,
                    status: int | str = 0, valid_until: int = 0, *, valid_from: int = 0,
                    trial_ends_at: int = 0, org: str = "", project: str = "",
                    billing_anchor_day: int = 1) -> dict:
        """LICENSE_PUT (a LicenseSpec); returns LicenseInfo."""
        if isinstance(status, str):
            status = LICENSE_STATUS[status]
        return self.call(OP["LICENSE_PUT"], {
            "license_id": license_id, "customer": customer, "plan": plan, "status": status,
            "valid_until": valid_until, "valid_from": valid_from,
            "trial_ends_at": trial_ends_at, "org": org, "project": project,
            "billing_anchor_day": billing_anchor_day})

    def license_get(self, license_id: str) -> dict:
        return self.call(OP["LICENSE_GET"], {"license_id": license_id})

    def plan_put(self, plan_id: str, entitlements: Sequence[str] = ("*",),
                 quotas: Sequence[Mapping[str, Any]] = (), rate_per_second: int = 0,
                 burst: int = 0, *, features: Sequence[str] = (),
                 rate_limits: Sequence[Mapping[str, Any]] = (),
                 concurrency: Sequence[Mapping[str, Any]] = (),
                 credits: Mapping[str, Any] | None = None, overage: int | str = 0,
                 max_token_lifetime_s: int = 0, max_active_tokens: int = 0,
                 past_due_grace_s: int = 0) -> dict:
        """PLAN_PUT; returns PlanInfo as stored. See :func:`plan_fields` for the shorthands."""
        return self.call(OP["PLAN_PUT"], plan_fields(
            plan_id, entitlements, quotas, rate_per_second, burst, features=features,
            rate_limits=rate_limits, concurrency=concurrency, credits=credits, overage=overage,
            max_token_lifetime_s=max_token_lifetime_s, max_active_tokens=max_active_tokens,
            past_due_grace_s=past_due_grace_s))

    def plan_get(self, plan_id: str) -> dict:
        return self.call(OP["PLAN_GET"], {"plan_id": plan_id})

    def token_get(self, token_id: str) -> dict:
        return self.call(OP["TOKEN_GET"], {"token_id": token_id})

    def token_list(self, license_id: str = "", after: str = "", limit: int = 0) -> dict:
        return self.call(OP["TOKEN_LIST"], {"license_id": license_id, "after": after,
                                            "limit": limit})

    def token_list_all(self, license_id: str = "", limit: int = 0) -> list[dict]:
        """Follow ``next`` until the listing is complete."""
        tokens, after = [], ""
        while True:
            page = self.token_list(license_id, after, limit)
            tokens += page["tokens"]
            if not page["next"]:
                return tokens
            after = page["next"]

    def stats(self) -> dict:
        """STATS: ``{"stats": [[key, value], ...]}`` (values are decimal strings)."""
        return self.call(OP["STATS"])

    def stats_map(self) -> dict[str, str]:
        """STATS as a plain ``{key: value}`` dict."""
        return dict(self.stats()["stats"])

    def rotate(self, token_id: str, grace_s: int = 0) -> dict:
        """ROTATE: ``{"secret": new secret, "token": TokenInfo}``."""
        return self.call(OP["ROTATE"], {"token_id": token_id, "grace_s": grace_s})

    def rotation_end(self, token_id: str) -> dict:
        """ROTATION_END: the token's TokenInfo."""
        return self.call(OP["ROTATION_END"], {"token_id": token_id})

    def org_put(self, org_id: str, name: str = "", suspended: bool | int = False) -> dict:
        return self.call(OP["ORG_PUT"], {"org_id": org_id, "name": name,
                                         "suspended": int(bool(suspended))})

    def org_get(self, org_id: str) -> dict:
        return self.call(OP["ORG_GET"], {"org_id": org_id})

    def credits_grant(self, pool: int | str, owner: str, amount: int, reason: str = "") -> dict:
        """CREDITS_GRANT: ``{"balance": prepaid balance after the grant}``."""
        if isinstance(pool, str):
            pool = POOL[pool]
        return self.call(OP["CREDITS_GRANT"], {"pool": pool, "owner": owner, "amount": amount,
                                               "reason": reason})

    def usage_export(self, from_: int, to: int, org: str = "", license_id: str = "",
                     granularity: int | str = 0, offset: int = 0, limit: int = 0) -> dict:
        """One page of USAGE_EXPORT: ``{"rows": [UsageRow...], "next": offset or 0}``."""
        if isinstance(granularity, str):
            granularity = PERIOD[granularity]
        return self.call(OP["USAGE_EXPORT"], {
            "from": from_, "to": to, "org": org, "license_id": license_id,
            "granularity": granularity, "offset": offset, "limit": limit})

    def usage_export_all(self, from_: int, to: int, org: str = "", license_id: str = "",
                         granularity: int | str = 0, limit: int = 100) -> list[dict]:
        """Follow ``next`` until the export is complete. The default page of 100 rows (at most
        508 bytes each, PROTOCOL.md 6.18) always fits a 64 KiB frame."""
        rows, offset = [], 0
        while True:
            page = self.usage_export(from_, to, org, license_id, granularity, offset, limit)
            rows += page["rows"]
            if not page["next"]:
                return rows
            offset = page["next"]

    def events(self, after: int = 0, limit: int = 0) -> dict:
        """EVENTS: ``{"events": [Event...]}`` with sequence above ``after``."""
        return self.call(OP["EVENTS"], {"after": after, "limit": limit})

    # -- listing and deleting licenses, plans and organisations (sections 6.20, 6.21) --

    def license_list(self, org: str = "", plan: str = "", after: str = "", limit: int = 0) -> dict:
        """One page of LICENSE_LIST: ``{"licenses": [LicenseInfo...], "next": id or ""}``."""
        return self.call(OP["LICENSE_LIST"], {"org": org, "plan": plan, "after": after,
                                              "limit": limit})

    def plan_list(self, after: str = "", limit: int = 0) -> dict:
        """One page of PLAN_LIST: ``{"plans": [PlanInfo...], "next": id or ""}``."""
        return self.call(OP["PLAN_LIST"], {"after": after, "limit": limit})

    def org_list(self, after: str = "", limit: int = 0) -> dict:
        """One page of ORG_LIST: ``{"orgs": [OrgSpec...], "next": id or ""}``."""
        return self.call(OP["ORG_LIST"], {"after": after, "limit": limit})

    def _all_pages(self, page, key: str) -> list[dict]:
        # Only an empty `next` ends a listing: a page may be cut short to fit max_frame.
        items, after = [], ""
        while True:
            answer = page(after)
            items += answer[key]
            if not answer["next"]:
                return items
            after = answer["next"]

    def license_list_all(self, org: str = "", plan: str = "", limit: int = 0) -> list[dict]:
        return self._all_pages(lambda after: self.license_list(org, plan, after, limit), "licenses")

    def plan_list_all(self, limit: int = 0) -> list[dict]:
        return self._all_pages(lambda after: self.plan_list(after, limit), "plans")

    def org_list_all(self, limit: int = 0) -> list[dict]:
        return self._all_pages(lambda after: self.org_list(after, limit), "orgs")

    def license_delete(self, license_id: str, actor: str = "") -> dict:
        """LICENSE_DELETE: the license as it was (LicenseInfo). Raises ``in_use`` while it
        holds a live token."""
        return self.call(OP["LICENSE_DELETE"], {"license_id": license_id, "actor": actor})

    def plan_delete(self, plan_id: str, actor: str = "") -> dict:
        """PLAN_DELETE: the plan as it was (PlanInfo). Raises ``in_use`` while a license is on it."""
        return self.call(OP["PLAN_DELETE"], {"plan_id": plan_id, "actor": actor})

    def org_delete(self, org_id: str, actor: str = "") -> dict:
        """ORG_DELETE: the organisation as it was (OrgSpec). Raises ``in_use`` while a license
        names it."""
        return self.call(OP["ORG_DELETE"], {"org_id": org_id, "actor": actor})

    def events_all(self, after: int = 0, limit: int = 200) -> list[dict]:
        """Every event after ``after``, in pages of ``limit``. The default page of 200 events
        (at most 268 bytes each, PROTOCOL.md 6.19) always fits a 64 KiB frame."""
        out = []
        while True:
            page = self.events(after, limit)["events"]
            out += page
            if not page:
                return out
            after = page[-1]["sequence"]
