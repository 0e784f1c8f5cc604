// End-to-end tests of the real `switchboard` binary (Engine.IO echo at /socket.io/) driven by the
// official engine.io-client. Run: `cargo build -p switchboard && npm ci && npm test`.
// SWITCHBOARD_BIN overrides the binary (default: ../../target/debug/switchboard from this package).

import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";

import { Socket } from "engine.io-client";

import { binaryPath, sleep, startServer as startProcess, withTimeout } from "../harness.js";

const BIN = binaryPath("SWITCHBOARD_BIN", "target/debug/switchboard");
const ENGINE_PATH = "/socket.io/";
const PING_INTERVAL = 300;
const PING_TIMEOUT = 200;

/** Starts the binary (Engine.IO echo) on a free port; see ../harness.js. */
function startServer(extraArgs = []) {
  return startProcess({
    bin: BIN,
    hint:
      "Build it first with `cargo build -p switchboard` (from the workspace root), " +
      "or point SWITCHBOARD_BIN at a built binary.",
    args: ({ port, nodeId }) => [
      "--app", "engine-echo",
      "--host", "127.0.0.1",
      "--port", String(port),
      "--path", ENGINE_PATH,
      "--ping-interval", String(PING_INTERVAL),
      "--ping-timeout", String(PING_TIMEOUT),
      "--node-id", nodeId,
      ...extraArgs,
    ],
    env: { RUST_LOG: "warn" },
    enginePath: ENGINE_PATH,
    outputLimit: 8000,
  });
}

function connect(url, opts) {
  const socket = new Socket(url, { path: ENGINE_PATH, ...opts });
  const opened = new Promise((resolve, reject) => {
    socket.once("open", () => resolve(socket));
    socket.once("error", (err) => reject(new Error(`connect failed: ${err?.message ?? err}`)));
    socket.once("close", (reason) => reject(new Error(`closed before open: ${reason}`)));
  });
  return withTimeout(opened, 5000, "open");
}

/** The next `n` messages on `socket`. */
function nextMessages(socket, n, ms = 5000) {
  const received = [];
  let onMessage, onClose;
  const done = new Promise((resolve, reject) => {
    onMessage = (data) => {
      received.push(data);
      if (received.length === n) resolve(received);
    };
    onClose = (reason) => reject(new Error(`closed (${reason}) after ${received.length}/${n} messages`));
    socket.on("message", onMessage);
    socket.once("close", onClose);
  });
  return withTimeout(done, ms, `${n} message(s) (got ${received.length})`).finally(() => {
    socket.off("message", onMessage);
    socket.off("close", onClose);
  });
}

function toBytes(data) {
  if (typeof data === "string") throw new assert.AssertionError({ message: `expected binary, got text ${JSON.stringify(data)}` });
  if (data instanceof ArrayBuffer) return Buffer.from(new Uint8Array(data));
  if (ArrayBuffer.isView(data)) return Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  throw new assert.AssertionError({ message: `unexpected message type ${Object.prototype.toString.call(data)}` });
}

async function engineRequest(url, sid, init) {
  const res = await fetch(`${url}${ENGINE_PATH}?EIO=4&transport=polling&sid=${encodeURIComponent(sid)}`, init);
  const text = await res.text();
  let code = null;
  try {
    code = JSON.parse(text).code;
  } catch {}
  return { status: res.status, code, text };
}

/**
 * Whether the server still knows `sid`, asked without disturbing the session: a noop POST is
 * accepted by a live polling session (200), refused with code 3 by a websocket one, and refused
 * with code 1 ("Session ID unknown") once the session is gone. (A GET could overlap the
 * client's own pending poll and close the session by itself.)
 */
async function sessionKnown(url, sid) {
  const answer = await engineRequest(url, sid, { method: "POST", body: "6" });
  if (answer.status === 400 && answer.code === 1) return false;
  assert.ok(
    answer.status === 200 || (answer.status === 400 && answer.code === 3),
    `unexpected answer to a noop POST: ${answer.status} ${answer.text}`,
  );
  return true;
}

const MODES = [
  { name: "polling only", opts: { transports: ["polling"] }, transport: "polling" },
  { name: "websocket only", opts: { transports: ["websocket"] }, transport: "websocket" },
  { name: "polling with upgrade", opts: {}, transport: "websocket", upgrade: true },
];

