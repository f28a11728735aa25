// The calibration wizard: its state comes with every `state` push (msg.calibration); each button
// is one POST to /api/v1/calibration/<action>. The gateway keeps the walk (and its files), so a
// reload or a second tablet shows the same step.
"use strict";
(() => {
  const $ = (sel) => document.querySelector(sel);
  const esc = (s) => String(s ?? "").replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
  let cal = null; // the last wizard state
  let chosen = null; // the candidate picked in step 1
  let zoneNames = new Map();
  let picked = null; // a zone the technician chose instead of the next one
  let again = false; // "stand again" pressed on a fit: walk on until the next fit

  async function act(action, body) {
    $("#wz-error").hidden = true;
    const r = await fetch("/api/v1/calibration/" + action, {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body || {}),
    });
    if (!r.ok) { showError(await r.text()); return; }
    update(await r.json());
  }

  function showError(text) {
    const e = $("#wz-error");
    e.textContent = text;
    e.hidden = !text;
  }

  function open(on) {
    $("#wizard").hidden = !on;
    $("#side").hidden = on;
    document.body.classList.toggle("calibrating", on);
    if (!on) target(null);
  }

  function target(zone) {
    for (const g of document.querySelectorAll("#floor .zone.target")) g.classList.remove("target");
    if (zone && !$("#wizard").hidden) document.querySelector(`[data-zone="${CSS.escape(zone)}"]`)?.classList.add("target");
  }

  function update(c, st) {
    cal = c;
    if (st) zoneNames = new Map(st.zones.map((z) => [z.id, z.name]));
    const a = c.active;
    $("#wz-active").textContent = "In use: " + a.source + (a.path ? " (" + a.path + ")" : "") +
      (a.applied_at ? ", applied " + new Date(a.applied_at * 1000).toLocaleString() : "");
    const state = again && c.state === "fitted" ? "walking" : c.state;
    $("#wizard").dataset.state = state;
    if (c.error) showError(c.error);
    $("#wz-choose").hidden = state !== "idle";
    $("#wz-walk").hidden = state !== "walking" && state !== "fitting";
    $("#wz-report").hidden = state !== "fitted" && state !== "applied";
    if (state === "idle") renderChoose(c);
    else if (state === "walking" || state === "fitting") renderWalk(c);
    else renderReport(c);
  }
  window.wizardUpdate = update;

  function renderChoose(c) {
    target(null);
    const list = $("#wz-candidates");
    list.innerHTML = c.candidates.length ? c.candidates.map((k) =>
      `<li><button type="button" data-candidate="${esc(k.tag)}" class="${k.tag === chosen ? "chosen" : ""}">` +
      `${esc(k.tag.slice(0, 14))}… ${esc(k.level_dbm)} dBm at ${esc(k.receiver)}</button></li>`).join("")
      : "<li class='muted'>no tag heard yet</li>";
    $("#wz-start").disabled = !chosen || !c.candidates.some((k) => k.tag === chosen);
  }

  function renderWalk(c) {
    const cur = c.stand;
    const zone = cur ? cur.zone : (picked && c.zones.some((z) => z.id === picked) ? picked : c.next);
    target(zone);
    const name = zone ? zoneNames.get(zone) || zone : null;
    $("#wz-beacon").textContent = `Reference beacon ${c.beacon.slice(0, 14)}… (${c.beacon_seen || "chosen"}): ` +
      "not the receiver you held it to? Discard the walk and choose again.";
    $("#wz-prompt").dataset.zone = zone || "";
    if (c.state === "fitting") $("#wz-prompt").textContent = "Fitting the radio model…";
    else if (cur) $("#wz-prompt").textContent = `Stand in ${name}: ${Math.ceil(cur.remaining)} s left`;
    else if (zone) $("#wz-prompt").textContent = `Go to ${name}, stand still, then press Start (${c.stand_s} s)`;
    else $("#wz-prompt").textContent = "Every zone has a stand: press Fit (or stand again in a zone)";
    $("#wz-go").textContent = `Start ${c.stand_s} s in ${name || "…"}`;
    $("#wz-go").disabled = !!cur || !zone || c.state === "fitting";
    $("#wz-stop").hidden = !cur;
    $("#wz-fit").disabled = !!cur || c.progress.done < 2 || c.state === "fitting";
    const meter = $("#wz-countdown");
    meter.hidden = !cur;
    if (cur) meter.firstElementChild.style.width = (100 * cur.elapsed / (cur.elapsed + cur.remaining)).toFixed(0) + "%";
    $("#wz-progress").textContent = `${c.progress.done} of ${c.progress.total} zones stood in` +
      (c.progress.done >= 2 ? " (fit whenever you like: zones without a stand are judged from the others)" : "");
    $("#wz-zones").innerHTML = c.zones.map((z) =>
      `<li data-zone-step="${esc(z.id)}" class="${z.done ? (z.heard_by ? "done" : "weak") : ""}${z.id === zone ? " next" : ""}" ` +
      `title="${z.done ? "heard by " + z.heard_by + " receivers: tap to stand again" : "tap to stand here next"}">` +
      `${z.done ? "✓ " : ""}${esc(z.name)}</li>`).join("");
    const cov = new Map(c.coverage.map((r) => [r.id, r]));
    const now = cur ? cur.samples : {};
    const top = Math.max(1, ...Object.values(now));
    $("#wz-coverage tbody").innerHTML = [...cov.values()].map((r) => {
      const n = now[r.id] || 0;
      return `<tr data-coverage="${esc(r.id)}"><td>${esc(r.id)}</td>` +
        `<td><span class="bar-cell" style="width:${(4 * n / top).toFixed(2)}rem"></span>${cur ? n : ""}` +
        `${cur && cur.levels[r.id] !== undefined ? ` <span class="muted">${cur.levels[r.id].toFixed(0)} dBm</span>` : ""}</td>` +
        `<td class="num">${r.stands} of ${c.progress.done}</td></tr>`;
    }).join("");
  }

  function renderReport(c) {
    target(null);
    const rep = c.report;
    const v = $("#wz-verdict");
    v.textContent = rep.verdict;
    v.classList.toggle("ok", rep.good);
    const cmp = rep.compare;
    $("#wz-compare tbody").innerHTML =
      `<tr data-compare="active"><td>${c.state === "applied" ? "in use before" : "in use"} (${esc(cmp.active.source)})</td><td class="num">${cmp.active.right} of ${cmp.active.of}</td></tr>` +
      `<tr data-compare="new"><td>this walk's fit (each stand judged without itself)</td><td class="num">${cmp.new.right} of ${cmp.new.of}</td></tr>`;
    const applied = c.state === "applied";
    $("#wz-apply").hidden = applied;
    $("#wz-more").hidden = applied;
    $("#wz-discard").textContent = applied ? "New walk" : "Discard";
    const ap = $("#wz-applied");
    ap.hidden = !applied;
    if (applied) ap.textContent = `Applied: zones are decided with this calibration now (kept in ${c.active.path}; the walk's files are in ${c.folder}).`;
    const zn = (z) => (z === null ? "no zone" : zoneNames.get(z) || z);
    $("#wz-misclassified").innerHTML = rep.misclassified.length ? rep.misclassified.map((m) =>
      `<li>${esc(zn(m.zone))} (${Math.round(m.from_s)}–${Math.round(m.to_s)} s into the walk) was decided as ${esc(zn(m.decided))}, p = ${m.p.toFixed(2)}</li>`).join("")
      : "<li class='muted'>none</li>";
    $("#wz-zone-table tbody").innerHTML = rep.zones.map((z) =>
      `<tr data-zone-result="${esc(z.id)}" class="${z.correct === false ? "state-dead" : ""}"><td>${esc(z.name)}</td>` +
      `<td>${z.stood ? esc(zn(z.decided)) : "<span class='muted'>no stand</span>"}</td>` +
      `<td class="num">${z.p === null ? "" : z.p.toFixed(2)}</td><td>${esc(z.confusable_with.map(zn).join(", "))}</td></tr>`).join("");
    const cf = rep.confusion;
    const used = cf.labels.map((_, k) => cf.matrix[k].some((x) => x) || cf.matrix.some((row) => row[k]));
    const idx = cf.labels.map((_, k) => k).filter((k) => used[k]);
    const head = "<tr><th></th>" + idx.map((k) => `<th>${esc(cf.labels[k] ?? "none")}</th>`).join("") + "</tr>";
    const rows = idx.map((i) => `<tr><th>${esc(cf.labels[i] ?? "none")}</th>` + idx.map((j) => {
      const n = cf.matrix[i][j];
      return `<td class="${n ? (i === j ? "hit" : "miss") : ""}">${n || ""}</td>`;
    }).join("") + "</tr>").join("");
    $("#wz-confusion").innerHTML = head + rows;
    $("#wz-receivers tbody").innerHTML = rep.receivers.map((r) =>
      `<tr data-receiver-result="${esc(r.id)}"><td>${esc(r.id)}</td><td class="num">${r.residual_db === null ? "" : r.residual_db.toFixed(1) + " dB"}</td>` +
      `<td>${esc(r.advice.replace(/^\S+: /, ""))}</td></tr>`).join("");
    $("#wz-text").textContent = rep.text;
  }

  $("#wz-open").addEventListener("click", () => {
    open(true);
    fetch("/api/v1/calibration").then((r) => r.json()).then((c) => update(c, window.lastState()));
  });
  $("#wz-close").addEventListener("click", () => open(false));
  $("#wz-candidates").addEventListener("click", (e) => {
    const b = e.target.closest("button[data-candidate]");
    if (!b) return;
    chosen = b.dataset.candidate;
    if (cal) renderChoose(cal);
  });
  const standS = () => Number($("#wz-stand-s").value) || 30;
  $("#wz-start").addEventListener("click", () => act("start", { beacon: chosen, stand_s: standS() }));
  $("#wz-strongest").addEventListener("click", () => act("start", { beacon: null, stand_s: standS() }));
  $("#wz-go").addEventListener("click", () => {
    const zone = $("#wz-prompt").dataset.zone;
    picked = null;
    if (zone) act("stand", { zone });
  });
  $("#wz-stop").addEventListener("click", () => act("stop", { keep: true }));
  $("#wz-zones").addEventListener("click", (e) => {
    const li = e.target.closest("li[data-zone-step]");
    if (!li || !cal || cal.stand) return;
    picked = li.dataset.zoneStep;
    renderWalk(cal);
  });
  $("#wz-fit").addEventListener("click", () => {
    again = false;
    $("#wz-prompt").textContent = "Fitting the radio model…";
    $("#wz-fit").disabled = true;
    act("fit");
  });
  $("#wz-apply").addEventListener("click", () => act("apply"));
  $("#wz-more").addEventListener("click", () => { again = true; update(cal); });
  $("#wz-cancel").addEventListener("click", () => { chosen = null; again = false; act("discard"); });
  $("#wz-discard").addEventListener("click", () => { chosen = null; again = false; act("discard"); });
})();
