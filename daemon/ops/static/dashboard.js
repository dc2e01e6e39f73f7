// Tandem dashboard: one EventSource per page, DOM built with textContent (no HTML from data),
// the equity chart as inline SVG. No framework, no network beyond this server.
"use strict";
(function () {
  const SVG = "http://www.w3.org/2000/svg";
  const $ = (id) => document.getElementById(id);
  const state = { snap: null, renders: 0, lastFeeds: [] };
  window.__tandem = state; // read by tests and the bench

  const fmt = (v, d = 2) => (v === null || v === undefined || Number.isNaN(v)) ? "–"
    : Number(v).toLocaleString("en-US", { minimumFractionDigits: d, maximumFractionDigits: d });
  // Prices and fees keep 6 significant digits below 1 (a 0.0000123 coin is not "0.0000").
  const fmtPx = (v) => (v !== null && v !== undefined && Math.abs(v) < 1 && v !== 0)
    ? Number(v).toLocaleString("en-US", { maximumSignificantDigits: 6 }) : fmt(v, 4);
  const fmtQty = (v) => (v === null || v === undefined) ? "–"
    : Number(v).toLocaleString("en-US", { maximumSignificantDigits: 6 });
  const pct = (v) => (v === null || v === undefined) ? "–" : (v * 100).toFixed(2) + " %";
  const utc = (ms) => ms ? new Date(ms).toISOString().replace("T", " ").slice(0, 19) : "–";
  const age = (ms, now) => {
    if (!ms) return "never";
    const s = Math.max(0, (now - ms) / 1000);
    return s < 60 ? s.toFixed(0) + " s" : s < 3600 ? (s / 60).toFixed(1) + " min"
      : (s / 3600).toFixed(1) + " h";
  };

  function cell(tr, text, cls) {
    const td = document.createElement("td");
    td.textContent = text;
    if (cls) td.className = cls;
    tr.appendChild(td);
    return td;
  }
  function fillBody(table, rows, makeRow, emptyText, ncols) {
    const body = table.tBodies[0];
    const frag = document.createDocumentFragment();
    if (!rows.length) {
      const tr = document.createElement("tr");
      const td = cell(tr, emptyText, "empty");
      td.colSpan = ncols;
      frag.appendChild(tr);
    }
    for (const r of rows) frag.appendChild(makeRow(r));
    body.replaceChildren(frag);
  }
  const sign = (v) => v > 0 ? "pos" : v < 0 ? "neg" : "";

  function renderHealth(health) {
    const el = $("health");
    if (!health) return;
    el.textContent = health.status + (health.phase && health.phase !== "live" ? " · " + health.phase : "");
    el.className = "pill " + health.status;
    el.title = (health.reasons || []).join("\n");
  }

  function renderChart(eq) {
    const box = $("chart");
    const pts = (eq && eq.points) || [];
    const W = Math.max(300, box.clientWidth || 800), H = Math.max(120, box.clientHeight || 240);
    const svg = document.createElementNS(SVG, "svg");
    svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
    svg.setAttribute("preserveAspectRatio", "none");
    if (pts.length < 2) {
      const t = document.createElementNS(SVG, "text");
      t.setAttribute("x", 12); t.setAttribute("y", 24); t.setAttribute("class", "axis");
      t.textContent = "waiting for trading slices…";
      svg.appendChild(t);
      box.replaceChildren(svg);
      return;
    }
    const padL = 70, padR = 8, top = 8, eqH = H * 0.68, ddTop = eqH + 14, ddH = H - ddTop - 6;
    const t0 = pts[0][0], t1 = pts[pts.length - 1][0];
    let lo = Infinity, hi = -Infinity, ddMin = 0;
    for (const p of pts) { lo = Math.min(lo, p[1]); hi = Math.max(hi, p[1]); ddMin = Math.min(ddMin, p[2]); }
    if (hi === lo) { hi += 1; lo -= 1; }
    if (ddMin === 0) ddMin = -0.01;
    const x = (t) => padL + (W - padL - padR) * (t1 === t0 ? 1 : (t - t0) / (t1 - t0));
    const y = (v) => top + (eqH - top) * (1 - (v - lo) / (hi - lo));
    const yd = (d) => ddTop + ddH * (d / ddMin);
    const line = pts.map((p) => `${x(p[0]).toFixed(1)},${y(p[1]).toFixed(1)}`).join(" ");
    const area = `${x(t0).toFixed(1)},${ddTop} ` +
      pts.map((p) => `${x(p[0]).toFixed(1)},${yd(p[2]).toFixed(1)}`).join(" ") +
      ` ${x(t1).toFixed(1)},${ddTop}`;
    const add = (tag, attrs, text) => {
      const e = document.createElementNS(SVG, tag);
      for (const k in attrs) e.setAttribute(k, attrs[k]);
      if (text !== undefined) e.textContent = text;
      svg.appendChild(e);
    };
    add("line", { x1: padL, x2: W - padR, y1: y(hi), y2: y(hi), class: "grid" });
    add("line", { x1: padL, x2: W - padR, y1: y(lo), y2: y(lo), class: "grid" });
    add("line", { x1: padL, x2: W - padR, y1: ddTop, y2: ddTop, class: "grid" });
    add("text", { x: 4, y: y(hi) + 4, class: "axis" }, fmt(hi, 0));
    add("text", { x: 4, y: y(lo), class: "axis" }, fmt(lo, 0));
    add("text", { x: 4, y: ddTop + ddH, class: "axis" }, pct(ddMin));
    add("text", { x: W - padR - 4, y: top + 10, class: "axis", "text-anchor": "end" },
      `${utc(t0).slice(0, 16)} → ${utc(t1).slice(0, 16)} UTC`);
    add("polyline", { points: line, class: "eq" });
    add("polygon", { points: area, class: "dd" });
    box.replaceChildren(svg);
  }

  function renderPositions(rows) {
    fillBody($("positions"), rows, (r) => {
      const tr = document.createElement("tr");
      cell(tr, r.symbol); cell(tr, r.side || (r.qty > 0 ? "long" : "short"));
      cell(tr, fmtQty(r.qty)); cell(tr, fmtPx(r.entry)); cell(tr, fmtPx(r.last));
      const u = cell(tr, fmt(r.unrealized), sign(r.unrealized));
      if (r.entry_fee != null) u.title = "net of the entry fee paid: " + fmt(r.entry_fee);
      cell(tr, fmtPx(r.stop_loss)); cell(tr, fmtPx(r.take_profit)); cell(tr, fmtPx(r.trailing));
      return tr;
    }, "no open positions", 9);
    $("positions-n").textContent = rows.length + " open position" + (rows.length === 1 ? "" : "s");
  }

  function renderFills(f) {
    const rows = (f && f.latest) || [];
    fillBody($("fills"), rows, (r) => {
      const tr = document.createElement("tr");
      tr.dataset.fillId = r.fill_id;
      cell(tr, utc(r.ts)); cell(tr, r.symbol); cell(tr, r.side, r.side === "buy" ? "pos" : "neg");
      cell(tr, r.reason); cell(tr, fmtQty(r.qty)); cell(tr, fmtPx(r.price)); cell(tr, fmtPx(r.fee));
      cell(tr, fmtQty(r.position_after)); cell(tr, fmt(r.cash_after));
      return tr;
    }, "no fills yet", 9);
    $("fills-total").textContent = f ? String(f.total) : "–";
    document.body.dataset.fillsTotal = f ? String(f.total) : "0";
  }

  function ratingClass(label) {
    return label ? "r-" + label.toLowerCase().replace(" ", "-") : "r-none";
  }
  function renderRatings(rt) {
    const table = $("ratings");
    const tfs = (rt && rt.timeframes) || [];
    const head = document.createElement("tr");
    for (const h of ["Asset", ...tfs]) { const th = document.createElement("th"); th.textContent = h; head.appendChild(th); }
    table.tHead.replaceChildren(head);
    fillBody(table, (rt && rt.rows) || [], (r) => {
      const tr = document.createElement("tr");
      cell(tr, r.symbol);
      for (const tf of tfs) {
        const v = r.values[tf], label = r.labels[tf];
        const td = cell(tr, label ? `${label} (${v >= 0 ? "+" : ""}${v.toFixed(2)})` : "–", ratingClass(label));
        td.dataset.tf = tf;
      }
      return tr;
    }, "no ratings yet", Math.max(1, tfs.length + 1));
  }

  function renderFeeds(rows, now) {
    state.lastFeeds = rows;
    const stale = ((state.snap && state.snap.health && state.snap.health.stale_feeds) || []);
    fillBody($("feeds"), rows, (r) => {
      const tr = document.createElement("tr");
      cell(tr, r.symbol);
      const td = cell(tr, age(r.last_update_ms, now), stale.includes(r.symbol) ? "stale" : "");
      td.dataset.ts = r.last_update_ms || "";
      cell(tr, r.reconnects ?? "–", r.reconnects ? "warn" : "");
      cell(tr, r.backfills ?? "–");
      cell(tr, r.late, r.late ? "warn" : ""); cell(tr, r.missing, r.missing ? "warn" : "");
      return tr;
    }, "no feeds", 6);
  }

  function tickAges() { // local clock only: no request
    const now = Date.now();
    for (const td of document.querySelectorAll("#feeds td[data-ts]")) {
      const ms = Number(td.dataset.ts);
      td.textContent = age(ms || null, now);
    }
    $("clock").textContent = utc(now) + " UTC";
  }

  function render(s) {
    state.snap = s;
    $("profile").textContent = s.profile ? s.profile + (s.live ? " · live" : " · warming up") : "";
    renderHealth(s.health);
    const eq = s.equity || {};
    const now = eq.now ?? eq.last;
    $("eq-now").textContent = fmt(now);
    $("eq-change").textContent = (eq.start && now) ? "since start " + pct(now / eq.start - 1) : "";
    $("eq-dd").textContent = pct(eq.max_drawdown);
    $("eq-cash").textContent = eq.cash !== undefined ? "cash " + fmt(eq.cash) : "";
    const sl = s.slice || {};
    $("slice-ts").textContent = sl.last_ts_close ? utc(sl.last_ts_close).slice(5) : "–";
    $("slice-info").textContent = sl.last_latency_ms !== null && sl.last_latency_ms !== undefined
      ? `step+commit ${fmt(sl.last_latency_ms, 2)} ms · ${sl.slices} slices` : "";
    $("slice-lag").textContent = fmt(sl.lag_s, 1) + " s";
    $("slice-pending").textContent = (sl.pending || 0) + " pending";
    renderChart(eq);
    renderPositions(s.positions || []);
    renderRatings(s.ratings);
    renderFills(s.fills);
    renderFeeds(s.feeds || [], s.now || Date.now());
    state.renders += 1;
    state.renderedAt = performance.now();
  }

  function connect() {
    const es = new EventSource("/events");
    const st = $("stream");
    es.addEventListener("open", () => { st.textContent = "live"; st.className = "pill ok"; });
    es.addEventListener("snapshot", (ev) => render(JSON.parse(ev.data)));
    es.addEventListener("heartbeat", (ev) => {
      const hb = JSON.parse(ev.data);
      renderHealth(hb.health);
      $("slice-lag").textContent = fmt(hb.lag_s, 1) + " s";
    });
    es.addEventListener("error", () => {
      st.textContent = es.readyState === EventSource.CLOSED ? "disconnected" : "reconnecting";
      st.className = "pill degraded";
      if (es.readyState === EventSource.CLOSED) setTimeout(() => location.reload(), 5000);
    });
  }

  document.addEventListener("DOMContentLoaded", () => {
    tickAges();
    setInterval(tickAges, 1000);
    connect(); // the stream's first event is a full snapshot
  });
})();
