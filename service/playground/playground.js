// The page: loads the served models from /v1/models, shows the panel for the one picked (its
// name is kept in the URL's #model= so a link opens the same model), and the live view.

import { apiKey, call, device, setApiKey } from "./api.js";
import { GeneratorPanel } from "./generator.js";
import { LiveView } from "./live.js";
import { showError } from "./ui.js";
import { UpscalerPanel } from "./upscaler.js";

const $ = (id) => document.getElementById(id);

class Playground {
  constructor() {
    this.models = [];
    this.limits = null;
    this.generator = new GeneratorPanel($("generator"));
    this.upscaler = new UpscalerPanel($("upscaler"));
    this.live = new LiveView($("live"), (text, ok) => this.status(text, ok));
    $("model").addEventListener("change", () => this.pick($("model").value));
    $("api-key").value = apiKey();
    $("key-form").addEventListener("submit", (event) => {
      event.preventDefault();
      setApiKey($("api-key").value.trim());
      this.load();
      this.live.refresh();
    });
  }

  async start() {
    await this.load();
    this.live.start();
  }

  async load() {
    const error = $("page-error");
    try {
      const listing = await (await call("/v1/models")).json();
      error.hidden = true;
      this.models = listing.models;
      this.limits = listing.limits;
      this.live.setModels(this.models);
      this.fillPicker(listing.failed || {});
    } catch (e) {
      showError(error, e);
      if (e.status === 401) {
        $("key-box").open = true;
        $("api-key").focus();
      }
    }
  }

  fillPicker(failed) {
    const select = $("model");
    const groups = [];
    for (const [task, title] of [["generate", "Generators"], ["upscale", "Upscalers"]]) {
      const served = this.models.filter((m) => m.task === task);
      if (!served.length) continue;
      const group = document.createElement("optgroup");
      group.label = title;
      for (const m of served) group.append(new Option(`${m.name} (v${m.version}, ${device(m)})`, m.name));
      groups.push(group);
    }
    select.replaceChildren(...groups);
    select.disabled = !this.models.length;
    const failures = Object.entries(failed).map(([name, why]) => `${name}: ${why}`);
    if (!this.models.length) {
      showError($("page-error"), new Error(`no models are served${failures.length ? "; " + failures.join("; ") : ""}`));
      return;
    }
    const wanted = new URLSearchParams(location.hash.slice(1)).get("model");
    const chosen = this.models.find((m) => m.name === wanted) || this.models[0];
    select.value = chosen.name;
    this.pick(chosen.name);
  }

  pick(name) {
    const model = this.models.find((m) => m.name === name);
    if (!model) return;
    history.replaceState(null, "", `#model=${encodeURIComponent(name)}`);
    $("model-info").textContent = describe(model);
    if (model.task === "generate") {
      this.upscaler.hide();
      this.generator.show(model, this.limits);
    } else {
      this.generator.hide();
      this.upscaler.show(model, this.limits);
    }
  }

  status(text, ok) {
    const pill = $("service-status");
    pill.textContent = `service: ${text}`;
    pill.classList.toggle("ok", ok);
    pill.classList.toggle("bad", !ok);
  }
}

// One line about a model from its manifest.
function describe(model) {
  const where = `runs on ${model.provider}`; // the full ONNX Runtime name here
  if (model.task === "generate") {
    const g = model.generator;
    const out = `${g.output.width}×${g.output.height}, ${g.output.channels === 1 ? "grayscale" : "colour"}`;
    const classes = g.classes.count ? `${g.classes.count} classes` : "unconditional";
    return `Generator: ${out} images, ${classes}, latent size ${g.latent_size}; ${where}.`;
  }
  const u = model.upscaler;
  return `Upscaler: ×${u.scale}, in tiles of ${u.tile} px; ${where}.`;
}

new Playground().start();
