// Connection state recovery on one node, with the official socket.io-client 4.8 against the
// e2e_server fixture (server/e2e/fixtures/src/bin/e2e_server.rs) started with RECOVERY=1: the
// transport of a client in a room is killed while a publisher emits to that room and to the
// client's own id; the client reconnects with `recovered` true, the same id, rooms and data, and
// gets every message once, in order. A disconnect past the window and a trimmed log give
// `recovered` false and no replay; with recovery off, the CONNECT answer has no pid and packets
// no offset. Run: `cargo build -p switchboard-e2e-fixtures && node --test test/recovery.test.js`.
// SWITCHBOARD_E2E_BIN overrides the binary (default: ../../target/debug/e2e_server).

import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";

import { io } from "socket.io-client";

import { binaryPath, sleep, startServer as startProcess, withTimeout } from "../harness.js";

const BIN = binaryPath("SWITCHBOARD_E2E_BIN", "target/debug/e2e_server");
const ENGINE_PATH = "/socket.io/";
/** How long to wait for anything that should happen (generous: failures show up as timeouts). */
const WAIT_MS = 5000;
/** The recovering server's maxDisconnectionDuration. */
const WINDOW_MS = 1500;

/** Starts e2e_server on a free port with `env` added (RECOVERY=1 and its limits). */
function startServer(env) {
  return startProcess({
    bin: BIN,
    hint:
      "Build it first with `cargo build -p switchboard-e2e-fixtures` (from the workspace root), " +
      "or point SWITCHBOARD_E2E_BIN at a built binary.",
    env: ({ port, nodeId }) => ({
      PORT: String(port),
      NODE_ID: nodeId,
      RUST_LOG: process.env.RUST_LOG ?? "warn",
      RUST_BACKTRACE: "0",
      ...env,
    }),
    enginePath: ENGINE_PATH,
    outputLimit: 8000,
  });
}

/** Resolves on `connect`, rejects on `connect_error`. */
function connected(socket) {
  if (socket.connected) return Promise.resolve(socket);
  const outcome = new Promise((resolve, reject) => {
    socket.once("connect", () => resolve(socket));
    socket.once("connect_error", (err) => reject(new Error(`connect_error: ${err.message}`)));
  });
  return withTimeout(outcome, WAIT_MS, "connect");
}

/** The next `disconnect` reason. */
function disconnected(socket) {
  return withTimeout(new Promise((resolve) => socket.once("disconnect", resolve)), WAIT_MS, "disconnect");
}

/** Emits with an ack and resolves with the ack's first argument. */
function ack(socket, event, ...args) {
  return new Promise((resolve, reject) => {
    socket.timeout(WAIT_MS).emit(event, ...args, (err, answer) => (err ? reject(err) : resolve(answer)));
  });
}

/** Resolves once `cond()` holds, checked on every `event` of `socket`. */
function until(socket, event, cond, what) {
  if (cond()) return Promise.resolve();
  const outcome = new Promise((resolve) => {
    const check = () => {
      if (cond()) {
        socket.off(event, check);
        resolve();
      }
    };
    socket.on(event, check);
  });
  return withTimeout(outcome, WAIT_MS, what);
}

/** Every `room-msg` a socket receives: its message and how many arguments came with it. */
function record(socket) {
  const messages = [];
  socket.on("room-msg", (msg, ...rest) => messages.push({ msg, extra: rest.length }));
  return messages;
}

