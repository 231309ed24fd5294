// Upscalers: one image in (dropped or picked), POST /upscale, and the result beside the input at
// the same display size, with a before/after slider or side by side, and a download link. The
// output size is the model's own factor, a scale factor, or a width and height with a fit; a
// family of upscalers (a faithful and a detail model, manifest upscaler.family) gets a detail
// slider that blends the two. The answer comes as NDJSON: the tiles' progress, then the image and
// the headers that say how it was made.

import { ApiError, blobOf, call, EXTENSIONS, ndjson, NDJSON } from "./api.js";
import { busy } from "./ui.js";

const STRIPPED = { gps: "kept, GPS dropped", all: "dropped (colour profile kept)", none: "all kept" };

export class UpscalerPanel {
  constructor(root) {
    this.root = root;
    this.model = null;
    this.file = null;
    this.limits = null;
    this.family = null; // [faithful, detail] names when the model's family is served
    this.urls = [];
    const $ = (id) => root.querySelector("#" + id);
    this.el = {
      file: $("up-file"),
      drop: $("drop-zone"),
      chosen: $("up-chosen"),
      format: $("up-format"),
      strip: $("up-strip"),
      sizeChoices: [...root.querySelectorAll('input[name="up-size"]')],
      nativeText: $("up-native-text"),
      scale: $("up-scale"),
      scaleRow: $("up-scale-row"),
      width: $("up-width"),
      height: $("up-height"),
      fit: $("up-fit"),
      boxRow: $("up-box-row"),
      detail: $("up-detail"),
      detailValue: $("up-detail-value"),
      detailHelp: $("up-detail-help"),
      progressRow: $("up-progress-row"),
      progress: $("up-progress"),
      progressText: $("up-progress-text"),
      how: $("up-how"),
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
    for (const choice of this.el.sizeChoices) choice.addEventListener("change", () => this.showSizeFields());
    this.el.detail.addEventListener("input", () => this.showDetail());
    side.addEventListener("change", () => {
      this.el.compare.classList.toggle("side", side.checked);
      this.el.splitRow.hidden = side.checked;
    });
    $("upscale-form").addEventListener("submit", (event) => {
      event.preventDefault();
      this.upscale();
    });
  }

  // An upscaler was picked: its factor, the largest served factor (a scale may go up to it), and
  // whether its family's other model is served (then the detail slider blends the two).
  show(model, limits, models) {
    this.model = model;
    this.limits = limits;
    const upscalers = models.filter((m) => m.task === "upscale");
    const largest = Math.max(model.upscaler.scale, ...upscalers.map((m) => m.upscaler.scale));
    this.el.scale.max = String(largest);
    this.el.scale.value = String(Math.min(Number(this.el.scale.value) || largest, largest));
    this.el.nativeText.textContent = `the model's own, ×${model.upscaler.scale}`;
    const family = model.upscaler.family;
    const partner = family && upscalers.find((m) => m.upscaler.family &&
      m.upscaler.family.name === family.name && m.upscaler.family.role !== family.role);
    const { detail, detailHelp } = this.el;
    if (partner) {
      const faithful = family.role === "faithful" ? model.name : partner.name;
      const sharp = family.role === "faithful" ? partner.name : model.name;
      this.family = [faithful, sharp];
      detail.disabled = false;
      detail.value = family.role === "faithful" ? "0" : "1"; // the picked model alone, to start with
      detailHelp.textContent = `family ${family.name}: 0 is ${faithful} (smooth, faithful), 1 is ${sharp} ` +
        "(sharper, invented texture), between them both, blended";
    } else {
      this.family = null;
      detail.disabled = true;
      detail.value = "0";
      const families = [...new Set(upscalers.filter((m) => m.upscaler.family).map((m) => m.upscaler.family.name))];
      const others = families.length ? `; pick a model of ${families.join(" or ")} for it` : "";
      detailHelp.textContent = family ?
        `off: ${model.name}'s family ${family.name} has no other model served${others}` :
        `off: ${model.name} is in no family of upscalers, so there is nothing to blend${others}`;
    }
    this.showDetail();
    this.root.hidden = false;
  }

  get sizeChoice() {
    return this.el.sizeChoices.find((choice) => choice.checked).value;
  }

  showSizeFields() {
    this.el.scaleRow.hidden = this.sizeChoice !== "scale";
    this.el.boxRow.hidden = this.sizeChoice !== "box";
  }

  showDetail() {
    const { detail, detailValue } = this.el;
    detailValue.value = detail.disabled ? "off" : Number(detail.value).toFixed(2);
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

  // The query: the model, and what was asked of the size, the detail, the format and the metadata.
  // Throws ApiError (with a message for the person) on a size left empty.
  params() {
    const params = new URLSearchParams({ model: this.model.ref });
    if (this.el.format.value) params.set("format", this.el.format.value);
    let asked = null; // the size asked for, in words; null: the model's own factor
    if (this.sizeChoice === "scale") {
      const scale = this.el.scale.value.trim();
      if (scale === "") throw new ApiError(0, "invalid_size", "give a scale factor, e.g. 2.5");
      params.set("scale", scale);
      asked = `×${scale} asked`;
    } else if (this.sizeChoice === "box") {
      const width = this.el.width.value.trim();
      const height = this.el.height.value.trim();
      if (width === "" && height === "") throw new ApiError(0, "invalid_size", "give a width, a height or both");
      if (width !== "") params.set("width", width);
      if (height !== "") params.set("height", height);
      if (width !== "" && height !== "") params.set("fit", this.el.fit.value);
      asked = width !== "" && height !== "" ? `${width}×${height} asked, ${this.el.fit.value}` :
        width !== "" ? `width ${width} asked` : `height ${height} asked`;
    }
    if (this.family) params.set("detail", this.el.detail.value);
    params.set("strip", this.el.strip.value);
    return { params, asked };
  }

  async upscale() {
    const { submit, error, result, sizes, download, before, after, progressRow } = this.el;
    await busy(submit, error, async () => {
      if (!this.file) throw new Error("choose an image first");
      const { params, asked } = this.params();
      const strip = this.el.strip.value;
      progressRow.hidden = true;
      const started = performance.now();
      const response = await call(`/upscale?${params}`, {
        method: "POST",
        // No type (an unknown extension): send it as it is; the server says what it accepts.
        headers: { "Content-Type": this.file.type || "application/octet-stream", Accept: NDJSON },
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
      this.showProgress(null, null);
      progressRow.hidden = false;
      let done = null;
      for await (const line of ndjson(response)) {
        if (line.done) done = line;
        else if (line.tiles !== undefined) this.showProgress(line.tiles_done, line.tiles);
      }
      if (done === null) throw new ApiError(0, "incomplete", "the answer ended before the image");
      const output = blobOf(done.data, done.media_type);
      const ms = performance.now() - started;
      const headers = new Headers(done.headers);
      const inputSize = headers.get("X-Input-Size");
      const outputSize = headers.get("X-Output-Size");
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
      const how = asked || `×${this.model.upscaler.scale} by ${this.model.name} v${this.model.version}`;
      sizes.textContent = `Input ${times(inputSize)} → output ${times(outputSize)} (${how}), in ${ms.toFixed(0)} ms`;
      this.showHow(headers, strip);
      result.hidden = false;
      this.showSplit();
    });
  }

  // "12 of 20 tiles"; before the first line, the upload is under way.
  showProgress(done, total) {
    const { progress, progressText } = this.el;
    if (total === null) {
      progress.removeAttribute("value"); // indeterminate
      progressText.textContent = "sending the image…";
      return;
    }
    progress.max = total;
    progress.value = done;
    progressText.textContent = `${done} of ${total} tiles`;
  }

  // How the answer was made, from its headers: the models run, the resize and crop after them,
  // the detail weight, the bit depth, and what became of the metadata.
  showHow(headers, strip) {
    const rows = [["Models", headers.get("X-Models") || headers.get("X-Model")]];
    if (headers.has("X-Detail")) {
      const detail = Number(headers.get("X-Detail"));
      const [faithful, sharp] = this.family || ["faithful", "detail"];
      rows.push(["Detail", `${detail} (${Math.round((1 - detail) * 100)}% ${faithful}, ` +
        `${Math.round(detail * 100)}% ${sharp})`]);
    }
    rows.push(["Resize", times(headers.get("X-Resize") || "none")]);
    if (headers.has("X-Crop")) rows.push(["Crop", crop(headers.get("X-Crop"))]);
    rows.push(["Bit depth", `${headers.get("X-Bit-Depth") || 8} bits a channel`]);
    if (STRIPPED[strip]) rows.push(["Metadata", STRIPPED[strip]]);
    this.el.how.replaceChildren(...rows.map(([term, value]) => {
      const group = document.createElement("div");
      const dt = document.createElement("dt");
      const dd = document.createElement("dd");
      dt.textContent = term;
      dd.textContent = value;
      group.append(dt, dd);
      return group;
    }));
  }

  showSplit() {
    this.el.compare.style.setProperty("--split", `${this.el.split.value}%`);
    this.el.split.setAttribute("aria-valuetext", `${this.el.split.value}% before`);
  }
}

// "480x360" -> "480×360", inside any text
function times(text) {
  return String(text).replace(/(\d)x(\d)/g, "$1×$2");
}

// "800x800+133+0" -> "800×800 from (133, 0)": the window cut from the resized image
function crop(text) {
  const found = /^(\d+)x(\d+)\+(\d+)\+(\d+)$/.exec(text);
  return found ? `${found[1]}×${found[2]} from (${found[3]}, ${found[4]})` : text;
}

function formatBytes(bytes) {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KB`;
  return `${(bytes / 1024 / 1024).toFixed(1)} MB`;
}
