// Helpers shared by the served page (app.js) and the in-browser page (page.js).

export const $ = (id) => document.getElementById(id);

// Shows `text` in a message box; kind is "error", "info" or "" (clears it).
export function showMessage(box, text, kind = "error") {
  box.textContent = text || "";
  box.className = "message" + (text ? " " + kind : "");
}

// Calls onFile(file) for a file dropped on, pasted into or chosen in a drop zone.
export function fileInput(zone, input, onFile, { paste = true } = {}) {
  zone.addEventListener("click", () => input.click());
  zone.addEventListener("keydown", (e) => {
    if (e.key === "Enter" || e.key === " ") input.click();
  });
  input.addEventListener("change", () => {
    if (input.files.length) onFile(input.files[0]);
    input.value = "";
  });
  zone.addEventListener("dragover", (e) => {
    e.preventDefault();
    zone.classList.add("over");
  });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (e) => {
    e.preventDefault();
    zone.classList.remove("over");
    if (e.dataTransfer.files.length) onFile(e.dataTransfer.files[0]);
  });
  if (paste) {
    window.addEventListener("paste", (e) => {
      const item = [...e.clipboardData.items].find((i) => i.kind === "file");
      if (item && !zone.closest("[hidden]")) onFile(item.getAsFile());
    });
  }
}

// Renders style cards (thumbnail, title, artist, year) as a radio group; onPick(name).
export function styleCards(container, styles, onPick) {
  container.replaceChildren();
  container.setAttribute("role", "radiogroup");
  const cards = styles.map((s) => {
    const card = document.createElement("button");
    card.type = "button";
    card.className = "style-card";
    card.setAttribute("role", "radio");
    card.dataset.style = s.name;
    const thumb = s.thumbnail ? document.createElement("img") : document.createElement("div");
    if (s.thumbnail) {
      thumb.src = s.thumbnail;
      thumb.alt = s.title;
    } else {
      thumb.className = "nothumb";
    }
    const title = document.createElement("div");
    title.className = "title";
    title.textContent = s.title || s.name;
    const artist = document.createElement("div");
    artist.className = "artist";
    artist.textContent = [s.artist, s.year].filter(Boolean).join(", ") || s.kind || "";
    card.append(thumb, title, artist);
    card.addEventListener("click", () => pick(s.name));
    container.append(card);
    return card;
  });
  function pick(name) {
    cards.forEach((c) => c.setAttribute("aria-checked", String(c.dataset.style === name)));
    onPick(name);
  }
  if (styles.length) pick(styles[0].name);
}

export const seconds = (ms) => (ms / 1000).toFixed(2) + " s";

// Decodes an image file in the browser; rejects with a readable message.
export function decodeImage(file) {
  return new Promise((resolve, reject) => {
    const url = URL.createObjectURL(file);
    const img = new Image();
    img.onload = () => resolve(img);
    img.onerror = () => {
      URL.revokeObjectURL(url);
      reject(new Error(`${file.name || "the file"} is not an image this browser can read`));
    };
    img.src = url;
  });
}
