// stliif view: the store's AOIs on a map, revisits on a date slider, renders against the input.
"use strict";
(function () {
  const state = { snapshot: null, aois: {}, aoi: null, t: 0, renders: [], render: null, ready: false };
  const $ = (id) => document.getElementById(id);
  const map = L.map("map", { zoomControl: true, attributionControl: true, worldCopyJump: false });
  map.attributionControl.setPrefix("Leaflet");
  map.setView([20, 0], 2);
  map.createPane("input").style.zIndex = 410;
  map.createPane("clouds").style.zIndex = 420;
  map.createPane("render").style.zIndex = 430;
  map.createPane("footprints").style.zIndex = 450;

  let footprints = null, inputLayer = null, cloudLayer = null, renderLayer = null;

  function esc(s) {
    return String(s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
  }
  async function getJSON(url) {
    const r = await fetch(url);
    if (!r.ok) throw new Error(url + ": " + r.status + " " + (await r.text()));
    return r.json();
  }
  function tileUrl(path, t, layer) {
    const q = new URLSearchParams({ path: path, t: String(t), layer: layer, ref: state.snapshot });
    return "/tiles/{z}/{x}/{y}.png?" + q.toString();
  }
  function llBounds(b) { return L.latLngBounds([b[1], b[0]], [b[3], b[2]]); }
  function pct(v) { return v === null || v === undefined ? "?" : Math.round(100 * v) + "%"; }
  function dl(rows) {
    return "<dl>" + rows.filter((r) => r[1] !== undefined && r[1] !== null && r[1] !== "")
      .map((r) => "<dt>" + esc(r[0]) + "</dt><dd>" + esc(typeof r[1] === "object" ? JSON.stringify(r[1]) : r[1]) + "</dd>").join("") + "</dl>";
  }
  function lineageHtml(title, lin, extra) {
    if (!lin) return "<h3>" + esc(title) + "</h3><p>no commit found</p>";
    const inputs = Object.entries(lin.inputs || {}).map(([k, v]) => k + " @ " + String(v).slice(0, 12)).join("\n");
    return "<h3>" + esc(title) + "</h3>" + dl([
      ["artifact", lin.path], ["version", lin.version], ["snapshot", lin.snapshot_id], ["written", lin.written_at],
      ["stage", lin.stage], ["run id", lin.run_id], ["code", lin.code_version], ["inputs", inputs],
      ["input snapshot", lin.input_snapshot], ...(extra || []),
    ]);
  }

  async function startRun(deployment, spec) {
    const out = $("run-result");
    out.textContent = "starting " + deployment + "...";
    const r = await fetch("/api/runs", { method: "POST", headers: { "Content-Type": "application/json" },
                                         body: JSON.stringify({ deployment: deployment, spec: spec }) });
    const body = await r.json();
    if (!r.ok) { out.textContent = "refused: " + body.detail; return; }
    out.innerHTML = esc(body.deployment) + ': flow run <a target="_blank" href="' + esc(body.ui) + '">' +
      esc(body.flow_run_name) + "</a> scheduled (reload the page when it has committed)";
  }

  function showRuns() {
    const a = state.aoi;
    $("runs-box").hidden = !(state.config && state.config.prefect_api);
    if ($("runs-box").hidden) return;
    $("runs-api").textContent = "on " + state.config.prefect_api;
    $("acquire-box").hidden = a.path.startsWith("crop/") || a.source === "worldstrat";
    if (a.dates.length) {
      const next = new Date(Date.parse(a.dates[a.dates.length - 1]) + 86400000).toISOString().slice(0, 10);
      $("run-start").value = next;
      $("run-end").value = new Date().toISOString().slice(0, 10);
    }
    $("run-result").textContent = "";
  }

  $("run-render").addEventListener("click", () => {
    const a = state.aoi;
    startRun("render-manual", { aoi: a.aoi, date: a.dates[state.t], model: $("run-model").value,
                                scale: Number($("run-scale").value) });
  });
  $("run-acquire").addEventListener("click", () => {
    const a = state.aoi;
    // the area as acquired (its polygon, or its grid's bounds): a refresh adds only new dates
    startRun("acquire-manual", { aoi: a.aoi, polygon: JSON.stringify(a.footprint), start: $("run-start").value,
                                 end: $("run-end").value });
  });

  async function load() {
    state.config = await getJSON("/api/config");
    const fc = await getJSON("/api/aois");
    state.snapshot = fc.snapshot;
    $("store").textContent = "branch " + fc.branch + " at snapshot " + fc.snapshot;
    const list = $("aoi-list");
    list.innerHTML = "";
    for (const f of fc.features) {
      state.aois[f.id] = f.properties;
      const li = document.createElement("li");
      li.dataset.aoi = f.id;
      const p = f.properties;
      li.textContent = f.id + " (" + p.dates.length + " dates)";
      li.title = p.source + " " + (p.dates[0] || "") + " .. " + (p.dates[p.dates.length - 1] || "");
      li.addEventListener("click", () => selectAoi(f.id));
      list.appendChild(li);
    }
    footprints = L.geoJSON(fc, {
      pane: "footprints",
      style: () => ({ className: "aoi-footprint", color: "#d6336c", weight: 2, fillOpacity: 0.08 }),
      onEachFeature: (f, layer) => {
        const p = f.properties;
        const cf = p.clear_fraction.filter((v) => v !== null);
        const mean = cf.length ? cf.reduce((a, b) => a + b, 0) / cf.length : null;
        layer.bindTooltip("<b>" + esc(f.id) + "</b><br>source: " + esc(p.source || "?") +
          (p.providers.length ? " (" + esc(p.providers.join(", ")) + ")" : "") +
          "<br>" + p.dates.length + " dates, " + esc(p.dates[0] || "") + " .. " + esc(p.dates[p.dates.length - 1] || "") +
          "<br>clear: " + p.clear_fraction.map(pct).join(" ") + (mean !== null ? " (mean " + pct(mean) + ")" : ""), { sticky: true });
        layer.on("click", () => selectAoi(f.id));
      },
    }).addTo(map);
    if (fc.features.length) map.fitBounds(footprints.getBounds(), { padding: [30, 30] });
    state.ready = true;
  }

  async function selectAoi(name) {
    const a = await getJSON("/api/aoi/" + name.split("/").map(encodeURIComponent).join("/") + "?ref=" + encodeURIComponent(state.snapshot));
    state.aoi = a;
    for (const li of document.querySelectorAll("#aoi-list li")) li.classList.toggle("selected", li.dataset.aoi === name);
    $("aoi-section").hidden = false;
    $("aoi-title").textContent = name;
    $("aoi-meta").textContent = (a.source || "?") + (a.providers.length ? " (" + a.providers.join(", ") + ")" : "") +
      " | " + a.shape[0] + " x " + a.shape[1] + " px, " + a.crs + " | bands " + a.bands.join(" ");
    const slider = $("date-slider");
    slider.max = String(Math.max(0, a.dates.length - 1));
    const best = a.clear_fraction.reduce((bi, v, i, arr) => ((v ?? -1) > (arr[bi] ?? -1) ? i : bi), 0);
    slider.value = String(best);
    const bars = $("date-bars");
    bars.innerHTML = "";
    a.dates.forEach((d, i) => {
      const b = document.createElement("div");
      const cf = a.clear_fraction[i];
      b.className = "bar" + (cf !== null && cf < 0.5 ? " cloudy" : "");
      b.style.height = Math.max(3, Math.round(34 * (cf ?? 0))) + "px";
      b.title = d + ": clear " + pct(cf);
      b.dataset.t = String(i);
      b.addEventListener("click", () => { $("date-slider").value = String(i); setDate(i); });
      bars.appendChild(b);
    });
    const rs = await getJSON("/api/renders?aoi=" + encodeURIComponent(name) + "&ref=" + encodeURIComponent(state.snapshot));
    state.renders = rs.renders;
    const sel = $("render-select");
    sel.innerHTML = '<option value="">(none)</option>' + rs.renders.map((r, i) =>
      '<option value="' + i + '">' + esc(r.model + " / " + r.name) + "</option>").join("");
    clearRender();
    showRuns();
    map.fitBounds(llBounds(a.bounds), { padding: [20, 20] });
    setDate(best);
  }

  function setDate(t) {
    const a = state.aoi;
    state.t = t;
    $("date-label").textContent = a.dates[t] + " (" + (t + 1) + "/" + a.dates.length + "), clear " + pct(a.clear_fraction[t]);
    for (const b of document.querySelectorAll("#date-bars .bar")) b.classList.toggle("current", b.dataset.t === String(t));
    const opts = { pane: "input", bounds: llBounds(a.bounds), maxZoom: 22, tileSize: 256, className: "input-tiles" };
    if (!inputLayer) inputLayer = L.tileLayer(tileUrl(a.path, t, "rgb"), opts).addTo(map);
    else { inputLayer.options.bounds = llBounds(a.bounds); inputLayer.setUrl(tileUrl(a.path, t, "rgb")); }
    updateClouds();
    showLineage();
  }

  function updateClouds() {
    const a = state.aoi;
    if (cloudLayer) { map.removeLayer(cloudLayer); cloudLayer = null; }
    if ($("cloud-toggle").checked && a && a.has_clouds) {
      cloudLayer = L.tileLayer(tileUrl(a.path, state.t, "cloud"),
        { pane: "clouds", bounds: llBounds(a.bounds), maxZoom: 22, className: "cloud-tiles" }).addTo(map);
    }
  }

  function clearRender() {
    if (renderLayer) { map.removeLayer(renderLayer); renderLayer = null; }
    state.render = null;
    $("swipe-box").hidden = true;
    $("swipe-line").hidden = true;
    map.getPane("render").style.clip = "";
  }

  function selectRender(i) {
    clearRender();
    if (i === "") { showLineage(); return; }
    const r = state.renders[Number(i)];
    state.render = r;
    renderLayer = L.tileLayer(tileUrl(r.path, 0, "rgb"),
      { pane: "render", bounds: llBounds(r.bounds), maxZoom: 22, className: "render-tiles" }).addTo(map);
    $("swipe-box").hidden = false;
    $("swipe-line").hidden = false;
    // a series (time, band, y, x): one of its dates at a time
    $("render-date-box").hidden = r.dates.length < 2;
    $("render-date").innerHTML = r.dates.map((d, k) => '<option value="' + k + '">' + esc(d) + "</option>").join("");
    setRenderDate(0);
    updateSwipe();
  }

  function setRenderDate(k) {
    const r = state.render, at = r.attrs || {};
    state.renderT = k;
    renderLayer.setUrl(tileUrl(r.path, k, "rgb"));
    const it = r.input_t[k];
    $("render-meta").textContent = "left: 10 m input " + (it !== null && it !== undefined ? state.aoi.dates[it] : "?") +
      "; right: " + r.model + " at " + r.dates[k] + ", x" + (at.scale ?? "?") + " (" + r.shape[0] + " x " + r.shape[1] + " px)";
    if (it !== null && it !== undefined) {
      $("date-slider").value = String(it);
      setDate(it);
    } else showLineage();
  }

  function updateSwipe() {
    if (!renderLayer) return;
    const frac = Number($("swipe").value) / 100;
    const size = map.getSize();
    const nw = map.containerPointToLayerPoint([0, 0]);
    const se = map.containerPointToLayerPoint(size);
    const x = nw.x + size.x * frac;
    map.getPane("render").style.clip = "rect(" + nw.y + "px," + se.x + "px," + se.y + "px," + x + "px)";
    const line = $("swipe-line");
    line.style.left = (size.x * frac - 1) + "px";
  }

  function showLineage() {
    const a = state.aoi, r = state.render;
    let html = lineageHtml("input: " + a.path, a.lineage, [["date shown", a.dates[state.t]], ["clear", pct(a.clear_fraction[state.t])]]);
    if (r) {
      const at = r.attrs || {};
      html = lineageHtml("render: " + r.path, r.lineage, [
        ["model", r.model], ["model sha256", at.model_sha256], ["date shown", r.dates[state.renderT || 0]],
        ["dates", r.dates.length > 1 ? r.dates.join(", ") : null], ["scale", at.scale],
        ["revisits used", (at.revisits || []).join(", ")], ["temporal support", at.temporal_support],
        ["nearest revisit (days)", at.nearest_revisit_days], ["source", at.source],
      ]) + html;
    }
    $("lineage").innerHTML = html;
  }

  $("date-slider").addEventListener("input", (e) => setDate(Number(e.target.value)));
  $("cloud-toggle").addEventListener("change", updateClouds);
  $("render-select").addEventListener("change", (e) => selectRender(e.target.value));
  $("swipe").addEventListener("input", updateSwipe);
  $("render-date").addEventListener("change", (e) => setRenderDate(Number(e.target.value)));
  map.on("move zoom resize", updateSwipe);

  window.stliifView = { state, map, selectAoi };
  load().catch((err) => { $("store").textContent = String(err); console.error(err); });
})();
