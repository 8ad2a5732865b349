"""A local Twilio for the tests: the two Calls endpoints dialgate uses, every request
checked against Twilio's own OpenAPI description, and calls that live scripted lives.

:class:`TwilioFake` serves, on a free loopback port (one thread per request):

- ``POST /2010-04-01/Accounts/{AccountSid}/Calls.json`` (create a call), and
- ``POST /2010-04-01/Accounts/{AccountSid}/Calls/{Sid}.json`` (update it: ``Status``).

Every request, whatever its path or method, is validated with ``openapi-core`` against
``twilio_api_v2010.json``, the description Twilio publishes in the npm package
``@twilio/cli-core`` (:func:`description`: fetched once into ``~/.cache/dialgate/``), as if
it had been sent to ``https://api.twilio.com``: path, method, parameters, form body and the
basic-auth security scheme. What the description cannot say and Twilio's documentation of
those parameters does is checked too (:func:`contract_errors`): no field Twilio does not
know, ``Url``/``Twiml``/``ApplicationSid`` given, ``Timeout`` within 1–600, progress events
Twilio has. A request failing either check is answered 400 and its errors kept in
:attr:`TwilioFake.errors` (the tests assert there are none). Each answer of the fake is
validated against the description's response schema too, so the fake answers what Twilio
would. Credentials other than the account's SID and auth token are answered 401 with
Twilio's error 20003.

Each call created lives the :class:`Life` chosen for its ``To`` number
(:meth:`TwilioFake.script`; default: answered) on a thread of its own, and posts a
status callback, signed as Twilio signs them (``X-Twilio-Signature``, computed by the
``twilio`` library's ``RequestValidator``), for each event its ``StatusCallbackEvent`` asked
for, with the fields Twilio sends. What each callback was answered is kept in
:attr:`TwilioFake.callbacks`.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from enum import StrEnum
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
from openapi_core import OpenAPI
from openapi_core.testing import MockRequest, MockResponse
from twilio.request_validator import RequestValidator

# The package that ships the description, pinned (version and the registry's integrity).
PACKAGE = "@twilio/cli-core"
VERSION = "9.0.0"
TARBALL = f"https://registry.npmjs.org/{PACKAGE}/-/cli-core-{VERSION}.tgz"
INTEGRITY = (
    "sha512-"
    "FPHm5gXAUwM2oATmQi3AGYPFz4Urg5G5/vDkpUu5WqNuwueQaS93HwXjdX1OM+miuq0LMimdfbXDTLEp4Nsjfg=="
)
MEMBER = "package/src/services/twilio-api/twilio_api_v2010.json"
TWILIO = "https://api.twilio.com"
CALLS = "/2010-04-01/Accounts/{AccountSid}/Calls.json"
CALL = "/2010-04-01/Accounts/{AccountSid}/Calls/{Sid}.json"
CALLS_RE = re.compile(r"^/2010-04-01/Accounts/(?P<account>[^/]+)/Calls\.json$")
CALL_RE = re.compile(r"^/2010-04-01/Accounts/(?P<account>[^/]+)/Calls/(?P<sid>[^/]+)\.json$")
FORM = "application/x-www-form-urlencoded"
# Twilio's progress events (StatusCallbackEvent) and what a TwiML source may be.
EVENTS = frozenset({"initiated", "ringing", "answered", "completed"})
SOURCES = ("Url", "Twiml", "ApplicationSid")


class DescriptionUnavailable(Exception):
    """Twilio's OpenAPI description could not be fetched (the tests skip, saying why)."""


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "dialgate"


def _checked(tarball: bytes) -> bytes:
    algo, _, digest = INTEGRITY.partition("-")
    if base64.b64encode(hashlib.new(algo, tarball).digest()).decode() != digest:
        raise DescriptionUnavailable(
            f"{PACKAGE}@{VERSION}: the tarball's digest is not {INTEGRITY}"
        )
    return tarball


def _tarball() -> bytes:
    """The package's tarball: by ``npm pack`` where npm is installed, else over HTTPS from
    the npm registry."""
    npm = shutil.which("npm")
    errors: list[str] = []
    if npm:
        with tempfile.TemporaryDirectory() as tmp:
            try:
                subprocess.run(
                    [npm, "pack", f"{PACKAGE}@{VERSION}", "--pack-destination", tmp],
                    cwd=tmp,
                    check=True,
                    capture_output=True,
                    timeout=120,
                )
                (packed,) = Path(tmp).glob("*.tgz")
                return _checked(packed.read_bytes())
            except (subprocess.SubprocessError, OSError, ValueError) as exc:
                errors.append(f"npm pack: {type(exc).__name__}: {exc}"[:300])
    try:
        return _checked(
            httpx.get(TARBALL, timeout=60, follow_redirects=True).raise_for_status().content
        )
    except httpx.HTTPError as exc:
        errors.append(f"GET {TARBALL}: {type(exc).__name__}: {exc}"[:300])
    raise DescriptionUnavailable(
        f"Twilio's OpenAPI description ({PACKAGE}@{VERSION}, {MEMBER}) could not be fetched: "
        + "; ".join(errors)
    )


