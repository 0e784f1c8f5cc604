// Real-browser end-to-end test of the demo page: starts the real `switchboard` binary (default app,
// the demo), opens `/` in headless Chromium (Debian's /usr/bin/chromium, driven by playwright-core,
// which never downloads browsers) and checks that the page loads the official client from the
// server, connects, receives `hello` and that its `hey` reaches the server log.
// Run: `cargo build -p switchboard && npm ci && npm test`.
// SWITCHBOARD_BIN overrides the binary (default: ../../target/debug/switchboard from this package);
// CHROMIUM_BIN overrides the browser (default: /usr/bin/chromium).

import { mkdirSync } from "node:fs";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";

import { launchChromium } from "../browser.js";

// The server-process harness of the Node e2e tests (node: modules only, no npm dependencies).
import {
  binaryPath,
  REPO_ROOT,
  sleep,
  startServer as startProcess,
} from "../harness.js";

const BIN = binaryPath("SWITCHBOARD_BIN", "target/debug/switchboard");
const SCREENSHOT = path.join(REPO_ROOT, "target", "demo-screenshot.png");
const EVENTS_TIMEOUT_MS = 10_000;
const LOG_TIMEOUT_MS = 5_000;

/** Starts the demo server on a free port, retrying when the port was taken in between. */
function startServer() {
  return startProcess({
    bin: BIN,
    hint:
      "Build it first: run `cargo build -p switchboard` (from the workspace root), " +
      "or point SWITCHBOARD_BIN at a built binary.",
    // The page's `hey` is logged at debug (once per client per second would flood info).
    args: ({ port, nodeId }) => [
      "--app", "demo", "--host", "127.0.0.1", "--port", String(port), "--node-id", nodeId,
      "--log-level", "info,switchboard::apps::demo=debug",
    ],
    nodeIdPrefix: "e2e-demo",
  });
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

  before(async () => {
    server = await startServer();
    browser = await launchChromium();
  });

  after(async () => {
    try {
      await browser?.close();
    } finally {
      await server?.stop();
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
        throw new Error(`${err.message}\nevents so far: ${events}\nserver log:\n${server.output()}`);
      });
      const texts = await items.allTextContents();
      assert.equal(texts[0], "connect", `events: ${JSON.stringify(texts)}`);
      assert.ok(texts.includes("hello - 1"), `events: ${JSON.stringify(texts)}`);
      assert.ok(texts.includes("hello - 2"), `events: ${JSON.stringify(texts)}`);
      assert.ok(!texts.some((s) => s.startsWith("connect_error")), `events: ${JSON.stringify(texts)}`);

      // The page emits `hey` every second; the server logs it at info level.
      await waitFor(() => server.output().includes("demo: hey"), LOG_TIMEOUT_MS, '"demo: hey" in the server log').catch(
        (err) => {
          throw new Error(`${err.message}\nserver log:\n${server.output()}`);
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
