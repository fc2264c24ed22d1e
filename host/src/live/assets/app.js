// The live page: the dashboard's panels, history from /api/series, new and updated points
// from /ws. Charts are uPlot (vendored from npm into the host by scripts/vendor-uplot, served
// from /vendor/): drag to zoom, shift+drag or the wheel to pan and zoom, double-click to reset,
// hover for values with their units; alarms are red markers on every chart, motion events
// grey ticks along the bottom; late readings accepted or rejected stand out on the W1 chart.
"use strict";

// A panel shows one or more series (sensor, kind) as a chart or a table.
const PANELS = [
  { id: "raw-TH1", title: "Temperature TH1 (15 min)", unit: "°C", view: "chart", series: [{ sensor: "TH1", kind: "raw" }] },
  { id: "AggDay-TH1-chart", title: "Daily mean temperature TH1", unit: "°C", view: "chart", series: [{ sensor: "TH1", kind: "AggDay" }] },
  { id: "raw-HVAC1-table", title: "HVAC1 energy (15 min)", unit: "Wh", view: "table", series: [{ sensor: "HVAC1", kind: "raw" }] },
  { id: "raw-Etot", title: "Energy meter Etot", unit: "Wh", view: "chart", series: [{ sensor: "Etot", kind: "raw" }] },
  { id: "raw-Mov1", title: "Motion Mov1", unit: "events", view: "chart", points: true, series: [{ sensor: "Mov1", kind: "raw" }] },
  { id: "AggDay-HVAC1", title: "AggDay HVAC1", unit: "Wh", view: "chart", series: [{ sensor: "HVAC1", kind: "AggDay" }] },
  { id: "AggDayDiff-Wtot", title: "AggDayDiff Wtot", unit: "L", view: "chart", series: [{ sensor: "Wtot", kind: "AggDayDiff" }] },
  { id: "AggDayRest-Etot", title: "AggDayRest Etot (unmetered energy)", unit: "Wh", view: "chart", series: [{ sensor: "Etot", kind: "AggDayRest" }] },
  { id: "late-W1", title: "Water W1 with its late readings", unit: "L", view: "chart",
    series: [{ sensor: "W1", kind: "raw", color: "#88c0d0" }, { sensor: "W1", kind: "LateAccepted", color: "#ebcb8b", points: true }, { sensor: "W1", kind: "LateRej", color: "#bf616a", points: true }] },
  { id: "AggDay-TH1", title: "AggDay TH1", unit: "°C", view: "table", series: [{ sensor: "TH1", kind: "AggDay" }] },
  { id: "LateRej-W1", title: "LateRej W1 (late readings rejected)", unit: "L", view: "table", series: [{ sensor: "W1", kind: "LateRej" }] },
];
const COLORS = ["#88c0d0", "#a3be8c", "#ebcb8b", "#d08770", "#b48ead"];
const MAX_POINTS = 2000;
const DAY_MS = 86400000;

// series key "sensor:kind" -> Map(ts -> value); rule@ts -> alarm; panel id -> uPlot
const state = { site: null, series: new Map(), alarms: new Map(), charts: new Map(), rangeDays: 0 };
const MAX_ALARMS = 200;
window.__charts = state.charts; // for the browser test

const keyOf = s => s.sensor + ":" + s.kind;

function utc(ts) {
  return new Date(ts).toISOString().replace("T", " ").replace(":00.000Z", "").replace(".000Z", "");
}

