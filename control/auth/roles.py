"""Who may do what: roles, the route → capability table, and the one check that enforces it.

Every route of the API and the web page is listed in :data:`ROUTES` with the capability
it needs; :func:`required` looks a request up there, and a route missing from the table
needs :attr:`Can.ADMIN` (deny by default). The tests walk the same table, so the matrix
in ``docs/security.md`` and what the code enforces cannot drift apart.

=============  =====  =====  ======  ======  =====  ========
role           READ   PAUSE  RESUME  REPORT  ADMIN  PLATFORM
=============  =====  =====  ======  ======  =====  ========
viewer         yes
operator       yes    yes
supervisor     yes    yes    yes
monitor        yes    yes*           yes
admin          yes    yes    yes     yes     yes
platform admin yes    yes    yes     yes     yes    yes
=============  =====  =====  ======  ======  =====  ========

``*`` a monitor's pause must carry a reason.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from starlette.routing import compile_path


class Role(StrEnum):
    VIEWER = "viewer"
    OPERATOR = "operator"
    SUPERVISOR = "supervisor"
    ADMIN = "admin"
    MONITOR = "monitor"


class Can(StrEnum):
    PUBLIC = "public"  # no token needed (probes, sign-in, metrics, signed provider callbacks)
    READ = "read"
    PAUSE = "pause"
    RESUME = "resume"
    REPORT = "report"  # automation reporting facts: provider events, alerts
    ADMIN = "admin"  # create, start, cancel, contacts, DNC, tokens, audit, org stop and settings,
    # webhooks
    PLATFORM = "platform"  # emergency stop of every organisation


GRANTS: dict[Role, frozenset[Can]] = {
    Role.VIEWER: frozenset({Can.READ}),
    Role.OPERATOR: frozenset({Can.READ, Can.PAUSE}),
    Role.SUPERVISOR: frozenset({Can.READ, Can.PAUSE, Can.RESUME}),
    Role.MONITOR: frozenset({Can.READ, Can.PAUSE, Can.REPORT}),
    Role.ADMIN: frozenset({Can.READ, Can.PAUSE, Can.RESUME, Can.REPORT, Can.ADMIN}),
}

CAMPAIGN = "/api/v1/campaigns/{campaign_id}"

# (method, route path) → capability. The transition route is listed once per action.
ROUTES: dict[tuple[str, str], Can] = {
    ("GET", "/healthz"): Can.PUBLIC,
    ("GET", "/readyz"): Can.PUBLIC,
    ("GET", "/metrics"): Can.PUBLIC,
    ("GET", "/docs"): Can.PUBLIC,
    ("GET", "/docs/static/swagger-ui.css"): Can.PUBLIC,
    ("GET", "/docs/static/swagger-ui-bundle.js"): Can.PUBLIC,
    ("GET", "/static/dialgate.css"): Can.PUBLIC,  # the pages' own files (sign-in page too)
    ("GET", "/static/dialgate.js"): Can.PUBLIC,
    ("GET", "/static/docs.js"): Can.PUBLIC,
    ("GET", "/static/chart.js"): Can.PUBLIC,
    ("GET", "/static/vendor/uplot.js"): Can.PUBLIC,  # the charting library (npm: uplot)
    ("GET", "/static/vendor/uplot.css"): Can.PUBLIC,
    ("GET", "/openapi.json"): Can.PUBLIC,
    ("GET", "/login"): Can.PUBLIC,
    ("POST", "/login"): Can.PUBLIC,
    ("POST", "/logout"): Can.PUBLIC,
    ("GET", "/"): Can.READ,
    ("GET", "/api/v1/whoami"): Can.READ,
    ("GET", "/api/v1/campaigns"): Can.READ,
    ("POST", "/api/v1/campaigns"): Can.ADMIN,
    ("GET", CAMPAIGN): Can.READ,
    ("GET", f"{CAMPAIGN}/transitions"): Can.READ,
    ("GET", f"{CAMPAIGN}/attempts"): Can.READ,
    ("POST", f"{CAMPAIGN}/contacts"): Can.ADMIN,
    ("POST", f"{CAMPAIGN}/start"): Can.ADMIN,
    ("POST", f"{CAMPAIGN}/pause"): Can.PAUSE,
    ("POST", f"{CAMPAIGN}/resume"): Can.RESUME,
    ("POST", f"{CAMPAIGN}/cancel"): Can.ADMIN,
    ("GET", "/api/v1/emergency-stop"): Can.READ,
    ("POST", "/api/v1/emergency-stop"): Can.ADMIN,
    ("DELETE", "/api/v1/emergency-stop"): Can.ADMIN,
    ("GET", "/api/v1/workers"): Can.READ,
    ("GET", "/api/v1/tokens"): Can.ADMIN,
    ("POST", "/api/v1/tokens"): Can.ADMIN,
    ("DELETE", "/api/v1/tokens/{token_id}"): Can.ADMIN,
    ("GET", "/api/v1/audit"): Can.ADMIN,
    ("PATCH", CAMPAIGN): Can.ADMIN,
    ("GET", "/api/v1/dnc"): Can.READ,
    ("POST", "/api/v1/dnc"): Can.ADMIN,
    ("DELETE", "/api/v1/dnc/{phone}"): Can.ADMIN,
    ("GET", "/api/v1/org/settings"): Can.READ,
    ("PUT", "/api/v1/org/settings"): Can.ADMIN,
    ("POST", "/api/v1/alerts/alertmanager"): Can.REPORT,
    ("POST", "/api/v1/provider/events"): Can.REPORT,
    # Twilio sends no token: the route checks Twilio's signature of each callback instead.
    ("POST", "/api/v1/provider/twilio/status"): Can.PUBLIC,
    ("GET", f"{CAMPAIGN}/diagnosis"): Can.READ,
    ("GET", f"{CAMPAIGN}/overview"): Can.READ,
    ("GET", f"{CAMPAIGN}/preflight"): Can.READ,
    ("GET", f"{CAMPAIGN}/holds"): Can.READ,
    # Webhook subscriptions: URLs and delivery logs are the organisation's admins' only.
    ("GET", "/api/v1/webhooks"): Can.ADMIN,
    ("POST", "/api/v1/webhooks"): Can.ADMIN,
    ("DELETE", "/api/v1/webhooks/{webhook_id}"): Can.ADMIN,
    ("POST", "/api/v1/webhooks/{webhook_id}/test"): Can.ADMIN,
    ("GET", "/api/v1/webhooks/{webhook_id}/deliveries"): Can.ADMIN,
    ("GET", f"{CAMPAIGN}/activity"): Can.READ,
    # The web pages and their live fragments.
    ("GET", "/fragments/campaigns"): Can.READ,
    ("GET", "/campaigns/{campaign_id}"): Can.READ,
    ("GET", "/campaigns/{campaign_id}/live"): Can.READ,
    ("GET", "/campaigns/{campaign_id}/diagnosis"): Can.READ,
    ("GET", "/campaigns/{campaign_id}/events"): Can.READ,
}

# Routes whose ``{action}`` path parameter names the transition (one route, four rights).
ACTION_ROUTE = f"{CAMPAIGN}/{{action}}"


@dataclass(frozen=True)
class Principal:
    """An authenticated caller: a token's name, organisation and role."""

    name: str
    org: str
    role: Role
    platform: bool = False
    token_id: int | None = None  # None: the DIALGATE_ADMIN_TOKEN

    def can(self, cap: Can) -> bool:
        if cap is Can.PUBLIC:
            return True
        if cap is Can.PLATFORM:
            return self.platform
        return cap in GRANTS[self.role]


