// The in-browser page: runs fixed-size float16 .tflite networks with LiteRT.js
// (WebGPU where the browser has it, else WebAssembly). Built by `python -m export.web_page`.
import { loadAndCompile, loadLiteRt, Tensor } from "@litertjs/core";
import { $, decodeImage, fileInput, seconds, showMessage, styleCards } from "./common.js";

const MAX_BYTES = 50 * 1024 * 1024;
const MAX_PIXELS = 40e6;
const state = { manifest: null, style: null, photo: null, busy: false, accelerator: null };
const compiled = new Map(); // "style/size" -> CompiledModel, loaded once
const timings = { first: null, last: null };

async function start() {
  try {
    state.manifest = await (await fetch("models.json")).json();
    await loadLiteRt(new URL("litert/core/wasm/", document.baseURI).href);
  } catch (e) {
    $("runtime").textContent = "the runtime failed to load";
    showMessage($("message"), `Could not start LiteRT.js: ${e.message}`);
    return;
  }
  state.accelerator = (await hasWebGpu()) ? "webgpu" : "wasm";
  showRuntime();
  for (const size of state.manifest.sizes) {
    const option = document.createElement("option");
    option.value = option.textContent = String(size);
    $("max-size").append(option);
  }
  $("max-size").value = String(state.manifest.sizes.at(-1));
  styleCards($("styles"), state.manifest.styles, (name) => {
    const changed = state.style && state.style !== name;
    state.style = name;
    if (changed) stylize();
    else $("run").disabled = !state.photo;
  });
  document.body.dataset.ready = "1";
}

function showRuntime() {
  const where = state.accelerator === "webgpu" ? "WebGPU" : "WebAssembly (CPU)";
  $("runtime").textContent = `LiteRT.js on ${where}`;
}

async function hasWebGpu() {
  if (!navigator.gpu) return false;
  try {
    return Boolean(await navigator.gpu.requestAdapter());
  } catch (e) {
    return false;
  }
}

async function model(style, size) {
  const key = `${style}/${size}`;
  if (!compiled.has(key)) {
    const url = state.manifest.styles.find((s) => s.name === style).models[String(size)];
    let net;
    try {
      net = await loadAndCompile(url, { accelerator: state.accelerator });
    } catch (e) {
      if (state.accelerator !== "webgpu") throw e;
      state.accelerator = "wasm"; // WebGPU refused the model: run it on the CPU
      showRuntime();
      net = await loadAndCompile(url, { accelerator: "wasm" });
    }
    compiled.set(key, net);
  }
  return compiled.get(key);
}

async function setPhoto(file) {
  showMessage($("message"), "");
  if (file.size > MAX_BYTES) {
    showMessage($("message"), `The photo is ${file.size} bytes; the limit is ${MAX_BYTES / 1048576} MB`);
    return;
  }
  let img;
  try {
    img = await decodeImage(file);
  } catch (e) {
    showMessage($("message"), e.message);
    return;
  }
  if (img.naturalWidth * img.naturalHeight > MAX_PIXELS) {
    showMessage($("message"), `The photo is too large: ${img.naturalWidth}x${img.naturalHeight} pixels`);
    return;
  }
  state.photo = img;
  const canvas = $("photo");
  canvas.width = img.naturalWidth;
  canvas.height = img.naturalHeight;
  canvas.getContext("2d").drawImage(img, 0, 0);
  $("photo-caption").textContent = `${file.name || "pasted image"}, ${img.naturalWidth}x${img.naturalHeight}`;
  stylize();
}

// RGBA bytes of the photo resized to the model's square input.
function squarePixels(img, size) {
  const canvas = new OffscreenCanvas(size, size);
  const ctx = canvas.getContext("2d", { willReadFrequently: true });
  ctx.imageSmoothingQuality = "high";
  ctx.drawImage(img, 0, 0, size, size);
  return ctx.getImageData(0, 0, size, size).data;
}

