// The page: loads the served models from /v1/models, shows the panel for the one picked (its
// name, and the version when one is pinned, are kept in the URL's #model=NAME&version=N so a link
// opens the same model), and the live view. Requests go to the model's default version unless a
// version is picked: then they pin it (NAME@N), as clients do.

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
    $("model").addEventListener("change", () => this.pick($("model").value, ""));
    $("version").addEventListener("change", () => this.pick($("model").value, $("version").value));
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
      for (const m of served.filter((v) => isDefault(v, this.models))) {
        group.append(new Option(`${m.name} (v${m.version}, ${device(m)})`, m.name));
      }
      groups.push(group);
    }
    select.replaceChildren(...groups);
    select.disabled = !this.models.length;
    const failures = Object.entries(failed).map(([name, why]) => `${name}: ${why}`);
    if (!this.models.length) {
      showError($("page-error"), new Error(`no models are served${failures.length ? "; " + failures.join("; ") : ""}`));
      return;
    }
    const hash = new URLSearchParams(location.hash.slice(1));
    const wanted = hash.get("model");
    const chosen = this.models.find((m) => m.name === wanted) || this.models[0];
    select.value = chosen.name;
    this.pick(chosen.name, hash.get("version") || "");
  }

  // The model `name` at `version` ("" for its default version): its panel, and the version picker.
  pick(name, version) {
    const versions = this.models.filter((m) => m.name === name).sort((a, b) => a.version - b.version);
    if (!versions.length) return;
    const fallback = versions.find((m) => isDefault(m, this.models)) || versions[versions.length - 1];
    const pinned = versions.find((m) => String(m.version) === version);
    const entry = pinned || fallback;
    const picker = $("version");
    picker.replaceChildren(
      new Option(`default (v${fallback.version})`, ""),
      ...versions.map((m) => new Option(`v${m.version}${role(m)}`, String(m.version))),
    );
    picker.value = pinned ? String(pinned.version) : "";
    picker.disabled = false;
    const model = { ...entry, ref: pinned ? `${name}@${pinned.version}` : name };
    const where = `#model=${encodeURIComponent(name)}${pinned ? `&version=${pinned.version}` : ""}`;
    history.replaceState(null, "", where);
    $("model-info").textContent = describe(model) + (pinned ? ` Pinned to version ${pinned.version}.` : "");
    if (model.task === "generate") {
      this.upscaler.hide();
      this.generator.show(model, this.limits);
    } else {
      this.generator.hide();
      this.upscaler.show(model, this.limits, this.models);
    }
  }

  status(text, ok) {
    const pill = $("service-status");
    pill.textContent = `service: ${text}`;
    pill.classList.toggle("ok", ok);
    pill.classList.toggle("bad", !ok);
  }
}

// Whether a listed version is its model's default (a server without versions side by side lists
// one version per model, with no "default" field).
function isDefault(model, models) {
  if ("default" in model) return model.default;
  return !models.some((m) => m.name === model.name && m.version > model.version);
}

function role(model) {
  if (model.default) return " · default";
  if (model.canary_share) return ` · canary ${Math.round(model.canary_share * 100)}%`;
  return "";
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
  const family = u.family ? `, the ${u.family.role} model of family ${u.family.name}` : "";
  return `Upscaler: ×${u.scale}, in tiles of ${u.tile} px${family}; ${where}.`;
}

new Playground().start();
