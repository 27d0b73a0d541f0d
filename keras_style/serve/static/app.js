// The served page: talks to the keras-style server's /api (see keras_style/serve/app.py).
import { $, fileInput, seconds, showMessage, styleCards } from "./common.js";

const state = { photo: null, style: null, busy: false, job: null, slowPhoto: null, painting: null };
let limits = { max_upload_bytes: Infinity };

// A message when `file` is over the server's upload limit (checked before sending it).
function tooBig(file) {
  if (file.size <= limits.max_upload_bytes) return "";
  const mb = (n) => (n / 1048576).toFixed(1) + " MB";
  return `${file.name || "The file"} is ${mb(file.size)}; this server accepts up to ${mb(limits.max_upload_bytes)}`;
}

async function errorText(response) {
  try {
    const body = await response.json();
    if (body.error) return body.error;
  } catch (e) { /* not JSON */ }
  return `the server answered ${response.status} ${response.statusText}`;
}

function busyText(response, text) {
  const wait = response.headers.get("Retry-After");
  return wait ? `${text} (retry in ${wait} s)` : text;
}

// ---- tabs
function showTab(name) {
  for (const t of ["fast", "slow"]) {
    $(t).hidden = t !== name;
    $("tab-" + t).setAttribute("aria-selected", String(t === name));
  }
}
$("tab-fast").onclick = () => showTab("fast");
$("tab-slow").onclick = () => showTab("slow");

// ---- fast mode
function setPhoto(file) {
  if (tooBig(file)) {
    showMessage($("message"), tooBig(file));
    return;
  }
  state.photo = file;
  $("photo").src = URL.createObjectURL(file);
  $("photo-caption").textContent = `${file.name || "pasted image"} (${Math.round(file.size / 1024)} KB)`;
  showMessage($("message"), "");
  stylize();
}

async function stylize() {
  if (!state.photo || !state.style || state.busy) {
    $("run").disabled = !(state.photo && state.style) || state.busy;
    return;
  }
  state.busy = true;
  $("run").disabled = true;
  showMessage($("message"), "Stylizing…", "info");
  const params = new URLSearchParams({
    style: state.style,
    strength: String($("strength").value / 100),
    preserve_color: $("preserve-color").checked ? "1" : "0",
    max_size: $("max-size").value,
  });
  const start = performance.now();
  try {
    const response = await fetch("/api/stylize?" + params, { method: "POST", body: state.photo });
    if (!response.ok) {
      const text = await errorText(response);
      showMessage($("message"), response.status === 503 ? busyText(response, text) : text);
      return;
    }
    const blob = await response.blob();
    const url = URL.createObjectURL(blob);
    await new Promise((resolve, reject) => {
      $("result").onload = resolve;
      $("result").onerror = () => reject(new Error("the result could not be shown"));
      $("result").src = url;
    });
    const total = performance.now() - start;
    const server = Number(response.headers.get("X-Elapsed-Ms"));
    $("timing").textContent = `${response.headers.get("X-Image-Size")} in ${seconds(total)}` +
      (server ? ` (server ${seconds(server)})` : "");
    $("download").href = url;
    $("download").hidden = false;
    showMessage($("message"), "");
    document.body.dataset.done = String(Number(document.body.dataset.done || 0) + 1);
  } catch (e) {
    showMessage($("message"), `The server could not be reached: ${e.message}`);
  } finally {
    state.busy = false;
    $("run").disabled = false;
  }
}

fileInput($("drop"), $("photo-input"), setPhoto);
$("run").onclick = stylize;
$("strength").oninput = () => ($("strength-value").textContent = $("strength").value + " %");

async function loadStyles() {
  try {
    const response = await fetch("/api/styles");
    if (!response.ok) throw new Error(await errorText(response));
    const styles = await response.json();
    styleCards($("styles"), styles, (name) => {
      const changed = state.style && state.style !== name;
      state.style = name;
      if (changed) stylize();
      else $("run").disabled = !state.photo;
    });
  } catch (e) {
    showMessage($("message"), `Could not load the styles: ${e.message}`);
  }
}

