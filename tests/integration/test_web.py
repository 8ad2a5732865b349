"""The operators' pages in real headless Chromium (Playwright, the system's Chromium).

Every page runs under its Content-Security-Policy: a test fails on any violation the
browser reports. The stacks keep the default Secure sign-in cookies on http://127.0.0.1,
as ``dialgate up`` does. Screenshots go to ``test-output/`` (git-ignored), one per step
worth seeing.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest

from shared.models import utcnow
from shared.states import Action, Source
from tests.support.calls import insert_calls
from tests.support.stack import ROOT, TestStack

playwright_api = pytest.importorskip("playwright.sync_api")
expect = playwright_api.expect
CHROMIUM = "/usr/bin/chromium"
SHOTS = ROOT / "test-output"
TIMEOUT_MS = 15_000


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not __import__("os").path.exists(CHROMIUM):
        pytest.skip(f"no Chromium at {CHROMIUM}")
    with playwright_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield b
        b.close()


@pytest.fixture
def make_stack(make_stack: Any) -> Any:
    """Stacks with the default Secure sign-in cookies (the shared stacks turn them off)."""
    return functools.partial(make_stack, cookie_secure=True)


@pytest.fixture
def page(browser: Any, make_stack: Any) -> Iterator[Any]:
    """A fresh page; closed before the stack (its event stream ends with it). Fails its
    test if the browser reported a Content-Security-Policy violation."""
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    context.set_default_timeout(TIMEOUT_MS)
    expect.set_options(timeout=TIMEOUT_MS)
    pg = context.new_page()
    violations: list[str] = []
    pg.on(
        "console",
        lambda m: violations.append(m.text) if "Content Security Policy" in m.text else None,
    )
    yield pg
    context.close()
    assert violations == [], violations


def shot(page: Any, name: str) -> None:
    SHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def sign_in(page: Any, stack: TestStack, next_path: str, token: str | None = None) -> None:
    """Sign in through the page's own form, landing on ``next_path``."""
    page.goto(f"{stack.settings.url}/login?next={next_path}")
    page.get_by_label("API token").fill(token or str(stack.settings.secret("admin_token")))
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{stack.settings.url}{next_path}")


def open_campaign(page: Any, stack: TestStack, cid: int, token: str | None = None) -> None:
    sign_in(page, stack, f"/campaigns/{cid}", token)
    page.evaluate("window.sameDocument = true")  # gone if the page reloads


def assert_not_reloaded(page: Any) -> None:
    assert page.evaluate("window.sameDocument") is True


def test_pause_from_the_keyboard_then_resume_change_badge_and_banner_without_reload(
    make_stack, page
):
    stack = make_stack().start(loops=False)
    cid = stack.make_campaign(contacts=3)
    open_campaign(page, stack, cid)
    expect(page.locator("#badge")).to_have_text("running")
    expect(page.locator("#paused-banner")).to_have_count(0)
    shot(page, "pause-1-running")

    page.focus("#act-pause")
    page.keyboard.press("Enter")  # no confirmation, no reason asked
    expect(page.locator("#badge")).to_have_text("paused")
    expect(page.locator("#paused-banner")).to_contain_text("Paused since")
    expect(page.locator("#act-resume")).to_be_visible()
    expect(page.locator("#act-pause")).to_have_count(0)
    expect(page.locator("#resume-cap")).to_be_visible()
    assert_not_reloaded(page)
    c = stack.campaign(cid)
    assert c["status"] == "paused" and c["pause_source"] == "operator"
    shot(page, "pause-2-paused")

    page.click("#act-resume")
    page.click("#confirm-resume")
    expect(page.locator("#badge")).to_have_text("running")
    expect(page.locator("#paused-banner")).to_have_count(0)
    expect(page.locator("#resume-cap")).to_be_hidden()
    expect(page.locator("#first-after-resume")).to_contain_text("No dial yet since the resume")
    assert_not_reloaded(page)
    assert stack.campaign(cid)["status"] == "running"
    shot(page, "pause-3-resumed")


