// The campaign page's chart of the last hour: calls started (bars) and how the calls that
// ended ended (one line per disposition) per 10 s, every transition a marker on the time
// axis; drawn with uPlot (served by dialgate: /static/vendor/uplot.js). Its data comes with
// the page's event stream (`event: activity`, the EventSource dialgate.js opened); while
// the stream is down it is polled from GET /api/v1/campaigns/{id}/activity. Under the
// chart, a plain-text summary (read by screen readers) and the list of markers.
"use strict";

(() => {
  const section = document.getElementById("activity");
  if (!section) return;
  const CID = Number(section.dataset.campaignId);
  const box = document.getElementById("chart");
  const summary = document.getElementById("chart-summary");
  const ENDINGS = {
    answered: "#0a7a2f", machine: "#5b8c00", busy: "#b35c00", no_answer: "#8a6d00",
    declined: "#7a3e9d", failed: "#c00000", canceled: "#555555", unknown: "#111111",
  };
  // A marker's colour by its action; any other action (one added later) is grey.
  const MARKS = {
    pause: "#c00000", resume: "#0a7a2f", hold: "#b35c00", lift_cap: "#0b4fa3",
    cancel: "#111111", complete: "#555555", start: "#555555", canary_passed: "#007a7a",
  };
  const CAP = "#0b4fa3";  // a resume that set a cap
  const ROWS = 6;  // rows of marker labels at most
  let chart = null, shown = "", markers = [], span = [0, 1];

  const hhmmss = ms => new Date(ms).toISOString().slice(11, 19);
  const label = m => m.action + (m.cap ? ` (cap ${m.cap.max_concurrency})` : "");
  const colour = m => (m.action === "resume" && m.cap ? CAP : MARKS[m.action] || "#666666");
  const sum = (a, from) => a.slice(from).reduce((x, y) => x + y, 0);

  // The markers as vertical lines with their labels, drawn over the plot after each redraw.
  function drawMarkers(u) {
    const ctx = u.ctx, {left, top, width, height} = u.bbox;
    const ends = [];  // per row of labels, where its last label ends
    let drawn = 0;
    ctx.save();
    ctx.font = `${Math.round(11 * devicePixelRatio)}px system-ui, sans-serif`;
    ctx.textBaseline = "top";
    markers.forEach((m, i) => {
      const x = Math.round(u.valToPos(Date.parse(m.at) / 1000, "x", true));
      if (x < left || x > left + width) return;
      ctx.strokeStyle = ctx.fillStyle = colour(m);
      ctx.lineWidth = 2 * devicePixelRatio;
      ctx.setLineDash([6 * devicePixelRatio, 3 * devicePixelRatio]);
      ctx.beginPath(); ctx.moveTo(x, top); ctx.lineTo(x, top + height); ctx.stroke();
      const text = label(m), w = ctx.measureText(text).width;
      const tx = x + w + 4 > left + width ? x - w - 4 : x + 4;
      // The first row where the label overlaps none before it (close markers stay legible).
      let row = ends.findIndex(end => end < tx);
      if (row < 0) row = ends.length < ROWS ? ends.length : i % ROWS;
      ends[row] = tx + w + 6;
      ctx.fillText(text, tx, top + 2 + row * 14 * devicePixelRatio);
      drawn += 1;
    });
    ctx.restore();
    box.dataset.markersDrawn = String(drawn);
  }

  function options(names, width) {
    return {
      width, height: 260,
      tzDate: ts => uPlot.tzDate(new Date(ts * 1000), "Etc/UTC"),  // UTC, as the page's times
      // The whole hour, to its end: a marker in the last bucket stays on the plot.
      scales: {x: {time: true, range: () => span}, y: {range: (u, lo, hi) => [0, Math.max(4, hi)]}},
      axes: [{values: (u, splits) => splits.map(v => hhmmss(v * 1000).slice(0, 5))},
             {label: "calls per 10 s", size: 50}],
      series: [
        {label: "time", value: (u, v) => (v == null ? "--" : `${hhmmss(v * 1000)} UTC`)},
        {label: "started", stroke: "#0b4fa3", fill: "#0b4fa333", width: 1,
         paths: uPlot.paths.bars({size: [0.9, 12]}), points: {show: false}},
        ...names.map(n => ({label: n.replace("_", " "), stroke: ENDINGS[n] || "#666666", width: 2,
                            points: {show: false}})),
      ],
      plugins: [{hooks: {draw: [drawMarkers]}}],
    };
  }

  function describe(a, names) {
    const ten = a.started.length - 600 / a.bucket_s;  // the last 10 minutes
    const parts = names.map(n => [n, sum(a.ended[n], ten)]).filter(([, v]) => v > 0);
    const ended = parts.reduce((x, [, v]) => x + v, 0);
    const p = document.createElement("p");
    p.id = "chart-counts";
    p.textContent = `Last 10 min: ${sum(a.started, ten)} calls started, ${ended} ended` +
      (parts.length ? ` (${parts.map(([n, v]) => `${v} ${n.replace("_", " ")}`).join(", ")})` : "") +
      `. Last hour: ${sum(a.started, 0)} started, ` +
      `${Object.values(a.ended).reduce((x, s) => x + sum(s, 0), 0)} ended.`;
    const list = document.createElement("ol");
    list.id = "chart-markers";
    list.className = "chart-markers";
    list.setAttribute("aria-label", "transitions of the hour");
    for (const m of a.markers) {
      const li = document.createElement("li");
      li.dataset.action = m.action;
      const why = m.reason ? `: ${m.reason}` : "";
      li.textContent = `${label(m)} (${m.from} → ${m.to}) at ${hhmmss(Date.parse(m.at))} UTC ` +
        `by ${m.actor}${why}`;
      list.append(li);
    }
    if (!a.markers.length) {
      const li = document.createElement("li");
      li.textContent = "no pause, resume or other transition in the hour";
      list.append(li);
    }
    summary.replaceChildren(p, list);
  }

  function draw(a) {
    // Lines only for the endings seen in the hour (answered always): fewer, readable lines.
    const names = Object.keys(a.ended).filter(n => n === "answered" || sum(a.ended[n], 0) > 0);
    const t0 = Date.parse(a.start) / 1000;
    const data = [a.started.map((_, i) => t0 + i * a.bucket_s), a.started,
                  ...names.map(n => a.ended[n])];
    markers = a.markers;
    span = [t0, Date.parse(a.end) / 1000];
    describe(a, names);
    if (!window.uPlot) return;  // not installed: the page says so where the chart would be
    const key = names.join();
    if (chart && key === shown) {
      chart.setData(data);
      chart.redraw();  // the markers too, when the data alone would not redraw (same scales)
    } else {
      if (chart) chart.destroy();
      chart = new uPlot(options(names, box.clientWidth || 600), data, box);
      shown = key;
    }
    section.dataset.drawnAt = a.end;
  }

  let polling = null;
  async function poll() {
    try {
      const r = await fetch(`/api/v1/campaigns/${CID}/activity`, {cache: "no-store"});
      if (r.ok) draw(await r.json());
    } catch (e) { /* the next poll tries again */ }
  }
  function startPolling() { if (!polling) { poll(); polling = setInterval(poll, 5000); } }
  function stopPolling() { if (polling) { clearInterval(polling); polling = null; } }

  // As wide as its box, whatever the window (a phone too): never wider than the page.
  const fit = () => {
    if (chart && box.clientWidth && chart.width !== box.clientWidth) {
      chart.setSize({width: box.clientWidth, height: 260});
    }
  };
  if (window.ResizeObserver) new ResizeObserver(fit).observe(box);
  else window.addEventListener("resize", fit);
  // dialgate.js (loaded after this file) opens the page's one event stream.
  document.addEventListener("DOMContentLoaded", () => {
    const es = window.dialgateEvents;
    if (!es) { startPolling(); return; }
    poll();  // at once, whatever the stream sent before these listeners were added
    es.addEventListener("activity", e => draw(JSON.parse(e.data)));
    es.addEventListener("open", stopPolling);
    es.addEventListener("error", startPolling);
    if (es.readyState === EventSource.CLOSED) startPolling();
  });
})();
