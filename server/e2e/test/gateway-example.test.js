// The chat example (examples/chat-backend-python) as its README runs it: its Python backend (the
// standard library only) and a gateway node on the example's own switchboard.toml (ports changed
// to free ones), with official socket.io-client sockets: logins, joins, room messages reaching
// members only, private messages, a refused message, presence from the lifecycle webhook; and its
// page (index.html, served by the backend) in headless Chromium chatting with a Node client.
// Run: `cargo build -p switchboard && npm ci && node --test test/gateway-example.test.js`.
// Needs python3 (3.11+: tomllib); PYTHON selects another interpreter. CHROMIUM_BIN selects the
// browser (default: /usr/bin/chromium, driven by playwright-core, which never downloads one).

import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";

import { launchChromium } from "../browser.js";

import { cleanUp, client, connected, eventually, startGateway } from "../gateway/support.js";
import { REPO_ROOT, findExecutable, freePort, withTimeout } from "../harness.js";


const EXAMPLE = path.join(REPO_ROOT, "examples/chat-backend-python");

/** Starts backend.py on `port` with `config`; resolves once it printed that it listens. */
function startBackend(config, port) {
  const python = findExecutable("python3", { envVar: "PYTHON", hint: "Install Python 3.11+: apt-get install python3" });
  const child = spawn(python, [path.join(EXAMPLE, "backend.py"), "--config", config, "--port", String(port)], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  const ready = new Promise((resolve, reject) => {
    const seen = (chunk) => {
      output += chunk;
      if (output.includes("chat backend on")) resolve();
    };
    child.stdout.on("data", seen);
    child.stderr.on("data", (chunk) => (output += chunk));
    child.once("exit", (code) => reject(new Error(`backend.py exited (${code}):\n${output}`)));
  });
  const backend = { url: `http://127.0.0.1:${port}`, server: { close: () => child.kill() } };
  return withTimeout(ready, 10_000, "backend.py to listen").then(() => backend);
}

/** The backend and a gateway node on the example's switchboard.toml, its ports moved to free ones. */
async function startExample() {
  const backendPort = await freePort();
  const apiPort = await freePort();
  const dir = mkdtempSync(path.join(os.tmpdir(), "switchboard-chat-example-"));
  const config = path.join(dir, "switchboard.toml");
  const text = readFileSync(path.join(EXAMPLE, "switchboard.toml"), "utf8");
  const moved = text.replaceAll("127.0.0.1:8080", `127.0.0.1:${backendPort}`).replace("api-port = 3001", `api-port = ${apiPort}`);
  assert.notEqual(moved, text, "the example's ports were not found to change");
  writeFileSync(config, moved);
  const backend = await startBackend(config, backendPort);
  return { backend, server: await startGateway(config), dir };
}

describe("examples/chat-backend-python: a Python backend behind a gateway node", () => {
  let backend;
  let server;
  let dir;
  const sockets = [];

  /** Logs `name` in with the backend and connects with the token it gave. */
  async function join(name) {
    const res = await fetch(`${backend.url}/login`, { method: "POST", body: JSON.stringify({ name }) });
    const { token } = await res.json();
    const socket = client(server.url, { auth: { token } });
    sockets.push(socket);
    socket.presence = [];
    socket.on("presence", (online) => socket.presence.push(online));
    return connected(socket);
  }
  const next = (socket, event) => withTimeout(new Promise((resolve) => socket.once(event, resolve)), 5000, event);

  before(async () => {
    ({ backend, server, dir } = await startExample());
  });

  after(() => cleanUp({ sockets, server, backend, dir }));

  it("refuses a bad name at login", async () => {
    const res = await fetch(`${backend.url}/login`, { method: "POST", body: JSON.stringify({ name: "no spaces" }) });
    assert.equal((await res.json()).error.code, "bad_name");
  });

  it("carries room messages to members only, private messages to their user, and presence", async () => {
    const alice = await join("alice");
    const bob = await join("bob");
    const carol = await join("carol");
    for (const socket of [alice, bob]) assert.deepEqual(await socket.emitWithAck("join", "room:lobby"), { ok: true });
    let carolHeard = 0;
    carol.on("message", () => carolHeard++);
    const heard = next(bob, "message");
    assert.deepEqual(await alice.emitWithAck("message", { room: "room:lobby", text: "hi all" }), { ok: true });
    assert.deepEqual(await heard, { from: "alice", room: "room:lobby", text: "hi all" });
    const whispered = next(alice, "private");
    assert.deepEqual(await bob.emitWithAck("private", { to: "alice", text: "psst" }), { ok: true });
    assert.deepEqual(await whispered, { from: "bob", text: "psst" });
    const refused = await carol.emitWithAck("message", { room: "room:lobby", text: "let me in" });
    assert.equal(refused.error.code, "not_member");
    assert.equal(carolHeard, 0, "carol is not in the room");
    await eventually(() => assert.deepEqual(carol.presence.at(-1), ["alice", "bob", "carol"]), 5000, "presence of all three");
    carol.close();
    await eventually(() => assert.deepEqual(alice.presence.at(-1), ["alice", "bob"]), 5000, "presence after carol left");
  });
});

describe("examples/chat-backend-python: its page in headless Chromium", () => {
  let backend;
  let server;
  let dir;
  let browser;
  const sockets = [];

  before(async () => {
    ({ backend, server, dir } = await startExample());
    browser = await launchChromium();
  });

  after(async () => {
    try {
      await browser?.close();
    } finally {
      await cleanUp({ sockets, server, backend, dir });
    }
  });

  it("logs in, joins, sends to a Node client in the room and shows its answer and presence", async () => {
    const page = await browser.newPage();
    const pageErrors = [];
    page.on("pageerror", (err) => pageErrors.push(err.message));
    try {
      assert.equal((await page.goto(`${backend.url}/?gateway=${server.url}`, { waitUntil: "load" })).status(), 200);
      await page.fill("#name", "alice");
      await page.click("#login button");
      await page.locator("#log li", { hasText: "connected as alice" }).waitFor({ timeout: 10_000 });
      await page.click("#join button");
      await page.locator("#log li", { hasText: "joined room:lobby" }).waitFor({ timeout: 5000 });

      const { token } = await (await fetch(`${backend.url}/login`, { method: "POST", body: JSON.stringify({ name: "bob" }) })).json();
      const bob = await connected(client(server.url, { auth: { token } }));
      sockets.push(bob);
      assert.deepEqual(await bob.emitWithAck("join", "room:lobby"), { ok: true });
      const heard = withTimeout(new Promise((resolve) => bob.once("message", resolve)), 5000, "the page's message");
      await page.fill("#text", "hello from the browser");
      await page.click("#say button");
      assert.deepEqual(await heard, { from: "alice", room: "room:lobby", text: "hello from the browser" });
      assert.deepEqual(await bob.emitWithAck("message", { room: "room:lobby", text: "hi alice" }), { ok: true });
      await page.locator("#log li", { hasText: "[room:lobby] bob: hi alice" }).waitFor({ timeout: 5000 });
      await page.locator("#online", { hasText: "alice, bob" }).waitFor({ timeout: 5000 });
      assert.deepEqual(pageErrors, []);
    } finally {
      await page.close();
    }
  });
});
