"""The files the pages load and the API's documentation page, all served by dialgate itself.

The pages' Content-Security-Policy (:mod:`control.api.headers`) allows scripts and styles
from this site only, so the pages keep no inline script or style: their stylesheet and
script are in ``control/web/static/``. ``/docs`` is Swagger UI from the installed
``fastapi-offline`` package (its ``swagger-ui-bundle.js`` and ``swagger-ui.css``, a fixed
version per install), started by ``static/docs.js``: no file of another site runs in this
site's origin.

The campaign page's chart is drawn by uPlot (``static/chart.js``), a library installed
from the npm registry by ``npm ci --prefix control/web/vendor`` (``make venv`` runs it; the
version is pinned by ``control/web/vendor/package-lock.json``) and served from
``/static/vendor/``. When it was not installed, its routes answer 404 saying so
(:data:`VENDOR_MISSING`), the page shows the same sentence where the chart would be,
and the service logs it once when it starts; everything else works.

Each file is one route of its own (listed in :data:`control.auth.roles.ROUTES` as public),
read once, answered with an ``ETag`` and ``Cache-Control: no-cache`` (the browser asks
again and gets 304 while it is unchanged).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from functools import cache
from importlib.resources import files

import structlog
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, PlainTextResponse, Response

STATIC = files("control.web") / "static"
SWAGGER = files("fastapi_offline") / "static"
VENDOR = files("control.web") / "vendor" / "node_modules" / "uplot" / "dist"
VENDOR_MISSING = "chart library not installed: run make venv (npm ci --prefix control/web/vendor)"

# URL → (package directory, file name, media type).
ASSETS = {
    "/static/dialgate.css": (STATIC, "dialgate.css", "text/css; charset=utf-8"),
    "/static/dialgate.js": (STATIC, "dialgate.js", "text/javascript; charset=utf-8"),
    "/static/docs.js": (STATIC, "docs.js", "text/javascript; charset=utf-8"),
    "/static/chart.js": (STATIC, "chart.js", "text/javascript; charset=utf-8"),
    "/static/vendor/uplot.js": (VENDOR, "uPlot.iife.min.js", "text/javascript; charset=utf-8"),
    "/static/vendor/uplot.css": (VENDOR, "uPlot.min.css", "text/css; charset=utf-8"),
    "/docs/static/swagger-ui.css": (SWAGGER, "swagger-ui.css", "text/css; charset=utf-8"),
    "/docs/static/swagger-ui-bundle.js": (
        SWAGGER,
        "swagger-ui-bundle.js",
        "text/javascript; charset=utf-8",
    ),
}

DOCS = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>dialgate · API</title>
<link rel="stylesheet" href="/docs/static/swagger-ui.css">
</head><body>
<div id="swagger-ui"></div>
<script src="/docs/static/swagger-ui-bundle.js"></script>
<script src="/static/docs.js"></script>
</body></html>"""


@cache
def _read(url: str) -> tuple[bytes, str]:
    """A file's bytes and its ETag."""
    directory, name, _ = ASSETS[url]
    body = (directory / name).read_bytes()
    return body, '"' + hashlib.sha256(body).hexdigest()[:32] + '"'


def vendor_missing() -> str | None:
    """Why the chart cannot be drawn (``None``: its library is installed)."""
    installed = all((VENDOR / name).is_file() for d, name, _ in ASSETS.values() if d is VENDOR)
    return None if installed else VENDOR_MISSING


def _answer(url: str, request: Request) -> Response:
    try:
        body, etag = _read(url)  # a file missing is not cached: found once installed
    except FileNotFoundError:
        if ASSETS[url][0] is not VENDOR:
            raise
        return PlainTextResponse(VENDOR_MISSING, status_code=404)
    headers = {"ETag": etag, "Cache-Control": "no-cache"}
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    return Response(body, media_type=ASSETS[url][2], headers=headers)


def router() -> APIRouter:
    r = APIRouter(include_in_schema=False)
    missing = vendor_missing()
    if missing is not None:
        structlog.get_logger("dialgate.control").warning("chart_unavailable", reason=missing)

    @r.get("/docs", response_class=HTMLResponse)
    def docs() -> str:
        return DOCS

    for url in ASSETS:
        r.add_api_route(url, _serving(url), methods=["GET"])
    return r


def _serving(url: str) -> Callable[[Request], Response]:
    def asset(request: Request) -> Response:
        return _answer(url, request)

    return asset