function buildPanels() {
  const main = document.getElementById("panels");
  main.innerHTML = "";
  PANELS.forEach(p => {
    const div = document.createElement("section");
    div.className = "panel";
    div.id = "panel-" + p.id;
    const what = p.series.map(s => s.sensor + " " + s.kind).join(", ");
    div.innerHTML = `<h2>${p.title}</h2><div class="meta">${what} · ${p.unit} · <span class="count">0</span> points</div>` +
      (p.view === "chart" ? `<div class="chart"></div><div class="hint">drag: zoom · shift+drag or wheel: pan, zoom · double-click: all</div>`
                           : `<div class="tablewrap"><table><thead><tr><th>time (UTC)</th><th>${what} (${p.unit})</th></tr></thead><tbody></tbody></table></div>`);
    main.appendChild(div);
    for (const s of p.series) if (!state.series.has(keyOf(s))) state.series.set(keyOf(s), new Map());
  });
  const alarms = document.createElement("section");
  alarms.className = "panel alarms";
  alarms.id = "panel-alarms";
  alarms.innerHTML = `<h2>Alarms</h2><div class="meta">raised by the alarm rules (outputs of kind Alarm) · newest first · <span class="count">0</span> alarms</div>` +
    `<div class="tablewrap"><table><thead><tr><th>time (UTC)</th><th>rule</th><th>value</th><th>evidence</th></tr></thead><tbody></tbody></table></div>`;
  main.prepend(alarms);
}

function sortedPoints(key) {
  return [...state.series.get(key).entries()].sort((a, b) => a[0] - b[0]);
}

// Alarm instants (red) and motion events (grey ticks) drawn over a chart.
function markersPlugin(panel) {
  return {
    hooks: {
      draw: u => {
        const ctx = u.ctx, { left, top, width, height } = u.bbox;
        let drawn = 0;
        const line = (ts, color, from, to) => {
          const x = Math.round(u.valToPos(ts, "x", true));
          if (x < left || x > left + width) return;
          ctx.strokeStyle = color;
          ctx.beginPath(); ctx.moveTo(x, from); ctx.lineTo(x, to); ctx.stroke();
          drawn++;
        };
        ctx.save();
        ctx.lineWidth = devicePixelRatio;
        for (const ts of state.series.get("Mov1:raw")?.keys() ?? []) line(ts, "#6b7385", top + height - 6 * devicePixelRatio, top + height);
        for (const a of state.alarms.values()) line(a.ts, "#bf616a", top, top + height);
        ctx.restore();
        document.getElementById("panel-" + panel.id).dataset.markers = drawn;
      },
    },
  };
}

// Wheel: zoom around the cursor; shift+drag: pan.
function panZoomPlugin() {
  return {
    hooks: {
      // A drag selection zooms (uPlot's own); remember it, and forget it on double-click.
      setSelect: u => { if (u.select.width > 0) u.zoomed = true; },
      ready: u => {
        u.over.addEventListener("dblclick", () => { u.zoomed = false; });
        u.over.addEventListener("wheel", e => {
          e.preventDefault();
          u.zoomed = true;
          const at = u.posToVal(u.cursor.left, "x"), { min, max } = u.scales.x, f = e.deltaY < 0 ? 0.8 : 1.25;
          u.setScale("x", { min: at - (at - min) * f, max: at + (max - at) * f });
        }, { passive: false });
        u.over.addEventListener("mousedown", e => {
          if (!e.shiftKey) return;
          e.stopPropagation();
          u.zoomed = true;
          const x0 = e.clientX, { min, max } = u.scales.x, per = (max - min) / (u.bbox.width / devicePixelRatio);
          const move = ev => u.setScale("x", { min: min - (ev.clientX - x0) * per, max: max - (ev.clientX - x0) * per });
          const up = () => { window.removeEventListener("mousemove", move); window.removeEventListener("mouseup", up); };
          window.addEventListener("mousemove", move);
          window.addEventListener("mouseup", up);
        }, true);
      },
    },
  };
}

// Axis numbers kept short: 3956927 → 3.96M.
function compact(v) {
  const a = Math.abs(v);
  if (a >= 1e6) return (v / 1e6).toFixed(2) + "M";
  if (a >= 1e4) return (v / 1e3).toFixed(1) + "k";
  return String(Math.round(v * 100) / 100);
}

