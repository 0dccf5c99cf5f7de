// MobileNet in the browser: ONNX Runtime Web runs the exported model; everything the model needs
// (preprocessing, class names, input size, batch) comes from its sidecar, model.onnx.json, which
// `mobilenets predict` reads too. Plain JavaScript, no build step.
//
// Test contract: index.html?image=URL classifies that image on load and writes
// {"top": [{"class": ..., "prob": ...}, ...], "backend": ..., "ms": ...} as JSON into #result
// ({"error": ...} when it fails). ?backend=wasm forces WebAssembly.
"use strict";

const MODEL_FILE = document.body.dataset.model;
// predict's rule (mobilenets/data/images.py): an image no larger than this whose recipe does not
// crop (resize == size) is scaled whole to size×size, as small-image data sets are trained.
const SMALL_IMAGE_MAX = __SMALL_IMAGE_MAX__;
const TOP_K = 5;
const params = new URLSearchParams(location.search);
const $ = (id) => document.getElementById(id);

let session, sidecar, backend, busy = false;

function loadScript(src) {
  return new Promise((resolve, reject) => {
    const script = document.createElement("script");
    script.src = src;
    script.onload = resolve;
    script.onerror = () => reject(new Error(`could not load ${src}`));
    document.head.append(script);
  });
}

async function pickBackend() {
  const asked = params.get("backend");
  if (asked && asked !== "wasm" && asked !== "webgpu") throw new Error(`unknown backend ${asked}: wasm or webgpu`);
  if (asked !== "wasm" && navigator.gpu) {
    try {
      if (await navigator.gpu.requestAdapter()) return "webgpu";
    } catch (error) { /* no adapter: WebAssembly below */ }
  }
  if (asked === "webgpu") throw new Error("this browser offers no WebGPU adapter; drop ?backend=webgpu");
  return "wasm";
}

async function load() {
  const response = await fetch(`${MODEL_FILE}.json`);
  if (!response.ok) throw new Error(`could not read the sidecar ${MODEL_FILE}.json (HTTP ${response.status})`);
  sidecar = await response.json();
  const [channels] = sidecar.input;
  if (channels !== 3) throw new Error(`this page feeds RGB images; the model takes ${channels} channels`);
  backend = await pickBackend();
  // Each build fetches only its own WebAssembly module: a phone without WebGPU downloads the smaller one.
  await loadScript(backend === "webgpu" ? "ort/ort.webgpu.min.js" : "ort/ort.wasm.min.js");
  ort.env.wasm.wasmPaths = new URL("ort/", location.href).href;
  ort.env.wasm.numThreads = self.crossOriginIsolated ? Math.min(4, navigator.hardwareConcurrency || 1) : 1;
  session = await ort.InferenceSession.create(MODEL_FILE, {
    executionProviders: backend === "webgpu" ? ["webgpu", "wasm"] : ["wasm"],
  });
  const size = sidecar.preprocessing.size;
  await infer(new Float32Array(batchSize() * 3 * size * size)); // warm-up: the first run compiles
  const config = sidecar.config;
  $("title").textContent = `${config.name} ×${config.width_mult} (${sidecar.precision})`;
  $("status").textContent = `${(sidecar.class_names || []).length || "?"} classes, ${size}×${size} input, ` +
    `${backend === "webgpu" ? "WebGPU" : "WebAssembly"}` +
    (backend === "wasm" ? `, ${ort.env.wasm.numThreads} thread${ort.env.wasm.numThreads > 1 ? "s" : ""}` : "");
}

function batchSize() {
  return sidecar.batch || 1; // null: the file takes any batch
}

// The same steps as `mobilenets predict`: the shorter side scaled to `resize`, the central
// size×size crop, then (x - mean) / std on 0..1 RGB, channels first.
function pixels(source, width, height) {
  const p = sidecar.preprocessing;
  const size = p.size;
  const resize = p.resize ?? size;
  const canvas = document.createElement("canvas");
  canvas.width = canvas.height = size;
  const context = canvas.getContext("2d", { willReadFrequently: true });
  context.imageSmoothingEnabled = (p.interpolation || "bilinear") !== "nearest";
  context.imageSmoothingQuality = "high";
  if (resize === size && Math.max(width, height) <= SMALL_IMAGE_MAX) {
    context.drawImage(source, 0, 0, width, height, 0, 0, size, size);
  } else {
    const scale = resize / Math.min(width, height);
    const scaledWidth = width <= height ? resize : Math.max(1, Math.round(width * scale));
    const scaledHeight = width <= height ? Math.max(1, Math.round(height * scale)) : resize;
    const left = Math.floor((scaledWidth - size) / 2);
    const top = Math.floor((scaledHeight - size) / 2);
    const sx = width / scaledWidth;
    const sy = height / scaledHeight;
    context.drawImage(source, left * sx, top * sy, size * sx, size * sy, 0, 0, size, size);
  }
  const rgba = context.getImageData(0, 0, size, size).data;
  const plane = size * size;
  const data = new Float32Array(batchSize() * 3 * plane);
  for (let c = 0; c < 3; c++) {
    const mean = Math.fround(p.mean[c] * 255);
    const inverse = Math.fround(1 / Math.fround(p.std[c] * 255));
    for (let i = 0; i < plane; i++) data[c * plane + i] = Math.fround((rgba[4 * i + c] - mean) * inverse);
  }
  for (let b = 1; b < batchSize(); b++) data.copyWithin(b * 3 * plane, 0, 3 * plane);
  return data;
}

