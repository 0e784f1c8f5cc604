// Server-process harness shared by the end-to-end tests (server/e2e/test/*.test.js): pick a free port, spawn
// a binary, wait until the port accepts connections, make sure it is answered by *this* process
// (its node id prefixes the Engine.IO sid), retry on another port otherwise, and stop it again.
//
// Test-runner agnostic and built on node: modules only, so importing it from another package needs
// no npm dependencies. It lives outside test/ on purpose: Node 20's `node --test test/` runs every
// .js file of a test/ directory.

import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { accessSync, constants, readFileSync, readdirSync } from "node:fs";
import net from "node:net";
import path from "node:path";
import { fileURLToPath } from "node:url";

const HOST = "127.0.0.1";

/** The workspace root (this file is server/e2e/harness.js). */
export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");

/** The binary named by `process.env[envVar]` (relative to the cwd), else `fallback` under REPO_ROOT. */
export function binaryPath(envVar, fallback) {
  return process.env[envVar] ? path.resolve(process.env[envVar]) : path.resolve(REPO_ROOT, fallback);
}

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Rejects after `ms` with a message, so a missing event fails the test instead of hanging it. */
export function withTimeout(promise, ms, what) {
  let timer;
  return Promise.race([
    promise,
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

/** Throws (with `hint` on how to get it) unless `file` is an executable file. */
export function assertExecutable(file, hint) {
  try {
    accessSync(file, constants.X_OK);
  } catch {
    throw new Error(`${file} not found or not executable.\n${hint}`);
  }
}

/** A port that was free a moment ago (the OS picks it for port 0; we release it for the server). */
export function freePort(host = HOST) {
  return new Promise((resolve, reject) => {
    const probe = net.createServer();
    probe.unref();
    probe.on("error", reject);
    probe.listen(0, host, () => {
      const { port } = probe.address();
      probe.close(() => resolve(port));
    });
  });
}

/** Whether something accepts a TCP connection on `host:port` right now. */
export function canConnect(port, host = HOST) {
  return new Promise((resolve) => {
    const sock = net.connect({ port, host });
    sock.once("connect", () => {
      sock.destroy();
      resolve(true);
    });
    sock.once("error", () => resolve(false));
  });
}

/**
 * Polls `host:port` until it accepts a connection (resolves `true`). If the promise `until` settles
 * first, resolves with its value instead (e.g. the watched process exited). Rejects after
 * `timeoutMs`.
 */
export async function waitForPort(port, { host = HOST, timeoutMs = 10_000, intervalMs = 20, until } = {}) {
  const stopped = until ? until.then((value) => ({ value })) : new Promise(() => {});
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const outcome = await Promise.race([canConnect(port, host), stopped]);
    if (outcome === true) return true;
    if (outcome !== false) return outcome.value;
    await sleep(intervalMs);
  }
  throw new Error(`nothing accepted connections on ${host}:${port} within ${timeoutMs} ms`);
}

/**
 * The default ready check: an Engine.IO polling handshake on `enginePath` answers with a sid that
 * starts with this process's node id (so the port is not answered by another process).
 */
export async function handshakeHasNodeId({ url, nodeId }, enginePath = "/socket.io/") {
  const res = await fetch(`${url}${enginePath}?EIO=4&transport=polling`).catch(() => null);
  const body = res ? await res.text() : "";
  let sid = "";
  try {
    sid = body.startsWith("0") ? JSON.parse(body.slice(1)).sid : "";
  } catch {}
  return typeof sid === "string" && sid.startsWith(`${nodeId}.`);
}

/**
 * Sends SIGSTOP to `pid` and resolves once every one of its threads is stopped (state `T` in
 * /proc/<pid>/task/<tid>/stat; Linux only). kill(2) returns before that: the kernel stops a process
 * only when one of its threads next runs, so under CPU load a "frozen" multi-threaded server can
 * go on answering requests for milliseconds. On timeout it sends SIGCONT and rejects.
 */
export async function freezeProcess(pid, { timeoutMs = 5000 } = {}) {
  const running = () =>
    readdirSync(`/proc/${pid}/task`).filter((tid) => {
      let stat;
      try {
        stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, "utf8");
      } catch {
        return false; // the thread exited meanwhile
      }
      // "<tid> (<comm>) <state> ...": comm may hold spaces and parentheses, the state follows the last ')'.
      return stat[stat.lastIndexOf(")") + 2] !== "T";
    });
  process.kill(pid, "SIGSTOP");
  const deadline = Date.now() + timeoutMs;
  let left = running();
  while (left.length > 0) {
    if (Date.now() >= deadline) {
      process.kill(pid, "SIGCONT");
      throw new Error(`threads ${left.join(", ")} of process ${pid} were not stopped ${timeoutMs} ms after SIGSTOP`);
    }
    await sleep(1);
    left = running();
  }
}

async function stopChild(child, exited) {
  if (child.exitCode !== null || child.signalCode !== null) return;
  child.kill("SIGTERM");
  const timer = setTimeout(() => child.kill("SIGKILL"), 3000);
  await exited;
  clearTimeout(timer);
}

const valueOf = (option, context) => (typeof option === "function" ? option(context) : option);

/** Starts one server process on `port`: `{ ok: true, server }`, or `{ ok: false, reason }` to retry. */
async function startOnce(port, options) {
  const { bin, args, env, nodeIdPrefix, enginePath, readyCheck, startTimeoutMs, outputLimit } = options;
  const nodeId = `${nodeIdPrefix}-${randomBytes(4).toString("hex")}`;
  const context = { port, nodeId };
  const child = spawn(bin, valueOf(args, context), {
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, ...valueOf(env, context) },
  });
  let output = "";
  const collect = (chunk) => {
    output = (output + chunk).slice(-outputLimit);
  };
  child.stdout.setEncoding("utf8").on("data", collect);
  child.stderr.setEncoding("utf8").on("data", collect);
  const exited = new Promise((resolve) => child.once("exit", (code, signal) => resolve({ code, signal })));
  let exit = null;
  exited.then((e) => (exit = e));
  const spawnError = new Promise((resolve) => child.once("error", resolve));
  const stop = () => stopChild(child, exited);

  let outcome;
  try {
    outcome = await waitForPort(port, {
      timeoutMs: startTimeoutMs,
      until: Promise.race([exited.then(() => "exited"), spawnError]),
    });
  } catch {
    await stop();
    throw new Error(
      `${path.basename(bin)} did not accept connections on port ${port} within ${startTimeoutMs} ms:\n${output}`,
    );
  }
  if (outcome instanceof Error) throw new Error(`cannot run ${bin}: ${outcome.message}`);
  if (outcome === "exited" || exit) {
    return { ok: false, reason: `exited early (${JSON.stringify(exit)}):\n${output}` };
  }
  // Something listens: make sure it is our process (the port may have been taken meanwhile).
  // `signal(name)` sends a signal (e.g. the drain on SIGTERM); `freeze()` stops the process and
  // resolves once it is stopped (SIGCONT thaws it); `exited` resolves with {code, signal}.
  const signal = (name) => child.kill(name);
  const freeze = () => freezeProcess(child.pid);
  const server = { port, url: `http://${HOST}:${port}`, nodeId, output: () => output, stop, signal, freeze, exited };
  const ours = readyCheck ? await readyCheck(server) : await handshakeHasNodeId(server, enginePath);
  if (ours) return { ok: true, server };
  await stop();
  return { ok: false, reason: `port ${port} is answered by another process` };
}