def test_cancel_asks_for_confirmation_and_once_confirmed_is_final(make_stack, page):
    stack = make_stack().start(loops=False)
    cid = stack.make_campaign(contacts=3)
    open_campaign(page, stack, cid)

    page.click("#act-cancel")
    expect(page.locator("#cancel-dialog")).to_be_visible()
    shot(page, "cancel-1-dialog")
    page.get_by_role("button", name="Keep the campaign").click()
    expect(page.locator("#cancel-dialog")).to_be_hidden()
    assert stack.campaign(cid)["status"] == "running"

    page.click("#act-cancel")
    page.click("#confirm-cancel")
    expect(page.locator("#badge")).to_have_text("cancelled")
    expect(page.locator("#final-banner")).to_contain_text("cannot be resumed")
    expect(page.locator(".actions button[data-action]")).to_have_count(0)
    expect(page.locator("#count-cancelled")).to_have_text("3")
    assert_not_reloaded(page)
    shot(page, "cancel-2-cancelled")
    page.reload()
    expect(page.locator("#badge")).to_have_text("cancelled")
    expect(page.locator(".actions button[data-action]")).to_have_count(0)
    assert stack.campaign(cid)["status"] == "cancelled"


def test_an_action_refused_because_someone_paused_first_shows_an_inline_alert(make_stack, page):
    stack = make_stack().start(loops=False)
    cid = stack.make_campaign(contacts=3)
    open_campaign(page, stack, cid)

    def someone_else_first(route: Any) -> None:
        stack.act(cid, "pause", actor="alice", source="operator")
        route.continue_()

    page.route(f"**/api/v1/campaigns/{cid}/pause", someone_else_first)
    page.click("#act-pause")
    alert = page.locator("#alert")
    expect(alert).to_contain_text(
        f"pause failed: campaign {cid} is already paused, and already held so: operator hold"
    )
    assert alert.get_attribute("role") == "alert"
    history = stack.api("GET", f"/campaigns/{cid}/transitions")["transitions"]
    assert [(t["action"], t["actor"]) for t in history] == [
        ("pause", "admin-token (alice)"),
        ("start", "admin-token"),
    ]
    shot(page, "conflict-alert")


def test_a_system_pause_shows_its_reason_next_to_the_paused_timestamp(make_stack, page):
    stack = make_stack().start(loops=False)
    cid = stack.make_campaign(contacts=3)
    open_campaign(page, stack, cid)
    expect(page.locator("#badge")).to_have_text("running")
    assert stack.stack is not None
    stack.stack.control.transition(
        cid,
        Action.PAUSE,
        actor="monitor:abandon-rate",
        source=Source.SYSTEM,
        reason="abandon rate 9% over the 3% limit",
    )
    banner = page.locator("#paused-banner")
    expect(banner).to_contain_text("— system: abandon rate 9% over the 3% limit")
    paused_at = stack.campaign(cid)["paused_at"]
    stamp = page.locator("#paused-at")
    assert stamp.get_attribute("datetime")[:19] == paused_at[:19]
    assert stamp.inner_text() == paused_at[:10] + " " + paused_at[11:19] + " UTC"
    # A second hold: the banner lists every hold, who placed it, why and what releases it.
    stack.act(cid, "pause", hold="compliance", reason="consent records audit", actor="carol")
    holds = page.locator("#holds li")
    expect(holds).to_have_count(2)
    expect(holds.nth(0)).to_contain_text("monitor abandon-rate by monitor:abandon-rate")
    expect(holds.nth(0)).to_contain_text('acknowledging "abandon-rate"')
    expect(holds.nth(1)).to_contain_text("compliance by admin-token (carol)")
    expect(holds.nth(1)).to_contain_text("consent records audit")
    expect(holds.nth(1)).to_contain_text("two people")
    expect(banner).to_contain_text("every hold must be released")
    assert_not_reloaded(page)  # pushed by the server, not reloaded
    shot(page, "system-pause-reason")


