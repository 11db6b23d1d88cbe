// qaudio_magic waveform player (anywidget ESM; no imports, no CDN: works offline).
//
// The kernel sends peaks (int8 min/max pairs), the duration, segments as numbers, and a
// reference to a separate model that holds the audio bytes (sent once per clip). Every
// piece of text shown here is set with textContent or an attribute: model output never
// becomes markup. Nothing autoplays; audio starts only on a click.

const WIDGET_REF = "IPY_MODEL_";

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function clock(t) {
  if (!Number.isFinite(t) || t < 0) t = 0;
  const m = Math.floor(t / 60);
  const s = t - m * 60;
  return `${m}:${s.toFixed(1).padStart(4, "0")}`;
}

function bytesOf(value) {
  if (!value) return new Int8Array(0);
  if (value instanceof DataView) return new Int8Array(value.buffer, value.byteOffset, value.byteLength);
  if (value instanceof ArrayBuffer) return new Int8Array(value);
  if (ArrayBuffer.isView(value)) return new Int8Array(value.buffer, value.byteOffset, value.byteLength);
  return new Int8Array(0);
}

async function audioUrl(model) {
  const ref = model.get("audio");
  if (typeof ref === "string" && ref.startsWith(WIDGET_REF)) {
    const data = await model.widget_manager.get_model(ref.slice(WIDGET_REF.length));
    const value = data.get("value");
    const blob = new Blob([value], { type: data.get("mime") || "audio/wav" });
    return { url: URL.createObjectURL(blob), owned: true };
  }
  const src = model.get("src");
  return src ? { url: src, owned: false } : null;
}