async function infer(data) {
  const size = sidecar.preprocessing.size;
  const input = new ort.Tensor("float32", data, [batchSize(), 3, size, size]);
  const started = performance.now();
  const outputs = await session.run({ [session.inputNames[0]]: input });
  const ms = performance.now() - started;
  const logits = outputs[session.outputNames[0]].data;
  return { logits: Array.from(logits.slice(0, logits.length / batchSize())), ms };
}

function softmax(logits) {
  const top = Math.max(...logits);
  const exps = logits.map((v) => Math.exp(v - top));
  const sum = exps.reduce((a, b) => a + b, 0);
  return exps.map((v) => v / sum);
}

async function classify(source, width, height, label) {
  const { logits, ms } = await infer(pixels(source, width, height));
  const probs = softmax(logits);
  const names = sidecar.class_names || probs.map((_, i) => `class ${i}`);
  const order = probs.map((p, i) => i).sort((a, b) => probs[b] - probs[a]).slice(0, TOP_K);
  const result = { top: order.map((i) => ({ class: names[i], prob: probs[i] })), backend, ms };
  if (label) result.image = label;
  show(result);
  return result;
}

function show(result) {
  const list = $("top");
  list.replaceChildren(...result.top.map(({ class: name, prob }) => {
    const item = document.createElement("li");
    item.innerHTML = '<div class="label"><span></span><span></span></div><div class="bar"></div>';
    item.querySelector(".label span").textContent = name;
    item.querySelector(".label span:last-child").textContent = `${(100 * prob).toFixed(1)}%`;
    item.querySelector(".bar").style.width = `${Math.max(1, 100 * prob)}%`;
    return item;
  }));
  $("timing").textContent = `${result.ms.toFixed(1)} ms per inference (${result.backend})`;
  $("result").textContent = JSON.stringify(result);
}

function fail(error) {
  $("status").textContent = String(error.message || error);
  $("status").className = "error";
  $("result").textContent = JSON.stringify({ error: String(error.message || error) });
}

async function classifyUrl(url, label) {
  stopCamera();
  const image = $("shown");
  image.crossOrigin = "anonymous";
  image.src = url;
  image.hidden = false;
  await image.decode();
  image.classList.toggle("small", Math.max(image.naturalWidth, image.naturalHeight) <= SMALL_IMAGE_MAX);
  return classify(image, image.naturalWidth, image.naturalHeight, label);
}

// Camera: classify frame after frame while it is on (phones: the back camera).
let stream = null;
async function startCamera() {
  const video = $("video");
  stream = await navigator.mediaDevices.getUserMedia({ video: { facingMode: "environment" }, audio: false });
  video.srcObject = stream;
  video.hidden = false;
  $("shown").hidden = true;
  $("camera").textContent = "stop the camera";
  await video.play();
  const loop = async () => {
    if (!stream) return;
    if (!busy && video.videoWidth) {
      busy = true;
      try { await classify(video, video.videoWidth, video.videoHeight); } finally { busy = false; }
    }
    requestAnimationFrame(loop);
  };
  requestAnimationFrame(loop);
}

function stopCamera() {
  if (!stream) return;
  stream.getTracks().forEach((track) => track.stop());
  stream = null;
  $("video").hidden = true;
  $("camera").textContent = "use the camera";
}

function wire() {
  $("file").addEventListener("change", (event) => {
    const file = event.target.files[0];
    if (file) classifyUrl(URL.createObjectURL(file), file.name).catch(fail);
  });
  const drop = $("drop");
  drop.addEventListener("dragover", (event) => { event.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    const file = [...event.dataTransfer.files].find((f) => f.type.startsWith("image/"));
    if (file) classifyUrl(URL.createObjectURL(file), file.name).catch(fail);
  });
  $("camera").addEventListener("click", () => {
    if (stream) return stopCamera();
    if (!navigator.mediaDevices?.getUserMedia) return fail(new Error("no camera access here (it needs https or localhost)"));
    startCamera().catch(fail);
  });
}

load()
  .then(() => {
    wire();
    const image = params.get("image");
    if (image) return classifyUrl(image, image);
  })
  .catch(fail);
