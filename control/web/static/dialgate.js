// dialgate's pages: one script for every page, served by dialgate itself (the pages allow
// no inline script). Each part runs on the page that has its element.
"use strict";

// Changes carry the session's CSRF token (a script-readable cookie set at sign-in).
function csrf() {
  const m = document.cookie.match(/(?:^|; )dialgate_csrf=([^;]*)/);
  return m ? decodeURIComponent(m[1]) : "";
}

// The campaigns list: its rows refresh themselves by polling.
function campaignsPage(rows) {
  let last = rows.innerHTML;
  setInterval(async () => {
    try {
      const r = await fetch("/fragments/campaigns");
      if (!r.ok) return;
      const html = await r.text();
      if (html !== last) { rows.innerHTML = html; last = html; }
    } catch (e) { /* the next poll tries again */ }
  }, 2000);
}

// A campaign: live fragments pushed by server-sent events (polled when the stream fails),
// the actions, the controlled-resume form and the cancel confirmation.
function campaignPage(live) {
  const CID = Number(live.dataset.campaignId);
  const diag = document.getElementById("diagnosis");
  const alertBox = document.getElementById("alert"), capForm = document.getElementById("resume-cap");
  const dialog = document.getElementById("cancel-dialog");
  const last = new Map();
  function swap(el, html) {
    if (last.get(el) === html) return;
    last.set(el, html);
    const focused = document.activeElement && el.contains(document.activeElement) ? document.activeElement.id : null;
    el.innerHTML = html;
    if (focused) { const again = document.getElementById(focused); if (again) again.focus(); }
    const root = live.querySelector("[data-status]");
    capForm.hidden = !root || root.dataset.canResume !== "True";
  }
  async function load(el, path) {
    const r = await fetch(path, {cache: "no-store"});
    if (r.ok) swap(el, await r.text());
  }
  function refresh() {
    return Promise.all([load(live, `/campaigns/${CID}/live`), load(diag, `/campaigns/${CID}/diagnosis`)])
      .catch(() => {});
  }
  let polling = null;
  function startPolling() { if (!polling) polling = setInterval(refresh, 2000); }
  function stopPolling() { if (polling) { clearInterval(polling); polling = null; } }
  if (window.EventSource) {
    const es = new EventSource(`/campaigns/${CID}/events`);
    window.dialgateEvents = es;  // the chart (chart.js) listens to its own event on it
    es.addEventListener("live", e => swap(live, JSON.parse(e.data)));
    es.addEventListener("diagnosis", e => swap(diag, JSON.parse(e.data)));
    es.onopen = stopPolling;
    es.onerror = startPolling;  // the browser reconnects by itself; poll meanwhile
  } else {
    startPolling();
  }
  function showAlert(msg) { alertBox.textContent = msg; alertBox.hidden = false; }
  async function act(action, extra) {
    const body = Object.assign({source: "operator", actor: "web"}, extra);
    let r;
    try {
      r = await fetch(`/api/v1/campaigns/${CID}/${action}`, {method: "POST",
        headers: {"content-type": "application/json", "x-csrf-token": csrf()},
        body: JSON.stringify(body)});
    } catch (e) { showAlert(`${action} failed: the control service is unreachable`); return; }
    if (!r.ok) {
      let msg = `${action} failed (HTTP ${r.status})`;
      try { msg = `${action} failed: ${(await r.json()).error.message}`; } catch (e) {}
      showAlert(msg);  // nothing else changes
      return;
    }
    alertBox.hidden = true; alertBox.textContent = "";
    await refresh();
  }
  live.addEventListener("click", ev => {
    const b = ev.target.closest("button[data-action]");
    if (!b) return;
    if (b.dataset.action === "cancel") { dialog.returnValue = ""; dialog.showModal(); return; }
    if (b.dataset.action === "resume") { openResume(); return; }
    act(b.dataset.action, {});
  });
  // The Resume dialog: the preflight's findings, a box per hold's rule to acknowledge, a
  // box per blocking finding to override, and an optional canary.
  const resume = document.getElementById("resume-dialog");
  const acks = document.getElementById("resume-acks"), overrides = document.getElementById("resume-overrides");
  function box(parent, name, value, text) {
    const label = document.createElement("label");
    const input = document.createElement("input");
    input.type = "checkbox"; input.name = name; input.value = value;
    label.append(input, " " + text);
    parent.append(label);
  }
  async function openResume() {
    const verdict = document.getElementById("preflight-verdict");
    const list = document.getElementById("preflight-findings");
    verdict.textContent = "Checking what a resume now would do…";
    list.replaceChildren();
    for (const fs of [acks, overrides]) { fs.querySelectorAll("label").forEach(l => l.remove()); fs.hidden = true; }
    resume.returnValue = "";
    resume.showModal();
    let p;
    try {
      const r = await fetch(`/api/v1/campaigns/${CID}/preflight`, {cache: "no-store"});
      if (!r.ok) throw new Error(`HTTP ${r.status}`);
      p = await r.json();
    } catch (e) { verdict.textContent = `The preflight failed (${e.message}); a resume still checks.`; return; }
    const k = p.contacts;
    verdict.textContent = `${k.dialable_now} of ${k.pending} pending contacts may be dialed now; ` +
      `${p.workers.live} workers live. ` + (p.would_resume ? "Nothing blocks a resume." : "A resume is blocked until the findings below are dealt with.");
    for (const f of p.findings) {
      const li = document.createElement("li");
      li.className = `finding ${f.severity}`; li.dataset.code = f.code;
      li.textContent = `${f.severity}: ${f.message}`;
      list.append(li);
      if (f.overridable && f.severity === "blocking") { box(overrides, "override", f.code, f.message); overrides.hidden = false; }
    }
    for (const h of p.holds) {
      if (!h.rule || !["monitor", "alert", "canary"].includes(h.kind)) continue;
      box(acks, "acknowledge", h.rule, `${h.kind} ${h.rule}: ${h.reason || "no reason given"}`);
      acks.hidden = false;
    }
  }
  resume.addEventListener("close", () => {
    if (resume.returnValue !== "confirm") return;
    const form = document.getElementById("resume-form");
    const picked = name => [...form.querySelectorAll(`input[name=${name}]:checked`)].map(i => i.value);
    const extra = {acknowledge: picked("acknowledge"), override: picked("override")};
    if (form.canary_on.checked) {
      extra.canary = {calls: Number(form.canary_calls.value), max_failure_ratio: Number(form.canary_ratio.value)};
    }
    act("resume", extra);
  });
  dialog.addEventListener("close", () => { if (dialog.returnValue === "confirm") act("cancel", {confirm: true}); });
  capForm.addEventListener("submit", ev => {
    ev.preventDefault();
    act("resume", {max_concurrency: Number(capForm.max_concurrency.value),
                   for_minutes: Number(capForm.for_minutes.value)});
  });
}

// The sign-in page: a Secure cookie is not kept over plain HTTP (but on this machine's own
// names), so say so before a sign-in that would seem to do nothing.
function signInPage(form) {
  const local = ["localhost", "127.0.0.1", "[::1]"];
  const host = location.hostname;
  if (form.dataset.secureCookie !== "true" || location.protocol !== "http:") return;
  if (local.includes(host) || host.endsWith(".localhost")) return;
  const error = document.getElementById("error");
  if (error.textContent) return;
  error.textContent = `This page is plain HTTP on ${host}: the browser will not keep the ` +
    "Secure sign-in cookie. Open it over HTTPS, or set DIALGATE_COOKIE_SECURE=false.";
}

{
  const rows = document.getElementById("rows");
  if (rows) campaignsPage(rows);
  const live = document.getElementById("live");
  if (live) campaignPage(live);
  const login = document.getElementById("login");
  if (login) signInPage(login);
}
