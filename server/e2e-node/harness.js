// Server-process harness shared by the end-to-end tests (server/e2e-node/test/*.test.js and
// server/e2e-browser/test/demo.test.js, which imports it by relative path): pick a free port, spawn
// a binary, wait until the port accepts connections, make sure it is answered by *this* process
// (its node id prefixes the Engine.IO sid), retry on another port otherwise, and stop it again.
//
// Test-runner agnostic and built on node: modules only, so importing it from another package needs
// no npm dependencies. It lives outside test/ on purpose: Node 20's `node --test test/` runs every
// .js file of a test/ directory.

import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { accessSync, constants } from "node:fs";
import net from "node:net";
import path from "node:path";
import { fileURLToPath } from "node:url";

const HOST = "127.0.0.1";

/** The workspace root (this file is server/e2e-node/harness.js). */
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
  const server = { port, url: `http://${HOST}:${port}`, nodeId, output: () => output, stop };
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
 * Resolves with `{ port, url, nodeId, output(), stop() }`.
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