// The network's [0, 255] RGB output blended like FastStylizer: colours kept, strength.
function finish(out, rgba, size, strength, keepColors) {
  const pixels = new ImageData(size, size);
  const d = pixels.data;
  for (let i = 0, j = 0; i < size * size; i++, j += 3) {
    let r = out[j], g = out[j + 1], b = out[j + 2];
    const pr = rgba[4 * i], pg = rgba[4 * i + 1], pb = rgba[4 * i + 2];
    if (keepColors) { // luminance of the result, chrominance of the photo (BT.601)
      const y = 0.299 * r + 0.587 * g + 0.114 * b;
      const cb = -0.168736 * pr - 0.331264 * pg + 0.5 * pb;
      const cr = 0.5 * pr - 0.418688 * pg - 0.081312 * pb;
      r = y + 1.402 * cr;
      g = y - 0.344136 * cb - 0.714136 * cr;
      b = y + 1.772 * cb;
    }
    d[4 * i] = strength * r + (1 - strength) * pr;
    d[4 * i + 1] = strength * g + (1 - strength) * pg;
    d[4 * i + 2] = strength * b + (1 - strength) * pb;
    d[4 * i + 3] = 255;
  }
  return pixels;
}

async function run(img, size) {
  const rgba = squarePixels(img, size);
  const input = new Float32Array(size * size * 3);
  for (let i = 0, j = 0; i < rgba.length; i += 4, j += 3) {
    input[j] = rgba[i];
    input[j + 1] = rgba[i + 1];
    input[j + 2] = rgba[i + 2];
  }
  const net = await model(state.style, size);
  let tensor = new Tensor(input, [1, size, size, 3]);
  if (state.accelerator === "webgpu") tensor = await tensor.moveTo("webgpu");
  const outputs = await net.run(tensor);
  tensor.delete();
  const result = outputs[0].accelerator === "wasm" ? outputs[0] : await outputs[0].moveTo("wasm");
  const out = result.toTypedArray();
  const pixels = finish(out, rgba, size, $("strength").value / 100, $("preserve-color").checked);
  result.delete();
  return pixels;
}

// The square result drawn at the photo's proportions (long side = the model's size).
function show(pixels, img, size) {
  const square = new OffscreenCanvas(size, size);
  square.getContext("2d").putImageData(pixels, 0, 0);
  const scale = size / Math.max(img.naturalWidth, img.naturalHeight);
  const canvas = $("result");
  canvas.width = Math.max(1, Math.round(img.naturalWidth * scale));
  canvas.height = Math.max(1, Math.round(img.naturalHeight * scale));
  const ctx = canvas.getContext("2d");
  ctx.imageSmoothingQuality = "high";
  ctx.drawImage(square, 0, 0, canvas.width, canvas.height);
  canvas.toBlob((blob) => {
    $("download").href = URL.createObjectURL(blob);
    $("download").hidden = false;
  }, "image/png");
}

async function stylize() {
  if (!state.photo || !state.style || state.busy) {
    $("run").disabled = !(state.photo && state.style) || state.busy;
    return;
  }
  state.busy = true;
  $("run").disabled = true;
  showMessage($("message"), "Stylizing…", "info");
  const size = Number($("max-size").value);
  const begin = performance.now();
  try {
    const pixels = await run(state.photo, size);
    show(pixels, state.photo, size);
    const ms = performance.now() - begin;
    timings.last = ms;
    if (timings.first === null) timings.first = performance.now();
    $("timing").textContent = `${$("result").width}x${$("result").height} in ${seconds(ms)}`;
    document.body.dataset.firstResultMs = String(Math.round(timings.first));
    document.body.dataset.lastMs = String(Math.round(ms));
    document.body.dataset.done = String(Number(document.body.dataset.done || 0) + 1);
    showMessage($("message"), "");
  } catch (e) {
    showMessage($("message"), `Stylization failed: ${e.message}`);
  } finally {
    state.busy = false;
    $("run").disabled = false;
  }
}

fileInput($("drop"), $("photo-input"), setPhoto);
$("run").onclick = stylize;
$("strength").oninput = () => ($("strength-value").textContent = $("strength").value + " %");
start();