def test_the_page_shows_the_diagnosis_and_resumes_with_a_temporary_cap(make_stack, page):
    stack = make_stack().start(loops=False)
    cid = stack.make_campaign(contacts=3, max_concurrency=4)
    stack.act(cid, "pause", source="operator", reason="checking the script")
    open_campaign(page, stack, cid)
    diag = page.locator("#diagnosis")
    expect(diag.locator("[data-code=paused]")).to_contain_text("The campaign is paused")
    expect(diag.locator("[data-code=paused]")).to_contain_text("checking the script")
    expect(diag.locator("[data-code=no_live_workers]")).to_contain_text("Fix:")
    shot(page, "diagnosis-paused")

    page.fill("#cap-concurrency", "2")
    page.fill("#cap-minutes", "15")
    page.click("#resume-capped")
    expect(page.locator("#badge")).to_have_text("running")
    expect(page.locator("#cap")).to_contain_text("at most 2 concurrent dials")
    expect(page.locator("#cap")).to_contain_text("(then 4; it lifts by itself)")
    expect(diag.locator("[data-code=paused]")).to_have_count(0)
    c = stack.campaign(cid)
    assert c["cap"]["max_concurrency"] == 2 and c["concurrency"] == 2
    shot(page, "controlled-resume")


def test_live_updates_fall_back_to_polling_when_the_event_stream_is_blocked(make_stack, page):
    stack = make_stack().start(loops=False)
    cid = stack.make_campaign(contacts=3)
    page.route("**/events", lambda route: route.abort())
    open_campaign(page, stack, cid)
    stack.act(cid, "pause", source="operator")
    expect(page.locator("#badge")).to_have_text("paused")
    assert_not_reloaded(page)


def test_names_and_reasons_are_escaped_and_the_pages_fit_a_phone(make_stack, page):
    stack = make_stack().start(loops=False)
    name = '<img src=x onerror="window.pwned=1">Spring & "promo"'
    c = stack.api("POST", "/campaigns", expect=201, json={"name": name, "max_concurrency": 2})
    cid = int(c["id"])
    stack.act(cid, "start")
    assert stack.stack is not None
    stack.stack.control.transition(
        cid,
        Action.PAUSE,
        actor="m",
        source=Source.SYSTEM,
        reason="<b>bold</b> & <script>x</script>",
    )
    page.set_viewport_size({"width": 390, "height": 844})
    sign_in(page, stack, "/")
    expect(page.get_by_role("link", name=name)).to_be_visible()
    expect(page.locator("#rows .badge")).to_have_text("paused")
    shot(page, "phone-campaigns")
    page.get_by_role("link", name=name).click()
    expect(page.locator("#campaign-name")).to_have_text(name)
    expect(page.locator("#pause-reason")).to_have_text("— system: <b>bold</b> & <script>x</script>")
    assert page.evaluate("window.pwned") is None
    width = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    assert width[0] <= width[1], width
    shot(page, "phone-campaign")


def test_a_resume_highlights_the_first_dial_after_it_and_workers_acknowledge(make_stack, page):
    # Calls that ring 0.75-2.25 s and end answered or busy: the page shows them up and ended.
    stack = make_stack(
        sim_latency_ms=300, sim_ring_ms=1500, sim_dispositions="answered=1,busy=1"
    ).start()
    stack.start_worker(threads=1)
    stack.wait_workers(1)
    cid = stack.make_campaign(contacts=30, max_concurrency=1, max_lines=3)
    open_campaign(page, stack, cid)
    expect(page.locator("#max-lines")).to_have_text("3")
    expect(page.locator("#live-ringing")).not_to_have_text("0")
    expect(page.locator("#disp-busy")).not_to_have_text("0")
    expect(page.locator("#count-done")).not_to_have_text("0")
    page.click("#act-pause")
    expect(page.locator("#badge")).to_have_text("paused")
    page.click("#act-resume")
    page.click("#confirm-resume")
    first = page.locator("#first-after-resume")
    expect(first).to_contain_text("First activity after resume")
    expect(first).to_contain_text("s after the resume")
    expect(page.locator("tr.resume-latest")).to_contain_text("resume")
    expect(page.locator("#propagation")).to_contain_text("acknowledged by 1 of 1 workers")
    shot(page, "first-after-resume")
    stack.act(cid, "cancel", confirm=True)


