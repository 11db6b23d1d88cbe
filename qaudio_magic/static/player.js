// qaudio_magic waveform player (anywidget ESM). No dependencies, no network: the kernel
// sends peaks (int8 min/max pairs), a grey log-frequency spectrogram, the speech map,
// segments with their grounding, and the audio bytes once per clip. Zoomed views ask the
// kernel for finer peaks and spectrogram of just the visible span (custom messages).
// Every piece of text shown here is set with textContent or an attribute: model output
// never becomes markup. Nothing autoplays; audio starts only on a click or a key.

const WIDGET_REF = "IPY_MODEL_";
const SVG = "http://www.w3.org/2000/svg";
const SPEEDS = [0.5, 0.75, 1, 1.25, 1.5, 2];
const STEPS = [0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200];
const MIN_SECONDS_PER_100PX = 0.05; // deepest zoom: 50 ms per 100 px

// One player at a time on the page: starting one pauses the others.
const players = (globalThis.__qaudioPlayers = globalThis.__qaudioPlayers || new Set());

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function icon(kind) {
  // Inline SVG: no emoji font, same look everywhere.
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("viewBox", "0 0 16 16");
  svg.setAttribute("aria-hidden", "true");
  svg.setAttribute("class", `qaudio-icon qaudio-icon-${kind}`);
  const path = document.createElementNS(SVG, "path");
  const d = {
    play: "M4 2.5v11l9-5.5z",
    pause: "M3.5 2.5h3.2v11H3.5zM9.3 2.5h3.2v11H9.3z",
    close: "M4 4l8 8M12 4l-8 8",
    plus: "M8 3v10M3 8h10",
    minus: "M3 8h10",
    fit: "M2 5V2h3M11 2h3v3M14 11v3h-3M5 14H2v-3",
  }[kind];
  path.setAttribute("d", d);
  if (kind === "close" || kind === "plus" || kind === "minus" || kind === "fit") {
    path.setAttribute("fill", "none");
    path.setAttribute("stroke", "currentColor");
    path.setAttribute("stroke-width", "2");
  } else {
    path.setAttribute("fill", "currentColor");
  }
  svg.append(path);
  return svg;
}

function button(className, label, kind, text) {
  const b = el("button", className);
  b.type = "button";
  b.setAttribute("aria-label", label);
  b.setAttribute("data-lm-suppress-shortcuts", "true");
  b.title = label;
  if (kind) b.append(icon(kind));
  if (text !== undefined) b.append(el("span", "qaudio-btn-text", text));
  return b;
}

function clock(t, digits = 1) {
  if (!Number.isFinite(t) || t < 0) t = 0;
  const h = Math.floor(t / 3600);
  const m = Math.floor((t - h * 3600) / 60);
  const s = t - h * 3600 - m * 60;
  const ss = digits ? s.toFixed(digits).padStart(3 + digits, "0") : String(Math.floor(s)).padStart(2, "0");
  return h ? `${h}:${String(m).padStart(2, "0")}:${ss}` : `${m}:${ss}`;
}

// The kernel's formatters (_format.py), so a time reads the same in chips, tooltips and text.
function num(v) {
  return String(Number(v.toFixed(2)));
}

function clockText(t) {
  const r = Math.round(t * 100) / 100;
  const h = Math.floor(r / 3600);
  const m = Math.floor((r - h * 3600) / 60);
  const s = r - h * 3600 - m * 60;
  const whole = String(Math.floor(s)).padStart(2, "0");
  const frac = s % 1 ? num(s % 1).slice(1) : "";
  return h ? `${h}:${String(m).padStart(2, "0")}:${whole}${frac}` : `${m}:${whole}${frac}`;
}

function secs(t) {
  return Math.round(t * 100) / 100 < 60 ? `${num(t)} s` : clockText(t);
}

function span(a, b) {
  if (b == null) return secs(a);
  return Math.round(Math.max(a, b) * 100) / 100 < 60 ? `${num(a)}–${num(b)} s` : `${clockText(a)}–${clockText(b)}`;
}

function int8(value) {
  if (!value) return new Int8Array(0);
  if (value instanceof DataView) return new Int8Array(value.buffer, value.byteOffset, value.byteLength);
  if (value instanceof ArrayBuffer) return new Int8Array(value);
  if (ArrayBuffer.isView(value)) return new Int8Array(value.buffer, value.byteOffset, value.byteLength);
  return new Int8Array(0);
}

function bytes(value) {
  const v = int8(value);
  return new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
}