describe("connection state recovery with socket.io-client", () => {
  let recovering;
  let trimming;
  let plain;
  const sockets = [];

  before(async () => {
    [recovering, trimming, plain] = await Promise.all([
      startServer({ RECOVERY: "1", RECOVERY_MAX_DISCONNECTION_MS: String(WINDOW_MS) }),
      startServer({ RECOVERY: "1", RECOVERY_MAX_LOG_PACKETS: "5" }),
      startServer({}),
    ]);
  });

  after(async () => {
    for (const socket of sockets) socket.disconnect();
    await Promise.all([recovering, trimming, plain].map((server) => server?.stop()));
  });

  /** A client of `server`'s `/`, reconnecting quickly. */
  function client(server, opts = {}) {
    const socket = io(`${server.url}/`, {
      path: ENGINE_PATH,
      transports: ["websocket"],
      forceNew: true,
      reconnectionDelay: 50,
      reconnectionDelayMax: 100,
      randomizationFactor: 0,
      ...opts,
    });
    sockets.push(socket);
    return socket;
  }

  for (const transports of [["websocket"], ["polling"]]) {
    it(`restores id, rooms, data and every missed message in order (${transports})`, async () => {
      const victim = client(recovering, { transports });
      const publisher = client(recovering);
      await Promise.all([connected(victim), connected(publisher)]);
      assert.equal(victim.recovered, false);
      const firstId = victim.id;
      await ack(victim, "join", "r1");
      await ack(victim, "set-data", { name: "ada" });

      const COUNT = 80;
      const messages = record(victim);
      let killed = false;
      victim.on("room-msg", () => {
        if (!killed && messages.length === 10) {
          killed = true;
          victim.io.engine.close();
        }
      });
      const reconnected = withTimeout(new Promise((resolve) => victim.io.once("reconnect", resolve)), WAIT_MS, "reconnect");
      // Alternately to the room and to the victim's own id; each paced by the server's ack.
      for (let i = 0; i < COUNT; i++) {
        await ack(publisher, "to-room", i % 2 === 0 ? "r1" : firstId, "", i);
        if (i % 10 === 9) await sleep(5);
      }
      await reconnected;
      await connected(victim);
      assert.equal(killed, true);
      assert.equal(victim.recovered, true, "socket.recovered");
      assert.equal(victim.id, firstId, "same id");
      await until(victim, "room-msg", () => messages.length >= COUNT, `${COUNT} messages`);
      assert.deepEqual(
        messages.map((m) => m.msg),
        [...Array(COUNT).keys()],
        "an unbroken sequence without duplicates",
      );
      assert.ok(messages.every((m) => m.extra === 1), "each logged message carries its offset");
      assert.deepEqual(await ack(victim, "state"), { id: firstId, recovered: true, rooms: ["r1"], data: { name: "ada" } });
    });
  }

  it("recovers a client that had received nothing yet", async () => {
    const victim = client(recovering);
    const publisher = client(recovering);
    await Promise.all([connected(victim), connected(publisher)]);
    const firstId = victim.id;
    await ack(victim, "join", "r2");
    const messages = record(victim);
    victim.io.reconnection(false);
    const gone = disconnected(victim);
    victim.io.engine.close();
    await gone;
    await ack(publisher, "to-room", "r2", "", "while away");
    victim.io.reconnection(true);
    victim.connect();
    await connected(victim);
    assert.equal(victim.recovered, true);
    assert.equal(victim.id, firstId);
    await until(victim, "room-msg", () => messages.length >= 1, "the missed message");
    assert.deepEqual(messages.map((m) => m.msg), ["while away"]);
  });

  it("does not recover after maxDisconnectionDuration", async () => {
    const victim = client(recovering);
    await connected(victim);
    const firstId = victim.id;
    await ack(victim, "join", "r3");
    victim.io.reconnection(false);
    const gone = disconnected(victim);
    victim.io.engine.close();
    await gone;
    // The window is what is under test: stay away longer.
    await sleep(WINDOW_MS + 300);
    victim.io.reconnection(true);
    victim.connect();
    await connected(victim);
    assert.equal(victim.recovered, false);
    assert.notEqual(victim.id, firstId);
    assert.deepEqual(await ack(victim, "state"), { id: victim.id, recovered: false, rooms: [], data: null });
  });

  it("does not recover when missed messages were trimmed from the log, and replays none", async () => {
    const victim = client(trimming);
    const publisher = client(trimming);
    await Promise.all([connected(victim), connected(publisher)]);
    const firstId = victim.id;
    await ack(victim, "join", "r4");
    const messages = record(victim);
    await ack(publisher, "to-room", "r4", "", "seen");
    await until(victim, "room-msg", () => messages.length === 1, "the first message");
    victim.io.reconnection(false);
    const gone = disconnected(victim);
    victim.io.engine.close();
    await gone;
    for (let i = 0; i < 10; i++) await ack(publisher, "to-room", "r4", "", i);
    victim.io.reconnection(true);
    victim.connect();
    await connected(victim);
    assert.equal(victim.recovered, false);
    assert.notEqual(victim.id, firstId);
    await ack(publisher, "to-room", victim.id, "", "marker");
    await until(victim, "room-msg", () => messages.length === 2, "the marker");
    assert.deepEqual(messages.map((m) => m.msg), ["seen", "marker"], "nothing replayed");
  });

  it("with recovery off: no offsets, and a reconnect is a new socket", async () => {
    const victim = client(plain);
    const publisher = client(plain);
    await Promise.all([connected(victim), connected(publisher)]);
    const firstId = victim.id;
    await ack(victim, "join", "r5");
    const messages = record(victim);
    await ack(publisher, "to-room", "r5", "", "hello");
    await until(victim, "room-msg", () => messages.length === 1, "the message");
    assert.deepEqual(messages, [{ msg: "hello", extra: 0 }], "no offset appended");
    const reconnected = withTimeout(new Promise((resolve) => victim.io.once("reconnect", resolve)), WAIT_MS, "reconnect");
    victim.io.engine.close();
    await reconnected;
    await connected(victim);
    // The client sets `recovered` to the server's pid, `undefined` here.
    assert.ok(!victim.recovered, "socket.recovered");
    assert.notEqual(victim.id, firstId);
  });
});

