"""The operators' web pages, server-rendered with Jinja2 (autoescaped; no build step).

- ``/``: campaigns with status badges and counts (the table refreshes itself by polling);
- ``/campaigns/{id}``: header with name, badge and actions, paused banner, counters,
  in-flight dials, propagation, recent transitions, first activity after resume, the
  diagnosis, the controlled-resume form and the cancel confirmation dialog, and the last
  hour's chart (``_chart.html``, drawn by ``static/chart.js``).

The live parts are template fragments rendered by the same templates as the page:
pushed by server-sent events (``/campaigns/{id}/events``, only when they changed; capped
per caller, rendered once for every stream of a campaign: :mod:`control.web.streams`) and
fetched by the page's polling fallback and after each action, so what the page shows
after an update is exactly what a reload would show.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, StreamingResponse
from jinja2 import Environment, PackageLoader, select_autoescape

from control.api.deps import current
from control.auth.roles import Who, offered, scope
from control.campaigns import diagnosis
from control.campaigns.overview import overview
from control.campaigns.service import Control
from control.web.assets import vendor_missing
from control.web.streams import Streams
from shared.states import Action, ContactState, Disposition

STATES = tuple(s.value for s in ContactState)  # a counter (and a column) each
DISPOSITIONS = tuple(d.value for d in Disposition)  # a counter each: how calls ended
LABELS = {
    Action.START: "Start",
    Action.PAUSE: "Pause",
    Action.RESUME: "Resume",
    Action.CANCEL: "Cancel…",
}


def _ts(value: Any) -> str:
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return "" if value is None else str(value)


def _iso(value: Any) -> str:
    return value.isoformat() if isinstance(value, datetime) else ""


env = Environment(
    loader=PackageLoader("control.web", "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
    trim_blocks=True,
    lstrip_blocks=True,
)
env.filters["ts"] = _ts
env.filters["iso"] = _iso
env.globals.update(
    states=STATES, dispositions=DISPOSITIONS, labels=LABELS, vendor_missing=vendor_missing
)


def _context(facts: dict[str, Any], who: Who) -> dict[str, Any]:
    return {
        "who": who,
        "c": offered(who, facts["campaign"]),
        "transitions": facts["transitions"],
        "first": facts["first_after_resume"],
        "d": facts.get("diagnosis"),
    }


def render_live(control: Control, campaign_id: int, who: Who) -> str:
    facts = overview(control, campaign_id, diagnose=False)
    return env.get_template("_live.html").render(_context(facts, who))


def live_html(facts: dict[str, Any], seen: dict[str, Any]) -> str:
    """The live fragment of a campaign as one set of callers sees it (``seen``: the
    campaign with their offered actions); nothing of the caller besides (it is shared)."""
    return env.get_template("_live.html").render(
        who=None,  # shared by every caller who sees these actions: it names none of them
        c=seen,
        transitions=facts["transitions"],
        first=facts["first_after_resume"],
    )


def render_diagnosis(control: Control, campaign_id: int, who: Who) -> str:
    return diagnosis_html(diagnosis.diagnose(control, campaign_id))


def diagnosis_html(d: dict[str, Any]) -> str:
    return env.get_template("_diagnosis.html").render(d=d)


def router(control: Control) -> APIRouter:
    r = APIRouter(include_in_schema=False)

    @r.get("/", response_class=HTMLResponse)
    def campaigns(w: Who = Depends(current)) -> str:
        rows = control.campaigns(scope(w))
        return env.get_template("campaigns.html").render(campaigns=rows, who=w)

    @r.get("/fragments/campaigns", response_class=HTMLResponse)
    def campaign_rows(w: Who = Depends(current)) -> str:
        rows = control.campaigns(scope(w))
        return env.get_template("_campaign_rows.html").render(campaigns=rows)

    @r.get("/campaigns/{campaign_id}", response_class=HTMLResponse)
    def campaign(campaign_id: int, w: Who = Depends(current)) -> str:
        facts = overview(control, campaign_id)
        return env.get_template("campaign.html").render(_context(facts, w))

    @r.get("/campaigns/{campaign_id}/live", response_class=HTMLResponse)
    def live(campaign_id: int, w: Who = Depends(current)) -> str:
        return render_live(control, campaign_id, w)

    @r.get("/campaigns/{campaign_id}/diagnosis", response_class=HTMLResponse)
    def diagnosis_fragment(campaign_id: int, w: Who = Depends(current)) -> str:
        return render_diagnosis(control, campaign_id, w)

    @r.get("/campaigns/{campaign_id}/events")
    async def events(
        request: Request, campaign_id: int, w: Who = Depends(current)
    ) -> StreamingResponse:
        control.campaign(campaign_id)  # 404 before the stream starts
        return streams_of(request, control).response(request, campaign_id, w)

    return r


def streams_of(request: Request, control: Control) -> Streams:
    """The app's event streams (made on the first one; the app's state keeps them)."""
    found: Streams | None = getattr(request.app.state, "streams", None)
    if found is None:
        found = Streams(control, request.app.state.security, live_html, diagnosis_html)
        request.app.state.streams = found
    return found
