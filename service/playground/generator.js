// Generators: a grid of images from consecutive seeds (POST /generate, streamed as NDJSON so the
// grid fills as each image is made), and a latent walk between two seeds or a loop through several
// (POST /walk), shown as a strip of frames or as one animated file. Every image is a link that
// downloads it.
// Style models also get a truncation psi slider, a button that re-rolls the noise images (same
// seeds, new fine detail), and the style-mixing grid (POST /mix).

import {
  ApiError, blobOf, call, EXTENSIONS, jsonBody, MEDIA_TYPES, parseSeed, postJson, postNdjson, randomSeed,
} from "./api.js";
import { busy } from "./ui.js";

export class GeneratorPanel {
  constructor(root) {
    this.root = root;
    this.model = null;
    this.urls = { grid: [], strip: [] }; // blob: URLs of the shown images, freed on the next run
    const $ = (id) => root.querySelector("#" + id);
    this.el = {
      n: $("gen-n"),
      label: $("gen-label"),
      labelField: $("label-field"),
      seed: $("gen-seed"),
      truncation: $("gen-truncation"),
      truncationField: $("truncation-field"),
      psi: $("gen-psi"),
      psiValue: $("gen-psi-value"),
      psiField: $("psi-field"),
      noise: $("gen-noise"),
      submit: $("gen-submit"),
      error: $("gen-error"),
      summary: $("gen-summary"),
      grid: $("gen-grid"),
      progressRow: $("gen-progress-row"),
      progress: $("gen-progress"),
      progressText: $("gen-progress-text"),
      walkKind: $("walk-kind"),
      walkFrom: $("walk-from"),
      walkFromField: $("walk-from-field"),
      walkTo: $("walk-to"),
      walkToField: $("walk-to-field"),
      walkSeeds: $("walk-seeds"),
      walkSeedsField: $("walk-seeds-field"),
      walkAs: $("walk-as"),
      walkMs: $("walk-ms"),
      walkMsField: $("walk-ms-field"),
      walkFigure: $("walk-figure"),
      walkAnimation: $("walk-animation"),
      walkDownload: $("walk-download"),
      walkSteps: $("walk-steps"),
      walkMethod: $("walk-method"),
      walkSubmit: $("walk-submit"),
      walkError: $("walk-error"),
      walkSummary: $("walk-summary"),
      strip: $("walk-strip"),
      mixPanel: $("mix-panel"),
      mixRows: $("mix-rows"),
      mixCols: $("mix-cols"),
      mixCrossover: $("mix-crossover"),
      mixSubmit: $("mix-submit"),
      mixError: $("mix-error"),
      mixSummary: $("mix-summary"),
      mixFigure: $("mix-figure"),
      mixImage: $("mix-image"),
      mixDownload: $("mix-download"),
    };
    this.noiseSeed = null; // style models: null = each image's own seed
    this.mixUrl = null;
    this.animationUrl = null;
    this.el.psi.addEventListener("input", () => {
      this.el.psiValue.value = Number(this.el.psi.value).toFixed(2);
    });
    this.el.noise.addEventListener("click", () => {
      this.noiseSeed = randomSeed();
      this.generate();
    });
    $("mix-form").addEventListener("submit", (event) => {
      event.preventDefault();
      this.mix();
    });
    for (const input of [this.el.walkFrom, this.el.walkTo, this.el.walkSeeds]) {
      input.addEventListener("input", () => (this.el.walkFrom.dataset.touched = "yes"));
    }
    this.el.walkKind.addEventListener("change", () => this.showWalkFields());
    this.el.walkAs.addEventListener("change", () => this.showWalkFields());
    $("gen-random").addEventListener("click", () => {
      this.el.seed.value = String(randomSeed());
      this.generate();
    });
    $("generate-form").addEventListener("submit", (event) => {
      event.preventDefault();
      this.generate();
    });
    $("walk-form").addEventListener("submit", (event) => {
      event.preventDefault();
      this.walk();
    });
  }