async function loadLimits() {
  limits = await (await fetch("/api/limits")).json();
  const sizes = [256, 512, 768, 1024, 1536, 2048].filter((s) => s < limits.max_size);
  for (const size of [...sizes, limits.max_size]) {
    const option = document.createElement("option");
    option.value = option.textContent = String(size);
    $("max-size").append(option);
  }
  $("max-size").value = String(Math.min(1024, limits.max_size));
  if (!$("max-size").value) $("max-size").value = String(limits.max_size);
  for (const option of [...$("slow-size").options]) {
    if (Number(option.value) > limits.slow_max_size) option.remove();
  }
  $("slow-iterations").max = String(limits.slow_max_iterations);
}

// ---- slow mode
function slowReady() {
  $("slow-run").disabled = !(state.slowPhoto && state.painting) || Boolean(state.job);
}
fileInput($("slow-photo-drop"), $("slow-photo-input"), (f) => {
  state.slowPhoto = f;
  $("slow-photo-name").textContent = f.name;
  $("slow-photo").src = URL.createObjectURL(f);
  $("slow-photo-caption").textContent = f.name;
  slowReady();
}, { paste: false });
fileInput($("slow-painting-drop"), $("slow-painting-input"), (f) => {
  state.painting = f;
  $("slow-painting-name").textContent = f.name;
  slowReady();
}, { paste: false });

async function slowStart() {
  const big = tooBig(state.slowPhoto) || tooBig(state.painting);
  if (big) {
    showMessage($("slow-message"), big);
    return;
  }
  const form = new FormData();
  form.append("photo", state.slowPhoto);
  form.append("painting", state.painting);
  const params = new URLSearchParams({
    size: $("slow-size").value,
    iterations: $("slow-iterations").value,
    preserve_color: $("slow-preserve-color").checked ? "1" : "0",
  });
  showMessage($("slow-message"), "");
  try {
    const response = await fetch("/api/slow?" + params, { method: "POST", body: form });
    if (!response.ok) {
      const text = await errorText(response);
      showMessage($("slow-message"), response.status === 503 ? busyText(response, text) : text);
      return;
    }
    state.job = (await response.json()).id;
    $("slow-cancel").hidden = false;
    $("slow-progress").hidden = false;
    slowReady();
    poll(state.job, performance.now());
  } catch (e) {
    showMessage($("slow-message"), `The server could not be reached: ${e.message}`);
  }
}

async function poll(id, start) {
  let lastPreview = -1;
  while (state.job === id) {
    let response;
    try {
      response = await fetch(`/api/jobs/${id}`);
    } catch (e) {
      showMessage($("slow-message"), `The server could not be reached: ${e.message}`);
      break;
    }
    if (!response.ok) {
      showMessage($("slow-message"), await errorText(response));
      break;
    }
    const job = await response.json();
    $("slow-progress").max = job.total;
    $("slow-progress").value = job.iteration;
    const where = job.state === "queued" ? `waiting, ${job.position} ahead` : job.state;
    $("slow-status").textContent = `${where}: iteration ${job.iteration} / ${job.total}`;
    if (job.has_preview && job.iteration !== lastPreview && job.state === "running") {
      lastPreview = job.iteration;
      $("slow-result").src = `/api/jobs/${id}/preview?i=${job.iteration}`;
    }
    if (job.state === "done") {
      const url = URL.createObjectURL(await (await fetch(`/api/jobs/${id}/result`)).blob());
      $("slow-result").src = url;
      $("slow-download").href = url;
      $("slow-download").hidden = false;
      $("slow-timing").textContent = `done in ${seconds(performance.now() - start)}`;
      document.body.dataset.slowDone = "1";
      break;
    }
    if (job.state === "failed" || job.state === "cancelled") {
      showMessage($("slow-message"), job.error || `The job was ${job.state}`, job.error ? "error" : "info");
      break;
    }
    await new Promise((r) => setTimeout(r, 700));
  }
  if (state.job === id) state.job = null;
  $("slow-cancel").hidden = true;
  slowReady();
}

$("slow-run").onclick = slowStart;
$("slow-cancel").onclick = async () => {
  const id = state.job;
  state.job = null;
  if (id) await fetch(`/api/jobs/${id}`, { method: "DELETE" });
  $("slow-status").textContent = "cancelled";
  $("slow-cancel").hidden = true;
  slowReady();
};

loadLimits().catch((e) => showMessage($("message"), `Could not reach the server: ${e.message}`));
loadStyles();
