// Test harness of the end-to-end tests: starts a real `moeserve serve` daemon on free loopback
// ports with the tiny DeepSeek-V3 checkpoint and its test tokenizer, waits until it serves,
// and stops it with SIGTERM. Also small HTTP helpers (JSON requests, server-sent events,
// Prometheus metrics). Every wait is bounded.
//
// Environment: MOESERVE_BIN (the moeserve binary), MOESERVE_SOURCE_DIR (the source tree),
// MOESERVE_E2E_ARGS (optional: flags added to every daemon, split on spaces, e.g.
// "--backend cuda --gpu-memory-fraction 0.02" for the CUDA backend on the SIMT emulator).
import { spawn } from "node:child_process";
import { createServer } from "node:net";
import { join } from "node:path";
import assert from "node:assert/strict";

export const SOURCE_DIR = process.env.MOESERVE_SOURCE_DIR ?? join(import.meta.dirname ?? ".", "../..");
export const MOESERVE_BIN = process.env.MOESERVE_BIN;
export const MODEL_DIR = join(SOURCE_DIR, "tests/data/tiny/v3_tiny");
export const TOKENIZER_DIR = join(SOURCE_DIR, "tests/data/tiny/tokenizer_512");
export const MODEL_ID = "v3_tiny"; // the served name defaults to the model directory's name
export const VOCAB_SIZE = 512;
export const MAX_MODEL_LEN = 256; // the tiny model's max_position_embeddings

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// `promise`, or a rejection with `message` after `ms`; the timer never outlives the race (a
// pending timer would keep the test process alive).
export async function withTimeout(promise, ms, message) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${message} (after ${ms} ms)`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

// A free TCP port on 127.0.0.1: bind port 0, read the port, close.
export function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.on("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

// Polls `check` (async, returns a truthy value when done) every `intervalMs` until it is truthy
// or `timeoutMs` passed; returns the value or throws with `what` and the last value seen. An
// error thrown by `check` counts as "not yet", unless it has `fatal` set.
export async function waitFor(what, check, { timeoutMs = 10000, intervalMs = 100 } = {}) {
  const deadline = Date.now() + timeoutMs;
  let last;
  for (;;) {
    try {
      last = await check();
      if (last) return last;
    } catch (e) {
      if (e.fatal) throw e;
      last = e;
    }
    if (Date.now() >= deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}; last: ${String(last)}`);
    }
    await sleep(intervalMs);
  }
}

// fetch with a bounded time.
export async function fetchWithTimeout(url, options = {}, timeoutMs = 60000) {
  return fetch(url, { ...options, signal: options.signal ?? AbortSignal.timeout(timeoutMs) });
}

export class Daemon {
  constructor(proc, port, grpcPort, apiKey) {
    this.proc = proc;
    this.port = port;
    this.grpcPort = grpcPort;
    this.apiKey = apiKey;
    this.baseUrl = `http://127.0.0.1:${port}`;
    this.grpcAddress = `127.0.0.1:${grpcPort}`;
    this.log = "";
    this.exit = null; // {code, signal} once exited
    this.startupResponses = []; // non-200 answers to GET /health while starting: {status, body, retryAfter}
    this.exited = new Promise((resolve) => {
      proc.on("exit", (code, signal) => {
        this.exit = { code, signal };
        resolve(this.exit);
      });
    });
    const keep = (chunk) => {
      this.log += chunk.toString("utf8");
      // Keep the last 4 MB: enough to debug, bounded under long runs.
      if (this.log.length > 8 << 20) this.log = this.log.slice(-(4 << 20));
    };
    proc.stdout.on("data", keep);
    proc.stderr.on("data", keep);
  }

  url(path) {
    return this.baseUrl + path;
  }

  authHeaders() {
    return this.apiKey ? { authorization: `Bearer ${this.apiKey}` } : {};
  }

  // The last `n` characters of the daemon's output, for assertion messages.
  tail(n = 4000) {
    return this.log.slice(-n);
  }