/**
 * Starts `bin` on a free port of 127.0.0.1, retrying with another port when it was taken in between.
 *
 * - `args`, `env`: the command-line arguments and the environment added to `process.env`; either a
 *   value or a function of `{ port, nodeId }` (how the port and node id reach the server is up to
 *   the caller: flags, environment variables, ...).
 * - `nodeIdPrefix`: the node id is `<prefix>-<8 hex digits>`, fresh for every attempt.
 * - `readyCheck(server)`: resolves true once the listener is this process; by default the Engine.IO
 *   handshake on `enginePath` must carry the node id in its sid.
 * - `hint`: appended to the error when `bin` is missing.
 * - `outputLimit`: how many of the last characters of stdout+stderr to keep (default: all).
 *
 * Resolves with `{ port, url, nodeId, output(), stop(), signal(name), freeze(), exited }`.
 */
export async function startServer({
  bin,
  args = [],
  env = {},
  nodeIdPrefix = "e2e",
  enginePath = "/socket.io/",
  readyCheck,
  hint = "",
  retries = 5,
  startTimeoutMs = 10_000,
  outputLimit = Infinity,
}) {
  assertExecutable(bin, hint);
  const options = { bin, args, env, nodeIdPrefix, enginePath, readyCheck, startTimeoutMs, outputLimit };
  const failures = [];
  for (let attempt = 0; attempt < retries; attempt++) {
    const result = await startOnce(await freePort(), options);
    if (result.ok) return result.server;
    failures.push(result.reason);
  }
  throw new Error(`could not start ${bin} after ${retries} attempts:\n${failures.join("\n---\n")}`);
}

