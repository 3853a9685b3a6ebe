// prewarm /ui: polls /v1/ui/state (and /readyz) and draws it. Plain JS, no framework, no fetches
// beyond this origin. With --token-file the state answers 401: the page asks for the token,
// keeps it in sessionStorage and sends it as `Authorization: Bearer`.
"use strict";

const POLL_MS = 500;
const HEALTH_MS = 10000;
const $ = (sel) => document.querySelector(sel);
let token = sessionStorage.getItem("prewarm-token") || "";
let health = {};
let timer = null;

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null) continue;
    if (k === "class") e.className = v;
    else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return e;
}

function bytes(n) {
  if (n === null || n === undefined) return "";
  const u = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return `${n.toFixed(i ? 1 : 0)} ${u[i]}`;
}

function ago(ms, now) {
  if (!ms) return "";
  const s = Math.max(0, Math.round((now - ms) / 1000));
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  return `${Math.round(s / 3600)} h ago`;
}

function secs(ms) {
  if (ms === null || ms === undefined) return "";
  return ms < 1000 ? `${ms} ms` : `${(ms / 1000).toFixed(1)} s`;
}

function pct(x) {
  return `${Math.round(x * 100)}%`;
}

function fill(tbody, rows) {
  tbody.replaceChildren(...rows);
}

function drawRuntimes(s) {
  fill($("#runtimes tbody"), s.runtimes.map((r) => {
    let progress = "";
    if (r.state === "warming") {
      const step = r.queue_position !== null && r.queue_position !== undefined && r.step === "queued"
        ? `queued (#${r.queue_position + 1})` : r.step;
      progress = el("span", {},
        el("progress", { max: "1", value: String(r.progress) }),
        el("span", { class: "step" }, `${pct(r.progress)} · ${step}${r.eta_ms !== null && r.eta_ms !== undefined ? ` · ETA ${secs(r.eta_ms)}` : ""}`));
    }
    return el("tr", { "data-runtime": r.runtime, "data-state": r.state },
      el("td", {}, r.runtime),
      el("td", {}, el("span", { class: `state state-${r.state}` }, r.state)),
      el("td", { class: "progress" }, progress),
      el("td", { class: "num" }, bytes(r.size_bytes)),
      el("td", {}, ago(r.last_used_ms, s.now_ms)));
  }));
}

function drawRates(s) {
  fill($("#rates tbody"), s.starts.map((r) => {
    const done = r.hot + r.cold + r.joined;
    const rate = done ? r.hot / done : 0;
    return el("tr", { "data-runtime": r.runtime },
      el("td", {}, r.runtime),
      el("td", { class: "num hot-rate" }, done ? pct(rate) : "–"),
      el("td", { class: "num" }, r.hot),
      el("td", { class: "num" }, r.cold),
      el("td", { class: "num" }, r.joined),
      el("td", { class: "num" }, r.failed));
  }));
}

const SVG = "http://www.w3.org/2000/svg";
function svg(tag, attrs) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  return e;
}

// Time to ready over the last hour: x = when it became ready, y = seconds on a log scale
// (a hot start is milliseconds, a cold one seconds), hot orange, cold blue.
function drawChart(s) {
  const W = 640, H = 220, L = 48, B = 24, T = 8, R = 8;
  const root = svg("svg", { width: W, height: H, viewBox: `0 0 ${W} ${H}`, role: "img" });
  const end = s.now_ms, start = end - 3600 * 1000;
  const lo = -3, hi = 3; // 1 ms .. 1000 s
  const x = (t) => L + (W - L - R) * (t - start) / (end - start);
  const y = (v) => {
    const l = Math.min(hi, Math.max(lo, Math.log10(Math.max(v, 1e-3))));
    return T + (H - T - B) * (hi - l) / (hi - lo);
  };
  for (let e = lo; e <= hi; e++) {
    root.append(svg("line", { x1: L, x2: W - R, y1: y(10 ** e), y2: y(10 ** e), stroke: "#eceff3" }));
    const label = svg("text", { x: L - 6, y: y(10 ** e) + 4, "text-anchor": "end", "font-size": 10, fill: "#7a8496" });
    label.textContent = e < 0 ? `${10 ** (e + 3)} ms` : `${10 ** e} s`;
    root.append(label);
  }
  for (const [m, name] of [[60, "-60 min"], [30, "-30 min"], [0, "now"]]) {
    const t = svg("text", { x: x(end - m * 60000), y: H - 6, "text-anchor": "middle", "font-size": 10, fill: "#7a8496" });
    t.textContent = name;
    root.append(t);
  }
  for (const p of s.ready) {
    root.append(svg("circle", {
      cx: x(p.at_ms), cy: y(p.seconds), r: 4,
      fill: p.hot ? "#ea580c" : "#2563eb", "fill-opacity": 0.8,
      "data-start": p.hot ? "hot" : "cold",
    }));
  }
  $("#chart").replaceChildren(root);
}

