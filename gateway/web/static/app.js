// The technician app: one server-sent event stream (/api/v1/stream) drives the floor map, the
// tag and receiver tables, and (with ?tag=) the open tag's plots. No build step, no libraries.
"use strict";
const NS = "http://www.w3.org/2000/svg";
const $ = (sel) => document.querySelector(sel);
const esc = (s) => String(s ?? "").replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
const COLORS = ["#2563eb", "#dc2626", "#16a34a", "#d97706", "#7c3aed", "#0891b2", "#db2777", "#4b5563"];

let stream = null;
let detailTag = null;
let last = null; // the last state message
window.lastState = () => last?.state;
let skew = 0; // server clock - browser clock (s)
const tagEls = new Map(); // pseudonym -> <circle>
const zoneBoxes = new Map(); // zone id -> [xmin, ymin, xmax, ymax]

function connect() {
  if (stream) stream.close();
  const url = "/api/v1/stream" + (detailTag ? "?tag=" + encodeURIComponent(detailTag) : "");
  stream = new EventSource(url);
  stream.addEventListener("state", (e) => render(JSON.parse(e.data)));
  stream.addEventListener("tag", (e) => renderDetail(JSON.parse(e.data)));
  stream.onopen = () => badge("#live", "live", "good");
  stream.onerror = () => badge("#live", "reconnecting…", "bad");
}

function badge(sel, text, kind) {
  const el = $(sel);
  el.textContent = text;
  el.className = "badge " + (kind || "");
}

function age(s) {
  if (s === null || s === undefined) return "never";
  s = Math.max(0, Math.round(s));
  if (s < 60) return s + " s";
  if (s < 3600) return Math.floor(s / 60) + ":" + String(s % 60).padStart(2, "0");
  return Math.floor(s / 3600) + " h " + String(Math.floor((s % 3600) / 60)).padStart(2, "0");
}

const now = () => Date.now() / 1000 + skew;

function render(msg) {
  last = msg;
  skew = msg.now - Date.now() / 1000;
  document.body.dataset.updated = String(msg.now); // when the last push arrived (tests read it)
  const st = msg.state;
  badge("#live", "live", "good");
  const m = st.mqtt;
  badge("#mqtt", "MQTT " + (m.connected ? "connected" : "offline") + " " + age(now() - m.since), m.connected ? "good" : "bad");
  const ob = st.outbox;
  badge("#outbox", "outbox " + ob.backlog + (ob.oldest_s ? ", oldest " + age(ob.oldest_s) : ""), ob.backlog > 1000 ? "warn" : "");
  renderReceivers(st.receivers);
  renderTags(st, msg.near || {});
  if (msg.calibration && window.wizardUpdate) window.wizardUpdate(msg.calibration, st);
}

function renderReceivers(rxs) {
  const rows = [];
  for (const r of rxs) {
    const g = document.querySelector(`[data-receiver="${CSS.escape(r.id)}"]`);
    if (g) {
      g.classList.remove("ok", "silent", "dead");
      g.classList.add(r.state);
      g.classList.toggle("drifted", Boolean(r.drift_alert));
      g.querySelector("title").textContent = `${r.id}: ${r.adverts_per_s} adverts/s, last heard ${age(r.last_heard_s)}` +
        (r.drift_alert ? `\n${r.drift_alert}` : "");
      g.querySelector(".halo").setAttribute("r", String(0.6 + Math.min(2.0, Math.sqrt(r.adverts_per_s) * 0.25)));
    }
    rows.push(`<tr><td>${esc(r.id)}</td><td class="num">${r.adverts_per_s.toFixed(1)}</td>` +
      `<td class="num">${esc(age(r.last_heard_s))}</td><td class="state-${esc(r.state)}">${esc(r.state)}` +
      // reference beacons: how far it has drifted since calibration (corrected from 1 dB on)
      (r.drift_db ? ` <span class="drift" title="${esc(r.drift_alert || "corrected")}">drift ${r.drift_db > 0 ? "+" : ""}${r.drift_db} dB</span>` : "") +
      `</td></tr>`);
  }
  $("#rx-table tbody").innerHTML = rows.join("");
}

function zoneBox(id) {
  if (!zoneBoxes.has(id)) {
    const g = document.querySelector(`[data-zone="${CSS.escape(id)}"] polygon`);
    const b = g.getBBox();
    zoneBoxes.set(id, [b.x, b.y, b.x + b.width, b.y + b.height]);
  }
  return zoneBoxes.get(id);
}

function place(tags, box, out) {
  // tags spread on a grid inside the zone's box, in a stable order
  const [x0, yt, x1, y1] = box;
  const y0 = yt + (y1 - yt) * 0.55; // the zone's lower part: its name and receiver are above
  const w = Math.max(x1 - x0 - 0.8, 0.1), h = Math.max(y1 - y0 - 0.4, 0.1);
  const n = tags.length;
  const cols = Math.max(1, Math.ceil(Math.sqrt((n * w) / h)));
  const rows = Math.max(1, Math.ceil(n / cols));
  tags.forEach((t, i) => {
    const c = i % cols, r = Math.floor(i / cols);
    out.set(t.tag, [x0 + 0.4 + (w * (c + 0.5)) / cols, y0 + (h * (r + 0.5)) / rows]);
  });
}

