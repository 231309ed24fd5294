// Calls to the service's API, exactly as any client makes them: the same endpoints, the same
// error bodies ({"error": {"code", "message"}}), the API key as X-API-Key.

export const MAX_SEED = (1n << 63n) - 1n;
const KEY_STORAGE = "gan-serving.api-key";

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

export function apiKey() {
  return sessionStorage.getItem(KEY_STORAGE) || "";
}

export function setApiKey(key) {
  if (key) sessionStorage.setItem(KEY_STORAGE, key);
  else sessionStorage.removeItem(KEY_STORAGE);
}

export function authHeaders() {
  const key = apiKey();
  return key ? { "X-API-Key": key } : {};
}

// fetch() with the key; any answer but 2xx becomes an ApiError carrying the server's message.
export async function call(path, options = {}) {
  const headers = new Headers({ ...(options.headers || {}), ...authHeaders() });
  let response;
  try {
    response = await fetch(path, { ...options, headers });
  } catch (error) {
    // The connection broke before an answer (server gone, or it closed an upload it refused).
    throw new ApiError(0, "network", `no answer from the server (${error.message})`);
  }
  if (!response.ok) throw await errorOf(response);
  return response;
}

async function errorOf(response) {
  const text = await response.text();
  try {
    const body = JSON.parse(text);
    if (body && body.error && body.error.message) {
      return new ApiError(response.status, body.error.code, body.error.message);
    }
  } catch {
    // not the service's JSON error: a proxy's page, say
  }
  const snippet = text.trim().slice(0, 200) || response.statusText;
  return new ApiError(response.status, "http_" + response.status, `HTTP ${response.status}: ${snippet}`);
}

// A seed typed by a person: digits only, 0 to 2^63-1. Kept as a BigInt, since seeds above 2^53
// lose digits as JavaScript numbers.
export function parseSeed(text, what = "seed") {
  const trimmed = String(text).trim();
  if (!/^[0-9]{1,19}$/.test(trimmed)) {
    throw new ApiError(0, "invalid_seed", `${what} must be a whole number from 0 to ${MAX_SEED}`);
  }
  const seed = BigInt(trimmed);
  if (seed > MAX_SEED) {
    throw new ApiError(0, "invalid_seed", `${what} must be at most ${MAX_SEED}`);
  }
  return seed;
}

export function randomSeed() {
  return BigInt(crypto.getRandomValues(new Uint32Array(1))[0]);
}

// JSON with BigInt values written as plain numbers (JSON.stringify refuses BigInt).
export function jsonBody(value) {
  const marked = JSON.stringify(value, (_, v) => (typeof v === "bigint" ? `\u0000big:${v}` : v));
  return marked.replace(/"\\u0000big:(\d+)"/g, "$1");
}

export async function postJson(path, body) {
  const response = await call(path, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: jsonBody(body),
  });
  return response.json();
}

export const NDJSON = "application/x-ndjson";

// An answer asked for with Accept: application/x-ndjson: one parsed object per line, as each line
// arrives. A line {"error": {"code", "message"}} (a failure after the answer began, so the status
// was already 200) becomes an ApiError, as does a connection that breaks off mid-answer.
export async function* ndjson(response) {
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let pending = "";
  for (;;) {
    let chunk;
    try {
      chunk = await reader.read();
    } catch (error) {
      throw new ApiError(0, "network", `the answer broke off (${error.message})`);
    }
    pending += chunk.value || "";
    const lines = pending.split("\n");
    pending = chunk.done ? "" : lines.pop();
    for (const line of lines) {
      if (!line.trim()) continue;
      const item = JSON.parse(line);
      if (item.error) throw new ApiError(0, item.error.code, item.error.message);
      yield item;
    }
    if (chunk.done) return;
  }
}

// POST a JSON body, asking for the answer as NDJSON: the lines, as ndjson() reads them.
export async function postNdjson(path, body) {
  const response = await call(path, {
    method: "POST",
    headers: { "Content-Type": "application/json", Accept: NDJSON },
    body: jsonBody(body),
  });
  return ndjson(response);
}

// base64 (as /generate and /walk answer) -> a Blob of the given type.
export function blobOf(base64, type) {
  const bytes = Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
  return new Blob([bytes], { type });
}

export const MEDIA_TYPES = { png: "image/png", jpeg: "image/jpeg", webp: "image/webp" };
export const EXTENSIONS = {
  "image/png": "png", "image/jpeg": "jpg", "image/webp": "webp", "image/gif": "gif", "image/apng": "png",
};

// "CPUExecutionProvider" -> "CPU": the provider's short name, for tight places.
export function device(model) {
  return String(model.provider).replace(/ExecutionProvider$/, "");
}
