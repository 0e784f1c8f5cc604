// socket.io 4.8's per-socket semantics as a user of the official socket.io-client sees them against
// `e2e_server` (server/e2e/fixtures/src/bin/e2e_server.rs, which documents the events used here):
// the reason the server reports for each way a socket ends, the rooms its `disconnecting` handler
// still sees, a per-socket `timeout` ack that fails, and a `volatile` emit dropped while the
// transport is busy.
// SWITCHBOARD_E2E_BIN overrides the binary (default: ../../target/debug/e2e_server).

import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";

import { io } from "socket.io-client";

import { binaryPath, startServer, withTimeout } from "../harness.js";

const BIN = binaryPath("SWITCHBOARD_E2E_BIN", "target/debug/e2e_server");
const ENGINE_PATH = "/socket.io/";
const WAIT_MS = 5000;

/** Resolves with the socket once connected; rejects on `connect_error`. */
function connected(socket) {
  const outcome = new Promise((resolve, reject) => {
    socket.once("connect", () => resolve(socket));
    socket.once("connect_error", (err) => reject(new Error(`connect_error: ${err.message}`)));
  });
  return withTimeout(outcome, WAIT_MS, `connect to ${socket.nsp}`);
}

/** Emits with an ack and resolves with the ack's arguments. */
function ack(socket, event, ...args) {
  return new Promise((resolve, reject) => {
    socket.timeout(WAIT_MS).emit(event, ...args, (err, ...answer) => (err ? reject(err) : resolve(answer)));
  });
}

/** Reports the `/stats` namespace sends, by socket id, awaitable before or after they arrive. */
class Reports {
  constructor(observer, event) {
    this.seen = new Map();
    this.waiters = new Map();
    observer.on(event, (report) => {
      this.seen.set(report.id, report);
      this.waiters.get(report.id)?.(report);
    });
    this.event = event;
  }

  of(id) {
    if (this.seen.has(id)) return Promise.resolve(this.seen.get(id));
    return withTimeout(new Promise((resolve) => this.waiters.set(id, resolve)), WAIT_MS, `${this.event} of ${id}`);
  }
}

describe("socket.io 4.8 socket semantics with socket.io-client", () => {
  let server;
  let observer;
  let leaving;
  let left;
  const clients = [];

  before(async () => {
    server = await startServer({
      bin: BIN,
      hint: "Build it first with `cargo build -p switchboard-e2e-fixtures` (from the workspace root).",
      env: ({ port, nodeId }) => ({ PORT: String(port), NODE_ID: nodeId, RUST_LOG: "warn", RUST_BACKTRACE: "0" }),
      enginePath: ENGINE_PATH,
      outputLimit: 8000,
    });
    observer = client("/stats");
    leaving = new Reports(observer, "leaving");
    left = new Reports(observer, "left");
    await connected(observer);
  });

  after(async () => {
    for (const socket of clients) socket.disconnect();
    await server?.stop();
  });

  /** A websocket client of `nsp`, without reconnection, disconnected after the suite. */
  function client(nsp = "/") {
    const socket = io(`${server.url}${nsp}`, { path: ENGINE_PATH, transports: ["websocket"], forceNew: true, reconnection: false });
    clients.push(socket);
    return socket;
  }

  /** A connected client of `/` in rooms `a` and `b`. */
  async function member() {
    const socket = await connected(client());
    assert.deepEqual(await ack(socket, "join", "a"), [["a"]]);
    assert.deepEqual(await ack(socket, "join", "b"), [["a", "b"]]);
    return socket;
  }

  /** What the server reported for socket `id`: its `disconnecting` view, then its `disconnect` reason. */
  async function reported(id) {
    const [before, after] = await Promise.all([leaving.of(id), left.of(id)]);
    assert.equal(after.reason, before.reason, "disconnect and disconnecting see the same reason");
    return before;
  }

  const WAYS = [
    ["the client disconnects its socket", "client namespace disconnect", (socket) => socket.disconnect()],
    ["the server disconnects the socket", "server namespace disconnect", (socket) => socket.emit("disconnect-me")],
    ["the client closes its connection", "transport close", (socket) => socket.io.engine.close()],
    [
      "the client stops answering pings",
      "ping timeout",
      (socket) => {
        // engine.io-client answers a ping with `_sendPacket("pong")`: drop those, send the rest.
        const engine = socket.io.engine;
        const send = engine._sendPacket.bind(engine);
        engine._sendPacket = (type, ...rest) => (type === "pong" ? undefined : send(type, ...rest));
      },
    ],
  ];

  for (const [how, reason, end] of WAYS) {
    it(`${how}: the server reports "${reason}", with the rooms still joined in disconnecting`, { timeout: 15_000 }, async () => {
      const socket = await member();
      const id = socket.id;
      end(socket);
      const report = await reported(id);
      assert.deepEqual(report, { nsp: "/", id, reason, rooms: ["a", "b"], connected: true });
    });
  }

  it("socket.timeout(..).emitWithAck: an ack the client does not send in time fails with a timeout", async () => {
    const silent = await connected(client());
    silent.on("question", () => {}); // heard, never answered
    assert.deepEqual(await ack(silent, "timeout-ask", 200), [{ ok: false, error: "ack timed out" }]);

    const answering = await connected(client());
    answering.on("question", (callback) => callback("yes", 2));
    assert.deepEqual(await ack(answering, "timeout-ask", 2000), [{ ok: true, args: ["yes", 2] }]);
  });

  it("socket.volatile.emit: dropped while the transport is busy, delivered when it is idle", async () => {
    const socket = await connected(client());
    const events = [];
    socket.onAny((event) => events.push(event));
    const last = withTimeout(new Promise((resolve) => socket.once("busy-last", resolve)), WAIT_MS, "busy-last");
    socket.emit("volatile-busy");
    await last;
    assert.deepEqual(events, ["busy-first", "busy-last"], "the volatile event behind a queued one is dropped");

    // Idle, it goes out; a ping queued at that very moment makes the transport busy, so try a few times.
    const got = [];
    socket.on("volatile-self", (n) => got.push(n));
    for (let n = 0; n < 10 && got.length === 0; n++) {
      await ack(socket, "volatile-self", n);
    }
    assert.ok(got.length > 0, "a volatile emit to an idle websocket arrives");
  });
});