// ---------------------------------------------------------------------------------------------
// Brokers (test/cluster.test.js): real redis-server and nats-server processes on free ports,
// ready once they answer (redis: INFO with our process id; nats: PING with PONG), killed and
// restarted on the same port for fault tests.
// ---------------------------------------------------------------------------------------------

/**
 * The path of the executable `name`: `process.env[envVar]` if set, else the first hit on PATH or in
 * `extraDirs`. Throws with `hint` (how to install it) when there is none.
 */
export function findExecutable(name, { envVar, extraDirs = [], hint = "" } = {}) {
  if (envVar && process.env[envVar]) {
    const file = path.resolve(process.env[envVar]);
    assertExecutable(file, hint);
    return file;
  }
  const dirs = [...(process.env.PATH ?? "").split(path.delimiter).filter(Boolean), ...extraDirs];
  for (const dir of dirs) {
    const file = path.join(dir, name);
    try {
      accessSync(file, constants.X_OK);
      return file;
    } catch {}
  }
  throw new Error(`${name} not found (looked on PATH and in ${extraDirs.join(", ") || "nothing else"}).\n${hint}`);
}

/**
 * Sends raw bytes to `host:port` and resolves with what came back once `done(text)` holds.
 * Rejects on a connection error, or after `timeoutMs`.
 */
export function exchange(port, payload, done, { host = HOST, timeoutMs = 1000 } = {}) {
  return new Promise((resolve, reject) => {
    let received = "";
    const sock = net.connect({ port, host });
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new Error(`no complete answer from ${host}:${port} within ${timeoutMs} ms (got ${JSON.stringify(received)})`));
    }, timeoutMs);
    const finish = (error) => {
      clearTimeout(timer);
      sock.destroy();
      error ? reject(error) : resolve(received);
    };
    sock.setEncoding("utf8");
    sock.once("connect", () => sock.write(payload));
    sock.on("data", (chunk) => {
      received += chunk;
      if (done(received)) finish();
    });
    sock.once("error", finish);
    sock.once("close", () => finish(new Error(`${host}:${port} closed the connection (got ${JSON.stringify(received)})`)));
  });
}

/** Parses one RESP reply at `at`: `{ value, end }`, or null while incomplete. Errors become Error values. */
function parseResp(text, at = 0) {
  const eol = text.indexOf("\r\n", at);
  if (eol < 0) return null;
  const line = text.slice(at + 1, eol);
  const next = eol + 2;
  switch (text[at]) {
    case "+":
      return { value: line, end: next };
    case "-":
      return { value: new Error(line), end: next };
    case ":":
      return { value: Number(line), end: next };
    case "$": {
      const len = Number(line);
      if (len < 0) return { value: null, end: next };
      if (Buffer.byteLength(text.slice(next)) < len + 2) return null;
      // Test values are ASCII, so characters are bytes.
      return { value: text.slice(next, next + len), end: next + len + 2 };
    }
    case "*": {
      const count = Number(line);
      const items = [];
      let pos = next;
      for (let i = 0; i < count; i++) {
        const item = parseResp(text, pos);
        if (!item) return null;
        items.push(item.value);
        pos = item.end;
      }
      return { value: count < 0 ? null : items, end: pos };
    }
    default:
      throw new Error(`not a RESP reply: ${JSON.stringify(text.slice(at, at + 40))}`);
  }
}

