// convsight Live page: frames from the camera, a video file, a dropped image or the sample photos
// go to the server over one WebSocket; its answers (a layer's activations, the top classes, the
// chosen unit's map and backward view) are drawn here. Plain JS, no libraries.
// Frames: binary messages, a 4-byte big-endian frame number and a JPEG. Settings: JSON text.
// Answers: a 4-byte header length, a JSON header, then the parts it lists (offset, length).
"use strict";

(function live() {
  const root = document.getElementById("live");
  if (!root) return;
  const $ = (id) => document.getElementById(id);
  const H = +root.dataset.inputH, W = +root.dataset.inputW, RATIO = +root.dataset.ratio;
  const SAMPLES = root.dataset.samples ? root.dataset.samples.split(",") : [];
  // IN_FLIGHT: frames sent and not yet answered: one the server computes, one waiting for it.
  const MAX_FPS = 60, IN_FLIGHT = 2, KEEP = 16, PAD = 1, READOUT_MS = 250;
  const grab = document.createElement("canvas");
  grab.width = W; grab.height = H;
  const grabCtx = grab.getContext("2d", { willReadFrequently: true });
  const video = $("video");
  const state = {
    ws: null, paused: false, stepOnce: false, source: null, sampleIndex: 0, sampleTimer: null,
    nextId: 1, sent: new Map(), settings: null, frame: null, busy: false,
    answered: 0, lastSent: 0, lastHeard: 0,  // the newest frame number answered; times in ms
    fresh: true, frameClock: false,  // a new video frame to send; the video tells when (rVFC)
    drawing: Promise.resolve(), shown: null, resend: false,  // the pixels of the frame on show
    lastReadout: 0, readoutTimer: null,
  };
  // What the page measured (read by the tests and bench/live.py): frames drawn, capture->drawn
  // latencies in ms, draw times, the server's counts, the last answer's header.
  const stats = window.convsightLive = {
    drawn: 0, dropped: 0, received: 0, latencies: [], times: [], errors: [], settings: null, head: null,
    server: { decode: 0, model: 0, encode: 0, cpu: 0 },  // the server's milliseconds, summed
    reset() { this.drawn = 0; this.latencies = []; this.times = []; this.server = { decode: 0, model: 0, encode: 0, cpu: 0 }; },
  };

  // ----- the socket ---------------------------------------------------------------------------
  function connect() {
    const ws = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/live/socket`);
    ws.binaryType = "arraybuffer";
    ws.onmessage = (ev) => {  // answers are drawn one after the other, in the order they came
      if (typeof ev.data === "string") { onText(JSON.parse(ev.data)); return; }
      const size = new DataView(ev.data).getUint32(0);
      const head = JSON.parse(new TextDecoder().decode(new Uint8Array(ev.data, 4, size)));
      heard(head.id);  // the next frame goes out now, while this one is drawn
      state.drawing = state.drawing.then(() => onFrame(ev.data, size, head)).catch((e) => showError(String(e)));
    };
    ws.onclose = (ev) => {
      showError(`the connection closed (${ev.code}${ev.reason ? ": " + ev.reason : ""}); reconnecting…`);
      setTimeout(connect, 2000);
    };
    ws.onopen = () => { $("live-error").hidden = true; state.answered = state.nextId - 1; };
    state.ws = ws;
  }
  function send(obj) {
    if (state.ws && state.ws.readyState === WebSocket.OPEN) state.ws.send(JSON.stringify(obj));
  }
  function showError(text) {
    const box = $("live-error");
    box.textContent = text;
    box.hidden = false;
  }
  function heard(id) {  // frame ``id`` is answered (or refused): room for the next one
    state.answered = Math.max(state.answered, id);
    state.lastHeard = performance.now();
    tick();
  }
  function onText(msg) {
    if (msg.type === "error" && msg.id !== undefined) heard(msg.id);
    if (msg.type === "error") { stats.errors.push(msg.message); showError(msg.message); return; }
    if (msg.type === "settings") showSettings(msg.settings, msg.unit);
  }

  // ----- sources ------------------------------------------------------------------------------
  function stopSource() {
    clearInterval(state.sampleTimer);
    if (video.srcObject) for (const t of video.srcObject.getTracks()) t.stop();
    video.srcObject = null;
    if (video.src) { URL.revokeObjectURL(video.src); video.removeAttribute("src"); }
    state.source = null;
  }
  async function useCamera() {
    stopSource();
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) throw new Error("this browser gives no camera here");
    video.srcObject = await navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 480 }, audio: false });
    await video.play();
    state.source = video;
    $("source-note").textContent = "camera";
  }
  async function useSamples() {
    stopSource();
    const bitmaps = [];
    for (const name of SAMPLES) {
      const r = await fetch(`/img/input/sample-${name}.png`);
      if (r.ok) bitmaps.push(await createImageBitmap(await r.blob()));
    }
    if (!bitmaps.length) throw new Error("no sample photos");
    state.source = bitmaps[0];
    state.sampleTimer = setInterval(() => {
      state.sampleIndex = (state.sampleIndex + 1) % bitmaps.length;
      state.source = bitmaps[state.sampleIndex];
    }, 2500);
    $("source-note").textContent = `cycling the sample photos: ${SAMPLES.join(", ")}`;
  }
  async function useFile(file) {
    stopSource();
    if (file.type.startsWith("video/")) {
      video.src = URL.createObjectURL(file);
      video.loop = true;
      await video.play();
      state.source = video;
    } else {
      state.source = await createImageBitmap(file);
    }
    $("source-note").textContent = file.name;
  }
  async function choose(kind, file) {
    try {
      if (kind === "camera") await useCamera();
      else if (kind === "file") await useFile(file);
      else await useSamples();
      $("source").value = kind;
    } catch (e) {
      if (kind === "samples") { showError("no source: " + e.message); return; }
      await choose("samples");
      $("source-note").textContent = `no ${kind} (${e.message || e.name}): ` + $("source-note").textContent;
    }
  }
  function watchVideoFrames() {  // each frame the video presents is sent once (where supported)
    if (!("requestVideoFrameCallback" in video)) return;
    const next = () => {
      state.frameClock = true;
      state.fresh = true;
      tick();
      video.requestVideoFrameCallback(next);
    };
    video.requestVideoFrameCallback(next);
  }
  function sourceSize(src) {
    if (src === video) return video.readyState >= 2 ? [video.videoWidth, video.videoHeight] : [0, 0];
    return [src.width, src.height];
  }

  // ----- capture and send ---------------------------------------------------------------------
  function capture() {  // the centre crop photos get (images.resize_center_crop), at the input size
    const src = state.source;
    if (!src) return false;
    const [w, h] = sourceSize(src);
    if (!w || !h) return false;
    if (w === W && h === H) {
      grabCtx.drawImage(src, 0, 0);
    } else {
      const scale = Math.max(H, W) * RATIO / Math.min(w, h);
      const cw = W / scale, ch = H / scale;
      grabCtx.drawImage(src, (w - cw) / 2, (h - ch) / 2, cw, ch, 0, 0, W, H);
    }
    return true;
  }
  // Frames go out at the camera's pace (each new video frame once, at most MAX_FPS a second), and
  // at most IN_FLIGHT unanswered: the server computes one while the next waits for it, so
  // sending, drawing and the network never leave it idle, and no frame is encoded to be dropped.
  function tick() {
    const ws = state.ws, now = performance.now();
    if (!ws || ws.readyState !== WebSocket.OPEN || state.busy || ws.bufferedAmount > 1 << 19) return;
    if (state.paused && !state.stepOnce) return;
    if (state.nextId - 1 - state.answered >= IN_FLIGHT) {
      if (now - Math.max(state.lastHeard, state.lastSent) < 5000) return;
      state.answered = state.nextId - 1;  // an answer lost on the way: do not wait for ever
    }
    if (!state.stepOnce && now - state.lastSent < 1000 / MAX_FPS - 2) return;
    if (!state.stepOnce && state.source === video && state.frameClock && !state.fresh) return;
    if (state.resend && state.shown) grabCtx.putImageData(state.shown, 0, 0);  // paused: same frame
    else if (!capture()) return;
    state.fresh = false;
    state.resend = false;
    state.lastSent = now;
    state.stepOnce = false;
    state.busy = true;
    const id = state.nextId++;
    state.sent.set(id, { t0: performance.now(), pixels: grabCtx.getImageData(0, 0, W, H) });
    if (state.sent.size > KEEP) state.sent.delete(state.sent.keys().next().value);
    grab.toBlob((blob) => {
      state.busy = false;
      const head = new Uint8Array(4);
      new DataView(head.buffer).setUint32(0, id);
      if (blob && state.ws.readyState === WebSocket.OPEN) state.ws.send(new Blob([head, blob]));
      else state.answered = Math.max(state.answered, id);  // never sent: nothing to wait for
    }, "image/jpeg", 0.9);
  }

  // ----- drawing an answer --------------------------------------------------------------------
  async function onFrame(buffer, size, head) {
    const part = (name) => {
      const at = head.parts[name];
      return at ? buffer.slice(4 + size + at[0], 4 + size + at[0] + at[1]) : null;
    };
    const sent = state.sent.get(head.id);
    for (const id of state.sent.keys()) if (id <= head.id) state.sent.delete(id);
    const back = part("backward");
    const bitmap = back ? await createImageBitmap(new Blob([back], { type: "image/jpeg" })) : null;
    if (sent) {
      $("frame").getContext("2d").putImageData(sent.pixels, 0, 0);
      state.shown = sent.pixels;
    }
    state.frame = stats.head = head;
    drawTiles(head, new Uint8Array(part("tiles")));
    drawUnit(head, new Float32Array(part("unit")));
    drawBackward(head, bitmap);
    drawClasses(head.classes);
    stats.drawn += 1;
    stats.dropped = head.dropped;
    stats.received = head.received;
    if (sent) stats.latencies.push(performance.now() - sent.t0);
    stats.times.push(performance.now());
    for (const k in stats.server) stats.server[k] += head.times[k];
    if (stats.latencies.length > 20000) stats.latencies.splice(0, 10000);
    if (stats.times.length > 20000) stats.times.splice(0, 10000);
    const wait = READOUT_MS - (performance.now() - state.lastReadout);  // a few times a second
    if (wait <= 0) readout(head);
    else if (!state.readoutTimer) state.readoutTimer = setTimeout(() => { state.readoutTimer = null; readout(state.frame); }, wait);
  }

  function tileGeometry(head) {
    const [c, h, w] = head.shape, ncols = head.ncols, nrows = Math.ceil(c / ncols);
    return { c, h, w, ncols, width: PAD + ncols * (w + PAD), height: PAD + nrows * (h + PAD) };
  }
  function drawTiles(head, tiles) {
    const g = tileGeometry(head);
    const img = new ImageData(g.width, g.height);
    img.data.fill(89);  // the montage's grey between tiles (0.35)
    for (let i = 3; i < img.data.length; i += 4) img.data[i] = 255;
    for (let ch = 0; ch < g.c; ch++) {
      const x0 = PAD + (ch % g.ncols) * (g.w + PAD), y0 = PAD + Math.floor(ch / g.ncols) * (g.h + PAD);
      for (let y = 0; y < g.h; y++) {
        let src = ch * g.h * g.w + y * g.w, dst = ((y0 + y) * g.width + x0) * 4;
        for (let x = 0; x < g.w; x++, src++, dst += 4) {
          const v = tiles[src];
          img.data[dst] = v; img.data[dst + 1] = v; img.data[dst + 2] = v;
        }
      }
    }
    const canvas = $("tiles");
    const scale = Math.max(1, Math.ceil(720 / g.width));  // drawn sharp, then fitted by CSS
    if (canvas.width !== g.width * scale || canvas.height !== g.height * scale) {
      canvas.width = g.width * scale; canvas.height = g.height * scale;
    }
    const ctx = canvas.getContext("2d");
    ctx.imageSmoothingEnabled = false;
    ctx.drawImage(toCanvas(img, "tiles"), 0, 0, canvas.width, canvas.height);
    const u = head.settings.unit;
    const ux = PAD + (u % g.ncols) * (g.w + PAD), uy = PAD + Math.floor(u / g.ncols) * (g.h + PAD);
    ctx.strokeStyle = "#ff3b30";
    ctx.lineWidth = Math.max(2, scale);
    ctx.strokeRect(ux * scale - 1, uy * scale - 1, g.w * scale + 2, g.h * scale + 2);
  }
  const scratch = new Map();  // one canvas per size (a canvas resized is allocated afresh)
  function toCanvas(img, use) {  // ImageData -> a canvas that drawImage can scale
    const key = `${use} ${img.width}x${img.height}`;
    let c = scratch.get(key);
    if (!c) {
      for (const k of scratch.keys()) if (k.startsWith(use + " ")) scratch.delete(k);
      c = document.createElement("canvas");
      c.width = img.width; c.height = img.height;
      scratch.set(key, c);
    }
    c.getContext("2d").putImageData(img, 0, 0);
    return c;
  }
  function heat(v) {  // 0..1 -> a jet colour (as pictures.attribution.jet)
    const r = Math.min(Math.max(1.5 - Math.abs(4 * v - 3), 0), 1);
    const g = Math.min(Math.max(1.5 - Math.abs(4 * v - 2), 0), 1);
    const b = Math.min(Math.max(1.5 - Math.abs(4 * v - 1), 0), 1);
    return [r * 255, g * 255, b * 255];
  }
  function drawUnit(head, map) {
    const [, h, w] = head.shape;
    const lo = Math.min(0, head.unit_min), span = (head.unit_peak - lo) || 1;
    const img = new ImageData(w, h), alpha = new ImageData(w, h);
    const top = head.unit_peak > 0 ? head.unit_peak : 1;
    for (let i = 0; i < map.length; i++) {
      img.data.set([...heat((map[i] - lo) / span), 255], 4 * i);
      const p = Math.min(Math.max(map[i] / top, 0), 1);  // over the frame: where it is strong
      alpha.data.set([...heat(p), p < 0.2 ? 0 : Math.round(230 * (p - 0.2) / 0.8)], 4 * i);
    }
    const ctx = $("unit-map").getContext("2d");
    ctx.imageSmoothingEnabled = true;
    ctx.drawImage(toCanvas(img, "unit"), 0, 0, W, H);
    const over = $("overlay").getContext("2d");
    over.clearRect(0, 0, W, H);
    if ($("overlay-on").checked) {
      over.imageSmoothingEnabled = true;
      over.drawImage(toCanvas(alpha, "alpha"), 0, 0, W, H);
    }
    const s = head.settings;
    $("unit-stats").textContent = `peak ${head.unit_peak.toPrecision(4)} at (${head.unit_at[0]}, ${head.unit_at[1]}) of ${h}×${w}`;
    $("unit-title").textContent = `${s.layer}:${s.unit}`;
  }
  function drawBackward(head, bitmap) {
    const box = $("backward-box");
    box.hidden = !bitmap;
    if (!bitmap) return;
    $("backward").getContext("2d").drawImage(bitmap, 0, 0, W, H);
    const name = document.querySelector(`button[data-view="${head.settings.view}"]`).textContent;
    $("backward-caption").textContent = `${name} of ${head.settings.layer}:${head.settings.unit} (its mean over positions) on this frame`;
  }
  function drawClasses(classes) {
    const list = $("classes");
    $("classes-off").hidden = !!classes;
    list.hidden = !classes;
    if (!classes) return;
    while (list.children.length < classes.length) {
      const li = document.createElement("li");
      li.innerHTML = '<a><span class="cname"></span><span class="bar"><i></i></span><span class="p"></span></a>';
      list.appendChild(li);
    }
    classes.forEach(([, name, p], i) => {
      const li = list.children[i];
      li.querySelector(".cname").textContent = name;
      li.querySelector(".bar i").style.width = `${(100 * p).toFixed(1)}%`;
      li.querySelector(".p").textContent = `${(100 * p).toFixed(1)}%`;
    });
  }
  function percentile(values, q) {
    if (!values.length) return NaN;
    const s = [...values].sort((a, b) => a - b);
    return s[Math.min(s.length - 1, Math.floor(q * s.length))];
  }
  function readout(head) {
    const now = state.lastReadout = performance.now(), t = stats.times;
    let n = 0;
    for (let i = t.length - 1; i >= 0 && now - t[i] < 2000; i--) n++;
    const span = n > 1 ? (now - t[t.length - n]) / 1000 : 0;
    const recent = stats.latencies.slice(-100);
    $("stat-frames").textContent = stats.drawn;
    $("stat-fps").textContent = span > 0 ? ((n - 1) / span).toFixed(1) : "–";
    $("stat-p50").textContent = recent.length ? percentile(recent, 0.5).toFixed(0) : "–";
    $("stat-p95").textContent = recent.length ? percentile(recent, 0.95).toFixed(0) : "–";
    $("stat-dropped").textContent = head.dropped;
  }

  // ----- settings -----------------------------------------------------------------------------
  function showSettings(s, unit) {
    if (state.paused && state.shown) state.resend = state.stepOnce = true;  // the paused frame again
    state.settings = stats.settings = s;
    $("layer").value = s.layer;
    $("norm").value = s.norm;
    $("classes-on").checked = s.classes;
    for (const b of $("views").querySelectorAll("button")) b.classList.toggle("on", b.dataset.view === s.view);
    $("unit-title").textContent = `${s.layer}:${s.unit}`;
    $("unit-link").href = unit.unit_url;
    const patches = $("patches");
    patches.replaceChildren(...unit.patches.map((src) => {
      const img = document.createElement("img");
      img.src = src; img.width = img.height = 64; img.alt = "top patch";
      return img;
    }));
    $("unit-atlas").hidden = unit.patches.length === 0;
    $("unit-synth").hidden = !unit.synthesis;
    if (unit.synthesis) $("unit-synth-img").src = unit.synthesis;
  }
  $("tiles").addEventListener("click", (ev) => {
    const head = state.frame;
    if (!head) return;
    const g = tileGeometry(head), canvas = $("tiles");
    const scale = canvas.clientWidth / g.width;  // CSS pixels per montage pixel
    const px = ev.offsetX / scale, py = ev.offsetY / scale;
    const col = Math.floor((px - PAD) / (g.w + PAD)), row = Math.floor((py - PAD) / (g.h + PAD));
    if (col < 0 || row < 0 || col >= g.ncols) return;
    const c = row * g.ncols + col;
    if (c < g.c) send({ unit: c });
  });
  $("layer").addEventListener("change", () => send({ layer: $("layer").value }));
  $("norm").addEventListener("change", () => send({ norm: $("norm").value }));
  $("classes-on").addEventListener("change", () => send({ classes: $("classes-on").checked }));
  for (const b of $("views").querySelectorAll("button")) {
    b.addEventListener("click", () => send({ view: b.dataset.view }));
  }
  $("pause").addEventListener("click", () => {
    state.paused = !state.paused;
    $("pause").textContent = state.paused ? "Resume" : "Pause";
    $("step").disabled = !state.paused;
  });
  $("step").addEventListener("click", () => { state.stepOnce = true; });
  $("source").addEventListener("change", () => {
    if ($("source").value === "file") $("file").click();
    else choose($("source").value);
  });
  $("file").addEventListener("change", () => { if ($("file").files[0]) choose("file", $("file").files[0]); });
  const drop = $("drop");
  drop.addEventListener("dragover", (ev) => { ev.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (ev) => {
    ev.preventDefault();
    drop.classList.remove("over");
    const file = ev.dataTransfer.files[0];
    if (file) choose("file", file);
  });

  connect();
  watchVideoFrames();
  const wanted = new URLSearchParams(location.search).get("source");
  choose(wanted === "samples" ? "samples" : "camera");
  setInterval(tick, 1000 / MAX_FPS);
})();
