"""Sign-in for the web page: a form at ``/login`` takes an API token and opens a session.

The session cookie is HTTP-only, SameSite strict and Secure unless
``DIALGATE_COOKIE_SECURE=false`` (browsers keep a Secure cookie over plain HTTP on
``localhost`` only); the page's changes also carry a CSRF token, which the page reads from
a second, script-readable cookie and sends as the ``X-CSRF-Token`` header (double submit,
checked against the session's own copy on the server).

``POST /login`` and ``POST /logout`` are refused (403, nothing changed) when the browser
says they come from another site (:func:`same_site`): another site's page must not sign a
visitor in as someone else, nor sign them out.
"""

from __future__ import annotations

from html import escape
from urllib.parse import parse_qs, urlsplit

import structlog
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from control.auth.security import CSRF_COOKIE, SESSION_COOKIE, Security
from shared.errors import Forbidden, TooManyRequests, Unauthenticated
from shared.settings import Settings

log = structlog.get_logger("dialgate.login")

FORM = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Sign in · dialgate</title>
<link rel="stylesheet" href="/static/dialgate.css">
</head><body class="signin"><main>
<h1>Sign in to dialgate</h1>
<p id="error" class="err" role="alert">{error}</p>
<form id="login" method="post" action="/login" data-secure-cookie="{secure}">
 <input type="hidden" name="next" value="{next}">
 <label for="token">API token</label>
 <input id="token" name="token" type="password" autocomplete="current-password" required
  autofocus aria-describedby="hint">
 <p id="hint">Ask an admin for a token (<code>dialgate tokens create</code>).</p>
 <button type="submit">Sign in</button>
</form></main>
<script src="/static/dialgate.js"></script>
</body></html>"""

DEFAULT_PORTS = {"http": 80, "https": 443}


def safe_next(value: str | None) -> str:
    """Only a local path: never send a visitor to another site after signing in."""
    if value and value.startswith("/") and not value.startswith("//") and "\\" not in value:
        return value
    return "/"


def _host(netloc: str, scheme: str) -> str:
    """``host[:port]`` lower-cased, without the scheme's default port."""
    parts = urlsplit(f"//{netloc.strip().lower()}")
    try:
        port = parts.port
    except ValueError:
        return netloc.strip().lower()
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    return host if port in (None, DEFAULT_PORTS.get(scheme)) else f"{host}:{port}"


def own_hosts(request: Request, settings: Settings) -> set[str]:
    """The ``host[:port]`` this site answers as: the request's Host, and ``DIALGATE_URL``'s."""
    scheme = request.url.scheme
    hosts = {_host(request.headers.get("host", ""), scheme)}
    url = urlsplit(settings.url)
    hosts.add(_host(url.netloc, url.scheme))
    hosts.add(_host(request.headers.get("host", ""), "https"))  # behind a TLS proxy
    return hosts - {""}


def same_site(request: Request, settings: Settings, what: str) -> None:
    """Refuse (:class:`Forbidden`) a request the browser says another site sent.

    ``Origin`` decides when the browser sent it (a page of another host, or ``null`` from
    a ``data:`` or sandboxed page, is refused); without it, ``Sec-Fetch-Site`` must be
    ``same-origin`` or ``none`` (typed or bookmarked). A request with neither header (the
    CLI, curl, a script) is not a browser's and passes.
    """
    origin = request.headers.get("origin")
    if origin is not None:
        parts = urlsplit(origin.strip())
        if parts.scheme in DEFAULT_PORTS and _host(parts.netloc, parts.scheme) in own_hosts(
            request, settings
        ):
            return
        came_from = f"a page of {origin[:100]!r}"
    else:
        site = request.headers.get("sec-fetch-site")
        if site is None or site in ("same-origin", "none"):
            return
        came_from = f"a {site[:20]!r} page (Sec-Fetch-Site)"
    peer = request.client.host if request.client else None
    log.warning("cross_site_refused", what=what, origin=origin, peer=peer)
    raise Forbidden(
        f"{what} refused: it came from {came_from}, not from this site; "
        f"{what} only on this site's own page"
    )


def form(
    settings: Settings, next_path: str = "/", error: str = "", status: int = 200
) -> HTMLResponse:
    return HTMLResponse(
        FORM.format(
            next=escape(safe_next(next_path)),
            error=escape(error),
            secure=str(settings.cookie_secure).lower(),
        ),
        status_code=status,
    )


async def sign_in(request: Request, security: Security) -> Response:
    settings = security.settings
    fields = parse_qs((await request.body()).decode("utf-8", "replace"))
    next_path = safe_next((fields.get("next") or ["/"])[0])
    try:
        same_site(request, settings, "sign-in")
    except Forbidden as exc:
        return form(settings, next_path, exc.message, exc.status_code)
    token = (fields.get("token") or [""])[0].strip()
    if not token:
        return form(settings, next_path, "token: enter your API token", 422)
    try:
        sid, csrf, _ = security.checked(request, token, lambda: security.tokens.sign_in(token))
    except (Unauthenticated, TooManyRequests) as exc:
        return form(settings, next_path, exc.message, exc.status_code)
    response = RedirectResponse(next_path, status_code=303)
    max_age = int(settings.session_hours * 3600)
    secure = settings.cookie_secure
    response.set_cookie(
        SESSION_COOKIE, sid, max_age=max_age, httponly=True, secure=secure, samesite="strict"
    )
    response.set_cookie(
        CSRF_COOKIE, csrf, max_age=max_age, httponly=False, secure=secure, samesite="strict"
    )
    return response


def sign_out(request: Request, security: Security) -> Response:
    same_site(request, security.settings, "sign-out")
    sid = request.cookies.get(SESSION_COOKIE)
    if sid:
        security.tokens.sign_out(sid)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE)
    response.delete_cookie(CSRF_COOKIE)
    return response


def router(security: Security) -> APIRouter:
    r = APIRouter(include_in_schema=False)

    @r.get("/login", response_class=HTMLResponse)
    def login_form(next: str = "/") -> Response:
        return form(security.settings, next)

    @r.post("/login")
    async def login_submit(request: Request) -> Response:
        return await sign_in(request, security)

    @r.post("/logout")
    def logout(request: Request) -> Response:
        return sign_out(request, security)

    return r