async function audioUrl(model) {
  const ref = model.get("audio");
  if (typeof ref === "string" && ref.startsWith(WIDGET_REF)) {
    const data = await model.widget_manager.get_model(ref.slice(WIDGET_REF.length));
    const blob = new Blob([data.get("value")], { type: data.get("mime") || "audio/wav" });
    return { url: URL.createObjectURL(blob), owned: true };
  }
  const src = model.get("src");
  return src ? { url: src, owned: false } : null;
}

// A perceptual dark-blue → magenta → yellow ramp (inferno-like), as RGB of 256 levels.
const RAMP = (() => {
  const stops = [
    [0, [0, 0, 4]],
    [0.25, [60, 15, 110]],
    [0.5, [150, 40, 105]],
    [0.75, [235, 100, 40]],
    [1, [252, 250, 165]],
  ];
  const out = new Uint8ClampedArray(256 * 3);
  for (let i = 0; i < 256; i++) {
    const f = i / 255;
    let k = 0;
    while (k < stops.length - 2 && f > stops[k + 1][0]) k++;
    const [f0, c0] = stops[k];
    const [f1, c1] = stops[k + 1];
    const u = (f - f0) / (f1 - f0);
    for (let c = 0; c < 3; c++) out[i * 3 + c] = c0[c] + (c1[c] - c0[c]) * u;
  }
  return out;
})();

async function colourImage(data, mime) {
  // grey WebP/PNG from the kernel → coloured blob URL for an <img>
  const bitmap = await createImageBitmap(new Blob([data], { type: mime || "image/webp" }));
  const canvas = document.createElement("canvas");
  canvas.width = bitmap.width;
  canvas.height = bitmap.height;
  const ctx = canvas.getContext("2d");
  ctx.drawImage(bitmap, 0, 0);
  const img = ctx.getImageData(0, 0, canvas.width, canvas.height);
  const px = img.data;
  for (let i = 0; i < px.length; i += 4) {
    const v = px[i];
    px[i] = RAMP[v * 3];
    px[i + 1] = RAMP[v * 3 + 1];
    px[i + 2] = RAMP[v * 3 + 2];
    px[i + 3] = 255;
  }
  ctx.putImageData(img, 0, 0);
  const blob = await new Promise((resolve) => canvas.toBlob(resolve, "image/png"));
  return URL.createObjectURL(blob);
}

function niceStep(secondsPerPx) {
  const want = secondsPerPx * 80; // at least 80 px between labelled ticks
  return STEPS.find((s) => s >= want) || STEPS[STEPS.length - 1];
}