describe("the switchboard binary with --connection-state-recovery", () => {
  const SWITCHBOARD = binaryPath("SWITCHBOARD_BIN", "target/debug/switchboard");
  let node;
  const sockets = [];

  before(async () => {
    node = await startProcess({
      bin: SWITCHBOARD,
      hint: "Build it first with `cargo build -p switchboard` (from the workspace root).",
      args: ({ port, nodeId }) => [
        "--app",
        "bench",
        "--connection-state-recovery",
        "--host",
        "127.0.0.1",
        "--port",
        String(port),
        "--node-id",
        nodeId,
      ],
      env: { RUST_LOG: process.env.RUST_LOG ?? "warn" },
      enginePath: ENGINE_PATH,
      outputLimit: 8000,
    });
  });

  after(async () => {
    for (const socket of sockets) socket.disconnect();
    await node?.stop();
  });

  it("restores a bench client's socket, rooms and missed broadcasts", async () => {
    const victim = io(node.url, { transports: ["websocket"], reconnectionDelay: 50, reconnectionDelayMax: 50 });
    const publisher = io(node.url, { transports: ["websocket"] });
    sockets.push(victim, publisher);
    await Promise.all([connected(victim), connected(publisher)]);
    const firstId = victim.id;
    await ack(victim, "join", "bench-room");
    const got = [];
    victim.on("msg", (data) => got.push(data));
    await ack(publisher, "broadcast", { room: "bench-room", data: 0 });
    await until(victim, "msg", () => got.length === 1, "the first broadcast");

    victim.io.reconnection(false);
    const gone = disconnected(victim);
    victim.io.engine.close();
    await gone;
    for (let i = 1; i <= 5; i++) await ack(publisher, "broadcast", { room: "bench-room", data: i });
    victim.io.reconnection(true);
    victim.connect();
    await connected(victim);
    assert.equal(victim.recovered, true, "socket.recovered");
    assert.equal(victim.id, firstId);
    await until(victim, "msg", () => got.length === 6, "the missed broadcasts");
    await ack(publisher, "broadcast", { room: "bench-room", data: 6 });
    await until(victim, "msg", () => got.length === 7, "a broadcast after the restore (still in the room)");
    assert.deepEqual(got, [0, 1, 2, 3, 4, 5, 6]);
  });
});