def test_the_page_offers_only_what_the_role_allows_and_its_changes_need_the_session(
    make_stack, page
):
    stack = make_stack().start(loops=False)
    cid = stack.make_campaign(contacts=3)
    tokens = {
        role: stack.api("POST", "/tokens", expect=201, json={"name": role, "role": role})["token"]
        for role in ("viewer", "operator", "supervisor")
    }
    open_campaign(page, stack, cid, tokens["viewer"])
    expect(page.locator("#campaign-name")).to_have_text("test campaign")
    expect(page.locator("#live button[data-action]")).to_have_count(0)
    shot(page, "role-viewer")
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(f"{stack.settings.url}/login")

    open_campaign(page, stack, cid, tokens["operator"])
    expect(page.locator("#act-pause")).to_be_visible()
    expect(page.locator("#act-cancel")).to_have_count(0)  # cancel is the admin's
    page.click("#act-pause")  # through the session cookie and its CSRF header
    expect(page.locator(".badge").first).to_have_text("paused")
    expect(page.locator("#act-resume")).to_have_count(0)  # resume is the supervisor's
    expect(page.locator("#resume-cap")).to_be_hidden()
    shot(page, "role-operator-paused")
    latest = stack.api("GET", f"/campaigns/{cid}/transitions")["transitions"][0]
    assert (latest["action"], latest["actor"], latest["role"]) == (
        "pause",
        "operator (web)",
        "operator",
    )
    page.get_by_role("button", name="Sign out").click()

    open_campaign(page, stack, cid, tokens["supervisor"])
    expect(page.locator("#act-resume")).to_be_visible()
    expect(page.locator("#resume-cap")).to_be_visible()


def test_markup_in_every_text_an_operator_entered_is_shown_as_text(make_stack, page):
    stack = make_stack().start(loops=False)
    xss = '<img src=x onerror="window.pwned=1"><script>window.pwned=2</script>'
    c = stack.api("POST", "/campaigns", expect=201, json={"name": "n" + xss})
    cid = int(c["id"])
    stack.api("POST", f"/campaigns/{cid}/contacts", json={"contacts": [{"phone": "+33612345678"}]})
    stack.act(cid, "start", actor="a" + xss)
    stack.act(cid, "pause", actor="b" + xss, reason="r" + xss, source="operator")
    for path in ("/", f"/campaigns/{cid}"):
        sign_in(page, stack, path)
        page.wait_for_load_state("networkidle")
        assert page.evaluate("window.pwned") is None, path
        assert page.locator("img[src=x]").count() == 0, path
    expect(page.locator("#pause-reason")).to_contain_text("r" + xss)
    expect(page.locator("#live")).to_contain_text("admin-token (b" + xss + ")")
    shot(page, "xss-as-text")


def _auto_submit(action: str, **fields: str) -> str:
    """Another site's page that posts a form to ``action`` as soon as it loads."""
    inputs = "".join(f'<input name="{k}" value="{v}">' for k, v in fields.items())
    form = f'<form method="post" action="{action}">{inputs}</form>'
    return f'<body onload="document.forms[0].submit()">{form}</body>'


