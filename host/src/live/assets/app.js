// The live page: the dashboard's panels, history from /api/series, new and updated points
// from /ws. Charts are small SVG drawings of our own; no third-party code.
"use strict";

const PANELS = [
  { id: "raw-TH1", title: "Temperature TH1 (15 min)", sensor: "TH1", kind: "raw", unit: "°C", view: "chart" },
  { id: "AggDay-TH1-chart", title: "Daily mean temperature TH1", sensor: "TH1", kind: "AggDay", unit: "°C", view: "chart" },
  { id: "raw-HVAC1-table", title: "HVAC1 energy (15 min)", sensor: "HVAC1", kind: "raw", unit: "Wh", view: "table" },
  { id: "raw-Etot", title: "Energy meter Etot", sensor: "Etot", kind: "raw", unit: "Wh", view: "chart" },
  { id: "raw-Mov1", title: "Motion Mov1", sensor: "Mov1", kind: "raw", unit: "events", view: "chart" },
  { id: "AggDay-HVAC1", title: "AggDay HVAC1", sensor: "HVAC1", kind: "AggDay", unit: "Wh", view: "chart" },
  { id: "AggDayDiff-Wtot", title: "AggDayDiff Wtot", sensor: "Wtot", kind: "AggDayDiff", unit: "L", view: "chart" },
  { id: "AggDayRest-Etot", title: "AggDayRest Etot (unmetered energy)", sensor: "Etot", kind: "AggDayRest", unit: "Wh", view: "chart" },
  { id: "AggDay-TH1", title: "AggDay TH1", sensor: "TH1", kind: "AggDay", unit: "°C", view: "table" },
  { id: "LateRej-W1", title: "LateRej W1 (late readings rejected)", sensor: "W1", kind: "LateRej", unit: "L", view: "table" },
];
const COLORS = ["#88c0d0", "#a3be8c", "#ebcb8b", "#d08770", "#b48ead"];
const MAX_POINTS = 2000;

const state = { site: null, data: new Map(), alarms: new Map() }; // panel id -> Map(ts -> value); rule@ts -> alarm
const MAX_ALARMS = 200;

function utc(ts) {
  return new Date(ts).toISOString().replace("T", " ").replace(":00.000Z", "").replace(".000Z", "");
}

function buildPanels() {
  const main = document.getElementById("panels");
  main.innerHTML = "";
  PANELS.forEach((p, i) => {
    const div = document.createElement("section");
    div.className = "panel";
    div.id = "panel-" + p.id;
    div.dataset.sensor = p.sensor;
    div.dataset.kind = p.kind;
    div.innerHTML = `<h2>${p.title}</h2><div class="meta">${p.sensor} · ${p.kind} · ${p.unit} · <span class="count">0</span> points</div>` +
      (p.view === "chart" ? `<svg viewBox="0 0 420 200" preserveAspectRatio="none" data-color="${COLORS[i % COLORS.length]}"></svg>`
                           : `<div class="tablewrap"><table><thead><tr><th>time (UTC)</th><th>${p.kind} ${p.sensor} (${p.unit})</th></tr></thead><tbody></tbody></table></div>`);
    main.appendChild(div);
    state.data.set(p.id, new Map());
  });
  const alarms = document.createElement("section");
  alarms.className = "panel alarms";
  alarms.id = "panel-alarms";
  alarms.innerHTML = `<h2>Alarms</h2><div class="meta">raised by the alarm rules (outputs of kind Alarm) · newest first · <span class="count">0</span> alarms</div>` +
    `<div class="tablewrap"><table><thead><tr><th>time (UTC)</th><th>rule</th><th>value</th><th>evidence</th></tr></thead><tbody></tbody></table></div>`;
  main.prepend(alarms);
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
  if (fresh.size) renderAlarms(fresh);
}

function render(panel, freshTs) {
  const el = document.getElementById("panel-" + panel.id);
  const points = [...state.data.get(panel.id).entries()].sort((a, b) => a[0] - b[0]);
  el.querySelector(".count").textContent = points.length;
  el.dataset.points = points.length;
  if (panel.view === "table") {
    const body = el.querySelector("tbody");
    body.innerHTML = "";
    for (const [ts, v] of points.slice(-200).reverse()) {
      const tr = document.createElement("tr");
      if (freshTs && freshTs.has(ts)) tr.className = "fresh";
      tr.innerHTML = `<td>${utc(ts)}</td><td>${v.toFixed(2)}</td>`;
      body.appendChild(tr);
    }
    return;
  }
  const svg = el.querySelector("svg");
  const color = svg.dataset.color;
  const W = 420, H = 200, L = 48, B = 22, T = 8, R = 6;
  if (points.length === 0) { svg.innerHTML = `<text x="${W / 2 - 20}" y="${H / 2}">no data</text>`; return; }
  const xs = points.map(p => p[0]), ys = points.map(p => p[1]);
  const x0 = Math.min(...xs), x1 = Math.max(...xs), y0 = Math.min(...ys), y1 = Math.max(...ys);
  const sx = t => L + (x1 === x0 ? 0.5 : (t - x0) / (x1 - x0)) * (W - L - R);
  const sy = v => H - B - (y1 === y0 ? 0.5 : (v - y0) / (y1 - y0)) * (H - B - T);
  const path = points.map((p, i) => (i ? "L" : "M") + sx(p[0]).toFixed(1) + " " + sy(p[1]).toFixed(1)).join("");
  const dots = points.length <= 60 ? points.map(p => `<circle class="dot" r="2" fill="${color}" cx="${sx(p[0]).toFixed(1)}" cy="${sy(p[1]).toFixed(1)}"/>`).join("") : "";
  svg.innerHTML =
    `<line class="axis" x1="${L}" y1="${H - B}" x2="${W - R}" y2="${H - B}"/>` +
    `<line class="axis" x1="${L}" y1="${T}" x2="${L}" y2="${H - B}"/>` +
    `<text x="2" y="${T + 8}">${y1.toFixed(1)}</text><text x="2" y="${H - B}">${y0.toFixed(1)}</text>` +
    `<text x="${L}" y="${H - 6}">${utc(x0)}</text><text x="${W - R - 110}" y="${H - 6}">${utc(x1)}</text>` +
    `<path class="line" stroke="${color}" d="${path}"/>${dots}` +
    `<text x="${W - R - 90}" y="${T + 8}" fill="${color}">— ${panel.sensor} ${panel.kind} (${panel.unit})</text>`;
}

async function loadHistory() {
  await Promise.all([loadAlarms(), ...PANELS.map(async p => {
    const q = new URLSearchParams({ site: state.site, sensor: p.sensor, kind: p.kind });
    const res = await fetch("/api/series?" + q);
    const points = res.ok ? await res.json() : [];
    const map = state.data.get(p.id);
    map.clear();
    for (const [ts, v] of points) map.set(ts, v);
    render(p);
  })]);
}

function onPoints(points) {
  const touched = new Map();
  for (const pt of points) {
    if (pt.site !== state.site) continue;
    for (const p of PANELS) {
      if (p.sensor === pt.sensor && p.kind === pt.kind) {
        const map = state.data.get(p.id);
        map.set(pt.ts, pt.value); // an updated day replaces its value in place
        while (map.size > MAX_POINTS) map.delete(Math.min(...map.keys()));
        if (!touched.has(p)) touched.set(p, new Set());
        touched.get(p).add(pt.ts);
      }
    }
  }
  for (const [p, fresh] of touched) render(p, fresh);
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
  connect();
  await loadHistory();
  document.body.dataset.ready = "1";
}

start();
