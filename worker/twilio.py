"""The Twilio back end: calls placed through Twilio's REST API (``DIALGATE_PROVIDER=twilio``).

:meth:`TwilioProvider.place` creates the call (``POST /2010-04-01/Accounts/{sid}/Calls.json``
through the official ``twilio`` library) and answers once Twilio has it or refused it.
What happens to the call afterwards is *not* reported from here: Twilio posts it to the
control API's status callback (``control.api.twilio``), whose URL every call carries with
its attempt id (:func:`shared.callbacks.twilio_status_url`), and the control side writes it through
:func:`shared.calls.apply_events` like every other back end's events. ``report`` is never
called.

Settings: ``twilio_account_sid``, ``twilio_auth_token``, ``twilio_from`` (caller id),
``twilio_callback_url`` (the public URL of the status route, exactly as Twilio must call
it), ``twilio_api_url`` (Twilio's REST API; the tests point it at a local fake: it becomes
the ``base_url`` of the library's ``api`` domain, the attribute the library builds every
``api.twilio.com`` URL from), ``sip_ring_timeout`` (how long a call may ring) and each
call's ``max_seconds``.

Bounds: ``Timeout`` (ringing) and ``TimeLimit`` (the call's duration) are chosen so that
their sum stays within the call's ``max_seconds``, the bound every back end keeps: the
call's line in Redis expires shortly after it.

Hang-ups: Twilio knows the calls' states, this process does not (their events go to the
control API), so the back end remembers the calls it placed (SID → campaign) for
``max_seconds`` and asks Twilio to end them: ``Status=canceled`` for a ``ringing`` hang-up
(Twilio cancels a queued or ringing call and leaves one in progress alone, or refuses: either
is the expected answer and is ignored), ``Status=completed`` for ``all``. Each end reaches
the control API as its own status callback (``canceled`` or ``completed``). The requests
are sent by a small pool of threads: a hang-up never holds the control subscriber for a
round trip per call.

Stopping (:meth:`TwilioProvider.close`) hangs nothing up: the calls live at Twilio, not in
this process, their events go to the control API whatever happens to the worker, and
``TimeLimit`` bounds them. A worker restarted during a deploy must not cut its
conversations; a pause, cancel or emergency stop hangs up through its own broadcast.

Requests are never retried: a repeated create-call request could ring the person twice.
A create-call request that times out is answered ``provider_error`` although Twilio may
have placed the call; its status callback then still reaches the attempt.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import requests
import structlog
from twilio.base import values
from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client

from shared.callbacks import twilio_status_url
from shared.settings import Settings
from shared.states import CallOutcome, Hangup
from worker.provider import CallRequest, Placed, Report, at_once

log = structlog.get_logger("dialgate.worker")

# What the call does once answered: the placeholder for a campaign's own script (there is
# none yet). A one-second pause, then Twilio reaches the end of the TwiML and hangs up.
TWIML = '<Response><Pause length="1"/></Response>'
# Every progress event Twilio can post: the attempt's whole life reaches the control API.
EVENTS = ("initiated", "ringing", "answered", "completed")
# Seconds a request to Twilio may take (connect and read) before it is given up.
HTTP_TIMEOUT = 10.0
# Twilio's limits of ``Timeout`` (the ring time), in seconds.
RING_MIN, RING_MAX = 1, 600
# Threads that send hang-up requests.
HANGUP_THREADS = 8
# Twilio's error code for refused credentials ("Authenticate").
AUTH_CODE = 20003


def call_bounds(max_seconds: float, ring_timeout: float) -> tuple[int, int]:
    """``(Timeout, TimeLimit)`` in whole seconds: ringing at most ``ring_timeout``, and the
    two together within ``max_seconds`` (each at least 1 s, Twilio's smallest)."""
    ring = max(RING_MIN, min(RING_MAX, math.floor(min(ring_timeout, max_seconds / 2))))
    return ring, max(1, math.floor(max_seconds - ring))


@dataclass(frozen=True)
class _Placed:
    campaign_id: int
    attempt_id: int
    forget_at: float  # monotonic: the call has surely ended by then (its TimeLimit)


class TwilioProvider:
    """Places calls at Twilio; see the module's docstring for what it does and does not."""

    def __init__(self, settings: Settings, report: Report) -> None:
        sid, token = settings.twilio_account_sid, settings.secret("twilio_auth_token")
        if not (sid and token and settings.twilio_from and settings.twilio_callback_url):
            raise ValueError(
                "DIALGATE_TWILIO_ACCOUNT_SID, DIALGATE_TWILIO_AUTH_TOKEN, DIALGATE_TWILIO_FROM "
                "and DIALGATE_TWILIO_CALLBACK_URL are required with DIALGATE_PROVIDER=twilio"
            )
        self.report = report  # unused: the calls' events reach the control API (see above)
        self.account_sid = sid
        self._token = token
        self.caller_id = settings.twilio_from
        self.callback_url = settings.twilio_callback_url
        self.api_url = settings.twilio_api_url
        self.ring_timeout = settings.sip_ring_timeout
        self._local = threading.local()  # one client (one HTTP session) per thread
        self._lock = threading.Lock()
        self._calls: dict[str, _Placed] = {}
        self._pool = ThreadPoolExecutor(HANGUP_THREADS, thread_name_prefix="twilio-hangup")
        self._closed = False

    def client(self) -> Client:
        """This thread's Twilio client, pointed at ``twilio_api_url``."""
        c: Client | None = getattr(self._local, "client", None)
        if c is None:
            http = TwilioHttpClient(timeout=HTTP_TIMEOUT)  # no max_retries: never a retry
            c = Client(self.account_sid, self._token, http_client=http)
            c.api.base_url = self.api_url  # the library's own domain base URL
            self._local.client = c
        return c

    def place(self, call: CallRequest) -> Placed:
        ring, limit = call_bounds(call.max_seconds, self.ring_timeout)
        try:
            created = self.client().calls.create(
                to=call.phone,
                from_=self.caller_id,
                twiml=TWIML,
                status_callback=twilio_status_url(self.callback_url, call.attempt_id),
                status_callback_event=list(EVENTS),
                status_callback_method="POST",
                timeout=ring,
                time_limit=limit,
                machine_detection="Enable" if call.machine_detection else values.unset,
            )
        except TwilioRestException as exc:
            auth = exc.status == 401 or exc.code == AUTH_CODE
            outcome = CallOutcome.AUTH_ERROR if auth else CallOutcome.PROVIDER_ERROR
            error = f"{exc.code or exc.status} {exc.msg}".strip()
            log.warning("twilio_call_refused", attempt_id=call.attempt_id, error=error)
            return Placed(False, outcome, error=error)
        except (requests.RequestException, TwilioException) as exc:
            error = f"Twilio unreachable: {type(exc).__name__}: {exc}"[:200]
            log.warning("twilio_unreachable", attempt_id=call.attempt_id, error=error)
            return Placed(False, CallOutcome.PROVIDER_ERROR, error=error)
        sid = str(created.sid)
        with self._lock:
            self._prune()
            self._calls[sid] = _Placed(
                call.campaign_id, call.attempt_id, time.monotonic() + call.max_seconds
            )
        return Placed(True, CallOutcome.ACCEPTED, provider_call_id=sid)

    def place_many(self, calls: Sequence[CallRequest]) -> list[Placed]:
        return at_once(self.place, calls)

    def hang_up(self, campaign_id: int | None, scope: Hangup) -> int:
        if scope == Hangup.NONE:
            return 0
        status = "canceled" if scope == Hangup.RINGING else "completed"
        with self._lock:
            self._prune()
            sids = [s for s, c in self._calls.items() if campaign_id in (None, c.campaign_id)]
            if scope == Hangup.ALL:  # every one of them ends: nothing left to hang up
                for s in sids:
                    del self._calls[s]
            if self._closed:
                return 0
            for s in sids:
                self._pool.submit(self._end, s, status)
        return len(sids)

    def _end(self, sid: str, status: str) -> None:
        """Ask Twilio to end one call; a refusal (the call is over, or in progress for a
        cancel) is expected and only logged."""
        try:
            self.client().calls(sid).update(status=status)
        except TwilioRestException as exc:
            error = f"{exc.code} {exc.msg}"
            log.info("twilio_hangup_refused", call=sid, status=status, error=error)
        except (requests.RequestException, TwilioException) as exc:
            log.warning("twilio_hangup_failed", call=sid, status=status, error=str(exc)[:200])

    def live(self) -> int:
        """Calls placed here within their ``max_seconds``: whether they still ring or talk
        is known to Twilio and the control API, not to this process (an upper bound)."""
        with self._lock:
            self._prune()
            return len(self._calls)

    def close(self) -> None:
        """Stop sending requests (hang-ups already asked for are sent); calls stay up."""
        with self._lock:
            self._closed = True
            self._calls.clear()
        self._pool.shutdown(wait=True)

    def _prune(self) -> None:
        """Forget calls past their bound (called with the lock held)."""
        now = time.monotonic()
        for sid in [s for s, c in self._calls.items() if c.forget_at <= now]:
            del self._calls[sid]
