// convsight explorer: small progressive enhancements; every page also works without them.
// Changes (a synthesis, an upload) carry the header X-Convsight: 1, which the server requires:
// other web sites cannot add it to their requests without the server's permission.
"use strict";

function $(id) { return document.getElementById(id); }
const WRITE = { "X-Convsight": "1" };

// Upload: send the picture with fetch and go to its page; say what was wrong if it is refused.
(function upload() {
  const form = document.querySelector("form.upload");
  if (!form) return;
  const status = $("upload-status"), button = $("upload-button");
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    button.disabled = true;
    status.textContent = "uploading…";
    try {
      const r = await fetch("/api/upload", { method: "POST", body: new FormData(form), headers: WRITE });
      const json = (r.headers.get("content-type") || "").includes("json");
      const reply = json ? await r.json() : { error: (await r.text()).trim() };
      if (r.ok) { location.href = reply.url; return; }
      status.textContent = reply.error || `refused (HTTP ${r.status})`;
    } catch (e) {
      status.textContent = "the upload failed: " + e;
    }
    button.disabled = false;
  });
})();

// Image view: the top classes' bars, from their percentages (no inline styles: see the CSP).
for (const bar of document.querySelectorAll("[data-percent]")) {
  bar.style.width = `${bar.dataset.percent}%`;
}

// Layer list: filter rows as you type.
(function layerFilter() {
  const box = $("filter"), table = $("layer-table");
  if (!box || !table) return;
  box.addEventListener("input", () => {
    const q = box.value.trim().toLowerCase();
    for (const tr of table.tBodies[0].rows) {
      tr.hidden = q !== "" && !tr.dataset.name.toLowerCase().includes(q);
    }
  });
})();

// Unit view: start a synthesis and poll its progress (the steps done) until the picture is ready.
(function synthesis() {
  const box = $("synth");
  if (!box) return;
  const layer = box.dataset.layer, channel = box.dataset.channel;
  const api = `/api/synth/${layer}/${channel}`;
  const button = $("synth-start"), status = $("synth-status"), img = $("synth-img");
  const progress = box.querySelector(".progress"), bar = box.querySelector(".progress .bar");
  function show(s) {
    if (s.state === "done") {
      img.src = `/img/synth/${layer}/${channel}.png?t=${Date.now()}`;
      img.hidden = false;
      $("synth-controls").hidden = true;
      return true;
    }
    if (s.state === "error") {
      status.textContent = "failed: " + s.error;
      button.disabled = false;
      button.textContent = "Try again";
      return true;
    }
    if (s.state === "queued" || s.state === "running") {
      progress.hidden = false;
      button.disabled = true;
      bar.style.width = s.steps ? `${Math.round(100 * s.step / s.steps)}%` : "";
      status.textContent = s.state === "queued"
        ? `waiting${s.ahead ? ` (${s.ahead} ahead)` : ""}…`
        : `step ${s.step} of ${s.steps} · ${s.elapsed.toFixed(0)} s`;
    }
    return false;
  }
  async function poll() {
    try {
      const s = await (await fetch(api)).json();
      if (!show(s)) setTimeout(poll, 700);
    } catch (e) { setTimeout(poll, 2000); }
  }
  button.addEventListener("click", async () => {
    button.disabled = true;
    const r = await fetch(api, { method: "POST", headers: WRITE });
    const s = await r.json();
    if (!r.ok) { status.textContent = s.error || "cannot start"; button.disabled = false; return; }
    if (!show(s)) setTimeout(poll, 500);
  });
  if (box.dataset.state === "queued" || box.dataset.state === "running") poll();
})();

