// Real-browser end-to-end test of the demo page: starts the real `switchboard` binary (default app,
// the demo), opens `/` in headless Chromium (Debian's /usr/bin/chromium, driven by playwright-core,
// which never downloads browsers) and checks that the page loads the official client from the
// server, connects, receives `hello` and that its `hey` reaches the server log.
// Run: `cargo build -p switchboard && npm ci && npm test`.
// SWITCHBOARD_BIN overrides the binary (default: ../../target/debug/switchboard from this package);
// CHROMIUM_BIN overrides the browser (default: /usr/bin/chromium).

import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { accessSync, constants, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";

import { chromium } from "playwright-core";

const PACKAGE_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const REPO_ROOT = path.resolve(PACKAGE_DIR, "../..");
const BIN = process.env.SWITCHBOARD_BIN
  ? path.resolve(process.env.SWITCHBOARD_BIN)
  : path.resolve(REPO_ROOT, "target/debug/switchboard");
const CHROMIUM = process.env.CHROMIUM_BIN || "/usr/bin/chromium";
const SCREENSHOT = path.join(REPO_ROOT, "target", "demo-screenshot.png");
const START_ATTEMPTS = 5;
const START_TIMEOUT_MS = 10_000;
const EVENTS_TIMEOUT_MS = 10_000;
const LOG_TIMEOUT_MS = 5_000;

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function assertExecutable(file, hint) {
  try {
    accessSync(file, constants.X_OK);
  } catch {
    throw new Error(`${file} not found or not executable.\n${hint}`);
  }
}

/** A port that was free a moment ago (the OS picks it for port 0; we release it for the server). */
function freePort() {
  return new Promise((resolve, reject) => {
    const probe = net.createServer();
    probe.unref();
    probe.on("error", reject);
    probe.listen(0, "127.0.0.1", () => {
      const { port } = probe.address();
      probe.close(() => resolve(port));
    });
  });
}

function canConnect(port) {
  return new Promise((resolve) => {
    const sock = net.connect({ port, host: "127.0.0.1" });
    sock.once("connect", () => {
      sock.destroy();
      resolve(true);
    });
    sock.once("error", () => resolve(false));
  });
}

async function stopChild(child, exited) {
  if (child.exitCode !== null || child.signalCode !== null) return;
  child.kill("SIGTERM");
  const timer = setTimeout(() => child.kill("SIGKILL"), 3000);
  await exited;
  clearTimeout(timer);
}

/** Starts one server process; resolves once its port accepts connections and answers as this process. */
async function startOnce(port) {
  const nodeId = `e2e-browser-${randomBytes(4).toString("hex")}`;
  const args = ["--app", "demo", "--host", "127.0.0.1", "--port", String(port), "--node-id", nodeId];
  const child = spawn(BIN, args, {
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, RUST_LOG: "info", NO_COLOR: "1" },
  });
  let output = "";
  const collect = (chunk) => {
    output += chunk;
  };
  child.stdout.setEncoding("utf8").on("data", collect);
  child.stderr.setEncoding("utf8").on("data", collect);
  const exited = new Promise((resolve) => child.once("exit", (code, signal) => resolve({ code, signal })));
  let exit = null;
  exited.then((e) => (exit = e));
  const spawnError = new Promise((resolve) => child.once("error", resolve));

  const deadline = Date.now() + START_TIMEOUT_MS;
  while (Date.now() < deadline) {
    const outcome = await Promise.race([canConnect(port), exited.then(() => "exited"), spawnError]);
    if (outcome instanceof Error) throw new Error(`cannot run ${BIN}: ${outcome.message}`);
    if (outcome === "exited" || exit) {
      return { ok: false, reason: `exited early (${JSON.stringify(exit)}):\n${output}` };
    }
    if (outcome === true) {
      // Something listens: make sure it is our process (the port may have been taken meanwhile).
      const url = `http://127.0.0.1:${port}`;
      const res = await fetch(`${url}/socket.io/?EIO=4&transport=polling`).catch(() => null);
      const body = res ? await res.text() : "";
      let sid = "";
      try {
        sid = body.startsWith("0") ? JSON.parse(body.slice(1)).sid : "";
      } catch {}
      if (sid.startsWith(`${nodeId}.`)) {
        return {
          ok: true,
          server: { url, log: () => output, stop: () => stopChild(child, exited) },
        };
      }
      await stopChild(child, exited);
      return { ok: false, reason: `port ${port} is answered by another process` };
    }
    await sleep(20);
  }
  await stopChild(child, exited);
  throw new Error(`switchboard did not accept connections on port ${port} within ${START_TIMEOUT_MS} ms:\n${output}`);
}