def test_a_page_of_another_site_can_neither_sign_the_visitor_in_as_someone_else_nor_out(
    make_stack, page
):
    stack = make_stack().start(loops=False)
    body = {"name": "theirs", "role": "viewer", "org": "globex"}
    attacker = stack.api("POST", "/tokens", expect=201, json=body)["token"]
    sign_in(page, stack, "/")
    me = page.locator(".signout")
    expect(me).to_contain_text("admin-token · admin of default")
    cookies = {c["name"]: c for c in page.context.cookies()}
    session = cookies["dialgate_session"]
    assert (session["secure"], session["httpOnly"], session["sameSite"]) == (True, True, "Strict")

    url = stack.settings.url
    pages = {
        "http://attacker.test/in": _auto_submit(f"{url}/login", token=attacker, next="/"),
        "http://attacker.test/out": _auto_submit(f"{url}/logout"),
    }
    page.route(
        "http://attacker.test/*",
        lambda route: route.fulfill(body=pages[route.request.url], content_type="text/html"),
    )
    page.goto("http://attacker.test/in")
    page.wait_for_url(f"{url}/login")
    expect(page.locator("#error")).to_contain_text(
        "sign-in refused: it came from a page of 'http://attacker.test'"
    )
    shot(page, "login-csrf-refused")
    page.goto("http://attacker.test/out")
    page.wait_for_url(f"{url}/logout")
    expect(page.locator("body")).to_contain_text("sign-out refused")
    page.goto(f"{url}/")
    expect(me).to_contain_text("admin-token · admin of default")  # still the visitor's own
    assert {c["name"]: c for c in page.context.cookies()} == cookies


def test_a_sign_in_or_sign_out_a_browser_says_another_site_sent_is_refused_and_changes_nothing(
    make_stack,
):
    stack = make_stack().start(loops=False)
    url = stack.settings.url
    token = str(stack.settings.secret("admin_token"))
    foreign = [
        {"Origin": "http://evil.example"},
        {"Origin": "null"},  # a data: or sandboxed page
        {"Origin": url.replace("127.0.0.1", "localhost")},  # another host of the same machine
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},
    ]
    for headers in foreign:
        r = httpx.post(f"{url}/login", data={"token": token}, headers=headers, timeout=10)
        assert r.status_code == 403 and "sign-in refused" in r.text, (headers, r.text)
        assert "set-cookie" not in r.headers, headers
    ours = [{"Origin": url}, {"Sec-Fetch-Site": "same-origin"}, {}]  # {}: the CLI, curl
    for headers in ours:
        r = httpx.post(f"{url}/login", data={"token": token}, headers=headers, timeout=10)
        assert r.status_code == 303, (headers, r.text)
    sid = r.cookies["dialgate_session"]
    for headers in foreign:
        r = httpx.post(f"{url}/logout", headers=headers, cookies={"dialgate_session": sid})
        assert r.status_code == 403, (headers, r.text)
        assert "sign-out refused" in r.json()["error"]["message"]
        assert "set-cookie" not in r.headers, headers
    still = httpx.get(f"{url}/api/v1/whoami", cookies={"dialgate_session": sid}, timeout=10)
    assert still.status_code == 200, still.text


def test_pages_and_data_answers_carry_the_security_headers_and_are_never_stored(make_stack):
    stack = make_stack().start(loops=False)
    anonymous = httpx.Client(base_url=stack.settings.url, timeout=10)
    answers = {
        "page": anonymous.get("/login"),
        "docs": anonymous.get("/docs"),
        "page redirect": anonymous.get("/"),
        "data": stack.http.get("/api/v1/campaigns"),
        "refusal": anonymous.get("/api/v1/campaigns"),
        "probe": anonymous.get("/healthz"),
    }
    for what, r in answers.items():
        assert r.headers["x-content-type-options"] == "nosniff", what
        assert r.headers["referrer-policy"] == "same-origin", what
        assert r.headers["cache-control"] == "no-store", what
        policy = r.headers["content-security-policy"]
        assert "frame-ancestors 'none'" in policy, what
        if r.headers.get("content-type", "").startswith("text/html"):
            assert "script-src 'self';" in policy and "unsafe" not in policy, what
            assert r.headers["x-frame-options"] == "DENY", what
        else:
            assert policy.startswith("default-src 'none'"), what
    assert "<script>" not in answers["page"].text and "<style>" not in answers["page"].text
    script = anonymous.get("/static/dialgate.js")
    assert script.status_code == 200 and script.headers["cache-control"] == "no-cache"
    again = anonymous.get("/static/dialgate.js", headers={"If-None-Match": script.headers["etag"]})
    assert again.status_code == 304