function drawSandboxes(s) {
  $("#sandbox-count").textContent = `${s.sandboxes.length} live`;
  fill($("#sandboxes tbody"), s.sandboxes.map((b) => el("tr", { "data-sandbox": b.id },
    el("td", {}, b.runtime),
    el("td", {}, b.user),
    el("td", { class: "muted" }, b.id),
    el("td", {}, b.hot ? "hot" : "cold"),
    el("td", {}, b.status))));
}

function drawTiers(s) {
  const rows = [];
  const t = s.tiers;
  if (t && t.memory) {
    const m = t.memory, n = m.hits + m.misses;
    rows.push(el("tr", { "data-tier": "memory" },
      el("td", {}, "memory"), el("td", { class: "ok" }, "ok"),
      el("td", { class: "num" }, n ? pct(m.hits / n) : "–"),
      el("td", { class: "num" }, m.hits), el("td", { class: "num" }, m.misses),
      el("td", { class: "num served" }, bytes(s.served_bytes.memory || 0)),
      el("td", { class: "num" }, 0), el("td", { class: "num" }, 0)));
  }
  for (const tier of (t ? t.tiers : [])) {
    const n = tier.hits + tier.misses;
    const h = health[tier.name] || "…";
    rows.push(el("tr", { "data-tier": tier.name },
      el("td", {}, `${tier.name} (${tier.role})`),
      el("td", { class: h === "ok" ? "ok" : "error" }, h),
      el("td", { class: "num" }, n ? pct(tier.hits / n) : "–"),
      el("td", { class: "num" }, tier.hits), el("td", { class: "num" }, tier.misses),
      el("td", { class: "num served" }, bytes(s.served_bytes[tier.name] || 0)),
      el("td", { class: "num" }, tier.integrity_failures + tier.quarantined),
      el("td", { class: "num" }, tier.errors)));
  }
  fill($("#tiers tbody"), rows);
}

async function pollHealth() {
  try {
    const r = await fetch("/readyz");
    const h = await r.json();
    health = Object.fromEntries((h.tiers || []).map((t) => [t.name, t.status]));
  } catch (e) {
    health = {};
  }
}

async function poll() {
  let r;
  try {
    r = await fetch("/v1/ui/state", { headers: token ? { Authorization: `Bearer ${token}` } : {} });
  } catch (e) {
    $("#status").textContent = `origin unreachable (${e.message})`;
    timer = setTimeout(poll, POLL_MS * 4);
    return;
  }
  if (r.status === 401) {
    $("#main").hidden = true;
    $("#login").hidden = false;
    $("#status").textContent = "token needed";
    if (token) $("#login-error").textContent = "that token was refused";
    return;
  }
  if (!r.ok) {
    $("#status").textContent = `state: HTTP ${r.status}`;
    timer = setTimeout(poll, POLL_MS * 4);
    return;
  }
  const s = await r.json();
  $("#login").hidden = true;
  $("#main").hidden = false;
  $("#status").textContent = s.sandboxes_enabled
    ? `live · ${new Date(s.now_ms).toLocaleTimeString()}`
    : "live · sandboxes are off on this origin";
  drawRuntimes(s);
  drawRates(s);
  drawChart(s);
  drawSandboxes(s);
  drawTiers(s);
  timer = setTimeout(poll, POLL_MS);
}

$("#login").addEventListener("submit", (ev) => {
  ev.preventDefault();
  token = $("#token").value.trim();
  sessionStorage.setItem("prewarm-token", token);
  $("#login-error").textContent = "";
  clearTimeout(timer);
  poll();
});

pollHealth();
setInterval(pollHealth, HEALTH_MS);
poll();