/** Runs one Redis command on `port` over a fresh connection and resolves with its reply. */
export async function redisCommand(port, args, options) {
  const payload = `*${args.length}\r\n` + args.map((a) => `$${Buffer.byteLength(String(a))}\r\n${a}\r\n`).join("");
  const text = await exchange(port, payload, (t) => parseResp(t) !== null, options);
  return parseResp(text).value;
}

/** Whether a NATS server on `port` answers PING with PONG (after its INFO and our CONNECT). */
async function natsPing(port, options) {
  const text = await exchange(port, 'CONNECT {"verbose":false,"pedantic":false}\r\nPING\r\n', (t) => /PONG\r\n/.test(t), options);
  return /PONG\r\n/.test(text);
}

/**
 * Polls `ping()` until it resolves true, or "foreign" (another process answers). Resolves
 * `{ ready }`, `{ foreign }`, or `{ exited }` as soon as the process exits; rejects after `timeoutMs`.
 */
async function untilPong(ping, { timeoutMs, exited, what }) {
  const deadline = Date.now() + timeoutMs;
  let stopped = null;
  exited.then((e) => (stopped = e));
  let last = "";
  while (Date.now() < deadline) {
    if (stopped) return { exited: stopped };
    try {
      const answer = await ping();
      if (answer === "foreign") return { foreign: true };
      if (answer) return { ready: true };
    } catch (e) {
      last = e.message;
    }
    await sleep(20);
  }
  throw new Error(`${what} did not answer PING within ${timeoutMs} ms (${last})`);
}

/**
 * A broker process with a fixed port once started: `{ port, url, output(), kill(signal), restart(),
 * stop() }`. `kill` resolves once the process is gone; `restart` starts it again on the same port
 * and resolves once it answers again.
 */
function brokerProcess({ name, bin, argsFor, urlFor, ping, readPort, startTimeoutMs, outputLimit }) {
  let child = null;
  let exited = null;
  let output = "";
  const spawnOn = (port) => {
    child = spawn(bin, argsFor(port), { stdio: ["ignore", "pipe", "pipe"] });
    const collect = (chunk) => {
      output = (output + chunk).slice(-outputLimit);
    };
    child.stdout.setEncoding("utf8").on("data", collect);
    child.stderr.setEncoding("utf8").on("data", collect);
    exited = new Promise((resolve) => {
      child.once("exit", (code, signal) => resolve({ code, signal }));
      child.once("error", (error) => resolve({ error: error.message }));
    });
  };
  const broker = {
    port: null,
    get url() {
      return urlFor(broker.port);
    },
    output: () => output,
    /** Starts on `port` (null: let `readPort` find it in the log). Resolves `{ ok, reason }`. */
    async start(port) {
      output = "";
      spawnOn(port);
      if (port === null) {
        let found;
        try {
          found = await readPort(() => output, exited, startTimeoutMs);
        } catch (e) {
          await broker.kill();
          throw e;
        }
        if (!found.port) return { ok: false, reason: `${name} exited early (${JSON.stringify(found.exited)}):\n${output}` };
        port = found.port;
      }
      broker.port = port;
      try {
        const pid = child.pid;
        const what = `${name} on port ${port}`;
        const outcome = await untilPong(() => ping(port, pid), { timeoutMs: startTimeoutMs, exited, what });
        if (outcome.exited) return { ok: false, reason: `${name} exited early (${JSON.stringify(outcome.exited)}):\n${output}` };
        if (outcome.foreign) {
          await broker.kill();
          return { ok: false, reason: `port ${port} is answered by another ${name}` };
        }
        return { ok: true };
      } catch (e) {
        await broker.kill();
        throw new Error(`${e.message}\n${output}`);
      }
    },
    /** Kills the process (SIGKILL by default: a broker that dies, not one that says goodbye). */
    async kill(signal = "SIGKILL") {
      if (!child || child.exitCode !== null || child.signalCode !== null) return;
      child.kill(signal);
      await exited;
    },
    /** Starts it again on the same port (retrying briefly while the old socket lingers). */
    async restart() {
      await broker.kill();
      const failures = [];
      for (let attempt = 0; attempt < 10; attempt++) {
        const result = await broker.start(broker.port);
        if (result.ok) return;
        failures.push(result.reason);
        await sleep(100);
      }
      throw new Error(`could not restart ${name} on port ${broker.port}:\n${failures.join("\n---\n")}`);
    },
    /** Stops it (SIGTERM, then SIGKILL after 3 s). */
    async stop() {
      const timer = setTimeout(() => child?.kill("SIGKILL"), 3000);
      await broker.kill("SIGTERM");
      clearTimeout(timer);
    },
  };
  return broker;
}

