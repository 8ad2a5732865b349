"""The campaign page's server-sent event streams (``/campaigns/{id}/events``).

- **A cap per caller**: a token (with all its web sessions) may have
  ``DIALGATE_MAX_STREAMS_PER_CALLER`` streams open at once in one API process; one more
  is refused with 429 before it starts.
- **One render per campaign**: every stream watching a campaign shares one read of its
  facts and one rendering of each fragment per tick (:class:`Shared`), whatever the number
  of streams: the live fragment is rendered once per set of actions its viewers' roles
  may take (the only part of it that differs between callers), the diagnosis once, the
  chart's data (``event: activity``, JSON: :mod:`control.campaigns.activity`) once per
  :data:`ACTIVITY_EVERY` ticks.
- **The credential is checked again** every :data:`CREDENTIAL_EVERY_S` seconds while
  streaming: a revoked token's (or ended session's) stream ends within that bound.
- Each stream ends after :data:`STREAM_FOR_S`; the browser reconnects by itself.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable, MutableMapping
from typing import Any, TypeVar

from fastapi import Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from control.auth.roles import Who, offered
from control.auth.security import Security
from control.campaigns import activity, diagnosis
from control.campaigns.overview import overview
from control.campaigns.service import Control
from shared.errors import DialgateError, TooManyRequests

T = TypeVar("T")
EVENT_TICK_S = 0.5  # how often a stream looks for a change
DIAGNOSIS_EVERY = 6  # ticks between two diagnoses
ACTIVITY_EVERY = 4  # ticks between two readings of the chart's data (the last hour)
STREAM_FOR_S = 300.0  # a stream ends after this; the browser reconnects by itself
CREDENTIAL_EVERY_S = 2.0  # how often a stream checks its caller's credential again
FORGET_AFTER_S = 60.0  # a shared value nobody asked for this long is dropped

# What renders a fragment: the live one from the campaign's facts and the campaign as
# one caller sees it; the diagnosis from its answer.
LiveRender = Callable[[dict[str, Any], dict[str, Any]], str]
DiagnosisRender = Callable[[dict[str, Any]], str]


class Shared:
    """Values computed once for every caller who asks within ``fresh_s`` of the last
    computation; callers asking while one runs wait for it. ``computed`` counts the
    computations by the first part of their key."""

    def __init__(self) -> None:
        self._values: dict[Hashable, tuple[float, asyncio.Future[Any]]] = {}
        self.computed: Counter[str] = Counter()

    async def get(self, key: tuple[str, Hashable], fresh_s: float, compute: Callable[[], T]) -> T:
        now = asyncio.get_running_loop().time()
        hit = self._values.get(key)
        if hit is None or (hit[1].done() and now - hit[0] >= fresh_s):
            future: asyncio.Future[T] = asyncio.ensure_future(run_in_threadpool(compute))
            future.add_done_callback(_retrieved)
            self._values[key] = (now, future)
            self.computed[key[0]] += 1
            self._forget(now)
            hit = self._values[key]
        # Shielded: a stream that ends does not cancel what the others wait for.
        value: T = await asyncio.shield(hit[1])
        return value

    def _forget(self, now: float) -> None:
        for key, (at, future) in list(self._values.items()):
            if future.done() and now - at > FORGET_AFTER_S:
                del self._values[key]


def _retrieved(future: asyncio.Future[Any]) -> None:
    """Mark a failed computation's error as seen (each waiting stream reports it)."""
    if not future.cancelled():
        future.exception()


class _Stream(StreamingResponse):
    """A streaming answer that gives its caller's slot back however it ends."""

    def __init__(self, content: AsyncIterator[str], release: Callable[[], None]) -> None:
        super().__init__(
            content,
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )
        self._release = release

    async def __call__(
        self,
        scope: MutableMapping[str, Any],
        receive: Callable[[], Awaitable[MutableMapping[str, Any]]],
        send: Callable[[MutableMapping[str, Any]], Awaitable[None]],
    ) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._release()


def caller_key(who: Who) -> str:
    """Whose streams these are: the token (a web session counts as its token's)."""
    p = who.principal
    return f"token:{p.token_id}" if p.token_id is not None else f"name:{p.name}"