// Axis times in UTC, 24-hour: the time, and the date under it ("18:00" / "01-03").
function axisTime(ts) {
  const iso = new Date(ts).toISOString();
  return iso.slice(11, 16) + "\n" + iso.slice(5, 10);
}

function makeChart(panel, el, data) {
  const unit = panel.unit;
  const fmt = v => v == null ? "—" : (Math.abs(v) >= 1000 ? v.toFixed(0) : v.toFixed(2)) + " " + unit;
  const opts = {
    width: Math.max(el.clientWidth, 300),
    height: 200,
    ms: 1,
    tzDate: ts => uPlot.tzDate(new Date(ts), "Etc/UTC"),
    cursor: { drag: { x: true, y: false } },
    scales: { x: { time: true } },
    axes: [
      { stroke: "#8a93a3", grid: { stroke: "#2a303a" }, ticks: { stroke: "#2a303a" }, size: 44, space: 70, values: (u, splits) => splits.map(axisTime) },
      { stroke: "#8a93a3", grid: { stroke: "#2a303a" }, ticks: { stroke: "#2a303a" }, size: 84, values: (u, splits) => splits.map(v => compact(v) + " " + unit) },
    ],
    series: [{ label: "time (UTC)", value: (u, ts) => ts == null ? "—" : utc(ts) }].concat(panel.series.map((s, i) => ({
      label: s.sensor + " " + s.kind,
      stroke: s.color || COLORS[PANELS.indexOf(panel) % COLORS.length],
      width: 1.5,
      value: (u, v) => fmt(v),
      spanGaps: true,
      paths: (s.points || panel.points) ? () => null : undefined,
      points: { show: (s.points || panel.points) ? true : (u, si, i0, i1) => i1 - i0 < 60, size: 5, fill: s.color || COLORS[PANELS.indexOf(panel) % COLORS.length] },
    }))),
    plugins: [markersPlugin(panel), panZoomPlugin()],
  };
  return new uPlot(opts, data, el);
}

// The panel's series aligned on one time axis (uPlot.join fills gaps with null).
function chartData(panel) {
  const tables = panel.series.map(s => {
    const points = sortedPoints(keyOf(s));
    return [points.map(p => p[0]), points.map(p => p[1])];
  });
  return tables.length === 1 ? tables[0] : uPlot.join(tables);
}

function applyRange(u) {
  if (!state.rangeDays) return;
  const newest = Math.max(...[...state.series.values()].map(m => Math.max(0, ...m.keys())));
  if (newest > 0) u.setScale("x", { min: newest - state.rangeDays * DAY_MS, max: newest });
}

function render(panel, freshTs) {
  const el = document.getElementById("panel-" + panel.id);
  const count = panel.series.reduce((n, s) => n + state.series.get(keyOf(s)).size, 0);
  el.querySelector(".count").textContent = count;
  el.dataset.points = count;
  if (panel.view === "table") {
    const body = el.querySelector("tbody");
    body.innerHTML = "";
    for (const [ts, v] of sortedPoints(keyOf(panel.series[0])).slice(-200).reverse()) {
      const tr = document.createElement("tr");
      if (freshTs && freshTs.has(ts)) tr.className = "fresh";
      tr.innerHTML = `<td>${utc(ts)}</td><td>${v.toFixed(2)}</td>`;
      body.appendChild(tr);
    }
    return;
  }
  const box = el.querySelector(".chart");
  if (count === 0) { box.innerHTML = `<div class="empty">no data</div>`; state.charts.delete(panel.id); return; }
  let u = state.charts.get(panel.id);
  if (!u) {
    box.innerHTML = "";
    u = makeChart(panel, box, chartData(panel));
    state.charts.set(panel.id, u);
  } else {
    // Keep the reader's zoom while new points arrive.
    u.setData(chartData(panel), !u.zoomed);
  }
  applyRange(u);
}

function redrawMarkers() {
  for (const u of state.charts.values()) u.redraw(false);
}

