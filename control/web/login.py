"""Sign-in for the web page: a form at ``/login`` takes an API token and opens a session.

The session cookie is HTTP-only (and Secure when ``DIALGATE_COOKIE_SECURE``), SameSite
strict; the page's changes also carry a CSRF token, which the page reads from a second,
script-readable cookie and sends as the ``X-CSRF-Token`` header (double submit, checked
against the session's own copy on the server).
"""

from __future__ import annotations

from html import escape
from urllib.parse import parse_qs

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from control.auth.security import CSRF_COOKIE, SESSION_COOKIE, Security
from shared.errors import TooManyRequests, Unauthenticated

FORM = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Sign in · dialgate</title>
<style>
 body{{font:16px/1.5 system-ui,sans-serif;margin:0;color:#111;background:#f6f6f6}}
 main{{max-width:26rem;margin:10vh auto;background:#fff;padding:1.5rem;border-radius:.5rem;
 box-shadow:0 1px 4px #0002}} label{{display:block;font-weight:600;margin:.8rem 0 .3rem}}
 input{{font:inherit;width:100%;box-sizing:border-box;padding:.5rem;border:1px solid #555;
 border-radius:.3rem}} button{{font:inherit;margin-top:1rem;padding:.5rem 1rem;
 background:#0b57d0;color:#fff;border:0;border-radius:.3rem}}
 .err{{color:#a00000;font-weight:600}}
</style></head><body><main>
<h1>Sign in to dialgate</h1>
<p id="error" class="err" role="alert">{error}</p>
<form method="post" action="/login">
 <input type="hidden" name="next" value="{next}">
 <label for="token">API token</label>
 <input id="token" name="token" type="password" autocomplete="current-password" required
  autofocus aria-describedby="hint">
 <p id="hint">Ask an admin for a token (<code>dialgate tokens create</code>).</p>
 <button type="submit">Sign in</button>
</form></main></body></html>"""


def safe_next(value: str | None) -> str:
    """Only a local path: never send a visitor to another site after signing in."""
    if value and value.startswith("/") and not value.startswith("//") and "\\" not in value:
        return value
    return "/"


def form(next_path: str = "/", error: str = "", status: int = 200) -> HTMLResponse:
    return HTMLResponse(
        FORM.format(next=escape(safe_next(next_path)), error=escape(error)), status_code=status
    )


async def sign_in(request: Request, security: Security) -> Response:
    fields = parse_qs((await request.body()).decode("utf-8", "replace"))
    token = (fields.get("token") or [""])[0].strip()
    next_path = safe_next((fields.get("next") or ["/"])[0])
    if not token:
        return form(next_path, "token: enter your API token", 422)
    try:
        sid, csrf, _ = security.checked(request, token, lambda: security.tokens.sign_in(token))
    except (Unauthenticated, TooManyRequests) as exc:
        return form(next_path, exc.message, exc.status_code)
    response = RedirectResponse(next_path, status_code=303)
    max_age = int(security.settings.session_hours * 3600)
    secure = security.settings.cookie_secure
    response.set_cookie(
        SESSION_COOKIE, sid, max_age=max_age, httponly=True, secure=secure, samesite="strict"
    )
    response.set_cookie(
        CSRF_COOKIE, csrf, max_age=max_age, httponly=False, secure=secure, samesite="strict"
    )
    return response


def sign_out(request: Request, security: Security) -> Response:
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
        return form(next)

    @r.post("/login")
    async def login_submit(request: Request) -> Response:
        return await sign_in(request, security)

    @r.post("/logout")
    def logout(request: Request) -> Response:
        return sign_out(request, security)

    return r