function renderTags(st, near) {
  const names = new Map(st.zones.map((z) => [z.id, z.name]));
  const byZone = new Map();
  for (const t of st.tags) {
    const k = t.zone ?? "";
    if (!byZone.has(k)) byZone.set(k, []);
    byZone.get(k).push(t);
  }
  const pos = new Map();
  for (const z of st.zones) {
    const ts = (byZone.get(z.id) || []).sort((a, b) => (a.tag < b.tag ? -1 : 1));
    const g = document.querySelector(`[data-zone="${CSS.escape(z.id)}"]`);
    g.classList.toggle("occupied", ts.length > 0);
    g.querySelector(".zone-count").textContent = ts.length ? ts.length + (ts.length > 1 ? " tags" : " tag") : "";
    if (ts.length) place(ts, zoneBox(z.id), pos);
  }
  const rxPos = new Map(st.receivers.map((r) => [r.id, [r.x, r.y]]));
  (byZone.get("") || []).forEach((t, i) => {
    const p = rxPos.get(near[t.tag]);
    if (!p) return;
    const a = i * 2.4, rad = 1.4 + 0.25 * (i % 5);
    pos.set(t.tag, [p[0] + rad * Math.cos(a), p[1] + rad * Math.sin(a)]);
  });
  const layer = $("#tags");
  const seen = new Set();
  for (const t of st.tags) {
    const p = pos.get(t.tag);
    if (!p) continue;
    seen.add(t.tag);
    let el = tagEls.get(t.tag);
    if (!el) {
      el = document.createElementNS(NS, "circle");
      el.setAttribute("r", "0.32");
      el.dataset.tag = t.tag;
      el.appendChild(document.createElementNS(NS, "title"));
      el.addEventListener("click", () => openDetail(t.tag));
      layer.appendChild(el);
      tagEls.set(t.tag, el);
    }
    el.setAttribute("cx", p[0].toFixed(2));
    el.setAttribute("cy", p[1].toFixed(2));
    el.setAttribute("class", "tag" + (t.zone ? "" : " nozone") + (t.tag === detailTag ? " selected" : ""));
    el.style.opacity = String(0.3 + 0.7 * t.p);
    el.firstChild.textContent = `${t.tag.slice(0, 10)}… ${names.get(t.zone) || "no zone"} ${Math.round(t.p * 100)}%`;
  }
  for (const [k, el] of tagEls) if (!seen.has(k)) { el.remove(); tagEls.delete(k); }
  $("#tag-count").textContent = `${st.tags.length} live`;
  renderTagTable(st.tags, names);
}

function renderTagTable(tags, names) {
  const f = $("#filter").value.trim().toLowerCase();
  const rows = [];
  const sorted = [...tags].sort((a, b) => a.since - b.since);
  for (const t of sorted) {
    const zone = t.zone ? names.get(t.zone) || t.zone : "no zone";
    if (f && !(t.tag.toLowerCase().includes(f) || zone.toLowerCase().includes(f) || (t.zone || "").includes(f))) continue;
    rows.push(`<tr data-row="${esc(t.tag)}"><td title="${esc(t.tag)}">${esc(t.tag)}</td>` +
      `<td>${esc(zone)}</td><td class="num">${Math.round(t.p * 100)}%</td>` +
      `<td class="num dwell" data-since="${t.since}">${esc(age(now() - t.since))}</td></tr>`);
  }
  $("#tags-table tbody").innerHTML = rows.join("");
}

// dwell timers count on between messages (local rendering only, nothing is fetched)
setInterval(() => {
  for (const td of document.querySelectorAll("td.dwell")) td.textContent = age(now() - Number(td.dataset.since));
}, 1000);

$("#tags-table tbody").addEventListener("click", (e) => {
  const tr = e.target.closest("tr[data-row]");
  if (tr) openDetail(tr.dataset.row);
});
$("#filter").addEventListener("input", () => last && renderTagTable(last.state.tags, new Map(last.state.zones.map((z) => [z.id, z.name]))));

function openDetail(tag) {
  detailTag = tag;
  $("#detail-title").textContent = tag;
  $("#rssi-plots").innerHTML = "<p class='muted'>waiting for data…</p>";
  $("#prob-plot").innerHTML = "";
  if (!$("#detail").open) $("#detail").showModal();
  connect();
}

$("#detail-close").addEventListener("click", () => $("#detail").close());
$("#detail").addEventListener("close", () => { detailTag = null; connect(); });

// ------------------------------------------------------------------ plots (plain SVG)
function svgEl(tag, attrs, parent) {
  const el = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  if (parent) parent.appendChild(el);
  return el;
}

