// cxrsr viewer: upload an X-ray, compare bicubic and cxrsr with a slider, zoom and pan in sync, window/level,
// difference map, downloads. Plain JavaScript, no external resources.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { file: null, result: null, layers: {}, view: { zoom: 1, x: 0, y: 0 }, level: 32768, width: 65535 };

function setStatus(text, error = false) {
  $("status").textContent = text;
  $("status").classList.toggle("error", error);
}

async function loadModels() {
  const response = await fetch("/api/models");
  const body = await response.json();
  for (const m of body.models) {
    const option = document.createElement("option");
    option.value = m.name;
    option.textContent = m.name + (m.description ? " \u2014 " + m.description.split(":")[0] : "");
    option.selected = m.name === body.default;
    $("model").appendChild(option);
  }
}

function chooseFile(file) {
  state.file = file;
  $("run").disabled = !file;
  setStatus(file ? `${file.name} (${(file.size / 1024).toFixed(0)} KiB) ready` : "");
  if (file) upscale();
}

function post(url, form, onUpload) {
  // XMLHttpRequest for upload progress; resolves with {status, body (ArrayBuffer), headers}
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", url);
    xhr.responseType = "arraybuffer";
    xhr.upload.onprogress = (e) => onUpload && e.lengthComputable && onUpload(e.loaded / e.total);
    xhr.onload = () => resolve({ status: xhr.status, body: xhr.response, type: xhr.getResponseHeader("Content-Type"),
                                 disposition: xhr.getResponseHeader("Content-Disposition") });
    xhr.onerror = () => reject(new Error("network error"));
    xhr.send(form);
  });
}

function errorText(response) {
  try { return JSON.parse(new TextDecoder().decode(response.body)).error || `HTTP ${response.status}`; }
  catch (e) { return `HTTP ${response.status}`; }
}

function formFor(extra) {
  const form = new FormData();
  form.append("file", state.file);
  form.append("model", $("model").value);
  form.append("window", $("window").value);
  for (const [k, v] of Object.entries(extra || {})) form.append(k, v);
  return form;
}

async function upscale() {
  if (!state.file) return;
  $("run").disabled = true;
  $("progress").hidden = false;
  $("progress").removeAttribute("value");
  setStatus("uploading\u2026");
  try {
    const response = await post("/api/compare", formFor(), (f) => {
      $("progress").value = f;
      setStatus(f < 1 ? `uploading\u2026 ${(100 * f).toFixed(0)} %` : "upscaling\u2026");
      if (f >= 1) $("progress").removeAttribute("value");
    });
    if (response.status !== 200) throw new Error(errorText(response));
    show(JSON.parse(new TextDecoder().decode(response.body)));
    setStatus(`done: ${state.result.model}`);
  } catch (e) {
    setStatus(`error: ${e.message}`, true);
  } finally {
    $("progress").hidden = true;
    $("run").disabled = !state.file;
  }
}

function decode(image) {
  const bytes = Uint8Array.from(atob(image.data), (c) => c.charCodeAt(0));
  return { width: image.width, height: image.height, pixels: new Uint16Array(bytes.buffer) };
}

function show(result) {
  state.result = result;
  state.images = { input: decode(result.input), bicubic: decode(result.bicubic), sr: decode(result.sr) };
  const input = state.images.input, sr = state.images.sr;
  let lo = 65535, hi = 0;
  for (const v of input.pixels) { if (v < lo) lo = v; if (v > hi) hi = v; }
  state.full = { level: (lo + hi) / 2, width: Math.max(1, hi - lo) };
  setWindow(state.full.level, state.full.width);
  $("viewer").hidden = false;
  $("dl-dcm").disabled = !result.dicom;
  const canvas = $("compare-view");
  canvas.dataset.width = sr.width;
  canvas.dataset.height = sr.height;
  $("input-view").dataset.width = input.width;
  $("input-view").dataset.height = input.height;
  $("info").textContent = `input ${input.width}x${input.height} \u2192 ${sr.width}x${sr.height} ` +
    `(x${result.scale}, ${result.bits}-bit${result.dicom ? " DICOM" : ""}), model ${result.model}. ${result.derived}`;
  resetView();
}

function setWindow(level, width) {
  state.level = level;
  state.width = Math.max(1, width);
  $("level").value = level;
  $("width").value = state.width;
  renderLayers();
}

function grey(image) {
  const out = new ImageData(image.width, image.height);
  const lo = state.level - state.width / 2, k = 255 / state.width;
  for (let i = 0; i < image.pixels.length; i++) {
    const g = Math.max(0, Math.min(255, (image.pixels[i] - lo) * k));
    out.data[4 * i] = out.data[4 * i + 1] = out.data[4 * i + 2] = g;
    out.data[4 * i + 3] = 255;
  }
  return out;
}

function difference(a, b) {
  const out = new ImageData(a.width, a.height);
  const limit = 0.05 * state.width;
  for (let i = 0; i < a.pixels.length; i++) {
    const t = Math.max(-1, Math.min(1, (a.pixels[i] - b.pixels[i]) / limit));
    out.data[4 * i] = 255 * (t > 0 ? 1 : 1 + t);
    out.data[4 * i + 1] = 255 * (1 - Math.abs(t));
    out.data[4 * i + 2] = 255 * (t < 0 ? 1 : 1 - t);
    out.data[4 * i + 3] = 255;
  }
  return out;
}

function layer(imageData) {
  const c = document.createElement("canvas");
  c.width = imageData.width;
  c.height = imageData.height;
  c.getContext("2d").putImageData(imageData, 0, 0);
  return c;
}