  // A generator was picked: its classes fill the label list; limits bound n and steps.
  show(model, limits) {
    this.model = model;
    const classes = model.generator.classes;
    const options = [new Option("by seed (seed mod classes)", "")];
    classes.names.forEach((name, i) => options.push(new Option(`${i}: ${name}`, String(i))));
    this.el.label.replaceChildren(...options);
    this.el.labelField.hidden = classes.count === 0;
    this.el.n.max = String(limits.max_n);
    this.el.walkSteps.max = String(limits.max_walk_steps);
    const style = model.kind === "style";
    this.el.truncationField.hidden = style;
    this.el.psiField.hidden = !style;
    this.el.noise.hidden = !style;
    this.el.mixPanel.hidden = !style;
    this.el.walkMethod.value = style ? "lerp" : "slerp"; // StyleGAN walks in w by lerp
    this.noiseSeed = null;
    this.root.hidden = false;
  }

  // From/to or the loop's seeds; the frame time only for an animation.
  showWalkFields() {
    const loop = this.el.walkKind.value === "loop";
    this.el.walkFromField.hidden = loop;
    this.el.walkToField.hidden = loop;
    this.el.walkSeedsField.hidden = !loop;
    this.el.walkMsField.hidden = this.el.walkAs.value === "";
  }

  get style() {
    return this.model !== null && this.model.kind === "style";
  }

  hide() {
    this.root.hidden = true;
  }

  // The common options of both forms; throws ApiError (with a message for the person) on bad input.
  options() {
    const body = { model: this.model.ref };
    const label = this.el.label.value;
    if (this.model.generator.classes.count > 0 && label !== "") body.label = Number(label);
    if (this.style) {
      const psi = Number(this.el.psi.value);
      if (psi !== 1) body.truncation_psi = psi;
    } else {
      const truncation = this.el.truncation.value.trim();
      if (truncation !== "") body.truncation = Number(truncation);
    }
    return body;
  }

  // The grid fills as the answer's lines arrive (Accept: application/x-ndjson): the head, then
  // one line per image as its part of the request is done.
  async generate() {
    const { submit, error, summary, grid, progressRow, progress, progressText } = this.el;
    await busy(submit, error, async () => {
      const seed = parseSeed(this.el.seed.value);
      const n = Number(this.el.n.value);
      const { label, ...common } = this.options();
      const body = { ...common, n, seed, format: "png" };
      if (label !== undefined) body.labels = label;
      if (this.style && this.noiseSeed !== null) body.noise_seed = this.noiseSeed;
      progressRow.hidden = true;
      const started = performance.now();
      const lines = await postNdjson("/generate", body);
      let head = null;
      let shown = 0;
      const showProgress = (total) => {
        progress.max = total;
        progress.value = shown;
        progressText.textContent = `${shown} of ${total} images`;
      };
      try {
        for await (const line of lines) {
          if (head === null) {
            head = line; // model, version, format, height, width, channels, n
            freeAll(this.urls.grid);
            grid.replaceChildren();
            grid.setAttribute("aria-busy", "true");
            progressRow.hidden = false;
            showProgress(head.n);
            continue;
          }
          // Seeds are computed here, not read back: JSON numbers above 2^53 lose digits in JavaScript.
          const imageSeed = seed + BigInt(line.index);
          const labelText = line.label_name === null ? "" : ` · ${line.label_name}`;
          const name = `${head.model}-v${head.version}-seed${imageSeed}` +
            (line.label === null ? "" : `-label${line.label}`) + ".png";
          grid.append(tile(this.urls.grid, blobOf(line.data, MEDIA_TYPES.png), name,
            `seed ${imageSeed}${labelText}`, `Download ${name}`));
          shown += 1;
          showProgress(head.n);
        }
      } finally {
        grid.removeAttribute("aria-busy");
      }
      if (head === null || shown < head.n) {
        throw new ApiError(0, "incomplete", `the answer ended after ${shown} of ${n} images`);
      }
      progressRow.hidden = true;
      const ms = performance.now() - started;
      const noise = !this.style ? "" : this.noiseSeed === null ? ", noise from each seed" :
        `, noise seed ${this.noiseSeed}+i`;
      summary.textContent = `${shown} image${shown === 1 ? "" : "s"} ` +
        `(${head.width}×${head.height}) from ${head.model} v${head.version}${noise} ` +
        `in ${ms.toFixed(0)} ms`;
      // The walk starts from this grid's first seeds until someone changes it.
      if (!this.el.walkFrom.dataset.touched) {
        this.el.walkFrom.value = String(seed);
        this.el.walkTo.value = String(seed + 1n);
        this.el.walkSeeds.value = [0n, 1n, 2n].map((i) => String(seed + i)).join(", ");
      }
    });
  }

