// Upscalers: one image in (dropped or picked), POST /upscale, and the result beside the input at
// the same display size, with a before/after slider or side by side, and a download link.

import { call, EXTENSIONS } from "./api.js";
import { busy } from "./ui.js";

export class UpscalerPanel {
  constructor(root) {
    this.root = root;
    this.model = null;
    this.file = null;
    this.limits = null;
    this.urls = [];
    const $ = (id) => root.querySelector("#" + id);
    this.el = {
      file: $("up-file"),
      drop: $("drop-zone"),
      chosen: $("up-chosen"),
      format: $("up-format"),
      submit: $("up-submit"),
      error: $("up-error"),
      result: $("up-result"),
      sizes: $("up-sizes"),
      side: $("up-side"),
      download: $("up-download"),
      compare: $("compare"),
      before: $("up-before"),
      after: $("up-after"),
      split: $("up-split"),
      splitRow: $("split-row"),
    };
    const { file, drop, split, side } = this.el;
    file.addEventListener("change", () => file.files.length && this.choose(file.files[0]));
    for (const kind of ["dragenter", "dragover"]) {
      drop.addEventListener(kind, (event) => {
        event.preventDefault();
        drop.classList.add("dragging");
      });
    }
    drop.addEventListener("dragleave", () => drop.classList.remove("dragging"));
    drop.addEventListener("drop", (event) => {
      event.preventDefault();
      drop.classList.remove("dragging");
      if (event.dataTransfer.files.length) this.choose(event.dataTransfer.files[0]);
    });
    split.addEventListener("input", () => this.showSplit());
    side.addEventListener("change", () => {
      this.el.compare.classList.toggle("side", side.checked);
      this.el.splitRow.hidden = side.checked;
    });
    $("upscale-form").addEventListener("submit", (event) => {
      event.preventDefault();
      this.upscale();
    });
  }

  show(model, limits) {
    this.model = model;
    this.limits = limits;
    this.root.hidden = false;
  }

  hide() {
    this.root.hidden = true;
  }

  // A file was picked or dropped: say what it is (the browser's reading of its size, when it
  // can read it); whatever it is, the server has the last word.
  async choose(file) {
    this.file = file;
    this.el.submit.disabled = false;
    this.el.error.hidden = true;
    let size = "";
    try {
      const bitmap = await createImageBitmap(file);
      size = `, ${bitmap.width}×${bitmap.height}`;
      bitmap.close();
    } catch {
      size = ", not an image this browser can read";
    }
    this.el.chosen.textContent = `${file.name} (${formatBytes(file.size)}${size})`;
  }

  async upscale() {
    const { submit, error, result, sizes, download, before, after } = this.el;
    await busy(submit, error, async () => {
      if (!this.file) throw new Error("choose an image first");
      const params = new URLSearchParams({ model: this.model.ref });
      if (this.el.format.value) params.set("format", this.el.format.value);
      const started = performance.now();
      const response = await call(`/upscale?${params}`, {
        method: "POST",
        // No type (an unknown extension): send it as it is; the server says what it accepts.
        headers: { "Content-Type": this.file.type || "application/octet-stream" },
        body: this.file,
      }).catch((error) => {
        // A server may close an upload it refuses before the browser has sent it all: then there
        // is no answer to show, but the limit it was over is known.
        const limit = this.limits && this.limits.max_body_bytes;
        if (error.status === 0 && limit && this.file.size > limit) {
          error.message += `; the file is ${formatBytes(this.file.size)} and this server takes at most ` +
            formatBytes(limit);
        }
        throw error;
      });
      const output = await response.blob();
      const ms = performance.now() - started;
      const inputSize = response.headers.get("X-Input-Size");
      const outputSize = response.headers.get("X-Output-Size");
      this.urls.splice(0).forEach((url) => URL.revokeObjectURL(url));
      const beforeUrl = URL.createObjectURL(this.file);
      const afterUrl = URL.createObjectURL(output);
      this.urls.push(beforeUrl, afterUrl);
      before.src = beforeUrl;
      after.src = afterUrl;
      const [width, height] = outputSize.split("x").map(Number);
      // Both images fill the same frame, which has the output's shape.
      this.el.compare.style.setProperty("--aspect", `${width} / ${height}`);
      const ext = EXTENSIONS[output.type] || "bin";
      const stem = this.file.name.replace(/\.[^.]*$/, "") || "image";
      download.href = afterUrl;
      download.download = `${stem}-${this.model.name}.${ext}`;
      download.textContent = `Download ${width}×${height} ${ext.toUpperCase()} (${formatBytes(output.size)})`;
      sizes.textContent = `Input ${inputSize.replace("x", "×")} → output ${outputSize.replace("x", "×")} ` +
        `(×${this.model.upscaler.scale} by ${this.model.name} v${this.model.version}), in ${ms.toFixed(0)} ms`;
      result.hidden = false;
      this.showSplit();
    });
  }

  showSplit() {
    this.el.compare.style.setProperty("--split", `${this.el.split.value}%`);
    this.el.split.setAttribute("aria-valuetext", `${this.el.split.value}% before`);
  }
}

function formatBytes(bytes) {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KB`;
  return `${(bytes / 1024 / 1024).toFixed(1)} MB`;
}