@dataclass(frozen=True)
class Who:
    """A principal plus where the request came from: what the audit records.

    ``source_ip`` is the client (the direct peer, or the client a trusted proxy named);
    ``peer_ip`` is the direct TCP peer, recorded beside it."""

    principal: Principal
    source_ip: str | None = None
    request_id: str | None = None
    peer_ip: str | None = None

    @property
    def name(self) -> str:
        return self.principal.name

    @property
    def org(self) -> str:
        return self.principal.org

    @property
    def role(self) -> str:
        return self.principal.role.value


def offered(who: Who, view: dict[str, Any]) -> dict[str, Any]:
    """A campaign as this caller sees it: only the actions their role may take."""
    acts = [
        a for a in view["allowed_actions"] if who.principal.can(required("POST", ACTION_ROUTE, a))
    ]
    return {**view, "allowed_actions": acts}


def scope(who: Who) -> str | None:
    """The organisation whose objects a caller lists (``None``: every one, platform admin)."""
    return None if who.principal.platform else who.org


def required(method: str, path: str, action: str | None = None) -> Can:
    """The capability a request needs; unlisted routes need :attr:`Can.ADMIN`."""
    if method == "HEAD":
        method = "GET"
    if path == ACTION_ROUTE and action is not None:
        path = f"{CAMPAIGN}/{action}"
    return ROUTES.get((method, path), Can.ADMIN)


_PATTERNS: list[tuple[str, re.Pattern[str], Can]] = [
    (method, compile_path(path)[0], cap) for (method, path), cap in ROUTES.items()
]


def match(method: str, path: str) -> tuple[Can, dict[str, str]]:
    """A request's capability and path parameters, found in :data:`ROUTES` from its URL
    alone (before any routing or body parsing); unlisted paths need :attr:`Can.ADMIN`."""
    if method == "HEAD":
        method = "GET"
    for m, pattern, cap in _PATTERNS:
        found = pattern.match(path) if m == method else None
        if found:
            return cap, found.groupdict()
    return Can.ADMIN, {}
