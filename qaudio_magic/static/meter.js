// qaudio_magic live level meter (anywidget ESM): while the kernel says a take is being
// recorded, it listens to the microphone in the browser (a second getUserMedia stream,
// never recorded or sent anywhere) and shows the level in dBFS. Nothing else leaves it.

const FLOOR_DB = -60;

function render({ model, el: host }) {
  const root = document.createElement("div");
  root.className = "qaudio-meter-box";
  const meter = document.createElement("div");
  meter.className = "qaudio-meter";
  meter.setAttribute("role", "meter");
  meter.setAttribute("aria-label", "Microphone level");
  meter.setAttribute("aria-valuemin", String(FLOOR_DB));
  meter.setAttribute("aria-valuemax", "0");
  meter.setAttribute("aria-valuenow", String(FLOOR_DB));
  const fill = document.createElement("div");
  fill.className = "qaudio-meter-fill";
  const peak = document.createElement("div");
  peak.className = "qaudio-meter-peak";
  meter.append(fill, peak);
  const text = document.createElement("span");
  text.className = "qaudio-meter-text";
  text.textContent = "";
  root.append(meter, text);
  host.append(root);

  let stream = null;
  let ctx = null;
  let raf = 0;
  let held = FLOOR_DB;
  let heldAt = 0;
  let disposed = false;

  function show(db) {
    const f = Math.min(Math.max((db - FLOOR_DB) / -FLOOR_DB, 0), 1);
    fill.style.width = `${(f * 100).toFixed(1)}%`;
    fill.classList.toggle("qaudio-meter-hot", db > -3);
    const now = performance.now();
    if (db > held || now - heldAt > 1200) {
      held = db;
      heldAt = now;
    }
    peak.style.left = `${(Math.min(Math.max((held - FLOOR_DB) / -FLOOR_DB, 0), 1) * 100).toFixed(1)}%`;
    meter.setAttribute("aria-valuenow", db.toFixed(1));
    text.textContent = db <= FLOOR_DB ? "silence" : `${db.toFixed(0)} dB`;
  }

  async function start() {
    if (stream || disposed) return;
    try {
      stream = await navigator.mediaDevices.getUserMedia({ audio: true, video: false });
    } catch (err) {
      text.textContent = "level unavailable (microphone blocked)";
      return;
    }
    if (disposed || !model.get("active")) return stop();
    ctx = new AudioContext();
    const source = ctx.createMediaStreamSource(stream);
    const analyser = ctx.createAnalyser();
    analyser.fftSize = 1024;
    source.connect(analyser);
    const buf = new Float32Array(analyser.fftSize);
    const tick = () => {
      analyser.getFloatTimeDomainData(buf);
      let sum = 0;
      for (let i = 0; i < buf.length; i++) sum += buf[i] * buf[i];
      const rms = Math.sqrt(sum / buf.length);
      show(rms > 0 ? Math.max(20 * Math.log10(rms), FLOOR_DB) : FLOOR_DB);
      raf = requestAnimationFrame(tick);
    };
    tick();
  }

  function stop() {
    if (raf) cancelAnimationFrame(raf);
    raf = 0;
    if (stream) for (const t of stream.getTracks()) t.stop();
    stream = null;
    if (ctx) ctx.close();
    ctx = null;
    show(FLOOR_DB);
    text.textContent = "";
  }

  const onActive = () => (model.get("active") ? start() : stop());
  model.on("change:active", onActive);
  root.style.display = model.get("active") ? "" : "none";
  const onShow = () => (root.style.display = model.get("active") ? "" : "none");
  model.on("change:active", onShow);
  onActive();
  return () => {
    disposed = true;
    model.off("change:active", onActive);
    model.off("change:active", onShow);
    stop();
  };
}

export default { render };
