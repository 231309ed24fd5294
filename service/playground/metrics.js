// The Prometheus text format read in the browser: samples, rates between two scrapes, and
// quantiles from histogram buckets (the way PromQL's histogram_quantile computes them).

// "name{a="x",b="y"} 12.5" lines -> [{name, labels: {a: "x", b: "y"}, value}]
export function parseMetrics(text) {
  const samples = [];
  for (const line of text.split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)/.exec(line);
    if (!match) continue;
    const labels = {};
    const pairs = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;
    let pair;
    while ((pair = pairs.exec(match[2] || "")) !== null) {
      labels[pair[1]] = pair[2].replace(/\\n/g, "\n").replace(/\\"/g, '"').replace(/\\\\/g, "\\");
    }
    samples.push({ name: match[1], labels, value: Number(match[3]) });
  }
  return samples;
}

// The samples of one metric whose labels include `where`.
export function select(samples, name, where = {}) {
  return samples.filter(
    (s) => s.name === name && Object.entries(where).every(([k, v]) => s.labels[k] === v),
  );
}

export function sum(samples, name, where = {}) {
  return select(samples, name, where).reduce((total, s) => total + s.value, 0);
}

// Cumulative bucket counts {le: count}, summed over every series that matches `where`.
export function buckets(samples, name, where = {}) {
  const out = new Map();
  for (const s of select(samples, name + "_bucket", where)) {
    const le = s.labels.le === "+Inf" ? Infinity : Number(s.labels.le);
    out.set(le, (out.get(le) || 0) + s.value);
  }
  return out;
}

// Bucket counts of `now` minus those of `before` (what happened between two scrapes).
export function bucketDelta(now, before) {
  const out = new Map();
  for (const [le, count] of now) out.set(le, count - (before.get(le) || 0));
  return out;
}

// The q-quantile (0 < q < 1) of cumulative buckets: linear within the bucket it falls in; the
// +Inf bucket answers the highest finite bound. null when there are no observations.
export function quantile(q, cumulative) {
  const bounds = [...cumulative.keys()].sort((a, b) => a - b);
  if (!bounds.length) return null;
  const total = cumulative.get(bounds[bounds.length - 1]);
  if (!(total > 0)) return null;
  const rank = q * total;
  let lowerBound = 0;
  let lowerCount = 0;
  for (const bound of bounds) {
    const count = cumulative.get(bound);
    if (count >= rank) {
      if (bound === Infinity) return bounds.length > 1 ? bounds[bounds.length - 2] : null;
      if (count === lowerCount) return bound;
      return lowerBound + ((bound - lowerBound) * (rank - lowerCount)) / (count - lowerCount);
    }
    lowerBound = bound;
    lowerCount = count;
  }
  return bounds[bounds.length - 1];
}

// Cumulative buckets -> per-bucket counts, in order: [{label: "≤ 4", count}]. A bucket's label is
// its upper bound; with integer-valued observations (batch sizes) "≤ 4" holds 3 and 4.
export function histogramBars(cumulative) {
  const bounds = [...cumulative.keys()].sort((a, b) => a - b);
  const bars = [];
  let previous = 0;
  for (const bound of bounds) {
    const count = cumulative.get(bound);
    bars.push({ bound, count: count - previous });
    previous = count;
  }
  return bars;
}

// Seconds -> "4.2 ms" / "1.25 s".
export function formatSeconds(seconds) {
  if (seconds === null || !Number.isFinite(seconds)) return "–";
  if (seconds < 1) return `${(seconds * 1000).toPrecision(3)} ms`;
  return `${seconds.toPrecision(3)} s`;
}
