// The live view of the service: models and their queues, requests/s and latency per endpoint,
// batch sizes per model. Polls /metrics every 2 s (not while the tab is hidden) and keeps the
// last 10 s of scrapes, so rates and quantiles are over a short window rather than since start.

import { authHeaders, call, device } from "./api.js";
import {
  bucketDelta,
  buckets,
  formatSeconds,
  histogramBars,
  parseMetrics,
  quantile,
  sum,
} from "./metrics.js";

const POLL_MS = 2000;
const WINDOW_MS = 10000;
const ENDPOINTS = ["/generate", "/walk", "/upscale"];

export class LiveView {
  constructor(root, onStatus) {
    this.root = root;
    this.onStatus = onStatus; // (text, ok) for the header's status pill
    this.models = [];
    this.scrapes = []; // [{at, samples}], oldest first, spanning about WINDOW_MS
    this.timer = null;
  }

  setModels(models) {
    this.models = models;
  }

  start() {
    const tick = async () => {
      if (document.visibilityState !== "hidden") await this.refresh();
      this.timer = setTimeout(tick, POLL_MS);
    };
    tick();
  }

  async refresh() {
    const error = this.root.querySelector("#live-error");
    try {
      const [metricsText, ready] = await Promise.all([
        call("/metrics").then((r) => r.text()),
        // 503 while starting or draining is an answer here, not an error
        fetch("/readyz", { headers: authHeaders() }).then((r) => r.json().catch(() => ({}))),
      ]);
      const now = performance.now();
      this.scrapes.push({ at: now, samples: parseMetrics(metricsText) });
      while (this.scrapes.length > 2 && now - this.scrapes[1].at >= WINDOW_MS) this.scrapes.shift();
      this.render();
      this.onStatus(ready.status || "unknown", ready.status === "ready");
      error.hidden = true;
    } catch (e) {
      error.textContent = `Live view: ${e.message}`;
      error.hidden = false;
      this.onStatus(e.status === 401 || e.status === 403 ? "needs an API key" : "unreachable", false);
    }
  }

  render() {
    const latest = this.scrapes[this.scrapes.length - 1].samples;
    const oldest = this.scrapes[0];
    const seconds = (this.scrapes[this.scrapes.length - 1].at - oldest.at) / 1000;
    this.renderModels(latest);
    this.renderEndpoints(latest, oldest.samples, seconds);
    this.renderBatches(latest);
  }

  renderModels(samples) {
    const rows = this.models.map((m) => {
      const depth = sum(samples, "gan_queue_depth_units", { model: m.name });
      const role = m.default === false ? (m.canary_share ? " (canary)" : " (pinned only)") : "";
      return [`${m.name} v${m.version}${role}`, m.task, device(m), String(depth)];
    });
    fillTable(this.root.querySelector("#live-models tbody"), rows, "no models served");
  }

  renderEndpoints(latest, before, seconds) {
    const rows = [];
    for (const endpoint of ENDPOINTS) {
      const count = sum(latest, "gan_requests_total", { endpoint });
      const earlier = sum(before, "gan_requests_total", { endpoint });
      const window = bucketDelta(
        buckets(latest, "gan_request_duration_seconds", { endpoint }),
        buckets(before, "gan_request_duration_seconds", { endpoint }),
      );
      const rate = seconds > 0 ? (count - earlier) / seconds : 0;
      rows.push([
        endpoint,
        rate.toFixed(1),
        formatSeconds(quantile(0.5, window)),
        formatSeconds(quantile(0.99, window)),
      ]);
    }
    fillTable(this.root.querySelector("#live-endpoints tbody"), rows, "");
  }

  renderBatches(samples) {
    const box = this.root.querySelector("#live-batches");
    const charts = [];
    // Batches are counted per model name, whichever version ran them: one chart per name.
    for (const m of this.models.filter((v, i, all) => all.findIndex((o) => o.name === v.name) === i)) {
      const bars = histogramBars(buckets(samples, "gan_batch_size_units", { model: m.name }));
      const batches = bars.reduce((total, b) => total + b.count, 0);
      charts.push(batchChart(m.name, bars, batches));
    }
    box.replaceChildren(...charts);
  }
}

function fillTable(tbody, rows, empty) {
  const trs = rows.map((cells) => {
    const tr = document.createElement("tr");
    cells.forEach((text, i) => {
      const cell = document.createElement(i === 0 ? "th" : "td");
      if (i === 0) cell.scope = "row";
      cell.textContent = text;
      tr.append(cell);
    });
    return tr;
  });
  if (!trs.length && empty) {
    const tr = document.createElement("tr");
    const td = document.createElement("td");
    td.colSpan = 4;
    td.textContent = empty;
    tr.append(td);
    trs.push(tr);
  }
  tbody.replaceChildren(...trs);
}

// One model's batch-size histogram as a small bar chart (SVG), with its numbers for screen
// readers in the chart's label.
function batchChart(model, bars, batches) {
  const svgNS = "http://www.w3.org/2000/svg";
  const figure = document.createElement("figure");
  figure.className = "batch-chart";
  const caption = document.createElement("figcaption");
  caption.textContent = `${model}: ${batches} batch${batches === 1 ? "" : "es"}`;
  const shown = bars.filter((b) => Number.isFinite(b.bound));
  const max = Math.max(1, ...shown.map((b) => b.count));
  const width = 16 * shown.length;
  const svg = document.createElementNS(svgNS, "svg");
  svg.setAttribute("viewBox", `0 0 ${width} 60`);
  svg.setAttribute("role", "img");
  const described = shown.filter((b) => b.count > 0).map((b) => `up to ${b.bound}: ${b.count}`);
  svg.setAttribute(
    "aria-label",
    `Batch sizes of ${model}: ${described.length ? described.join(", ") : "no batches yet"}`,
  );
  shown.forEach((b, i) => {
    const height = b.count ? Math.max(1, (44 * b.count) / max) : 0;
    const rect = document.createElementNS(svgNS, "rect");
    rect.setAttribute("x", String(i * 16 + 2));
    rect.setAttribute("y", String(46 - height));
    rect.setAttribute("width", "12");
    rect.setAttribute("height", String(height));
    rect.setAttribute("class", "bar");
    const title = document.createElementNS(svgNS, "title");
    title.textContent = `≤ ${b.bound}: ${b.count}`;
    rect.append(title);
    const text = document.createElementNS(svgNS, "text");
    text.setAttribute("x", String(i * 16 + 8));
    text.setAttribute("y", "58");
    text.setAttribute("class", "axis");
    text.textContent = String(b.bound);
    svg.append(rect, text);
  });
  figure.append(caption, svg);
  return figure;
}