async function loadHistory() {
  const keys = [...state.series.keys()];
  await Promise.all([loadAlarms(), ...keys.map(async key => {
    const [sensor, kind] = key.split(":");
    const res = await fetch("/api/series?" + new URLSearchParams({ site: state.site, sensor, kind }));
    const points = res.ok ? await res.json() : [];
    const map = state.series.get(key);
    map.clear();
    for (const [ts, v] of points) map.set(ts, v);
  })]);
  for (const u of state.charts.values()) u.destroy();
  state.charts.clear();
  for (const p of PANELS) render(p);
}

function onPoints(points) {
  const touched = new Map(); // key -> Set(ts)
  for (const pt of points) {
    if (pt.site !== state.site) continue;
    const key = pt.sensor + ":" + pt.kind;
    const map = state.series.get(key);
    if (!map) continue;
    map.set(pt.ts, pt.value); // an updated day replaces its value in place
    while (map.size > MAX_POINTS) map.delete(Math.min(...map.keys()));
    if (!touched.has(key)) touched.set(key, new Set());
    touched.get(key).add(pt.ts);
  }
  for (const p of PANELS) {
    const fresh = new Set();
    for (const s of p.series) for (const ts of touched.get(keyOf(s)) ?? []) fresh.add(ts);
    if (fresh.size) render(p, fresh);
  }
  if (touched.has("Mov1:raw")) redrawMarkers();
}

// --- device commands (two-way control) ---------------------------------------------------
const DEVICES = { HVAC1: ["off", "on"], HVAC2: ["off", "on"], MiAC1: ["off", "on"], MiAC2: ["off", "on"], TH1: ["setpoint"], TH2: ["setpoint"] };
const commands = new Map(); // id -> {device, action, value, state}

function buildCommands() {
  const panel = document.createElement("section");
  panel.className = "panel commands";
  panel.id = "panel-commands";
  panel.innerHTML = `<h2>Device commands</h2><div class="meta">to the selected site's devices, through the <code>commands</code> topic; the device acknowledges</div>` +
    `<form id="cmd-form"><select id="cmd-device"></select> <select id="cmd-action"></select> ` +
    `<input id="cmd-value" type="number" min="16" max="28" step="0.5" value="21" title="setpoint, °C"> <button id="cmd-send" type="submit">send</button></form>` +
    `<div class="meta" id="cmd-error"></div>` +
    `<div class="tablewrap"><table><thead><tr><th>id</th><th>device</th><th>action</th><th>state</th></tr></thead><tbody></tbody></table></div>`;
  document.getElementById("panels").prepend(panel);
  const device = document.getElementById("cmd-device"), action = document.getElementById("cmd-action");
  for (const d of Object.keys(DEVICES)) device.add(new Option(d, d));
  const actions = () => {
    action.innerHTML = "";
    for (const a of DEVICES[device.value]) action.add(new Option(a, a));
    document.getElementById("cmd-value").hidden = action.value !== "setpoint";
  };
  device.onchange = actions;
  actions();
  document.getElementById("cmd-form").onsubmit = ev => { ev.preventDefault(); sendCommand(); };
}

