// @socket.io/redis-emitter 5.1 on a native Switchboard cluster (`--adapter redis --redis-emitter`,
// issue 16): two `switchboard --app bench --redis-emitter` nodes and one without the flag, joined
// in Switchboard's own format over one real redis-server; the official socket.io-client on each;
// the real emitter publishing from this process. Each flagged node applies what the emitter
// publishes to its own sockets, once; the node without the flag gets nothing. serverSideEmit is
// observed through the admin UI's server-side command listener (`--admin-ui --admin-auth none`).
// Run: `cargo build -p switchboard --bins && npm ci && node --test test/emitter.test.js`
// (needs redis-server: `sudo apt-get install redis-server`).

import { randomBytes } from "node:crypto";
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";

import { Emitter } from "@socket.io/redis-emitter";
import { createClient } from "redis";
import { io } from "socket.io-client";

import { binaryPath, sleep, startRedis, startServer, withTimeout } from "../harness.js";

const SWITCHBOARD = binaryPath("SWITCHBOARD_BIN", "target/debug/switchboard");
/** How long anything that should happen may take (failures show up as timeouts). */
const WAIT_MS = 5000;
/** How long a client that must not get an event is watched. */
const QUIET_MS = 300;

let counter = 0;
/** A unique room name or tag. */
const unique = (what) => `${what}-${++counter}-${randomBytes(3).toString("hex")}`;

/** A native bench node on `redis`, with `--redis-emitter` when `emitter`. */
function startNode(redis, emitter) {
  return startServer({
    bin: SWITCHBOARD,
    hint: "Build it first with `cargo build -p switchboard --bins` (from the workspace root).",
    nodeIdPrefix: emitter ? "em" : "plain",
    args: ({ port, nodeId }) => [
      "--app", "bench",
      "--host", "127.0.0.1",
      "--port", String(port),
      "--node-id", nodeId,
      "--adapter", "redis",
      "--redis-url", redis.url,
      "--admin-ui", "--admin-auth", "none",
      ...(emitter ? ["--redis-emitter"] : []),
    ],
    env: { RUST_LOG: process.env.RUST_LOG ?? "warn" },
    outputLimit: 8000,
  });
}

/** Polls `check` until it returns something truthy; fails with `what` after WAIT_MS. */
async function until(check, what) {
  const deadline = Date.now() + WAIT_MS;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() >= deadline) throw new Error(`timed out waiting ${what}`);
    await sleep(20);
  }
}

/** A connected socket.io-client socket on `server` (namespace `nsp`) recording its events. */
async function connect(server, name, nsp = "/") {
  const socket = io(`${server.url}${nsp === "/" ? "" : nsp}`, {
    transports: ["websocket"],
    forceNew: true,
    reconnection: false,
  });
  const c = { name, socket, events: [], disconnects: [] };
  socket.onAny((event, ...args) => c.events.push({ event, args }));
  socket.on("disconnect", (reason) => c.disconnects.push(reason));
  const connected = new Promise((resolve, reject) => {
    socket.once("connect", resolve);
    socket.once("connect_error", (err) => reject(new Error(`${name}: ${err.message}`)));
  });
  await withTimeout(connected, WAIT_MS, `${name} to connect`);
  return c;
}

/** The `event`s `c` received whose first argument is `tag`. */
const got = (c, event, tag) => c.events.filter((e) => e.event === event && e.args[0] === tag);
/** Emits on `c` and resolves with the ack. */
const call = (c, event, ...args) =>
  withTimeout(c.socket.emitWithAck(event, ...args), WAIT_MS, `the ack of ${event} from ${c.name}`);