// Image view: pick a layer; click an activation tile to explain that unit on this image.
(function imageView() {
  const maps = $("maps");
  if (!maps) return;
  const select = $("layer-select");
  select.addEventListener("change", () => select.form.submit());
  const d = maps.dataset, img = $("maps-img"), hi = $("maps-hi");
  const ncols = +d.ncols, th = +d.tileH, tw = +d.tileW, pad = +d.pad, nch = +d.channels;

  function tileAt(px, py) {  // picture pixels -> channel number (or -1 between tiles)
    const col = Math.floor((px - pad) / (tw + pad)), row = Math.floor((py - pad) / (th + pad));
    const inX = px - pad - col * (tw + pad), inY = py - pad - row * (th + pad);
    if (col < 0 || row < 0 || col >= ncols || inX >= tw || inY >= th) return -1;
    const c = row * ncols + col;
    return c < nch ? c : -1;
  }
  function highlight(c) {
    const scale = img.clientWidth / +d.width;
    const col = c % ncols, row = Math.floor(c / ncols);
    hi.style.left = `${(pad + col * (tw + pad)) * scale - 2}px`;
    hi.style.top = `${(pad + row * (th + pad)) * scale - 2}px`;
    hi.style.width = `${tw * scale + 4}px`;
    hi.style.height = `${th * scale + 4}px`;
    hi.hidden = false;
  }
  function showBox(info) {
    const box = $("rf-box"), input = $("input-img");
    if (!info.box) { box.hidden = true; return; }
    const [top, left, bottom, right] = info.box, [h, w] = info.input;
    const sy = input.clientHeight / h, sx = input.clientWidth / w;
    const t = Math.max(top, 0), l = Math.max(left, 0);
    const b = Math.min(bottom, h - 1), r = Math.min(right, w - 1);
    box.style.top = `${t * sy}px`; box.style.left = `${l * sx}px`;
    box.style.height = `${(b - t + 1) * sy}px`; box.style.width = `${(r - l + 1) * sx}px`;
    box.hidden = false;
  }
  function showUnit(info) {
    $("unit-panel").hidden = false;
    $("unit-hint").hidden = true;
    $("unit-title").textContent = `${info.layer}:${info.channel}`;
    $("unit-where").textContent = `strongest at (${info.y}, ${info.x}): ${info.value}`;
    for (const [m, src] of Object.entries(info.images)) $(`unit-${m}`).src = src;
    $("unit-link").href = info.unit_url;
    highlight(info.channel);
    showBox(info);
  }
  img.addEventListener("click", async (ev) => {
    const scale = +d.width / img.clientWidth;
    const c = tileAt(ev.offsetX * scale, ev.offsetY * scale);
    if (c < 0) return;
    highlight(c);
    const r = await fetch(`/api/unit/${d.image}/${d.layer}/${c}`);
    if (!r.ok) return;
    const info = await r.json();
    showUnit(info);
    const url = new URL(location.href);
    url.searchParams.set("layer", d.layer);
    url.searchParams.set("unit", c);
    history.replaceState(null, "", url);
  });
  const chosen = $("chosen");
  if (chosen) {
    const info = JSON.parse(chosen.textContent);
    const go = () => showUnit(info);
    if (img.complete) go(); else img.addEventListener("load", go);
  }
})();

// Image view: under each class attribution, its trust score (deletion and insertion AUC beside
// random maps', the randomisation check), fetched one after another once its picture has shown.
(function trustScores() {
  const boxes = [...document.querySelectorAll(".trust[data-trust]")];
  if (!boxes.length) return;
  function shown(img) {  // resolves when the picture has loaded (or failed to)
    return new Promise((done) => {
      if (!img || img.complete) { done(); return; }
      img.addEventListener("load", done, { once: true });
      img.addEventListener("error", done, { once: true });
    });
  }
  async function fill(box) {
    const line = box.querySelector(".trust-line"), verdict = box.querySelector(".trust-verdict");
    await shown(box.parentElement.querySelector("img"));
    line.textContent = "checking…";
    try {
      const r = await fetch(box.dataset.trust);
      const json = (r.headers.get("content-type") || "").includes("json");
      const reply = json ? await r.json() : { error: (await r.text()).trim() };
      if (!r.ok) throw new Error(reply.error || `HTTP ${r.status}`);
      line.textContent = reply.line;
      verdict.textContent = reply.verdict;
      box.classList.add(reply.needs_weights ? "passes" : "fails");
    } catch (e) {
      line.textContent = "trust score failed: " + (e.message || e).toString().split("\n")[0];
      box.classList.add("error");
    }
  }
  (async () => { for (const box of boxes) await fill(box); })();
})();

// Image view: the report card of the class attributions, computed on request and cancellable
// (the page stops waiting and the server stops between two scores).
(function reportCard() {
  const box = document.querySelector(".card[data-card]");
  if (!box) return;
  const go = box.querySelector(".card-go"), stop = box.querySelector(".card-stop");
  const state = box.querySelector(".card-state"), table = box.querySelector(".card-table");
  const better = { road: "↑", sparseness: "↑", pointing_game: "↑", relevance_mass: "↑",
                   insertion: "↑" };
  let waiting = null;
  function draw(reply) {
    const t = document.createElement("table");
    const head = t.insertRow();
    for (const name of ["method", ...reply.metrics]) {
      const th = document.createElement("th");
      th.textContent = name === "method" ? name : `${name} ${better[name] || "↓"}`;
      head.appendChild(th);
    }
    for (const row of reply.rows) {
      const tr = t.insertRow();
      tr.insertCell().textContent = row.method;
      for (const name of reply.metrics) {
        const v = row[name];
        tr.insertCell().textContent = v === null || v === undefined ? "n/a" : v.toFixed(3);
      }
    }
    table.replaceChildren(t);
  }
  go.addEventListener("click", async () => {
    waiting = new AbortController();
    go.disabled = true; stop.hidden = false; state.textContent = "computing…";
    try {
      const r = await fetch(box.dataset.card, { signal: waiting.signal });
      const json = (r.headers.get("content-type") || "").includes("json");
      const reply = json ? await r.json() : { error: (await r.text()).trim() };
      if (!r.ok) throw new Error(reply.error || `HTTP ${r.status}`);
      draw(reply); state.textContent = "";
    } catch (e) {
      state.textContent = e.name === "AbortError" ? "cancelled"
        : "report card failed: " + (e.message || e).toString().split("\n")[0];
    } finally {
      go.disabled = false; stop.hidden = true; waiting = null;
    }
  });
  stop.addEventListener("click", () => {
    fetch(box.dataset.card, { method: "POST", headers: WRITE }).catch(() => {});
    if (waiting) waiting.abort();
  });
})();