def test_the_api_page_runs_swagger_ui_from_this_site_only(make_stack, page):
    stack = make_stack().start(loops=False)
    url = stack.settings.url
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    page.goto(f"{url}/docs")
    expect(page.locator("#swagger-ui")).to_contain_text("/api/v1/campaigns/{campaign_id}/{action}")
    shot(page, "docs")
    elsewhere = [u for u in requested if not u.startswith(f"{url}/") and not u.startswith("data:")]
    assert elsewhere == [], elsewhere
    assert f"{url}/docs/static/swagger-ui-bundle.js" in requested


def test_the_sign_in_page_says_when_plain_http_would_drop_its_secure_cookie(make_stack, page):
    stack = make_stack().start(loops=False)
    page.goto(f"{stack.settings.url}/login")
    expect(page.locator("#login")).to_be_visible()
    expect(page.locator("#error")).to_have_text("")  # this machine's own address: kept
    page.route(  # the same service, reached over plain HTTP under another name
        "http://dialgate.test/**",
        lambda route: route.fulfill(
            response=route.fetch(
                url=route.request.url.replace("http://dialgate.test", stack.settings.url)
            )
        ),
    )
    page.goto("http://dialgate.test/login")
    expect(page.locator("#error")).to_contain_text(
        "This page is plain HTTP on dialgate.test: the browser will not keep the Secure "
        "sign-in cookie. Open it over HTTPS, or set DIALGATE_COOKIE_SECURE=false."
    )


def test_the_chart_shows_the_hours_calls_and_a_pause_pushed_by_the_stream_with_no_internet(
    make_stack, page
):
    stack = make_stack().start(loops=False)
    cid = stack.make_campaign(contacts=4)
    stack.act(cid, "pause", source="operator", reason="checking the script")
    stack.act(cid, "resume")
    ago = lambda s: utcnow() - timedelta(seconds=s)  # noqa: E731
    insert_calls(
        stack,
        cid,
        [
            (ago(300), ago(290), "ended", "answered"),
            (ago(240), ago(200), "ended", "answered"),
            (ago(120), ago(115), "ended", "failed"),
            (ago(30), None, "ringing", None),
            (ago(1200), ago(1190), "ended", "busy"),  # 20 min ago: in the hour only
        ],
    )
    url = stack.settings.url
    elsewhere: list[str] = []
    activity: list[str] = []

    def local_only(route: Any) -> None:  # no internet: anything not of dialgate fails
        if route.request.url.startswith(f"{url}/"):
            if "/activity" in route.request.url:
                activity.append(route.request.url)
            route.continue_()
        else:
            elsewhere.append(route.request.url)
            route.abort()

    page.route("**/*", local_only)
    open_campaign(page, stack, cid)
    expect(page.locator("#chart canvas").first).to_be_visible()
    expect(page.locator("#chart-counts")).to_have_text(
        "Last 10 min: 4 calls started, 3 ended (2 answered, 1 failed). "
        "Last hour: 5 started, 4 ended."
    )
    markers = page.locator("#chart-markers li")
    expect(markers).to_have_count(3)
    expect(markers.nth(1)).to_contain_text("pause (running → paused) at ")
    expect(markers.nth(1)).to_contain_text("by admin-token: checking the script")
    expect(page.locator("#chart")).to_have_attribute("data-markers-drawn", "3")  # on the canvas
    expect(page.locator("#chart .u-legend")).to_contain_text("started")
    shot(page, "chart-1-resumed")

    polled = len(activity)
    stack.act(cid, "pause", source="operator", reason="second look")
    expect(page.locator("#chart-markers li[data-action=pause]")).to_have_count(2)
    expect(page.locator("#chart")).to_have_attribute("data-markers-drawn", "4")
    assert len(activity) == polled  # pushed by the event stream, not fetched
    assert_not_reloaded(page)
    assert elsewhere == []
    shot(page, "chart-2-paused-again")