describe("switchboard with engine.io-client", () => {
  let server;

  before(async () => {
    server = await startServer();
  });

  after(async () => {
    await server?.stop();
  });

  for (const mode of MODES) {
    describe(mode.name, () => {
      /** Connects in this mode; for the upgrade mode, also waits for the upgrade to websocket. */
      async function open() {
        const upgraded = [];
        const socket = new Socket(server.url, { path: ENGINE_PATH, ...mode.opts });
        socket.on("upgrade", (t) => upgraded.push(t.name));
        await withTimeout(
          new Promise((resolve, reject) => {
            socket.once("open", resolve);
            socket.once("error", (e) => reject(new Error(`connect failed: ${e?.message ?? e}`)));
          }),
          5000,
          "open",
        );
        if (mode.upgrade) {
          assert.equal(socket.transport.name, "polling", "the upgrade mode starts on polling");
          if (upgraded.length === 0) {
            await withTimeout(new Promise((resolve) => socket.once("upgrade", resolve)), 5000, "the upgrade event");
          }
          assert.deepEqual(upgraded, ["websocket"]);
        }
        assert.equal(socket.transport.name, mode.transport);
        return socket;
      }

      it("echoes a text message", { timeout: 10_000 }, async () => {
        const socket = await open();
        try {
          const reply = nextMessages(socket, 1);
          socket.send("héllo wörld ✓");
          assert.deepEqual(await reply, ["héllo wörld ✓"]);
        } finally {
          socket.close();
        }
      });

      it("echoes a binary message as binary with the same bytes", { timeout: 10_000 }, async () => {
        const socket = await open();
        try {
          const sent = Uint8Array.from([0, 1, 2, 3, 127, 128, 254, 255]);
          const reply = nextMessages(socket, 2);
          socket.send(sent);
          socket.send(Buffer.from("buffer bytes"));
          const [first, second] = await reply;
          assert.deepEqual(toBytes(first), Buffer.from(sent));
          assert.deepEqual(toBytes(second), Buffer.from("buffer bytes"));
        } finally {
          socket.close();
        }
      });

      it("echoes a burst of 100 messages complete and in order", { timeout: 10_000 }, async () => {
        const socket = await open();
        try {
          const reply = nextMessages(socket, 100);
          for (let i = 0; i < 100; i++) {
            socket.send(i % 2 === 0 ? `message ${i}` : Buffer.from(`binary ${i}`));
          }
          const got = await reply;
          got.forEach((data, i) => {
            if (i % 2 === 0) assert.equal(data, `message ${i}`, `message #${i}`);
            else assert.deepEqual(toBytes(data), Buffer.from(`binary ${i}`), `message #${i}`);
          });
        } finally {
          socket.close();
        }
      });

      if (mode.upgrade) {
        it("delivers messages sent during the upgrade complete and in order", { timeout: 10_000 }, async () => {
          const socket = new Socket(server.url, { path: ENGINE_PATH, ...mode.opts });
          try {
            await withTimeout(new Promise((resolve) => socket.once("open", resolve)), 5000, "open");
            const upgraded = withTimeout(new Promise((resolve) => socket.once("upgrade", resolve)), 5000, "upgrade");
            const reply = nextMessages(socket, 100);
            for (let i = 0; i < 100; i++) {
              socket.send(`during upgrade ${i}`);
              if (i % 10 === 9) await sleep(1); // spread the sends over the probe/upgrade exchange
            }
            await upgraded;
            assert.equal(socket.transport.name, "websocket");
            assert.deepEqual(await reply, Array.from({ length: 100 }, (_, i) => `during upgrade ${i}`));
          } finally {
            socket.close();
          }
        });
      }

      it("stays connected across several ping intervals", { timeout: 10_000 }, async () => {
        const socket = await open();
        let closed = null;
        let pings = 0;
        socket.on("close", (reason) => (closed = reason));
        socket.on("ping", () => pings++);
        try {
          await sleep(5 * PING_INTERVAL);
          assert.equal(closed, null, `socket closed: ${closed}`);
          assert.ok(pings >= 3, `expected at least 3 pings in ${5 * PING_INTERVAL} ms, got ${pings}`);
          assert.equal(socket.readyState, "open");
          assert.equal(socket.transport.name, mode.transport);
          // Still usable after the heartbeats.
          const reply = nextMessages(socket, 1);
          socket.send("after heartbeats");
          assert.deepEqual(await reply, ["after heartbeats"]);
        } finally {
          socket.close();
        }
      });

      it("client close() ends the server session", { timeout: 10_000 }, async () => {
        const socket = await open();
        const sid = socket.id;
        assert.ok(sid, "socket has a sid");
        // Close right after a ping (the client pongs first): with the pong in, the server's own
        // ping timeout cannot end the session before ~PING_INTERVAL + PING_TIMEOUT from now, so a
        // session gone well before that was ended by the close.
        await withTimeout(new Promise((resolve) => socket.once("ping", resolve)), 2000, "a ping");
        const closedAt = Date.now();
        socket.close();
        const limit = PING_INTERVAL - 50;
        let known = true;
        while (known && Date.now() - closedAt < limit) {
          known = await sessionKnown(server.url, sid);
          if (known) await sleep(10);
        }
        assert.equal(known, false, `session ${sid} still known ${Date.now() - closedAt} ms after close()`);
        const poll = await engineRequest(server.url, sid);
        assert.equal(poll.status, 400, poll.text);
        assert.equal(poll.code, 1, poll.text);
      });
    });
  }
});

describe("switchboard --cookie io", () => {
  let server;

  before(async () => {
    server = await startServer(["--cookie", "io"]);
  });

  after(async () => {
    await server?.stop();
  });

  it("sets the sticky-session cookie on the polling handshake", { timeout: 10_000 }, async () => {
    const res = await fetch(`${server.url}${ENGINE_PATH}?EIO=4&transport=polling`);
    assert.equal(res.status, 200);
    const body = await res.text();
    assert.ok(body.startsWith("0"), `handshake body: ${body}`);
    const { sid } = JSON.parse(body.slice(1));
    assert.deepEqual(res.headers.getSetCookie(), [`io=${sid}; Path=/; HttpOnly; SameSite=Lax`]);
  });

  it("still serves engine.io-client with the cookie on", { timeout: 10_000 }, async () => {
    const socket = await connect(server.url, { transports: ["polling"] });
    try {
      const reply = nextMessages(socket, 1);
      socket.send("with cookie");
      assert.deepEqual(await reply, ["with cookie"]);
    } finally {
      socket.close();
    }
  });
});