function renderLayers() {
  if (!state.images) return;
  const { input, bicubic, sr } = state.images;
  state.layers = { input: layer(grey(input)), bicubic: layer(grey(bicubic)), sr: layer(grey(sr)),
                   diff: layer(difference(sr, bicubic)) };
  draw();
}

function draw() {
  if (!state.images) return;
  const { zoom, x, y } = state.view;  // HR pixel (x, y) at the canvas's top-left, canvas pixels per HR pixel
  const scale = state.result.scale;
  const cmp = $("compare-view"), inp = $("input-view");
  for (const [canvas, source, s] of [[inp, state.layers.input, 1 / scale], [cmp, state.layers.bicubic, 1]]) {
    const ctx = canvas.getContext("2d");
    ctx.imageSmoothingEnabled = false;
    ctx.fillStyle = "#000";
    ctx.fillRect(0, 0, canvas.width, canvas.height);
    ctx.drawImage(source, x * s, y * s, canvas.width / zoom * s, canvas.height / zoom * s, 0, 0, canvas.width, canvas.height);
  }
  const ctx = cmp.getContext("2d");
  const split = Math.round(cmp.width * $("split").value / 1000);
  const right = $("diff").checked ? state.layers.diff : state.layers.sr;
  ctx.save();
  ctx.beginPath();
  ctx.rect(split, 0, cmp.width - split, cmp.height);
  ctx.clip();
  ctx.imageSmoothingEnabled = false;
  ctx.drawImage(right, x, y, cmp.width / zoom, cmp.height / zoom, 0, 0, cmp.width, cmp.height);
  ctx.restore();
  ctx.strokeStyle = "#ff0";
  ctx.beginPath();
  ctx.moveTo(split + 0.5, 0);
  ctx.lineTo(split + 0.5, cmp.height);
  ctx.stroke();
  cmp.dataset.zoom = zoom.toFixed(4);
  cmp.dataset.split = split;
  cmp.dataset.right = $("diff").checked ? "difference" : "cxrsr";
  $("right-title").textContent = $("diff").checked ? "difference (cxrsr \u2212 bicubic)" : "cxrsr x4";
}

function resetView() {
  const sr = state.images.sr, canvas = $("compare-view");
  const zoom = Math.min(canvas.width / sr.width, canvas.height / sr.height);
  state.view = { zoom, x: 0, y: 0 };
  draw();
}

function zoomAt(canvas, event) {
  event.preventDefault();
  const rect = canvas.getBoundingClientRect();
  const cx = (event.clientX - rect.left) * canvas.width / rect.width, cy = (event.clientY - rect.top) * canvas.height / rect.height;
  const v = state.view;
  const hx = v.x + cx / v.zoom, hy = v.y + cy / v.zoom;  // the HR pixel under the cursor stays put
  v.zoom = Math.max(0.05, Math.min(32, v.zoom * (event.deltaY < 0 ? 1.25 : 0.8)));
  v.x = hx - cx / v.zoom;
  v.y = hy - cy / v.zoom;
  draw();
}

function enablePan(canvas) {
  let last = null;
  canvas.addEventListener("mousedown", (e) => { last = [e.clientX, e.clientY]; canvas.style.cursor = "grabbing"; });
  window.addEventListener("mouseup", () => { last = null; canvas.style.cursor = "grab"; });
  window.addEventListener("mousemove", (e) => {
    if (!last || !state.images) return;
    const rect = canvas.getBoundingClientRect();
    state.view.x -= (e.clientX - last[0]) * canvas.width / rect.width / state.view.zoom;
    state.view.y -= (e.clientY - last[1]) * canvas.height / rect.height / state.view.zoom;
    last = [e.clientX, e.clientY];
    draw();
  });
  canvas.addEventListener("wheel", (e) => zoomAt(canvas, e), { passive: false });
}

async function download(format) {
  setStatus(`preparing ${format.toUpperCase()}\u2026`);
  try {
    const response = await post("/api/upscale", formFor({ format }));
    if (response.status !== 200) throw new Error(errorText(response));
    const name = (/filename="([^"]+)"/.exec(response.disposition || "") || [])[1] || `image_x4.${format}`;
    const url = URL.createObjectURL(new Blob([response.body], { type: response.type }));
    const a = document.createElement("a");
    a.href = url;
    a.download = name;
    document.body.appendChild(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
    setStatus(`downloaded ${name}`);
  } catch (e) {
    setStatus(`error: ${e.message}`, true);
  }
}

window.addEventListener("DOMContentLoaded", () => {
  loadModels().catch((e) => setStatus(`cannot list models: ${e.message}`, true));
  $("file").addEventListener("change", () => chooseFile($("file").files[0] || null));
  const drop = $("drop");
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => { e.preventDefault(); drop.classList.remove("over"); chooseFile(e.dataTransfer.files[0] || null); });
  $("run").addEventListener("click", upscale);
  $("model").addEventListener("change", () => state.file && upscale());
  $("split").addEventListener("input", draw);
  $("diff").addEventListener("change", draw);
  $("level").addEventListener("input", () => setWindow(+$("level").value, state.width));
  $("width").addEventListener("input", () => setWindow(state.level, +$("width").value));
  $("reset-window").addEventListener("click", () => setWindow(state.full.level, state.full.width));
  $("reset-view").addEventListener("click", resetView);
  $("dl-png").addEventListener("click", () => download("png"));
  $("dl-dcm").addEventListener("click", () => download("dcm"));
  enablePan($("compare-view"));
  enablePan($("input-view"));
});
