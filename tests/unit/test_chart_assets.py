"""The chart library not installed (``npm ci`` not run): its routes and the campaign page
say so and name the command; the rest of the page is served as usual."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from control.web import assets
from control.web.pages import env


@pytest.fixture
def not_installed(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(assets, "VENDOR", tmp_path)
    for url, (directory, name, media) in list(assets.ASSETS.items()):
        if url.startswith("/static/vendor/"):
            assert directory is not tmp_path
            monkeypatch.setitem(assets.ASSETS, url, (tmp_path, name, media))
    assets._read.cache_clear()
    yield
    assets._read.cache_clear()


def test_the_chart_library_is_served_by_dialgate_when_installed() -> None:
    if assets.vendor_missing() is not None:
        pytest.skip(assets.VENDOR_MISSING)
    app = FastAPI()
    app.include_router(assets.router())
    client = TestClient(app)
    script, style = client.get("/static/vendor/uplot.js"), client.get("/static/vendor/uplot.css")
    assert script.status_code == style.status_code == 200
    assert "uPlot" in script.text and script.headers["content-type"].startswith("text/javascript")
    html = env.get_template("_chart.html").render(c={"id": 7})
    assert '<script src="/static/vendor/uplot.js"></script>' in html
    assert 'data-campaign-id="7"' in html and "chart-missing" not in html


@pytest.mark.usefixtures("not_installed")
def test_a_chart_library_not_installed_is_named_by_its_routes_and_on_the_page() -> None:
    assert assets.vendor_missing() == assets.VENDOR_MISSING
    app = FastAPI()
    app.include_router(assets.router())
    client = TestClient(app)
    for url in ("/static/vendor/uplot.js", "/static/vendor/uplot.css"):
        r = client.get(url)
        assert (r.status_code, r.text) == (404, assets.VENDOR_MISSING), url
    assert "npm ci --prefix control/web/vendor" in assets.VENDOR_MISSING
    assert client.get("/static/chart.js").status_code == 200  # dialgate's own files are there
    html = env.get_template("_chart.html").render(c={"id": 7})
    assert assets.VENDOR_MISSING in html and "/static/vendor/" not in html