function render({ model, el: host }) {
  const root = el("div", "qaudio-player");
  // Keys pressed inside the player are ours (space, arrows, + / −, 0), not the notebook's
  // shortcuts: Lumino stops looking for a matching shortcut at this attribute.
  // (Lumino checks the attribute on the focused element itself, so it goes on each.)
  root.setAttribute("data-lm-suppress-shortcuts", "true");
  const bar = el("div", "qaudio-bar");
  const play = button("qaudio-play", "Play", "play");
  const time = el("span", "qaudio-time", "0:00.0");
  time.setAttribute("aria-live", "off");
  const label = el("span", "qaudio-label");
  const tools = el("span", "qaudio-tools");
  const view = button("qaudio-view", "Show spectrogram", null, "Spectrogram");
  view.setAttribute("aria-pressed", "false");
  const zoomOut = button("qaudio-zoom-out", "Zoom out (−)", "minus");
  const zoomIn = button("qaudio-zoom-in", "Zoom in (+)", "plus");
  const zoomFit = button("qaudio-zoom-fit", "Show the whole clip", "fit");
  const speed = el("select", "qaudio-speed");
  speed.setAttribute("aria-label", "Playback speed");
  speed.setAttribute("data-lm-suppress-shortcuts", "true");
  speed.title = "Playback speed";
  for (const s of SPEEDS) {
    const o = el("option", "", `${s}×`);
    o.value = String(s);
    if (s === 1) o.selected = true;
    speed.append(o);
  }
  tools.append(view, zoomOut, zoomIn, zoomFit, speed);
  bar.append(play, time, label, tools);

  const ruler = el("div", "qaudio-ruler");
  ruler.setAttribute("aria-hidden", "true");
  ruler.title = "Drag to pan";
  const wave = el("div", "qaudio-wave");
  wave.tabIndex = 0;
  wave.setAttribute("data-lm-suppress-shortcuts", "true");
  wave.setAttribute("role", "slider");
  wave.setAttribute("aria-label", "Waveform: space plays or pauses, arrow keys seek, + and − zoom");
  wave.setAttribute("aria-valuemin", "0");
  const canvas = el("canvas", "qaudio-canvas");
  const specs = el("div", "qaudio-specs");
  const spec = el("img", "qaudio-spec");
  spec.alt = "Spectrogram (log frequency, 50 Hz to 8 kHz)";
  const specDetail = el("img", "qaudio-spec qaudio-spec-detail");
  specDetail.alt = "";
  specs.append(spec, specDetail);
  const winLayer = el("div", "qaudio-layer qaudio-windows-layer");
  const layer = el("div", "qaudio-layer");
  const sel = el("div", "qaudio-sel");
  const head = el("div", "qaudio-head");
  wave.append(canvas, specs, winLayer, layer, sel, head);
  wave.title = "Click: seek · drag: select · click a highlighted part: play it · ctrl+wheel: zoom · shift+wheel or drag the ruler: pan";
  const band = el("div", "qaudio-band");
  band.title = "Detected speech (dark) and other sound (light)";

  const chips = el("div", "qaudio-chips");
  const rows = el("div", "qaudio-rows");
  const note = el("div", "qaudio-note");
  const audio = document.createElement("audio");
  audio.preload = "auto";
  audio.autoplay = false;
  audio.loop = false;
  root.append(bar, ruler, wave, band, chips, rows, note, audio);
  host.append(root);
  players.add(audio);

  let disposed = false;
  let owned = null;
  let specUrls = [];
  let stopAt = null;
  let timer = null;
  let raf = 0;
  let active = null; // what is playing: a segment index, "sel", or "w<i>"
  let mode = "wave";
  let v0 = 0; // visible start (s)
  let vspan = 0; // visible length (s); 0 = the whole clip
  let detail = null; // {start, end, peaks, img}
  let detailTimer = null;
  let asked = 0;

  const ready = new Promise((resolve) => {
    if (audio.readyState >= 1) resolve();
    audio.addEventListener("loadedmetadata", () => resolve(), { once: true });
  });

  const duration = () => {
    const d = model.get("duration");
    return d > 0 ? d : Number.isFinite(audio.duration) ? audio.duration : 0;
  };
  const visible = () => {
    const d = duration();
    const s = vspan > 0 ? Math.min(vspan, d || vspan) : d;
    return [Math.max(0, Math.min(v0, Math.max(d - s, 0))), s];
  };
  const toTime = (clientX) => {
    const box = wave.getBoundingClientRect();
    const [a, s] = visible();
    const f = Math.min(Math.max((clientX - box.left) / Math.max(box.width, 1), 0), 1);
    return a + f * s;
  };
  const pct = (t) => {
    const [a, s] = visible();
    return `${(100 * (t - a)) / Math.max(s, 1e-9)}%`;
  };
  const width = (t) => {
    const [, s] = visible();
    return `${(100 * t) / Math.max(s, 1e-9)}%`;
  };

  // ---------------------------------------------------------------- drawing
  function drawPeaks(ctx, w, h) {
    const [a, s] = visible();
    const d = duration();
    const mid = h / 2;
    let peaks = int8(model.get("peaks"));
    let p0 = 0;
    let p1 = d;
    const fine = detail && detail.start <= a + 1e-6 && detail.end >= a + s - 1e-6;
    if (fine) {
      peaks = detail.peaks;
      p0 = detail.start;
      p1 = detail.end;
    }
    root.dataset.detail = fine ? `${detail.start.toFixed(3)}-${detail.end.toFixed(3)}` : "";
    const n = peaks.length >> 1;
    if (!n || !(p1 > p0)) {
      ctx.fillRect(0, mid - 0.5, w, 1);
      return;
    }
    for (let x = 0; x < w; x++) {
      const t0 = a + (x / w) * s;
      const t1 = a + ((x + 1) / w) * s;
      const i0 = Math.floor(((t0 - p0) / (p1 - p0)) * n);
      const i1 = Math.max(i0 + 1, Math.floor(((t1 - p0) / (p1 - p0)) * n));
      let lo = 127;
      let hi = -127;
      for (let i = Math.max(i0, 0); i < i1 && i < n; i++) {
        lo = Math.min(lo, peaks[2 * i]);
        hi = Math.max(hi, peaks[2 * i + 1]);
      }
      if (hi < lo) continue;
      const top = mid - (hi / 127) * (mid - 1);
      const bottom = mid - (lo / 127) * (mid - 1);
      ctx.fillRect(x, top, 1, Math.max(1, bottom - top));
    }
  }

  function draw() {
    const w = wave.clientWidth;
    const h = wave.clientHeight;
    if (!w || !h) return;
    const dpr = window.devicePixelRatio || 1;
    canvas.width = Math.round(w * dpr);
    canvas.height = Math.round(h * dpr);
    const ctx = canvas.getContext("2d");
    if (!ctx) return;
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, w, h);
    if (mode === "wave") {
      ctx.fillStyle = getComputedStyle(root).getPropertyValue("--qaudio-wave").trim() || "#4a7bd0";
      drawPeaks(ctx, w, h);
    }
    placeSpectrogram();
    drawRuler();
    drawBand();
    placeAll();
    const [a, s] = visible();
    root.dataset.viewStart = a.toFixed(3);
    root.dataset.viewEnd = (a + s).toFixed(3);
    wave.setAttribute("aria-valuemax", duration().toFixed(1));
  }

  function placeSpectrogram() {
    specs.style.display = mode === "spec" ? "block" : "none";
    const d = duration();
    if (!d) return;
    spec.style.left = pct(0);
    spec.style.width = width(d);
    if (detail && detail.img) {
      specDetail.src = detail.img;
      specDetail.style.display = "block";
      specDetail.style.left = pct(detail.start);
      specDetail.style.width = width(detail.end - detail.start);
    } else {
      specDetail.style.display = "none";
    }
  }

  function drawRuler() {
    ruler.replaceChildren();
    const w = ruler.clientWidth || wave.clientWidth;
    const [a, s] = visible();
    if (!w || !s) return;
    const step = niceStep(s / w);
    const minor = step / 5;
    const digits = step < 0.1 ? 2 : step < 1 ? 1 : 0;
    const first = Math.ceil(a / minor - 1e-9) * minor;
    for (let t = first, k = 0; t <= a + s + 1e-9 && k < 2000; t += minor, k++) {
      const major = Math.abs(t / step - Math.round(t / step)) < 1e-6;
      const tick = el("div", major ? "qaudio-tick qaudio-tick-major" : "qaudio-tick");
      tick.style.left = pct(t);
      const x = ((t - a) / s) * w;
      const at = Math.round(t / minor) * minor + (model.get("origin") || 0);
      if (major && x < w - 44) tick.append(el("span", "qaudio-tick-label", clock(at, digits)));
      ruler.append(tick);
    }
  }

  function drawBand() {
    band.replaceChildren();
    const speech = model.get("speech") || [];
    const sound = model.get("sound") || [];
    for (const [kind, list] of [["sound", sound], ["speech", speech]]) {
      for (const [a, b] of list) {
        const r = el("div", `qaudio-band-${kind}`);
        r.style.left = pct(a);
        r.style.width = width(b - a);
        band.append(r);
      }
    }
    band.style.display = speech.length || sound.length ? "block" : "none";
  }

  function segRange(seg) {
    // what a chip plays: the grounded range when there is one, else the model's
    const g = seg.grounding;
    if (g && (g.status === "speech" || g.status === "sound") && g.start != null && g.end != null) {
      return [g.start, g.end];
    }
    const end = seg.end != null ? seg.end : Math.min(seg.start + model.get("point_seconds"), duration());
    return [seg.start, end];
  }

  function placeAll() {
    for (const node of layer.children) {
      const a = Number(node.dataset.start);
      node.style.left = pct(a);
      if (node.dataset.end) node.style.width = width(Number(node.dataset.end) - a);
    }
    for (const node of winLayer.children) {
      const a = Number(node.dataset.start);
      node.style.left = pct(a);
      node.style.width = width(Number(node.dataset.end) - a);
    }
    drawSelection();
    drawHead();
  }

  function drawHead() {
    head.style.left = pct(audio.currentTime || 0);
    time.textContent = `${clock(audio.currentTime)} / ${clock(duration())}`;
    const playing = !audio.paused;
    if (play.dataset.state !== (playing ? "pause" : "play")) {
      play.dataset.state = playing ? "pause" : "play";
      play.replaceChildren(icon(playing ? "pause" : "play"));
      play.setAttribute("aria-label", playing ? "Pause" : "Play");
      play.title = playing ? "Pause (space)" : "Play (space)";
    }
    wave.setAttribute("aria-valuenow", (audio.currentTime || 0).toFixed(1));
    wave.setAttribute("aria-valuetext", clock(audio.currentTime));
  }

  function chipFor(seg, i, abs) {
    const g = seg.grounding;
    const [a, b] = segRange(seg);
    const chip = button("qaudio-chip", `Play ${seg.label}`, "play", seg.label);
    chip.dataset.index = String(i);
    chip.dataset.start = String(a);
    chip.dataset.end = String(b);
    let title = seg.text && !abs ? `mentioned as: ${seg.text}` : seg.label;
    if (g) {
      chip.dataset.status = g.status || "unknown";
      chip.classList.add(`qaudio-chip-${g.status || "unknown"}`);
      if (g.status === "silence") {
        title = `⚠\uFE0E nothing audible here · ${g.text}`;
        chip.setAttribute("aria-label", `Play ${seg.label}: nothing audible here`);
      } else {
        title = `${g.text} · ${title}`;
      }
      if (g.clip_end != null) {
        chip.classList.add("qaudio-chip-clipped");
        chip.append(el("span", "qaudio-chip-cut", `clip ends at ${secs(g.clip_end)}`));
      }
    }
    const o = model.get("origin") || 0;
    if (abs) title = `said “${seg.text}” in this window · ${g ? g.text : seg.label} · in the file: ${span(a + o, b + o)}`;
    chip.title = title;
    chip.addEventListener("click", () => playRange(a, b, i));
    return chip;
  }

  function drawSegments() {
    layer.replaceChildren();
    chips.replaceChildren();
    const segs = model.get("segments") || [];
    segs.forEach((seg, i) => {
      const [a, b] = segRange(seg);
      const point = seg.end == null && !(seg.grounding && seg.grounding.end != null);
      const region = el("div", point ? "qaudio-seg qaudio-point" : "qaudio-seg");
      if (seg.grounding && seg.grounding.status === "silence") region.classList.add("qaudio-seg-silence");
      region.dataset.index = String(i);
      region.dataset.start = String(point ? seg.start : a);
      if (!point) region.dataset.end = String(b);
      region.title = seg.grounding ? seg.grounding.text : seg.label;
      layer.append(region);
      if (seg.window == null) chips.append(chipFor(seg, i, false));
    });
    const s = model.get("selection");
    if (s && s.length === 2) {
      const chip = button("qaudio-chip qaudio-chip-sel", "Play the selection", "play", `selection ${s[0].toFixed(2)}–${s[1].toFixed(2)} s`);
      chip.addEventListener("click", () => playRange(s[0], s[1], "sel"));
      const clear = button("qaudio-chip qaudio-clear", "Clear the selection", "close");
      clear.addEventListener("click", () => {
        model.set("selection", null);
        model.save_changes();
      });
      chips.append(chip, clear);
    }
    drawWindows();
    placeAll();
    markActive();
  }

  function drawWindows() {
    winLayer.replaceChildren();
    rows.replaceChildren();
    const wins = model.get("windows") || [];
    const segs = model.get("segments") || [];
    wins.forEach((w, k) => {
      const box = el("div", `qaudio-win qaudio-win-${w.status}`);
      box.dataset.start = String(w.start);
      box.dataset.end = String(w.end);
      const name = w.label || `${clock(w.start, 0)}–${clock(w.end, 0)}`;
      box.title = `window ${k + 1}: ${name} · ${w.status}`;
      winLayer.append(box);

      const row = el("div", `qaudio-row qaudio-row-${w.status}`);
      const hdr = button("qaudio-row-head", `Play window ${k + 1}, ${name}`, "play", name);
      hdr.dataset.start = String(w.start);
      hdr.addEventListener("click", () => playRange(w.start, w.end, `w${k}`));
      row.append(hdr);
      if (w.status !== "done") row.append(el("span", "qaudio-row-status", w.status === "failed" ? `failed: ${w.error || ""}` : w.status));
      const body = el("div", "qaudio-row-text");
      // the answer, with each time mention replaced by a chip in absolute file time
      const text = w.text || "";
      const mine = segs.map((s, i) => [s, i]).filter(([s]) => s.window === k);
      let pos = 0;
      for (const [seg, i] of mine) {
        const at = seg.text ? text.indexOf(seg.text, pos) : -1;
        if (at < 0) continue;
        body.append(document.createTextNode(text.slice(pos, at)));
        const chip = chipFor(seg, i, true);
        chip.classList.add("qaudio-chip-inline");
        body.append(chip);
        pos = at + seg.text.length;
      }
      body.append(document.createTextNode(text.slice(pos)));
      row.append(body);
      rows.append(row);
    });
    rows.style.display = wins.length ? "block" : "none";
  }

  function drawSelection() {
    const s = model.get("selection");
    if (s && s.length === 2) showSelection(s[0], s[1]);
    else sel.style.display = "none";
  }

  function showSelection(a, b) {
    sel.style.display = "block";
    sel.style.left = pct(Math.min(a, b));
    sel.style.width = width(Math.abs(b - a));
  }

  function markActive() {
    for (const node of root.querySelectorAll("[data-index]")) {
      node.classList.toggle("qaudio-active", active !== null && node.dataset.index === String(active));
    }
  }

  // ---------------------------------------------------------------- zoom and detail
  function clampSpan(seconds) {
    const least = (MIN_SECONDS_PER_100PX * (wave.clientWidth || 600)) / 100;
    return Math.min(Math.max(seconds, least), duration());
  }

  function setView(start, spanSeconds) {
    const d = duration();
    if (!d) return;
    vspan = clampSpan(spanSeconds);
    if (vspan >= d - 1e-9) vspan = 0;
    const s = vspan || d;
    v0 = Math.min(Math.max(start, 0), Math.max(d - s, 0));
    draw();
    askDetail();
  }

  function zoom(factor, around) {
    const [a, s] = visible();
    // around the pointer (wheel), else the playhead when it is in view, else the middle
    const head = audio.currentTime || 0;
    const t = around != null ? around : head > a && head < a + s ? head : a + s / 2;
    const f = s ? (t - a) / s : 0.5;
    const next = clampSpan(s * factor); // the anchor keeps its place on screen
    setView(t - f * next, next);
  }

  function askDetail() {
    if (detailTimer) clearTimeout(detailTimer);
    detailTimer = setTimeout(() => {
      const [a, s] = visible();
      const d = duration();
      const w = wave.clientWidth || 600;
      const n = int8(model.get("peaks")).length >> 1;
      const coarse = n && (n * s) / d < w; // fewer overview bins than pixels in view
      if (!coarse || !model.get("detail") || s > 600) {
        if (detail && !coarse) {
          detail = null;
          draw();
        }
        return;
      }
      if (detail && detail.start <= a && detail.end >= a + s && detail.bins >= w * (s / (detail.end - detail.start))) return;
      const pad = s * 0.5; // a margin either side, so small pans need no new request
      asked += 1;
      model.send({ type: "detail", id: asked, start: Math.max(0, a - pad), end: Math.min(d, a + s + pad), bins: Math.round(w * 2) });
    }, 120);
  }

  async function onCustom(msg, buffers) {
    if (!msg || msg.type !== "detail" || msg.id !== asked) return;
    const peaks = buffers && buffers[0] ? new Int8Array(bytes(buffers[0])) : new Int8Array(0);
    let img = null;
    if (buffers && buffers[1] && buffers[1].byteLength) {
      img = await colourImage(bytes(buffers[1]), msg.mime);
      specUrls.push(img);
      while (specUrls.length > 3) URL.revokeObjectURL(specUrls.shift());
    }
    if (disposed || msg.id !== asked) return;
    detail = { start: msg.start, end: msg.end, peaks, img, bins: peaks.length >> 1 };
    draw();
  }

  // ---------------------------------------------------------------- playback
  function clearStop() {
    stopAt = null;
    if (timer) clearTimeout(timer);
    timer = null;
    active = null;
    markActive();
  }

  function checkStop() {
    if (stopAt === null) return;
    if (audio.currentTime >= stopAt - 0.004) {
      clearStop();
      audio.pause();
    } else if (!audio.paused) {
      const wait = ((stopAt - audio.currentTime) * 1000) / (audio.playbackRate || 1);
      if (timer) clearTimeout(timer);
      timer = setTimeout(checkStop, Math.max(2, Math.min(wait, 250)));
    }
  }

  async function playRange(start, end, which) {
    await ready;
    clearStop();
    audio.currentTime = start;
    stopAt = end;
    active = which;
    markActive();
    const [a, s] = visible();
    if (vspan && (start < a || start > a + s)) setView(start - s * 0.1, s);
    try {
      await audio.play();
    } catch (err) {
      note.textContent = `Cannot play: ${err && err.message ? err.message : err}`;
      clearStop();
      return;
    }
    checkStop();
  }

  function playSegment(i) {
    const seg = (model.get("segments") || [])[i];
    if (!seg) return;
    const [a, b] = segRange(seg);
    playRange(a, b, i);
  }

  async function toggle() {
    if (audio.paused) {
      clearStop();
      await ready;
      if (audio.ended || audio.currentTime >= duration()) audio.currentTime = 0;
      audio.play().catch((err) => (note.textContent = `Cannot play: ${err.message || err}`));
    } else {
      audio.pause();
    }
  }

  function seek(t) {
    clearStop();
    audio.currentTime = Math.min(Math.max(t, 0), duration());
    const [a, s] = visible();
    if (vspan && (audio.currentTime < a || audio.currentTime > a + s)) setView(audio.currentTime - s / 2, s);
    drawHead();
  }

  function frame() {
    checkStop();
    drawHead();
    const [a, s] = visible();
    if (vspan && !audio.paused && audio.currentTime > a + s) setView(audio.currentTime, s); // follow
    raf = audio.paused || disposed ? 0 : requestAnimationFrame(frame);
  }

  play.addEventListener("click", toggle);
  speed.addEventListener("change", () => {
    audio.playbackRate = Number(speed.value) || 1;
    audio.preservesPitch = true;
  });
  view.addEventListener("click", () => {
    mode = mode === "wave" ? "spec" : "wave";
    view.setAttribute("aria-pressed", String(mode === "spec"));
    view.querySelector(".qaudio-btn-text").textContent = mode === "spec" ? "Waveform" : "Spectrogram";
    view.setAttribute("aria-label", mode === "spec" ? "Show waveform" : "Show spectrogram");
    view.title = view.getAttribute("aria-label");
    root.classList.toggle("qaudio-mode-spec", mode === "spec");
    draw();
  });
  zoomIn.addEventListener("click", () => zoom(0.5));
  zoomOut.addEventListener("click", () => zoom(2));
  zoomFit.addEventListener("click", () => setView(0, duration()));
  audio.addEventListener("play", () => {
    for (const other of players) if (other !== audio && !other.paused) other.pause();
    if (!raf) raf = requestAnimationFrame(frame);
  });
  audio.addEventListener("pause", () => {
    if (stopAt !== null && audio.currentTime < stopAt - 0.004) clearStop(); // paused by the user or another player
    drawHead();
  });
  audio.addEventListener("ended", () => {
    clearStop();
    drawHead();
  });
  audio.addEventListener("timeupdate", () => {
    checkStop();
    if (audio.paused) drawHead();
  });
  audio.addEventListener("loadedmetadata", () => draw());

  // ---------------------------------------------------------------- keyboard
  wave.addEventListener("keydown", (e) => {
    const [a, s] = visible();
    const step = e.shiftKey ? s / 4 : Math.max(s / 20, 0.01);
    if (e.key === " " || e.key === "Spacebar" || e.key === "k") toggle();
    else if (e.key === "ArrowLeft") seek(audio.currentTime - step);
    else if (e.key === "ArrowRight") seek(audio.currentTime + step);
    else if (e.key === "Home") seek(0);
    else if (e.key === "End") seek(duration());
    else if (e.key === "+" || e.key === "=") zoom(0.5);
    else if (e.key === "-" || e.key === "_") zoom(2);
    else if (e.key === "0") setView(0, duration());
    else return;
    e.preventDefault();
    e.stopPropagation(); // not the notebook's shortcuts
    void a;
  });

  // ---------------------------------------------------------------- wheel: zoom / pan
  wave.addEventListener(
    "wheel",
    (e) => {
      const [a, s] = visible();
      if (e.ctrlKey || e.metaKey || (document.activeElement === wave && !e.shiftKey && Math.abs(e.deltaY) > Math.abs(e.deltaX))) {
        e.preventDefault();
        zoom(Math.exp(Math.sign(e.deltaY) * Math.min(Math.abs(e.deltaY), 200) * 0.004), toTime(e.clientX));
      } else if (vspan && (e.shiftKey || Math.abs(e.deltaX) > Math.abs(e.deltaY))) {
        e.preventDefault();
        const delta = e.shiftKey ? e.deltaY : e.deltaX;
        setView(a + (delta / Math.max(wave.clientWidth, 1)) * s, s);
      }
    },
    { passive: false },
  );

  // ---------------------------------------------------------------- pointer: seek, select, play, pan
  let press = null;
  wave.addEventListener("pointerdown", (e) => {
    if (e.button !== 0 || !duration()) return;
    e.preventDefault();
    wave.focus({ preventScroll: true });
    wave.setPointerCapture(e.pointerId);
    const target = e.target;
    press = { x: e.clientX, t: toTime(e.clientX), dragging: false, index: target && target.dataset ? target.dataset.index : undefined };
  });
  wave.addEventListener("pointermove", (e) => {
    if (!press) return;
    if (!press.dragging && Math.abs(e.clientX - press.x) < 4) return;
    press.dragging = true;
    showSelection(press.t, toTime(e.clientX));
  });
  const release = (e, cancelled) => {
    if (!press) return;
    const p = press;
    press = null;
    if (wave.hasPointerCapture(e.pointerId)) wave.releasePointerCapture(e.pointerId);
    if (cancelled) {
      drawSelection();
      return;
    }
    if (p.dragging) {
      const t = toTime(e.clientX);
      const a = Math.min(p.t, t);
      const b = Math.max(p.t, t);
      model.set("selection", [Math.round(a * 1000) / 1000, Math.round(b * 1000) / 1000]);
      model.save_changes();
      return;
    }
    if (p.index !== undefined) {
      playSegment(Number(p.index));
      return;
    }
    seek(p.t);
  };
  wave.addEventListener("pointerup", (e) => release(e, false));
  wave.addEventListener("pointercancel", (e) => release(e, true));

  let pan = null;
  ruler.addEventListener("pointerdown", (e) => {
    if (e.button !== 0 || !vspan) return;
    e.preventDefault();
    ruler.setPointerCapture(e.pointerId);
    pan = { x: e.clientX, start: visible()[0] };
    ruler.classList.add("qaudio-panning");
  });
  ruler.addEventListener("pointermove", (e) => {
    if (!pan) return;
    const [, s] = visible();
    setView(pan.start - ((e.clientX - pan.x) / Math.max(ruler.clientWidth, 1)) * s, s);
  });
  const endPan = (e) => {
    if (!pan) return;
    pan = null;
    ruler.classList.remove("qaudio-panning");
    if (ruler.hasPointerCapture(e.pointerId)) ruler.releasePointerCapture(e.pointerId);
  };
  ruler.addEventListener("pointerup", endPan);
  ruler.addEventListener("pointercancel", endPan);

  // ---------------------------------------------------------------- model changes
  const onSegments = () => drawSegments();
  const onSelection = () => {
    drawSelection();
    drawSegments();
  };
  const onPeaks = () => {
    detail = null;
    draw();
    drawSegments();
  };
  const onLabel = () => {
    label.textContent = model.get("label");
    note.textContent = model.get("note");
  };
  const onSpectrogram = async () => {
    const data = model.get("spectrogram");
    const raw = bytes(data);
    view.disabled = !raw.length;
    if (!raw.length) {
      spec.removeAttribute("src");
      return;
    }
    const url = await colourImage(raw, model.get("spectrogram_mime"));
    if (disposed) return URL.revokeObjectURL(url);
    if (spec.dataset.url) URL.revokeObjectURL(spec.dataset.url);
    spec.dataset.url = url;
    spec.src = url;
  };
  const onMap = () => drawBand();
  model.on("change:segments", onSegments);
  model.on("change:windows", onSegments);
  model.on("change:selection", onSelection);
  model.on("change:peaks", onPeaks);
  model.on("change:duration", onPeaks);
  model.on("change:label", onLabel);
  model.on("change:note", onLabel);
  model.on("change:spectrogram", onSpectrogram);
  model.on("change:speech", onMap);
  model.on("change:sound", onMap);
  model.on("msg:custom", onCustom);

  const resize = new ResizeObserver(() => draw());
  resize.observe(wave);

  onLabel();
  onPeaks();
  onSpectrogram().catch(() => (view.disabled = true));
  if (model.get("lazy")) model.send({ type: "evidence" }); // a long clip: computed on first view
  audioUrl(model)
    .then((got) => {
      if (disposed) {
        if (got && got.owned) URL.revokeObjectURL(got.url);
        return;
      }
      if (!got) {
        play.disabled = true;
        return;
      }
      owned = got.owned ? got.url : null;
      audio.src = got.url;
    })
    .catch((err) => {
      play.disabled = true;
      note.textContent = `Audio unavailable (run the cell again): ${err && err.message ? err.message : err}`;
    });

  return () => {
    disposed = true;
    clearStop();
    audio.pause();
    players.delete(audio);
    if (raf) cancelAnimationFrame(raf);
    if (detailTimer) clearTimeout(detailTimer);
    resize.disconnect();
    model.off("change:segments", onSegments);
    model.off("change:windows", onSegments);
    model.off("change:selection", onSelection);
    model.off("change:peaks", onPeaks);
    model.off("change:duration", onPeaks);
    model.off("change:label", onLabel);
    model.off("change:note", onLabel);
    model.off("change:spectrogram", onSpectrogram);
    model.off("change:speech", onMap);
    model.off("change:sound", onMap);
    model.off("msg:custom", onCustom);
    audio.removeAttribute("src");
    if (owned) URL.revokeObjectURL(owned);
    if (spec.dataset.url) URL.revokeObjectURL(spec.dataset.url);
    for (const u of specUrls) URL.revokeObjectURL(u);
  };
}

export default { render };