/** Where Debian and hand installs put broker binaries that may not be on a user's PATH. */
const BROKER_DIRS = ["/usr/sbin", "/usr/local/bin", "/usr/local/sbin"];
const REDIS_HINT = "Install it with: sudo apt-get install redis-server (or set REDIS_SERVER_BIN).";
const NATS_HINT =
  "Install it with: sudo apt-get install nats-server (Debian puts it in /usr/sbin; or set NATS_SERVER_BIN).";

/**
 * Starts `redis-server` on a free port of 127.0.0.1 (no persistence), retrying with another port
 * when it was taken in between; resolves once it answers as this process. See `brokerProcess` for the handle
 * (`url` is `redis://127.0.0.1:<port>`).
 */
export async function startRedis({ retries = 5, startTimeoutMs = 10_000, outputLimit = 8000 } = {}) {
  const bin = findExecutable("redis-server", { envVar: "REDIS_SERVER_BIN", extraDirs: BROKER_DIRS, hint: REDIS_HINT });
  const broker = brokerProcess({
    name: "redis-server",
    bin,
    argsFor: (port) => ["--port", String(port), "--bind", HOST, "--save", "", "--appendonly", "no", "--protected-mode", "no"],
    urlFor: (port) => `redis://${HOST}:${port}`,
    // Ready when it answers; ours when the answer names our process (the port may have been taken).
    ping: async (port, pid) => {
      const info = await redisCommand(port, ["INFO", "server"], { timeoutMs: 500 });
      if (typeof info !== "string") return false;
      return info.includes(`\r\nprocess_id:${pid}\r\n`) ? true : "foreign";
    },
    startTimeoutMs,
    outputLimit,
  });
  const failures = [];
  for (let attempt = 0; attempt < retries; attempt++) {
    const result = await broker.start(await freePort());
    if (result.ok) return broker;
    failures.push(result.reason);
  }
  throw new Error(`could not start redis-server after ${retries} attempts:\n${failures.join("\n---\n")}`);
}

/**
 * Starts `nats-server` on 127.0.0.1 with `-p -1` (it picks a free port, read from its log);
 * resolves once it answers PING. See `brokerProcess` for the handle (`url` is `nats://...`).
 */
export async function startNats({ startTimeoutMs = 10_000, outputLimit = 8000 } = {}) {
  const bin = findExecutable("nats-server", { envVar: "NATS_SERVER_BIN", extraDirs: BROKER_DIRS, hint: NATS_HINT });
  const broker = brokerProcess({
    name: "nats-server",
    bin,
    argsFor: (port) => ["-a", HOST, "-p", port === null ? "-1" : String(port)],
    urlFor: (port) => `nats://${HOST}:${port}`,
    ping: (port) => natsPing(port, { timeoutMs: 500 }),
    readPort: async (output, exited, timeoutMs) => {
      let gone = null;
      exited.then((e) => (gone = e));
      const deadline = Date.now() + timeoutMs;
      while (Date.now() < deadline && !gone) {
        const match = /Listening for client connections on [^\s]*:(\d+)/.exec(output());
        if (match) return { port: Number(match[1]) };
        await sleep(20);
      }
      if (gone) return { exited: gone };
      throw new Error(`nats-server printed no client port within ${timeoutMs} ms:\n${output()}`);
    },
    startTimeoutMs,
    outputLimit,
  });
  const result = await broker.start(null);
  if (!result.ok) throw new Error(`could not start nats-server:\n${result.reason}`);
  return broker;
}