/** Starts the demo server on a free port, retrying when the port was taken in between. */
async function startServer() {
  assertExecutable(
    BIN,
    "Build it first: run `cargo build -p switchboard` (from the workspace root), " +
      "or point SWITCHBOARD_BIN at a built binary.",
  );
  const reasons = [];
  for (let attempt = 0; attempt < START_ATTEMPTS; attempt++) {
    const started = await startOnce(await freePort());
    if (started.ok) return started.server;
    reasons.push(started.reason);
  }
  throw new Error(`could not start switchboard after ${START_ATTEMPTS} attempts:\n${reasons.join("\n---\n")}`);
}

async function waitFor(predicate, timeoutMs, what) {
  const deadline = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(50);
  }
}

describe("demo page in headless Chromium", () => {
  let server;
  let browser; // a BrowserContext; closing it closes Chromium
  let userDataDir;

  before(async () => {
    server = await startServer();
    assertExecutable(CHROMIUM, "Install it with `apt-get install -y chromium` (or set CHROMIUM_BIN).");
    userDataDir = mkdtempSync(path.join(os.tmpdir(), "switchboard-chromium-"));
    // A persistent context is how playwright takes an explicit (here: fresh, temporary) --user-data-dir.
    browser = await chromium.launchPersistentContext(userDataDir, {
      executablePath: CHROMIUM,
      headless: true,
      timeout: 30_000,
      args: [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
      ],
    });
  });

  after(async () => {
    try {
      await browser?.close();
    } finally {
      await server?.stop();
      if (userDataDir) rmSync(userDataDir, { recursive: true, force: true });
    }
  });

  it("connects, receives hello, and its hey reaches the server", async (t) => {
    const page = await browser.newPage();
    const pageErrors = [];
    page.on("pageerror", (err) => pageErrors.push(err.message));
    try {
      const response = await page.goto(`${server.url}/`, { waitUntil: "load" });
      assert.equal(response.status(), 200);
      assert.equal(await page.title(), "Switchboard demo");

      // The official client came from the server's /socket.io/socket.io.js.
      assert.equal(await page.evaluate(() => typeof io), "function");

      const items = page.locator("#events li");
      await page.waitForFunction(
        () => {
          const texts = [...document.querySelectorAll("#events li")].map((li) => li.textContent);
          return texts.includes("connect") && texts.includes("hello - 2");
        },
        null,
        { timeout: EVENTS_TIMEOUT_MS, polling: 100 },
      ).catch(async (err) => {
        const events = JSON.stringify(await items.allTextContents());
        throw new Error(`${err.message}\nevents so far: ${events}\nserver log:\n${server.log()}`);
      });
      const texts = await items.allTextContents();
      assert.equal(texts[0], "connect", `events: ${JSON.stringify(texts)}`);
      assert.ok(texts.includes("hello - 1"), `events: ${JSON.stringify(texts)}`);
      assert.ok(texts.includes("hello - 2"), `events: ${JSON.stringify(texts)}`);
      assert.ok(!texts.some((s) => s.startsWith("connect_error")), `events: ${JSON.stringify(texts)}`);

      // The page emits `hey` every second; the server logs it at info level.
      await waitFor(() => server.log().includes("demo: hey"), LOG_TIMEOUT_MS, '"demo: hey" in the server log').catch(
        (err) => {
          throw new Error(`${err.message}\nserver log:\n${server.log()}`);
        },
      );
      assert.deepEqual(pageErrors, []);

      mkdirSync(path.dirname(SCREENSHOT), { recursive: true });
      await page.screenshot({ path: SCREENSHOT, fullPage: true });
      t.diagnostic(`screenshot: ${SCREENSHOT}`);
    } finally {
      await page.close();
    }
  });
});