def description() -> Path:
    """Twilio's OpenAPI description of API v2010, from the cache (fetched once)."""
    path = cache_dir() / f"twilio_api_v2010-{VERSION}.json"
    if path.exists():
        return path
    with tarfile.open(fileobj=io.BytesIO(_tarball()), mode="r:gz") as tar:
        member = tar.extractfile(MEMBER)
        if member is None:
            raise DescriptionUnavailable(f"{PACKAGE}@{VERSION} has no {MEMBER}")
        data = member.read()
    json.loads(data)  # a broken file is never cached
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_bytes(data)
    tmp.replace(path)
    return path


_API: OpenAPI | None = None
_API_LOCK = threading.Lock()


def openapi() -> tuple[OpenAPI, dict[str, Any]]:
    """The description as openapi-core's validator (built once per test session; only the
    two Calls paths are kept: building the whole description takes a second) and as JSON."""
    global _API
    spec = json.loads(description().read_text())
    with _API_LOCK:
        if _API is None:
            trimmed = {**spec, "paths": {p: spec["paths"][p] for p in (CALLS, CALL)}}
            _API = OpenAPI.from_dict(trimmed)
        return _API, spec


def contract_errors(spec: dict[str, Any], route: str, form: list[tuple[str, str]]) -> list[str]:
    """What Twilio's documentation of the parameters requires beyond their schema."""
    schema = spec["paths"][route]["post"]["requestBody"]["content"][FORM]["schema"]
    known = set(schema["properties"])
    names = [n for n, _ in form]
    fields = dict(form)
    errors = [f"unknown field {n!r} (Twilio ignores it)" for n in names if n not in known]
    errors += [
        f"field {n!r} given twice"
        for n in set(names)
        if names.count(n) > 1 and n != "StatusCallbackEvent"
    ]
    if route == CALLS:
        if not any(fields.get(s) for s in SOURCES):
            errors.append(f"one of {', '.join(SOURCES)} is required")
        if "Timeout" in fields and not (
            fields["Timeout"].isdigit() and 1 <= int(fields["Timeout"]) <= 600
        ):
            errors.append(f"Timeout {fields['Timeout']!r} is not within 1–600 seconds")
        events = [v for n, v in form if n == "StatusCallbackEvent"]
        errors += [
            f"StatusCallbackEvent {e!r} is not one of {sorted(EVENTS)}"
            for e in events
            if e not in EVENTS
        ]
        if fields.get("MachineDetection") not in (None, "Enable", "DetectMessageEnd"):
            errors.append(f"MachineDetection {fields['MachineDetection']!r}")
    return errors


class Life(StrEnum):
    """How a call created at the fake lives."""

    ANSWERED = "answered"  # rings, is answered (AnsweredBy human with detection), completes
    MACHINE = "machine"  # like answered, but a machine answers (said only with detection)
    BUSY = "busy"
    NO_ANSWER = "no_answer"  # rings until its Timeout (at most ``ring_s``), no-answer
    FAILED = "failed"  # fails before ringing, with the script's SIP code and error code
    RING = "ring"  # rings until it is updated (canceled) or its Timeout ends it: no-answer


@dataclass(frozen=True)
class Script:
    life: Life = Life.ANSWERED
    ring_s: float = 0.2
    talk_s: float = 0.3
    sip: int | None = None  # SipResponseCode of a failed call
    error: str | None = None  # ErrorCode of a failed call


@dataclass
class Call:
    sid: str
    params: dict[str, Any]  # the create request's form, StatusCallbackEvent as a list
    script: Script
    status: str = "queued"
    created: datetime = field(default_factory=lambda: datetime.now(UTC))
    answered_by: str | None = None
    updated: threading.Event = field(default_factory=threading.Event)
    sequence: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


@dataclass(frozen=True)
class Callback:
    url: str
    params: dict[str, str]
    signature: str
    status_code: int


