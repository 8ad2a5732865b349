"""The operator's web page: campaigns, their status, and pause / resume / cancel.

Server-rendered, no build step; the page refreshes its campaign table every second
from the JSON API, so after an action every badge and counter matches the new state.
Every value shown is HTML-escaped.
"""

from __future__ import annotations

from html import escape
from typing import Any

STATES = ("pending", "queued", "dialing", "done", "failed", "cancelled", "unknown")

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>dialgate</title>
<style>
 body{{font:15px/1.4 system-ui,sans-serif;margin:1rem;color:#111}}
 table{{border-collapse:collapse;width:100%}} th,td{{padding:.4rem;border-bottom:1px solid #ccc;
 text-align:left}} .badge{{padding:.1rem .5rem;border-radius:.7rem;font-weight:600}}
 .running{{background:#0a6b2b;color:#fff}} .paused{{background:#9a4d00;color:#fff}}
 .draft{{background:#444;color:#fff}} .cancelled,.completed{{background:#ddd;color:#111}}
 .err{{color:#a00000;font-weight:600}} button{{font:inherit;padding:.2rem .6rem}}
 .reason{{color:#5a3200}}
</style></head><body>
<h1>dialgate campaigns</h1>
<p id="alert" class="err" role="alert"></p>
<table><thead><tr><th>ID</th><th>Name</th><th>Status</th>{heads}<th>Actions</th></tr></thead>
<tbody id="rows">{rows}</tbody></table>
<script>
const STATES = {states};
function esc(s){{return String(s ?? "").replace(/[&<>"']/g, c => ({{"&":"&amp;","<":"&lt;",
 ">":"&gt;",'"':"&quot;","'":"&#39;"}})[c]);}}
function csrf(){{
  const m = document.cookie.match(/(?:^|; )dialgate_csrf=([^;]*)/);
  return m ? decodeURIComponent(m[1]) : "";
}}
function row(c){{
  const acts = c.allowed_actions.map(a =>
    `<button data-id="${{c.id}}" data-act="${{a}}">${{a}}</button>`).join(" ");
  const why = c.status === "paused" ? `<div class="reason">paused ${{esc(c.paused_at)}}` +
    (c.pause_reason ? ` — ${{esc(c.pause_source)}}: ${{esc(c.pause_reason)}}` : "") + "</div>" : "";
  return `<tr><td>${{c.id}}</td><td>${{esc(c.name)}}${{why}}</td>` +
    `<td><span class="badge ${{esc(c.status)}}">${{esc(c.status)}}</span></td>` +
    STATES.map(s => `<td>${{c.counts[s]}}</td>`).join("") + `<td>${{acts}}</td></tr>`;
}}
async function refresh(){{
  try {{
    const r = await fetch("/api/v1/campaigns");
    const data = await r.json();
    document.getElementById("rows").innerHTML = data.campaigns.map(row).join("");
  }} catch (e) {{ document.getElementById("alert").textContent = "refresh failed: " + e; }}
}}
document.addEventListener("click", async ev => {{
  const b = ev.target.closest("button[data-act]"); if (!b) return;
  const act = b.dataset.act, id = b.dataset.id, body = {{source: "operator", actor: "web"}};
  if (act === "cancel") {{
    if (!confirm("Cancel campaign " + id + "? This cannot be undone.")) return;
    body.confirm = true;
  }}
  const r = await fetch(`/api/v1/campaigns/${{id}}/${{act}}`, {{method: "POST",
    headers: {{"content-type": "application/json", "x-csrf-token": csrf()}},
    body: JSON.stringify(body)}});
  const alert = document.getElementById("alert");
  alert.textContent = r.ok ? "" : (await r.json()).error.message;
  refresh();
}});
setInterval(refresh, 1000);
</script></body></html>"""


def render(campaigns: list[dict[str, Any]]) -> str:
    rows = []
    for c in campaigns:
        status = escape(c["status"])
        counts = "".join(f"<td>{int(c['counts'][s])}</td>" for s in STATES)
        rows.append(
            f"<tr><td>{int(c['id'])}</td><td>{escape(c['name'])}</td>"
            f'<td><span class="badge {status}">{status}</span></td>{counts}<td></td></tr>'
        )
    heads = "".join(f"<th>{s}</th>" for s in STATES)
    return PAGE.format(heads=heads, rows="".join(rows), states=list(STATES))