class Streams:
    """The event streams of one API process: the open ones per caller, and what they
    share."""

    def __init__(
        self,
        control: Control,
        security: Security,
        render_live: LiveRender,
        render_diagnosis: DiagnosisRender,
    ) -> None:
        self.control = control
        self.security = security
        self.render_live = render_live
        self.render_diagnosis = render_diagnosis
        self.limit = control.settings.max_streams_per_caller
        self.open: Counter[str] = Counter()
        self.shared = Shared()

    def response(self, request: Request, campaign_id: int, who: Who) -> StreamingResponse:
        """The stream, or 429 when the caller has the most streams allowed open."""
        key = caller_key(who)
        if self.open[key] >= self.limit:
            raise TooManyRequests(
                f"{who.name!r} already has {self.open[key]} live event streams open, the "
                f"most allowed (DIALGATE_MAX_STREAMS_PER_CALLER={self.limit}); close a "
                "campaign page or wait for one to end"
            )
        self.open[key] += 1
        return _Stream(self._events(request, campaign_id, who), lambda: self._release(key))

    def _release(self, key: str) -> None:
        self.open[key] -= 1
        if self.open[key] <= 0:
            del self.open[key]

    async def live(self, campaign_id: int, who: Who) -> str:
        """The live fragment as ``who`` sees it: the facts read once per tick for every
        stream, rendered once per set of offered actions."""
        facts = await self.shared.get(
            ("facts", campaign_id),
            EVENT_TICK_S,
            lambda: overview(self.control, campaign_id, diagnose=False),
        )
        seen = offered(who, facts["campaign"])
        return await self.shared.get(
            ("live", (campaign_id, tuple(seen["allowed_actions"]))),
            EVENT_TICK_S,
            lambda: self.render_live(facts, seen),
        )

    async def diagnosis(self, campaign_id: int, who: Who) -> str:
        """The diagnosis fragment (the same for every caller), made once per interval."""
        return await self.shared.get(
            ("diagnosis", campaign_id),
            EVENT_TICK_S * DIAGNOSIS_EVERY,
            lambda: self.render_diagnosis(diagnosis.diagnose(self.control, campaign_id)),
        )

    async def activity(self, campaign_id: int, who: Who) -> str:
        """The chart's data as JSON (the same for every caller), read once per interval."""
        return await self.shared.get(
            ("activity", campaign_id),
            EVENT_TICK_S * ACTIVITY_EVERY,
            lambda: activity.as_json(activity.activity(self.control, campaign_id)),
        )

    async def _still_signed_in(self, request: Request) -> str | None:
        """Why the caller's credential no longer holds (``None``: it does)."""
        try:
            await run_in_threadpool(self.security.authenticate, request)
        except DialgateError as exc:
            return exc.message
        except Exception as exc:  # cannot tell: end it; the browser reconnects and is checked
            return f"the credential could not be checked ({type(exc).__name__})"
        return None

    async def _events(self, request: Request, campaign_id: int, who: Who) -> AsyncIterator[str]:
        """Each fragment (and the chart's data) as an SSE event when it differs from the
        last one sent."""
        sent: dict[str, str] = {}
        loop = asyncio.get_running_loop()
        end = loop.time() + STREAM_FOR_S
        checked = loop.time()
        tick = 0
        yield "retry: 1000\n\n"
        while loop.time() < end and not await request.is_disconnected():
            if loop.time() - checked >= CREDENTIAL_EVERY_S:
                ended = await self._still_signed_in(request)
                if ended is not None:
                    yield f": stream ended: {' '.join(ended.split())}\n\n"
                    return
                checked = loop.time()
            fragments = {"live": self.live}
            if tick % DIAGNOSIS_EVERY == 0:
                fragments["diagnosis"] = self.diagnosis
            if tick % ACTIVITY_EVERY == 0:
                fragments["activity"] = self.activity
            for name, render in fragments.items():
                try:
                    html = await render(campaign_id, who)
                except Exception as exc:  # the page keeps its last view; say why in a comment
                    yield f": {name} not rendered: {type(exc).__name__}\n\n"
                    continue
                if sent.get(name) != html:
                    sent[name] = html
                    data = html if name == "activity" else json.dumps(html)  # already JSON
                    yield f"event: {name}\ndata: {data}\n\n"
            tick += 1
            await asyncio.sleep(EVENT_TICK_S)
