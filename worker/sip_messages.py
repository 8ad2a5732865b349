"""SIP messages (RFC 3261 §7, §20) and digest authentication (RFC 2617, RFC 7616): pure
functions, no I/O, used by :mod:`worker.sip`.

- :func:`parse` reads one datagram into a :class:`SipMessage` (a request or a response):
  the start line, headers in order (compact forms expanded, folded lines joined, several
  values of one line, e.g. ``Via: a, b``, split), the body cut at ``Content-Length``.
- :func:`request` and :func:`response` write one, ``Content-Length`` always set.
- :func:`branch`, :func:`tag`, :func:`call_id` make the identifiers that must be unique
  (the branch carries RFC 3261's magic cookie ``z9hG4bK``).
- :func:`challenge` / :func:`authorization` read a ``WWW-Authenticate`` or
  ``Proxy-Authenticate`` challenge and answer it (MD5 or SHA-256, ``qop=auth`` with a
  client nonce and a nonce count, or no ``qop`` at all as in RFC 2069).

A message that cannot be read raises :class:`SipParseError` (the transport drops it).
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass, field

MAGIC = "z9hG4bK"  # RFC 3261 §8.1.1.7: a branch starting with it is unique by construction

# RFC 3261 §7.3.3 and the IANA registry's compact forms.
COMPACT = {
    "i": "Call-ID",
    "m": "Contact",
    "e": "Content-Encoding",
    "l": "Content-Length",
    "c": "Content-Type",
    "f": "From",
    "s": "Subject",
    "k": "Supported",
    "t": "To",
    "v": "Via",
    "o": "Event",
    "r": "Refer-To",
    "u": "Allow-Events",
}
# Headers whose one line may hold several values separated by commas (RFC 3261 §7.3.1).
LISTS = frozenset(
    {"via", "contact", "route", "record-route", "allow", "supported", "require", "accept"}
)

_START_REQUEST = re.compile(r"^([A-Za-z]+) (\S+) SIP/2\.0$")
_START_RESPONSE = re.compile(r"^SIP/2\.0 ([1-6][0-9]{2}) ?(.*)$")


class SipParseError(ValueError):
    """A datagram that is not a SIP message we can read."""


@dataclass
class SipMessage:
    """One request (``method`` and ``uri`` set) or response (``code`` and ``reason``)."""

    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    method: str | None = None
    uri: str | None = None
    code: int | None = None
    reason: str = ""

    @property
    def is_request(self) -> bool:
        return self.method is not None

    def get(self, name: str) -> str | None:
        """The first value of a header (any case, compact form or not), or None."""
        want = canonical(name).lower()
        return next((v for n, v in self.headers if n.lower() == want), None)

    def get_all(self, name: str) -> list[str]:
        """Every value of a header, in order (the lines' values, each split at commas)."""
        want = canonical(name).lower()
        return [v for n, v in self.headers if n.lower() == want]

    @property
    def call_id(self) -> str:
        return self.get("Call-ID") or ""

    @property
    def cseq(self) -> tuple[int, str]:
        """The CSeq's number and method; (0, "") when it is missing or malformed."""
        parts = (self.get("CSeq") or "").split()
        if len(parts) != 2 or not parts[0].isdigit():
            return 0, ""
        return int(parts[0]), parts[1].upper()


def canonical(name: str) -> str:
    """A header name's long form (``v`` → ``Via``); other names as given."""
    return COMPACT.get(name.lower(), name) if len(name) == 1 else name


def split_list(value: str) -> list[str]:
    """Split a header value at the commas outside quotes and ``<...>``."""
    parts, depth, quoted, start = [], 0, False, 0
    i = 0
    while i < len(value):
        ch = value[i]
        if quoted and ch == "\\":
            i += 2
            continue
        if ch == '"':
            quoted = not quoted
        elif not quoted and ch == "<":
            depth += 1
        elif not quoted and ch == ">":
            depth = max(0, depth - 1)
        elif not quoted and depth == 0 and ch == ",":
            parts.append(value[start:i].strip())
            start = i + 1
        i += 1
    parts.append(value[start:].strip())
    return [p for p in parts if p]


def parse(data: bytes) -> SipMessage:
    """Read one SIP message from a datagram; :class:`SipParseError` when it is not one."""
    head, sep, rest = data.partition(b"\r\n\r\n")
    if not sep:
        head, sep, rest = data.partition(b"\n\n")
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SipParseError(f"headers are not UTF-8: {exc}") from None
    lines = text.replace("\r\n", "\n").split("\n")
    while lines and not lines[0].strip():  # keep-alive CRLFs before a message
        lines.pop(0)
    if not lines:
        raise SipParseError("empty datagram")
    msg = SipMessage()
    start = lines[0].strip()
    if m := _START_RESPONSE.match(start):
        msg.code, msg.reason = int(m.group(1)), m.group(2)
    elif m := _START_REQUEST.match(start):
        msg.method, msg.uri = m.group(1).upper(), m.group(2)
    else:
        raise SipParseError(f"not a SIP start line: {start[:80]!r}")
    unfolded: list[str] = []
    for line in lines[1:]:
        if line[:1] in (" ", "\t") and unfolded:
            unfolded[-1] += " " + line.strip()
        elif line.strip():
            unfolded.append(line)
    for line in unfolded:
        name, colon, value = line.partition(":")
        if not colon or not name.strip():
            raise SipParseError(f"not a header line: {line[:80]!r}")
        name = canonical(name.strip())
        values = split_list(value) if name.lower() in LISTS else [value.strip()]
        msg.headers += [(name, v) for v in values]
    length = msg.get("Content-Length")
    if length is None:
        msg.body = rest  # UDP: the datagram's end is the body's end (RFC 3261 §18.3)
    elif not length.strip().isdigit() or int(length) > len(rest):
        raise SipParseError(f"Content-Length {length!r} but {len(rest)} bytes of body")
    else:
        msg.body = rest[: int(length)]
    if not msg.call_id or not msg.cseq[1] or not msg.get("Via"):
        raise SipParseError("Call-ID, CSeq or Via missing")
    return msg


def _write(start: str, headers: list[tuple[str, str]], body: bytes) -> bytes:
    lines = [start, *(f"{n}: {v}" for n, v in headers if n.lower() != "content-length")]
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8") + body


def request(method: str, uri: str, headers: list[tuple[str, str]], body: bytes = b"") -> bytes:
    """A request's bytes; ``Content-Length`` is set from ``body``."""
    return _write(f"{method} {uri} SIP/2.0", headers, body)


def response(
    req: SipMessage,
    code: int,
    reason: str,
    to_tag: str | None = None,
    extra: list[tuple[str, str]] | None = None,
    body: bytes = b"",
) -> bytes:
    """A response to ``req`` (RFC 3261 §8.2.6.2): its Vias, From, Call-ID and CSeq copied,
    its To given ``to_tag`` when it has no tag yet."""
    to = req.get("To") or ""
    if to_tag and param(to, "tag") is None:
        to = f"{to};tag={to_tag}"
    headers = [("Via", v) for v in req.get_all("Via")]
    headers += [("From", req.get("From") or ""), ("To", to)]
    headers += [("Call-ID", req.call_id), ("CSeq", req.get("CSeq") or "")]
    return _write(f"SIP/2.0 {code} {reason}", headers + (extra or []), body)


# -- identifiers ------------------------------------------------------------------------------
def branch() -> str:
    return MAGIC + secrets.token_hex(8)


def tag() -> str:
    return secrets.token_hex(6)


def call_id(host: str) -> str:
    return f"{secrets.token_hex(12)}@{host}"


# -- addresses ---------------------------------------------------------------------------------
def uri_of(value: str) -> str:
    """The URI of a name-addr or addr-spec header value (``"A" <sip:x>;tag=1`` → ``sip:x``)."""
    if "<" in value:
        return value[value.index("<") + 1 : value.index(">", value.index("<"))]
    return value.split(";", 1)[0].strip()


def param(value: str, name: str) -> str | None:
    """A header parameter (``tag``, ``branch``, ...) after the URI, or None."""
    tail = value[value.rindex(">") + 1 :] if ">" in value else value
    for piece in tail.split(";")[1:]:
        key, _, val = piece.partition("=")
        if key.strip().lower() == name.lower():
            return val.strip().strip('"')
    return None


def address(uri: str) -> tuple[str, int]:
    """The host and port a SIP URI's requests go to (port 5060 when none is given; no DNS
    SRV lookup). ValueError when it is not a ``sip:`` URI with a host."""
    m = re.match(r"^sips?:(?:[^@]*@)?(\[[0-9A-Fa-f:.]+\]|[^:;?>@]+)(?::([0-9]+))?", uri.strip())
    if not m or not m.group(1):
        raise ValueError(f"not a SIP URI with a host: {uri!r}")
    port = int(m.group(2)) if m.group(2) else 5060
    if not 0 < port < 65536:
        raise ValueError(f"port {port} out of range in {uri!r}")
    return m.group(1).strip("[]"), port


# -- digest authentication ---------------------------------------------------------------------
_HASHES = {"MD5": hashlib.md5, "SHA-256": hashlib.sha256}
_PARAM = re.compile(r'\s*([A-Za-z0-9_-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^,\s]*)\s*,?')


def challenge(value: str) -> dict[str, str]:
    """A ``Digest`` challenge's parameters (names lower-cased, quotes removed); ValueError
    for another scheme."""
    scheme, _, rest = value.strip().partition(" ")
    if scheme.lower() != "digest":
        raise ValueError(f"unsupported authentication scheme {scheme!r}")
    found = {}
    for m in _PARAM.finditer(rest):
        raw = m.group(2)
        if raw.startswith('"'):
            raw = re.sub(r"\\(.)", r"\1", raw[1:-1])
        found[m.group(1).lower()] = raw
    if "nonce" not in found or "realm" not in found:
        raise ValueError("a digest challenge without realm or nonce")
    return found


def authorization(
    params: dict[str, str],
    method: str,
    uri: str,
    username: str,
    password: str,
    nc: int = 1,
    cnonce: str | None = None,
) -> str:
    """The ``Authorization`` / ``Proxy-Authorization`` value answering a digest challenge.

    With ``qop=auth`` offered, it is used (nonce count ``nc``, a fresh ``cnonce`` unless
    given); ``auth-int`` alone is refused (ValueError: we would have to hash the body of
    every request). Without ``qop``: RFC 2069's ``H(HA1:nonce:HA2)``."""
    algorithm = params.get("algorithm", "MD5")
    base = algorithm.upper().removesuffix("-SESS")
    if base not in _HASHES:
        raise ValueError(f"unsupported digest algorithm {algorithm!r}")

    def h(text: str) -> str:
        return _HASHES[base](text.encode("utf-8")).hexdigest()

    realm, nonce = params["realm"], params["nonce"]
    qops = [q.strip().lower() for q in params.get("qop", "").split(",") if q.strip()]
    if qops and "auth" not in qops:
        raise ValueError(f"unsupported qop {params['qop']!r} (only auth)")
    cnonce = cnonce or secrets.token_hex(8)
    ha1 = h(f"{username}:{realm}:{password}")
    if algorithm.upper().endswith("-SESS"):
        ha1 = h(f"{ha1}:{nonce}:{cnonce}")
    ha2 = h(f"{method}:{uri}")
    fields = [
        f'username="{username}"',
        f'realm="{realm}"',
        f'nonce="{nonce}"',
        f'uri="{uri}"',
    ]
    if qops:
        count = f"{nc:08x}"
        fields.append(f'response="{h(f"{ha1}:{nonce}:{count}:{cnonce}:auth:{ha2}")}"')
        fields += ["qop=auth", f"nc={count}", f'cnonce="{cnonce}"']
    else:
        fields.append(f'response="{h(f"{ha1}:{nonce}:{ha2}")}"')
    fields.append(f"algorithm={algorithm}")
    if "opaque" in params:
        fields.append(f'opaque="{params["opaque"]}"')
    return "Digest " + ", ".join(fields)


# -- the session description ---------------------------------------------------------------------
def sdp_offer(ip: str, port: int, session: int) -> bytes:
    """A minimal audio offer (RFC 4566 / 3264): PCMU and PCMA at ``ip:port``. dialgate
    sends no media; the offer is there because many trunks refuse an INVITE without one."""
    family = "IP6" if ":" in ip else "IP4"
    lines = [
        "v=0",
        f"o=dialgate {session} {session} IN {family} {ip}",
        "s=dialgate",
        f"c=IN {family} {ip}",
        "t=0 0",
        f"m=audio {port} RTP/AVP 0 8",
        "a=rtpmap:0 PCMU/8000",
        "a=rtpmap:8 PCMA/8000",
        "a=sendrecv",
    ]
    return ("\r\n".join(lines) + "\r\n").encode("ascii")