describe("@socket.io/redis-emitter on a native cluster (--redis-emitter)", () => {
  let redis;
  let em1;
  let em2;
  let plain;
  let emitterClient;
  let emitter;
  const clients = [];
  /** A connected client, in `rooms`. */
  const client = async (server, name, rooms = [], nsp = "/") => {
    const c = await connect(server, name, nsp);
    clients.push(c);
    for (const room of rooms) await call(c, "join", room);
    return c;
  };
  /** The value of the series `line` in `server`'s /metrics. */
  const metric = async (server, line) => {
    const text = await (await fetch(`${server.url}/metrics`)).text();
    const found = text.split("\n").find((l) => l.startsWith(`${line} `));
    assert.ok(found, `${line} missing from /metrics`);
    return Number(found.slice(line.length + 1));
  };

  before(async () => {
    redis = await startRedis();
    [em1, em2, plain] = [await startNode(redis, true), await startNode(redis, true), await startNode(redis, false)];
    emitterClient = createClient({ url: redis.url });
    await emitterClient.connect();
    emitter = new Emitter(emitterClient);
  });

  after(async () => {
    for (const c of clients) c.socket.disconnect();
    await emitterClient?.quit().catch(() => {});
    for (const node of [em1, em2, plain]) await node?.stop();
    await redis?.stop();
  });

  it("emits to rooms with except and binary, and to the namespace: once on each flagged node, never on the other", async () => {
    const [room, excluded] = [unique("room"), unique("x")];
    const a = await client(em1, "a", [room]);
    const b = await client(em2, "b", [room]);
    const x = await client(em2, "x", [room, excluded]);
    const p = await client(plain, "p", [room]);
    const o = await client(em1, "o");
    const tag = unique("em");
    emitter.to(room).except(excluded).emit("em", tag, Buffer.from([4, 2]));
    const all = unique("all");
    emitter.emit("all", all);
    await until(() => [a, b, x, o].every((c) => got(c, "all", all).length > 0), "for the namespace-wide emit");
    // The room emit was published first, on the same connection: it has arrived where it goes.
    for (const c of [a, b]) {
      const [{ args }] = got(c, "em", tag);
      assert.deepEqual([...new Uint8Array(args[1])], [4, 2], `${c.name}: the binary argument`);
    }
    assert.equal(got(x, "em", tag).length + got(o, "em", tag).length, 0, "except, or the room, was ignored");
    await sleep(QUIET_MS);
    assert.deepEqual([a, b].map((c) => got(c, "em", tag).length), [1, 1], "a node passed it on over the cluster");
    assert.equal(got(p, "em", tag).length + got(p, "all", all).length, 0, "a node without --redis-emitter delivered it");
  });

  it("emits to other namespaces, and counts what is malformed or for a namespace the node does not serve", async () => {
    const admin = await client(em1, "admin", [], "/admin");
    const main = await client(em1, "main");
    const unroutable = 'switchboard_adapter_errors_total{kind="unroutable"}';
    const malformed = 'switchboard_adapter_errors_total{kind="malformed"}';
    const [unroutableBefore, malformedBefore] = [await metric(em1, unroutable), await metric(em1, malformed)];
    const tag = unique("ns");
    emitter.of("/nowhere").emit("ns", tag);
    await emitterClient.publish("socket.io#/#", "not a message");
    emitter.of("/admin").emit("ns", tag);
    await until(() => got(admin, "ns", tag).length > 0, "for the /admin emit");
    assert.equal(got(main, "ns", tag).length, 0, "an emit to /admin reached /");
    await until(async () => (await metric(em1, unroutable)) > unroutableBefore, "for the unroutable count");
    await until(async () => (await metric(em1, malformed)) > malformedBefore, "for the malformed count");
  });

  it("socketsJoin and socketsLeave on each flagged node, the joined room then routed by the native cluster", async () => {
    const [room, joined] = [unique("room"), unique("joined")];
    const a = await client(em1, "a", [room]);
    const b = await client(em2, "b", [room]);
    const p = await client(plain, "p", [room]);
    const sender = await client(plain, "sender");
    emitter.in(room).socketsJoin(joined);
    const first = unique("first");
    emitter.to(joined).emit("j", first);
    await until(() => got(a, "j", first).length > 0 && got(b, "j", first).length > 0, "for the emit to the joined room");
    // The native cluster carries a broadcast from the third node to the emitter-joined room.
    const native = unique("native");
    await until(async () => {
      await call(sender, "broadcast", { room: joined, event: "n", data: native });
      return got(a, "n", native).length > 0 && got(b, "n", native).length > 0;
    }, "for the native broadcast to the joined room");
    assert.equal(got(p, "n", native).length, 0, "the node without --redis-emitter applied socketsJoin");

    emitter.in(room).socketsLeave(joined);
    const gone = unique("gone");
    emitter.to(joined).emit("j", gone);
    const marker = unique("marker");
    emitter.to(room).emit("m", marker);
    await until(() => got(a, "m", marker).length > 0 && got(b, "m", marker).length > 0, "for the marker");
    assert.equal(got(a, "j", gone).length + got(b, "j", gone).length, 0, "socketsLeave was not applied");
  });

  it("disconnectSockets on each flagged node only, and serverSideEmit to the namespace's server-side listeners", async () => {
    const [room, target, doomed] = [unique("room"), unique("target"), unique("doomed")];
    const a = await client(em1, "a", [room]);
    const b = await client(em2, "b", [room]);
    const p = await client(plain, "p", [room]);
    // The admin UI's command listener (server-side event on /admin) makes this node's sockets join.
    emitter.of("/admin").serverSideEmit("switchboard:admin:command", { op: "join", nsp: "/", room: target, filter: room });
    const tag = unique("sse");
    await until(() => {
      emitter.to(target).emit("t", tag);
      return got(a, "t", tag).length > 0 && got(b, "t", tag).length > 0;
    }, "for the sockets the server-side command made join");

    const d = await client(em1, "d", [doomed]);
    const e = await client(em2, "e", [doomed]);
    const q = await client(plain, "q", [doomed]);
    emitter.in(doomed).disconnectSockets();
    await until(() => d.disconnects.length > 0 && e.disconnects.length > 0, "for the disconnects");
    assert.deepEqual([...d.disconnects, ...e.disconnects], ["io server disconnect", "io server disconnect"]);
    await sleep(QUIET_MS);
    assert.ok(q.socket.connected && a.socket.connected, "disconnectSockets picked the wrong sockets");
    assert.equal(got(p, "t", tag).length, 0, "the node without --redis-emitter ran the server-side command");
  });
});