  // From one seed to another, or a loop through several (seeds: a -> b -> c -> a); as frames in
  // a strip, or as one animated file (animation: webp, gif or apng) with a download link.
  async walk() {
    const { walkSubmit, walkError } = this.el;
    await busy(walkSubmit, walkError, async () => {
      const body = { ...this.options(), steps: Number(this.el.walkSteps.value), method: this.el.walkMethod.value };
      let seeds; // the seeds as typed (BigInt): the answer's JSON numbers may have lost digits
      if (this.el.walkKind.value === "loop") {
        seeds = parseSeeds(this.el.walkSeeds.value, "seeds");
        if (seeds.length < 2) throw new ApiError(0, "invalid_seed", "seeds: a loop needs two or more");
        body.seeds = seeds;
      } else {
        body.from_seed = parseSeed(this.el.walkFrom.value, "from seed");
        body.to_seed = parseSeed(this.el.walkTo.value, "to seed");
        seeds = [body.from_seed, body.to_seed];
      }
      const animation = this.el.walkAs.value;
      if (animation) {
        body.animation = animation;
        body.frame_ms = Number(this.el.walkMs.value);
        await this.walkAnimation(body, seeds);
      } else {
        body.format = "png";
        await this.walkStrip(body, seeds);
      }
    });
  }

  async walkStrip(body, seeds) {
    const { walkSummary, strip, walkFigure } = this.el;
    const loop = body.seeds !== undefined;
    const started = performance.now();
    const answer = await postJson("/walk", body);
    const ms = performance.now() - started;
    freeAll(this.urls.strip);
    const last = answer.images.length - 1;
    const path = seeds.join("-");
    const items = answer.images.map((image, i) => {
      // A loop's frames start each segment at its seed; a from/to walk ends at to_seed.
      const segment = image.segment || 0;
      const where = image.t === 0 ? `seed ${seeds[segment]}` : !loop && i === last ? `seed ${seeds[1]}` :
        `t = ${image.t.toFixed(2)}`;
      const name = `${answer.model}-v${answer.version}-walk-${path}-${String(i).padStart(3, "0")}.png`;
      return tile(this.urls.strip, blobOf(image.data, MEDIA_TYPES.png), name, where, `Download ${name}`);
    });
    strip.replaceChildren(...items);
    this.showAnimation(null);
    walkFigure.hidden = true;
    const label = answer.label_name === null ? "" : `, label ${answer.label_name}`;
    walkSummary.textContent = `${items.length} ${loop ? "frames" : "steps"} by ${answer.method} ` +
      `${route(seeds, loop)}${label}, in ${ms.toFixed(0)} ms`;
  }