  // SIGTERM, then waits (bounded) for the exit; SIGKILL past the wait. Returns {code, signal}.
  async stop({ timeoutMs = 30000 } = {}) {
    if (this.exit) return this.exit;
    this.proc.kill("SIGTERM");
    try {
      return await withTimeout(this.exited, timeoutMs, "daemon did not exit after SIGTERM");
    } catch (e) {
      this.proc.kill("SIGKILL");
      await this.exited;
      throw new Error(`${e.message}\n${this.tail()}`);
    }
  }

  // Stops and checks a clean exit (code 0).
  async stopAndCheck(options) {
    const exit = await this.stop(options);
    assert.deepEqual(exit, { code: 0, signal: null }, `daemon exit\n${this.tail()}`);
  }
}

// Starts `moeserve serve` with the tiny model and waits until GET /health is 200.
// `args`: extra flags. `apiKey`: passed with --api-key. `bundledModel`: no --model and
// --tokenizer, so the daemon serves its default, the bundled models/tiny.
export async function startDaemon({ args = [], apiKey = null, timeoutMs = 60000, bundledModel = false } = {}) {
  assert.ok(MOESERVE_BIN, "MOESERVE_BIN is not set (the moeserve binary)");
  const port = await freePort();
  let grpcPort = await freePort();
  while (grpcPort === port) grpcPort = await freePort();
  const argv = [
    "serve",
    ...(bundledModel ? [] : ["--model", MODEL_DIR, "--tokenizer", TOKENIZER_DIR]),
    "--host", "127.0.0.1",
    "--port", String(port),
    "--grpc-port", String(grpcPort),
    ...(apiKey ? ["--api-key", apiKey] : []),
    // 64 MiB of KV cache (thousands of blocks) is plenty for the tiny model and starts faster.
    ...(args.some((a) => a.startsWith("--kv-cache")) ? [] : ["--kv-cache-memory-mb", "64"]),
    ...(process.env.MOESERVE_E2E_ARGS ?? "").split(" ").filter((a) => a !== ""),
    ...args,
  ];
  const proc = spawn(MOESERVE_BIN, argv, { stdio: ["ignore", "pipe", "pipe"] });
  const daemon = new Daemon(proc, port, grpcPort, apiKey);
  let spawnError = null;
  proc.on("error", (e) => (spawnError = e));
  const fatal = (message) => Object.assign(new Error(message), { fatal: true });
  try {
    await waitFor(
      "GET /health == 200",
      async () => {
        if (spawnError) throw fatal(`cannot run ${MOESERVE_BIN}: ${spawnError.message}`);
        if (daemon.exit) throw fatal(`daemon exited while starting: ${JSON.stringify(daemon.exit)}`);
        const r = await fetchWithTimeout(daemon.url("/health"), {}, 2000);
        const body = await r.text();
        if (r.status !== 200) {
          daemon.startupResponses.push({ status: r.status, body, retryAfter: r.headers.get("retry-after") });
        }
        return r.status === 200;
      },
      { timeoutMs, intervalMs: 100 },
    );
  } catch (e) {
    if (!daemon.exit && !spawnError) {
      proc.kill("SIGKILL");
      await withTimeout(daemon.exited, 5000, "daemon did not die on SIGKILL").catch(() => {});
    }
    throw new Error(`${e.message}\n--- daemon output ---\n${daemon.tail()}`);
  }
  return daemon;
}

// POST (or other method) with a JSON body; returns {status, headers, text, json}.
export async function request(daemon, path, { method = "POST", body, headers = {}, rawBody, timeoutMs = 60000 } = {}) {
  const init = { method, headers: { ...daemon.authHeaders(), ...headers } };
  if (rawBody !== undefined) {
    init.body = rawBody;
    init.headers["content-type"] ??= "application/json";
  } else if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers["content-type"] = "application/json";
  }
  const r = await fetchWithTimeout(daemon.url(path), init, timeoutMs);
  const text = await r.text();
  let json = null;
  try {
    json = JSON.parse(text);
  } catch {
    // not JSON: leave null
  }
  return { status: r.status, headers: r.headers, text, json };
}