function render({ model, el: host }) {
  const root = el("div", "qaudio-player");
  const bar = el("div", "qaudio-bar");
  const play = el("button", "qaudio-play", "▶");
  play.type = "button";
  play.title = "Play / pause";
  const time = el("span", "qaudio-time", "0:00.0");
  const label = el("span", "qaudio-label");
  bar.append(play, time, label);

  const wave = el("div", "qaudio-wave");
  const canvas = el("canvas", "qaudio-canvas");
  const layer = el("div", "qaudio-layer");
  const sel = el("div", "qaudio-sel");
  const head = el("div", "qaudio-head");
  wave.append(canvas, layer, sel, head);
  wave.title = "Click: seek · drag: select a region · click a highlighted part: play it";

  const chips = el("div", "qaudio-chips");
  const note = el("div", "qaudio-note");
  const audio = document.createElement("audio");
  audio.preload = "auto";
  audio.autoplay = false;
  audio.loop = false;
  root.append(bar, wave, chips, note, audio);
  host.append(root);

  let disposed = false;
  let owned = null;
  let stopAt = null;
  let timer = null;
  let raf = 0;
  let active = null; // index of the segment playing, or "sel"

  const ready = new Promise((resolve) => {
    audio.addEventListener("loadedmetadata", () => resolve(), { once: true });
  });

  const duration = () => {
    const d = model.get("duration");
    return d > 0 ? d : Number.isFinite(audio.duration) ? audio.duration : 0;
  };
  const toTime = (clientX) => {
    const box = wave.getBoundingClientRect();
    const f = Math.min(Math.max((clientX - box.left) / Math.max(box.width, 1), 0), 1);
    return f * duration();
  };
  const pct = (t) => `${(100 * t) / Math.max(duration(), 1e-9)}%`;

  // ---------------------------------------------------------------- drawing
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
    ctx.fillStyle = getComputedStyle(root).getPropertyValue("--qaudio-wave").trim() || "#4a7bd0";
    const peaks = bytesOf(model.get("peaks"));
    const n = peaks.length >> 1;
    const mid = h / 2;
    if (!n) {
      ctx.fillRect(0, mid - 0.5, w, 1);
      return;
    }
    for (let x = 0; x < w; x++) {
      const a = Math.floor((x * n) / w);
      const b = Math.max(a + 1, Math.floor(((x + 1) * n) / w));
      let lo = 127;
      let hi = -127;
      for (let i = a; i < b && i < n; i++) {
        lo = Math.min(lo, peaks[2 * i]);
        hi = Math.max(hi, peaks[2 * i + 1]);
      }
      const top = mid - (hi / 127) * (mid - 1);
      const bottom = mid - (lo / 127) * (mid - 1);
      ctx.fillRect(x, top, 1, Math.max(1, bottom - top));
    }
  }

  function drawHead() {
    head.style.left = pct(audio.currentTime || 0);
    time.textContent = `${clock(audio.currentTime)} / ${clock(duration())}`;
    play.textContent = audio.paused ? "▶" : "⏸";
  }

  function drawSegments() {
    layer.replaceChildren();
    chips.replaceChildren();
    (model.get("segments") || []).forEach((seg, i) => {
      const region = el("div", seg.end == null ? "qaudio-seg qaudio-point" : "qaudio-seg");
      region.dataset.index = String(i);
      region.style.left = pct(seg.start);
      if (seg.end != null) region.style.width = pct(seg.end - seg.start);
      region.title = `▶ ${seg.label}`;
      layer.append(region);
      const chip = el("button", "qaudio-chip", `▶ ${seg.label}`);
      chip.type = "button";
      chip.dataset.index = String(i);
      chip.dataset.start = String(seg.start);
      if (seg.end != null) chip.dataset.end = String(seg.end);
      if (seg.text) chip.title = `mentioned as: ${seg.text}`;
      chip.addEventListener("click", () => playSegment(i));
      chips.append(chip);
    });
    const s = model.get("selection");
    if (s && s.length === 2) {
      const chip = el("button", "qaudio-chip qaudio-chip-sel", `▶ selection ${s[0].toFixed(2)}–${s[1].toFixed(2)} s`);
      chip.type = "button";
      chip.addEventListener("click", () => playRange(s[0], s[1], "sel"));
      const clear = el("button", "qaudio-chip qaudio-clear", "✕");
      clear.type = "button";
      clear.title = "Clear the selection";
      clear.addEventListener("click", () => {
        model.set("selection", null);
        model.save_changes();
      });
      chips.append(chip, clear);
    }
    markActive();
  }

  function drawSelection() {
    const s = model.get("selection");
    if (s && s.length === 2) showSelection(s[0], s[1]);
    else sel.style.display = "none";
  }

  function showSelection(a, b) {
    sel.style.display = "block";
    sel.style.left = pct(Math.min(a, b));
    sel.style.width = pct(Math.abs(b - a));
  }

  function markActive() {
    for (const node of root.querySelectorAll("[data-index]")) {
      node.classList.toggle("qaudio-active", active !== null && node.dataset.index === String(active));
    }
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
    const end = seg.end != null ? seg.end : Math.min(seg.start + model.get("point_seconds"), duration());
    playRange(seg.start, end, i);
  }

  function frame() {
    checkStop();
    drawHead();
    raf = audio.paused || disposed ? 0 : requestAnimationFrame(frame);
  }

  play.addEventListener("click", async () => {
    if (audio.paused) {
      clearStop();
      await ready;
      if (audio.ended || audio.currentTime >= duration()) audio.currentTime = 0;
      audio.play().catch((err) => (note.textContent = `Cannot play: ${err.message || err}`));
    } else {
      audio.pause();
    }
  });
  audio.addEventListener("play", () => {
    if (!raf) raf = requestAnimationFrame(frame);
  });
  audio.addEventListener("pause", () => {
    if (stopAt !== null && audio.currentTime < stopAt - 0.004) clearStop(); // paused by the user
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
  audio.addEventListener("loadedmetadata", () => {
    drawSegments();
    drawSelection();
    drawHead();
  });

  // ---------------------------------------------------------------- pointer: seek, select, play a part
  let press = null;
  wave.addEventListener("pointerdown", (e) => {
    if (e.button !== 0 || !duration()) return;
    e.preventDefault();
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
    clearStop();
    audio.currentTime = p.t;
    drawHead();
  };
  wave.addEventListener("pointerup", (e) => release(e, false));
  wave.addEventListener("pointercancel", (e) => release(e, true));

  // ---------------------------------------------------------------- model changes
  const onSegments = () => drawSegments();
  const onSelection = () => {
    drawSelection();
    drawSegments();
  };
  const onPeaks = () => {
    draw();
    drawSegments();
    drawSelection();
    drawHead();
  };
  const onLabel = () => {
    label.textContent = model.get("label");
    note.textContent = model.get("note");
  };
  model.on("change:segments", onSegments);
  model.on("change:selection", onSelection);
  model.on("change:peaks", onPeaks);
  model.on("change:duration", onPeaks);
  model.on("change:label", onLabel);
  model.on("change:note", onLabel);

  const resize = new ResizeObserver(() => draw());
  resize.observe(wave);

  onLabel();
  onPeaks();
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
    if (raf) cancelAnimationFrame(raf);
    resize.disconnect();
    model.off("change:segments", onSegments);
    model.off("change:selection", onSelection);
    model.off("change:peaks", onPeaks);
    model.off("change:duration", onPeaks);
    model.off("change:label", onLabel);
    model.off("change:note", onLabel);
    audio.removeAttribute("src");
    if (owned) URL.revokeObjectURL(owned);
  };
}

export default { render };