async function sendCommand() {
  const device = document.getElementById("cmd-device").value, action = document.getElementById("cmd-action").value;
  const id = "c-" + Date.now().toString(36) + "-" + Math.floor(Math.random() * 1e6).toString(36);
  const body = { id, site: state.site, device, action };
  if (action === "setpoint") body.value = Number(document.getElementById("cmd-value").value);
  const error = document.getElementById("cmd-error");
  error.textContent = "";
  const res = await fetch("/api/commands", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
  if (res.status === 202) {
    commands.set(id, { device, action: action + (body.value !== undefined ? " " + body.value : ""), state: "sent" });
  } else {
    const why = (await res.json().catch(() => ({}))).error || res.statusText;
    error.textContent = "not sent: " + why;
  }
  renderCommands();
}

function onAcks(acks) {
  for (const ack of acks) {
    const c = commands.get(ack.id);
    if (c) c.state = "applied at " + utc(ack.ts_ms);
  }
  renderCommands();
}

function renderCommands() {
  const el = document.getElementById("panel-commands");
  const body = el.querySelector("tbody");
  body.innerHTML = "";
  let applied = 0;
  for (const [id, c] of [...commands.entries()].reverse()) {
    if (c.state.startsWith("applied")) applied++;
    const tr = document.createElement("tr");
    tr.dataset.id = id;
    for (const text of [id, c.device, c.action, c.state]) {
      const td = document.createElement("td");
      td.textContent = text;
      tr.appendChild(td);
    }
    body.appendChild(tr);
  }
  el.dataset.sent = commands.size;
  el.dataset.applied = applied;
}

function renderAlarms(fresh) {
  const el = document.getElementById("panel-alarms");
  const rows = [...state.alarms.values()].sort((a, b) => b.ts - a.ts || a.rule.localeCompare(b.rule));
  el.querySelector(".count").textContent = rows.length;
  el.dataset.points = rows.length;
  const body = el.querySelector("tbody");
  body.innerHTML = "";
  for (const a of rows.slice(0, MAX_ALARMS)) {
    const tr = document.createElement("tr");
    if (fresh && fresh.has(a.rule + "@" + a.ts)) tr.className = "fresh";
    for (const text of [utc(a.ts), a.rule, Number(a.value).toFixed(2), a.evidence || ""]) {
      const td = document.createElement("td");
      td.textContent = text; // evidence comes from plugins: never HTML
      tr.appendChild(td);
    }
    body.appendChild(tr);
  }
}

async function loadAlarms() {
  const res = await fetch("/api/alarms?" + new URLSearchParams({ site: state.site }));
  const rows = res.ok ? await res.json() : [];
  state.alarms.clear();
  for (const [ts, rule, value] of rows) state.alarms.set(rule + "@" + ts, { ts, rule, value });
  renderAlarms();
}

function onAlarms(alarms) {
  const fresh = new Set();
  for (const a of alarms) {
    if (a.site !== state.site) continue;
    const key = a.rule + "@" + a.ts_ms;
    state.alarms.set(key, { ts: a.ts_ms, rule: a.rule, value: a.value, evidence: a.evidence });
    fresh.add(key);
  }
  if (fresh.size) {
    renderAlarms(fresh);
    redrawMarkers();
  }
}

function connect() {
  const ws = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws");
  const status = document.getElementById("status");
  ws.onopen = () => { status.textContent = "live"; document.body.dataset.live = "1"; };
  ws.onclose = () => { status.textContent = "disconnected, retrying…"; document.body.dataset.live = "0"; setTimeout(connect, 1000); };
  ws.onmessage = ev => {
    const msg = JSON.parse(ev.data);
    if (msg.points) onPoints(msg.points);
    if (msg.alarms) onAlarms(msg.alarms);
    if (msg.acks) onAcks(msg.acks);
    if (msg.lagged) loadHistory();
  };
}

async function start() {
  buildPanels();
  buildCommands();
  const params = new URLSearchParams(location.search);
  const sites = await (await fetch("/api/sites")).json();
  const select = document.getElementById("site");
  const wanted = params.get("site");
  const all = wanted && !sites.includes(wanted) ? [wanted, ...sites] : sites;
  for (const s of all) select.add(new Option(s, s));
  state.site = wanted || sites[0] || "s1";
  select.value = state.site;
  select.onchange = () => { state.site = select.value; loadHistory(); };
  const range = document.getElementById("range");
  range.onchange = () => {
    state.rangeDays = Number(range.value);
    for (const u of state.charts.values()) {
      if (state.rangeDays) applyRange(u);
      else u.setData(u.data, true);
    }
  };
  connect();
  await loadHistory();
  document.body.dataset.ready = "1";
}

start();