  async walkAnimation(body, seeds) {
    const { walkSummary, strip, walkFigure, walkAnimation, walkDownload } = this.el;
    const loop = body.seeds !== undefined;
    const started = performance.now();
    const response = await call("/walk", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: jsonBody(body),
    });
    const blob = await response.blob();
    const ms = performance.now() - started;
    const frames = response.headers.get("X-Frames");
    const frameMs = response.headers.get("X-Frame-Ms");
    const model = response.headers.get("X-Model");
    const version = response.headers.get("X-Model-Version");
    freeAll(this.urls.strip);
    strip.replaceChildren();
    const url = this.showAnimation(blob);
    const kind = body.animation.toUpperCase();
    walkAnimation.alt = `Latent walk ${route(seeds, loop)}, ${frames} frames of ${frameMs} ms, looping`;
    walkAnimation.src = url;
    const name = `${model}-v${version}-walk-${seeds.join("-")}.${EXTENSIONS[blob.type] || body.animation}`;
    walkDownload.href = url;
    walkDownload.download = name;
    walkDownload.type = blob.type;
    walkDownload.textContent = `Download ${name} (${kind}, ${formatBytes(blob.size)})`;
    walkFigure.hidden = false;
    walkSummary.textContent = `${frames} frames by ${body.method} ${route(seeds, loop)}, ` +
      `${frameMs} ms each, as one ${kind} file, in ${ms.toFixed(0)} ms`;
  }

  // The walk's animation as a blob: URL (the previous one freed); null frees it only.
  showAnimation(blob) {
    if (this.animationUrl) URL.revokeObjectURL(this.animationUrl);
    this.animationUrl = blob ? URL.createObjectURL(blob) : null;
    if (!blob) this.el.walkAnimation.removeAttribute("src");
    return this.animationUrl;
  }

  async mix() {
    const { mixSubmit, mixError, mixSummary, mixFigure, mixImage, mixDownload } = this.el;
    await busy(mixSubmit, mixError, async () => {
      const { label, ...common } = this.options();
      const body = {
        ...common,
        row_seeds: parseSeeds(this.el.mixRows.value, "row seeds"),
        col_seeds: parseSeeds(this.el.mixCols.value, "column seeds"),
        crossover: this.el.mixCrossover.value,
        format: "png",
      };
      if (label !== undefined) body.label = label;
      const started = performance.now();
      // Accept: image/png answers the whole figure as one PNG
      const response = await call("/mix", {
        method: "POST",
        headers: { "Content-Type": "application/json", Accept: "image/png" },
        body: jsonBody(body),
      });
      const blob = await response.blob();
      const ms = performance.now() - started;
      if (this.mixUrl) URL.revokeObjectURL(this.mixUrl);
      this.mixUrl = URL.createObjectURL(blob);
      mixImage.src = this.mixUrl;
      const name = `${this.model.name}-mix-${body.crossover}.png`;
      mixDownload.href = this.mixUrl;
      mixDownload.download = name;
      mixDownload.setAttribute("aria-label", `Download ${name}`);
      mixFigure.hidden = false;
      mixSummary.textContent = `${body.row_seeds.length}×${body.col_seeds.length} grid, ` +
        `${body.crossover} styles from the rows, in ${ms.toFixed(0)} ms`;
    });
  }
}

// "from seed 1 to seed 2", or "through seeds 1 → 2 → 3 → 1" for a loop
function route(seeds, loop) {
  return loop ? `through seeds ${[...seeds, seeds[0]].join(" → ")}` : `from seed ${seeds[0]} to seed ${seeds[1]}`;
}

function formatBytes(bytes) {
  return bytes < 1024 ? `${bytes} B` : `${(bytes / 1024).toFixed(1)} KB`;
}

// "1, 2, 3" -> [1n, 2n, 3n]
function parseSeeds(text, what) {
  const parts = String(text).split(",").map((part) => part.trim()).filter((part) => part !== "");
  if (parts.length === 0) throw new ApiError(0, "invalid_seed", `${what}: give at least one seed`);
  return parts.map((part) => parseSeed(part, what));
}

// One result: the image inside a download link, with its caption.
function tile(urls, blob, fileName, caption, linkLabel) {
  const url = URL.createObjectURL(blob);
  urls.push(url);
  const item = document.createElement("li");
  const link = document.createElement("a");
  link.href = url;
  link.download = fileName;
  link.setAttribute("aria-label", linkLabel);
  const img = document.createElement("img");
  img.src = url;
  img.alt = caption;
  const text = document.createElement("span");
  text.className = "caption";
  text.textContent = caption;
  link.append(img);
  item.append(link, text);
  return item;
}

function freeAll(urls) {
  urls.splice(0).forEach((url) => URL.revokeObjectURL(url));
}