// Parses a text/event-stream body into the list of `data:` payloads ("[DONE]" kept as a string,
// the rest JSON-parsed).
export function parseSse(text) {
  const events = [];
  for (const block of text.split("\n\n")) {
    const data = block
      .split("\n")
      .filter((l) => l.startsWith("data:"))
      .map((l) => l.slice(5).replace(/^ /, ""))
      .join("\n");
    if (data === "") continue;
    events.push(data === "[DONE]" ? data : JSON.parse(data));
  }
  return events;
}

// POSTs a streaming request and returns {status, events} once the stream ended.
export async function streamRequest(daemon, path, body, { timeoutMs = 120000, headers = {} } = {}) {
  const r = await fetchWithTimeout(
    daemon.url(path),
    {
      method: "POST",
      headers: { "content-type": "application/json", ...daemon.authHeaders(), ...headers },
      body: JSON.stringify({ ...body, stream: true }),
    },
    timeoutMs,
  );
  const text = await r.text();
  if (r.status !== 200) return { status: r.status, headers: r.headers, events: [], text };
  return { status: r.status, headers: r.headers, events: parseSse(text), text };
}

// GET /metrics parsed into [{name, labels: {…}, value}].
export async function metrics(daemon) {
  const r = await fetchWithTimeout(daemon.url("/metrics"), {}, 10000);
  assert.equal(r.status, 200);
  const samples = [];
  for (const line of (await r.text()).split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const m = line.match(/^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)/);
    if (!m) continue;
    const labels = {};
    for (const l of (m[2] ?? "").matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]] = l[2];
    samples.push({ name: m[1], labels, value: Number(m[3]) });
  }
  return samples;
}

// Sum of the samples named `name` whose labels include `labels`.
export function metricValue(samples, name, labels = {}) {
  let sum = 0;
  let found = false;
  for (const s of samples) {
    if (s.name !== name) continue;
    if (!Object.entries(labels).every(([k, v]) => s.labels[k] === v)) continue;
    sum += s.value;
    found = true;
  }
  return found ? sum : undefined;
}

// Waits (bounded) until no request runs and no KV-cache block is in use.
export async function waitIdle(daemon, timeoutMs = 20000) {
  return waitFor(
    "vllm:num_requests_running == 0 and vllm:kv_cache_usage_perc == 0",
    async () => {
      const m = await metrics(daemon);
      const running = metricValue(m, "vllm:num_requests_running");
      const waiting = metricValue(m, "vllm:num_requests_waiting");
      const kv = metricValue(m, "vllm:kv_cache_usage_perc");
      if (running === undefined || kv === undefined) throw new Error("metrics missing");
      return running === 0 && (waiting ?? 0) === 0 && kv === 0
        ? { running, waiting, kv }
        : false;
    },
    { timeoutMs, intervalMs: 100 },
  );
}

// A chat request body for the served model.
export function chatBody(content, extra = {}) {
  return { model: MODEL_ID, messages: [{ role: "user", content }], ...extra };
}

// A completions request body for the served model.
export function completionBody(prompt, extra = {}) {
  return { model: MODEL_ID, prompt, ...extra };
}

// Checks an OpenAI error body: {"error": {"message", "type", "param", "code"}}.
export function assertErrorBody(json, { type, param, code, message } = {}) {
  assert.ok(json && typeof json === "object", `error body is not JSON: ${JSON.stringify(json)}`);
  assert.ok(json.error && typeof json.error === "object", `no "error" object: ${JSON.stringify(json)}`);
  const e = json.error;
  for (const key of ["message", "type", "param", "code"]) {
    assert.ok(key in e, `error.${key} missing: ${JSON.stringify(json)}`);
  }
  assert.equal(typeof e.message, "string");
  assert.ok(e.message.length > 0, "empty error message");
  assert.equal(typeof e.type, "string");
  if (type !== undefined) assert.equal(e.type, type, JSON.stringify(json));
  if (param !== undefined) assert.equal(e.param, param, JSON.stringify(json));
  if (code !== undefined) assert.equal(e.code, code, JSON.stringify(json));
  if (message !== undefined) assert.match(e.message, message, JSON.stringify(json));
}
