// Generators: a grid of images from consecutive seeds (POST /generate), and a latent walk
// between two seeds shown as a strip (POST /walk). Every image is a link that downloads it.
// Style models also get a truncation psi slider, a button that re-rolls the noise images (same
// seeds, new fine detail), and the style-mixing grid (POST /mix).

import { ApiError, blobOf, call, jsonBody, MEDIA_TYPES, parseSeed, postJson, randomSeed } from "./api.js";
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
      walkFrom: $("walk-from"),
      walkTo: $("walk-to"),
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
    for (const input of [this.el.walkFrom, this.el.walkTo]) {
      input.addEventListener("input", () => (this.el.walkFrom.dataset.touched = "yes"));
    }
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

  async generate() {
    const { submit, error, summary, grid } = this.el;
    await busy(submit, error, async () => {
      const seed = parseSeed(this.el.seed.value);
      const n = Number(this.el.n.value);
      const { label, ...common } = this.options();
      const body = { ...common, n, seed, format: "png" };
      if (label !== undefined) body.labels = label;
      if (this.style && this.noiseSeed !== null) body.noise_seed = this.noiseSeed;
      const started = performance.now();
      const answer = await postJson("/generate", body);
      const ms = performance.now() - started;
      freeAll(this.urls.grid);
      // Seeds are computed here, not read back: JSON numbers above 2^53 lose digits in JavaScript.
      const items = answer.images.map((image, i) => {
        const imageSeed = seed + BigInt(i);
        const labelText = image.label_name === null ? "" : ` · ${image.label_name}`;
        const name = `${answer.model}-v${answer.version}-seed${imageSeed}` +
          (image.label === null ? "" : `-label${image.label}`) + ".png";
        return tile(this.urls.grid, blobOf(image.data, MEDIA_TYPES.png), name,
          `seed ${imageSeed}${labelText}`, `Download ${name}`);
      });
      grid.replaceChildren(...items);
      const noise = !this.style ? "" : this.noiseSeed === null ? ", noise from each seed" :
        `, noise seed ${this.noiseSeed}+i`;
      summary.textContent = `${items.length} image${items.length === 1 ? "" : "s"} ` +
        `(${answer.width}×${answer.height}) from ${answer.model} v${answer.version}${noise} ` +
        `in ${ms.toFixed(0)} ms`;
      // The walk starts from this grid's first two seeds until someone changes it.
      if (!this.el.walkFrom.dataset.touched) {
        this.el.walkFrom.value = String(seed);
        this.el.walkTo.value = String(seed + 1n);
      }
    });
  }

  async walk() {
    const { walkSubmit, walkError, walkSummary, strip } = this.el;
    await busy(walkSubmit, walkError, async () => {
      const body = {
        ...this.options(),
        from_seed: parseSeed(this.el.walkFrom.value, "from seed"),
        to_seed: parseSeed(this.el.walkTo.value, "to seed"),
        steps: Number(this.el.walkSteps.value),
        method: this.el.walkMethod.value,
        format: "png",
      };
      const started = performance.now();
      const answer = await postJson("/walk", body);
      const ms = performance.now() - started;
      freeAll(this.urls.strip);
      const last = answer.images.length - 1;
      const items = answer.images.map((image, i) => {
        const where = i === 0 ? `seed ${body.from_seed}` : i === last ? `seed ${body.to_seed}` :
          `t = ${image.t.toFixed(2)}`;
        const name = `${answer.model}-v${answer.version}-walk-${body.from_seed}-${body.to_seed}-` +
          `${String(i).padStart(3, "0")}.png`;
        return tile(this.urls.strip, blobOf(image.data, MEDIA_TYPES.png), name, where, `Download ${name}`);
      });
      strip.replaceChildren(...items);
      const label = answer.label_name === null ? "" : `, label ${answer.label_name}`;
      walkSummary.textContent = `${items.length} steps by ${answer.method} from seed ${body.from_seed} ` +
        `to seed ${body.to_seed}${label}, in ${ms.toFixed(0)} ms`;
    });
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