class TwilioFake:
    """Serves the Calls endpoints on ``url`` for one account; see the module's docstring."""

    def __init__(self, account_sid: str, auth_token: str) -> None:
        self.api, self.spec = openapi()
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.validator = RequestValidator(auth_token)
        self.errors: list[str] = []  # requests (or answers) the description refuses
        self.requests: list[tuple[str, str, list[tuple[str, str]]]] = []  # method, path, form
        self.calls: dict[str, Call] = {}
        self.callbacks: list[Callback] = []
        self.scripts: dict[str, Script] = {}
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._stop = threading.Event()
        self._http = httpx.Client(timeout=10)
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                fake._handle(self)

            def do_GET(self) -> None:
                fake._handle(self)

            def do_DELETE(self) -> None:
                fake._handle(self)

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._serving = threading.Thread(target=self.server.serve_forever, daemon=True)

    # -- lifecycle -----------------------------------------------------------------------
    def start(self) -> TwilioFake:
        self._serving.start()
        return self

    def close(self) -> None:
        self._stop.set()
        for call in list(self.calls.values()):
            call.updated.set()
        for t in list(self._threads):
            t.join(10)
        self.server.shutdown()
        self.server.server_close()
        self._http.close()

    def script(self, to: str, life: Life, **kw: Any) -> None:
        """Calls to ``to`` live ``life`` (ring and talk times, SIP and error codes in ``kw``)."""
        self.scripts[to] = Script(life, **kw)

    # -- requests ------------------------------------------------------------------------
    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        length = int(h.headers.get("Content-Length") or 0)
        body = h.rfile.read(length) if length else b""
        path = urlsplit(h.path).path
        ctype = (h.headers.get("Content-Type") or "").lower()
        form = parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)
        self.requests.append((h.command, path, form))
        request = MockRequest(
            TWILIO,
            h.command,
            path,
            headers=dict(h.headers.items()),
            data=body,
            content_type=ctype or FORM,
        )
        result = self.api.unmarshal_request(request)
        problems = [f"{type(e).__name__}: {e}" for e in result.errors]
        for e in result.errors:
            problems += [f"  {type(c).__name__}: {c}" for c in _causes(e)]
        route = CALLS if CALLS_RE.match(path) else CALL if CALL_RE.match(path) else None
        if route is not None and not result.errors:
            problems += contract_errors(self.spec, route, form)
        if problems:
            self._refuse(h, path, problems)
            return
        if not self._authorized(h.headers.get("Authorization", "")):
            status, answer = 401, _error(401, 20003, "Authenticate")
        elif route == CALLS:
            status, answer = self._create(form)
        else:
            m = CALL_RE.match(path)
            assert m is not None
            status, answer = self._update(m["sid"], dict(form))
        self._answer(h, request, status, answer)

    def _refuse(self, h: BaseHTTPRequestHandler, path: str, problems: list[str]) -> None:
        with self._lock:
            self.errors.append(f"{h.command} {path}: " + "; ".join(problems))
        self._send(h, 400, _error(400, 21201, "; ".join(problems)[:500]))

    def _authorized(self, header: str) -> bool:
        expected = base64.b64encode(f"{self.account_sid}:{self.auth_token}".encode()).decode()
        return header == f"Basic {expected}"

    def _answer(
        self, h: BaseHTTPRequestHandler, request: MockRequest, status: int, answer: dict[str, Any]
    ) -> None:
        data = json.dumps(answer).encode()
        if status < 400:  # the description has no error answers: check the calls only
            response = MockResponse(data, status_code=status, content_type="application/json")
            for e in self.api.unmarshal_response(request, response).errors:
                with self._lock:
                    self.errors.append(f"the fake's answer {status}: {type(e).__name__}: {e}")
        self._send(h, status, answer)

    @staticmethod
    def _send(h: BaseHTTPRequestHandler, status: int, answer: dict[str, Any]) -> None:
        data = json.dumps(answer).encode()
        h.send_response(status)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)

    def _create(self, form: list[tuple[str, str]]) -> tuple[int, dict[str, Any]]:
        params: dict[str, Any] = dict(form)
        params["StatusCallbackEvent"] = [v for n, v in form if n == "StatusCallbackEvent"]
        call = Call(f"CA{uuid.uuid4().hex}", params, self.scripts.get(params["To"], Script()))
        with self._lock:
            self.calls[call.sid] = call
        t = threading.Thread(target=self._live, args=(call,), daemon=True)
        self._threads.append(t)
        t.start()
        return 201, self._resource(call)

    def _update(self, sid: str, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        call = self.calls.get(sid)
        if call is None:
            return 404, _error(
                404, 20404, f"The requested resource /Calls/{sid}.json was not found"
            )
        wanted = form.get("Status")
        with call.lock:
            if wanted in ("canceled", "completed") and call.status in ("queued", "ringing"):
                call.status = "canceled"  # Twilio cancels a call not yet answered
                call.updated.set()
            elif wanted == "completed" and call.status == "in-progress":
                call.status = "completed"
                call.updated.set()
            # "canceled" of a call in progress, or any update of an ended one: unchanged.
        return 200, self._resource(call)

    def _resource(self, call: Call) -> dict[str, Any]:
        stamp = format_datetime(call.created, usegmt=True)
        return {
            "sid": call.sid,
            "account_sid": self.account_sid,
            "api_version": "2010-04-01",
            "date_created": stamp,
            "date_updated": stamp,
            "direction": "outbound-api",
            "from": call.params["From"],
            "from_formatted": call.params["From"],
            "to": call.params["To"],
            "to_formatted": call.params["To"],
            "status": call.status,
            "answered_by": call.answered_by,
            "uri": f"/2010-04-01/Accounts/{self.account_sid}/Calls/{call.sid}.json",
        }

    # -- a call's life -------------------------------------------------------------------
    def _wait(self, call: Call, seconds: float) -> bool:
        """Wait ``seconds``; True when the call was updated (ended from outside) meanwhile."""
        return call.updated.wait(seconds) or self._stop.is_set()

    def _live(self, call: Call) -> None:
        s = call.script
        detect = call.params.get("MachineDetection") is not None
        self._progress(call, "initiated", "initiated")
        if s.life == Life.FAILED:
            self._end(call, "failed", SipResponseCode=s.sip, ErrorCode=s.error)
            return
        with call.lock:
            call.status = "ringing"
        self._progress(call, "ringing", "ringing")
        timeout = float(call.params.get("Timeout", 60))
        ring = timeout if s.life == Life.RING else min(s.ring_s, timeout)
        if self._wait(call, ring):
            self._end(call, call.status)  # canceled from outside
            return
        if s.life == Life.BUSY:
            self._end(call, "busy", SipResponseCode=486)
            return
        if s.life in (Life.NO_ANSWER, Life.RING) or ring >= timeout:
            self._end(call, "no-answer", SipResponseCode=487)
            return
        with call.lock:
            if call.status != "ringing":
                self._end(call, call.status)
                return
            call.status = "in-progress"
            if detect:
                call.answered_by = "machine_end_beep" if s.life == Life.MACHINE else "human"
        answered = time.monotonic()
        self._progress(call, "answered", "in-progress")
        limit = float(call.params.get("TimeLimit", 14400))
        self._wait(call, min(s.talk_s, limit))
        duration = max(1, round(time.monotonic() - answered))
        self._end(call, "completed", SipResponseCode=200, CallDuration=duration, Duration=1)

    def _progress(self, call: Call, event: str, status: str, **extra: Any) -> None:
        if event in call.params["StatusCallbackEvent"]:
            self._post(call, status, extra)

    def _end(self, call: Call, status: str, **extra: Any) -> None:
        with call.lock:
            call.status = status
        events = call.params["StatusCallbackEvent"]
        if "completed" in events or not events:  # Twilio's default: completed only
            self._post(call, status, extra)

    def _post(self, call: Call, status: str, extra: dict[str, Any]) -> None:
        """One status callback, with the fields and the signature Twilio sends."""
        url = call.params.get("StatusCallback")
        if not url or self._stop.is_set():
            return
        with call.lock:
            seq, call.sequence = call.sequence, call.sequence + 1
        params = {
            "AccountSid": self.account_sid,
            "ApiVersion": "2010-04-01",
            "CallSid": call.sid,
            "CallStatus": status,
            "Called": call.params["To"],
            "Caller": call.params["From"],
            "CallbackSource": "call-progress-events",
            "Direction": "outbound-api",
            "From": call.params["From"],
            "To": call.params["To"],
            "SequenceNumber": str(seq),
            "Timestamp": format_datetime(datetime.now(UTC), usegmt=True),
        }
        if call.answered_by is not None:
            params["AnsweredBy"] = call.answered_by
        params.update({k: str(v) for k, v in extra.items() if v is not None})
        self.send(url, params)

    def sign(self, url: str, params: dict[str, str]) -> str:
        """Twilio's signature of a callback to ``url`` with ``params``."""
        return str(self.validator.compute_signature(url, params))

    def send(self, url: str, params: dict[str, str], signature: str | None = None) -> Callback:
        """Post a status callback (signed as Twilio signs it unless ``signature`` is given);
        what it was answered is kept."""
        signature = self.sign(url, params) if signature is None else signature
        try:
            r = self._http.post(url, data=params, headers={"X-Twilio-Signature": signature})
            code = r.status_code
        except httpx.HTTPError:
            code = 0
        done = Callback(url, params, signature, code)
        with self._lock:
            self.callbacks.append(done)
        return done


def _causes(e: BaseException) -> list[BaseException]:
    """The schema errors under an openapi-core error (what exactly was refused)."""
    out: list[BaseException] = []
    cause = e.__cause__
    while cause is not None:
        out.append(cause)
        out += list(getattr(cause, "schema_errors", []) or [])
        cause = cause.__cause__
    return out


def _error(status: int, code: int, message: str) -> dict[str, Any]:
    """An error answer as Twilio's REST API shapes it."""
    return {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }
