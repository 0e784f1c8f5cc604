// The socket.io admin UI (`@socket.io/admin-ui`, served by the node itself at /admin/) in headless
// Chromium against a 3-node cluster over a real redis-server, then over a real nats-server: three
// `switchboard --app bench --adapter redis|nats --admin-ui` nodes, one official socket.io-client on each, each in its own room and
// a shared one. The UI, opened from node 0, refuses a wrong password, logs in, and lists every
// node (server_stats from each), every socket and every room: what node 0 knows of nodes 1 and 2
// came over the adapter. Screenshots go to target/admin-ui-*.png.
// Run: `cargo build -p switchboard && npm ci && node --test test/admin.test.js` (needs
// redis-server, nats-server and chromium: `sudo apt-get install redis-server nats-server chromium`).
// SWITCHBOARD_BIN overrides the binary, CHROMIUM_BIN the browser (as in demo.test.js).

import { spawnSync } from "node:child_process";
import { mkdirSync } from "node:fs";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";

import { assertChromium, launchChromium } from "../browser.js";
import { io } from "socket.io-client";

import { binaryPath, REPO_ROOT, startNats, startRedis, startServer, withTimeout } from "../harness.js";

const BIN = binaryPath("SWITCHBOARD_BIN", "target/debug/switchboard");
const SHOTS = path.join(REPO_ROOT, "target");
const UI_TIMEOUT_MS = 15_000;
// bcrypt (cost 4, so logins stay fast) of PASSWORD.
const USERNAME = "admin";
const PASSWORD = "s3cret";
const HASH = "$2a$04$ssdl9rDuYlOOiPkBlXGwae/9K8jVFRzOiwT2bLwgZAHERWD3EPf.m";

/** The brokers the cluster is tried over: how to start one, and the node flags that use it. */
const BROKERS = {
  redis: { start: startRedis, flags: (url) => ["--adapter", "redis", "--redis-url", url] },
  nats: { start: startNats, flags: (url) => ["--adapter", "nats", "--nats-url", url] },
};

function startNode(adapterFlags, prefix) {
  return startServer({
    bin: BIN,
    hint: "Build it first: run `cargo build -p switchboard` (from the workspace root), or set SWITCHBOARD_BIN.",
    nodeIdPrefix: "e2e-admin",
    args: ({ port, nodeId }) => [
      "--app", "bench", "--host", "127.0.0.1", "--port", String(port), "--node-id", nodeId,
      ...adapterFlags, "--cluster-prefix", prefix,
      "--admin-ui", "--admin-username", USERNAME,
    ],
    // From the environment, as an operator would keep it out of the process list.
    env: { SWITCHBOARD_ADMIN_PASSWORD_HASH: HASH, RUST_LOG: process.env.RUST_LOG ?? "warn" },
    outputLimit: 8000,
  });
}

/** A socket.io-client socket on `node`, connected and in `rooms` (the bench app's `join`). */
async function member(node, rooms) {
  const socket = io(node.url, { transports: ["websocket"], reconnection: false, forceNew: true });
  await withTimeout(new Promise((resolve, reject) => {
    socket.once("connect", resolve);
    socket.once("connect_error", reject);
  }), 5000, `a connection to ${node.nodeId}`);
  for (const room of rooms) await withTimeout(socket.emitWithAck("join", room), 5000, `joining ${room}`);
  return socket;
}

/** Waits until the page's text holds every one of `texts`; fails with what it shows instead. */
async function shows(page, texts, what) {
  await page
    .waitForFunction((wanted) => wanted.every((t) => document.body.innerText.includes(t)), texts, {
      timeout: UI_TIMEOUT_MS,
      polling: 100,
    })
    .catch(async (err) => {
      const text = await page.evaluate(() => document.body.innerText);
      throw new Error(`${err.message}\n${what}: expected ${JSON.stringify(texts)}\npage shows:\n${text}`);
    });
}

for (const [adapter, broker] of Object.entries(BROKERS)) describe(`admin UI in headless Chromium, 3 nodes over ${adapter}`, () => {
  let brokerProcess;
  let nodes = [];
  let sockets = [];
  let browser;

  before(async () => {
    assertChromium();
    brokerProcess = await broker.start();
    const prefix = `admin${process.pid}`;
    nodes = await Promise.all([0, 1, 2].map(() => startNode(broker.flags(brokerProcess.url), prefix)));
    sockets = await Promise.all(nodes.map((node, i) => member(node, [`room-${i}`, "everyone"])));
    browser = await launchChromium();
  });

  after(async () => {
    for (const socket of sockets) socket.disconnect();
    try {
      await browser?.close();
    } finally {
      await Promise.all(nodes.map((node) => node.stop()));
      await brokerProcess?.stop();
    }
  });

  it("serves the UI, which logs in and sees every node, socket and room", async (t) => {
    const [first] = nodes;
    const page = await browser.newPage();
    const pageErrors = [];
    const offline = [];
    page.on("pageerror", (err) => pageErrors.push(err.message));
    // Everything the page loads comes from the node.
    page.on("request", (req) => {
      if (!req.url().startsWith(first.url)) offline.push(req.url());
    });
    const failed = [];
    page.on("response", (res) => {
      if (res.status() >= 400) failed.push(`${res.status()} ${res.url()}`);
    });
    try {
      const response = await page.goto(`${first.url}/admin/`, { waitUntil: "load" });
      assert.equal(response.status(), 200);
      assert.equal(await page.title(), "Socket.IO Admin UI");

      await page.getByLabel("Server URL").fill(first.url);
      await page.getByLabel("Username").fill(USERNAME);
      await page.getByLabel("Password").fill("wrong");
      await page.getByRole("button", { name: "Connect" }).click();
      await shows(page, ["Invalid credentials"], "a wrong password");

      await page.getByLabel("Password").fill(PASSWORD);
      await page.getByRole("button", { name: "Connect" }).click();
      await page.getByLabel("Password").waitFor({ state: "hidden", timeout: UI_TIMEOUT_MS });

      await page.goto(`${first.url}/admin/#/servers/`);
      await shows(page, nodes.map((node) => node.nodeId), "the servers page");
      mkdirSync(SHOTS, { recursive: true });
      await page.screenshot({ path: path.join(SHOTS, `admin-ui-${adapter}-servers.png`), fullPage: true });

      await page.goto(`${first.url}/admin/#/sockets/`);
      await shows(page, sockets.map((socket) => socket.id), "the sockets page");
      await page.screenshot({ path: path.join(SHOTS, `admin-ui-${adapter}-sockets.png`), fullPage: true });

      await page.goto(`${first.url}/admin/#/rooms/`);
      await shows(page, ["room-0", "room-1", "room-2", "everyone"], "the rooms page");
      await page.screenshot({ path: path.join(SHOTS, `admin-ui-${adapter}-rooms.png`), fullPage: true });

      // The icons come from the embedded @mdi/font.
      const icons = await page.evaluate(async () => {
        await document.fonts.ready;
        return document.fonts.check('24px "Material Design Icons"');
      });
      assert.equal(icons, true, "the icon font did not load");
      assert.deepEqual(failed, [], "requests that failed");
      assert.deepEqual(pageErrors, []);
      assert.deepEqual(offline, [], "the page loaded something from elsewhere");
      t.diagnostic(`screenshots: ${SHOTS}/admin-ui-${adapter}-{servers,sockets,rooms}.png`);
    } finally {
      await page.close();
    }
  });
});

describe("admin UI start-up checks", () => {
  /** Runs the binary with `args` until it exits (it should not start). */
  function refused(args) {
    const run = spawnSync(BIN, ["--host", "127.0.0.1", "--port", "0", ...args], {
      env: { ...process.env, RUST_LOG: "warn" },
      encoding: "utf8",
      timeout: 10_000,
    });
    assert.equal(run.signal, null, `still running after 10 s: ${run.stdout}${run.stderr}`);
    assert.notEqual(run.status, 0, `it exited 0: ${run.stdout}${run.stderr}`);
    return run.stdout + run.stderr;
  }

  it("refuses --admin-ui without credentials, with a bad hash, or on a plain Engine.IO app", () => {
    assert.match(refused(["--admin-ui"]), /--admin-username and --admin-password-hash.*--admin-auth none/s);
    assert.match(
      refused(["--admin-ui", "--admin-username", "a", "--admin-password-hash", "hunter2"]),
      /not a bcrypt hash/,
    );
    assert.match(refused(["--admin-ui", "--admin-auth", "none", "--app", "engine-echo"]), /needs a Socket\.IO app/);
  });
});