function frame(title, t0, t1, y0, y1, yticks, fmt, W = 320, H = 150) {
  const L = 34, R = 16, T = 16, B = 18;
  const svg = svgEl("svg", { viewBox: `0 0 ${W} ${H}`, class: "plot", role: "img", "aria-label": title });
  const sx = (t) => L + ((t - t0) / (t1 - t0)) * (W - L - R);
  const sy = (v) => T + (1 - (v - y0) / (y1 - y0)) * (H - T - B);
  for (const v of yticks) {
    svgEl("line", { x1: L, x2: W - R, y1: sy(v), y2: sy(v), class: "grid" }, svg);
    svgEl("text", { x: L - 3, y: sy(v) + 3, "text-anchor": "end" }, svg).textContent = fmt(v);
  }
  svgEl("line", { x1: L, x2: L, y1: T, y2: H - B, class: "axis" }, svg);
  svgEl("line", { x1: L, x2: W - R, y1: H - B, y2: H - B, class: "axis" }, svg);
  for (let m = 0; m <= 5; m++) {
    const t = t1 - m * 60;
    if (t < t0) break;
    svgEl("text", { x: sx(t), y: H - 5, "text-anchor": "middle" }, svg).textContent = m ? `-${m} min` : "now";
  }
  svgEl("text", { x: L, y: 11, class: "title" }, svg).textContent = title;
  return { svg, sx, sy };
}

function path(xs, ys, sx, sy) {
  let d = "", pen = false;
  for (let i = 0; i < xs.length; i++) {
    if (ys[i] === null || Number.isNaN(ys[i])) { pen = false; continue; }
    d += (pen ? "L" : "M") + sx(xs[i]).toFixed(1) + "," + sy(ys[i]).toFixed(1);
    pen = true;
  }
  return d;
}

function renderDetail(d) {
  if (d.tag !== detailTag) return;
  if (d.gone) { $("#detail-now").textContent = "this tag is no longer tracked"; return; }
  const t1 = d.now, t0 = t1 - 300;
  const cur = last?.state.tags.find((t) => t.tag === d.tag);
  const zname = (z) => (z ? (last.state.zones.find((x) => x.id === z) || { name: z }).name : "no zone");
  $("#detail-now").textContent = (cur ? `${zname(cur.zone)}, ${Math.round(cur.p * 100)}% sure, for ${age(now() - cur.since)} · ` : "") +
    "updated " + new Date(t1 * 1000).toLocaleTimeString();
  const rxs = Object.entries(d.rssi).sort((a, b) => b[1].t.length - a[1].t.length).slice(0, 6);
  const box = $("#rssi-plots");
  box.innerHTML = rxs.length ? "" : "<p class='muted'>no sightings in the last 5 minutes</p>";
  for (const [rx, s] of rxs) {
    const vals = s.raw.concat(s.filtered.filter((v) => v !== null));
    const y0 = Math.floor((Math.min(...vals) - 3) / 10) * 10, y1 = Math.ceil((Math.max(...vals) + 3) / 10) * 10;
    const ticks = [];
    for (let v = y0; v <= y1; v += 10) ticks.push(v);
    const { svg, sx, sy } = frame(`${rx} (${s.t.length} sightings)`, t0, t1, y0, y1, ticks, (v) => v + "");
    svg.dataset.receiver = rx;
    const n0 = Math.max(0, s.t.length - 800);
    for (let i = n0; i < s.t.length; i++) svgEl("circle", { cx: sx(s.t[i]).toFixed(1), cy: sy(s.raw[i]).toFixed(1), r: 1.6, class: "raw" }, svg);
    svgEl("path", { d: path(s.t, s.filtered, sx, sy), class: "filtered" }, svg);
    box.appendChild(svg);
  }
  renderProbs(d, t0, t1);
}

function renderProbs(d, t0, t1) {
  const box = $("#prob-plot");
  box.innerHTML = "";
  const P = d.probs.p, T = d.probs.t;
  if (!T.length) { box.innerHTML = "<p class='muted'>no zone decisions yet</p>"; return; }
  const names = new Map((last?.state.zones || []).map((z) => [z.id, z.name]));
  const peak = d.zones.map((_, k) => Math.max(...P.map((row) => row[k])));
  const shown = d.zones.map((z, k) => k).filter((k) => peak[k] >= 0.05).sort((a, b) => peak[b] - peak[a]).slice(0, 8);
  const { svg, sx, sy } = frame("probability of each zone", t0, t1, 0, 1, [0, 0.5, 1], (v) => Math.round(v * 100) + "%", 640, 170);
  svg.setAttribute("viewBox", "0 0 640 200");
  shown.forEach((k, i) => {
    const color = COLORS[i % COLORS.length];
    svgEl("path", { d: path(T, P.map((row) => row[k]), sx, sy), class: "prob", stroke: color }, svg);
    const label = d.zones[k] === null ? "no zone" : names.get(d.zones[k]) || d.zones[k];
    const lx = 40 + (i % 4) * 150, ly = 182 + 13 * Math.floor(i / 4);
    svgEl("rect", { x: lx, y: ly - 7, width: 8, height: 8, fill: color }, svg);
    svgEl("text", { x: lx + 11, y: ly }, svg).textContent = label.slice(0, 24);
  });
  box.appendChild(svg);
}

connect();
