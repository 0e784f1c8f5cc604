// Connection state recovery across a cluster (docs/recovery.md): three `switchboard --app bench
// --adapter redis --connection-state-recovery` nodes joined by a real redis-server, behind real
// HAProxy (deploy/haproxy/haproxy.cfg, backend sid_sticky), with the official socket.io-client.
// A publisher on another node emits numbered messages to the client's room and to its own id;
// the client's node is killed with SIGKILL; the client reconnects through HAProxy to a node that
// is left, comes back `recovered` with the same id and its room, and has received every message
// once, in order. A disconnect longer than maxDisconnectionDuration, and a log trimmed past the
// client's offset, give `recovered` false.
//
// Needs: `cargo build -p switchboard` and `sudo apt-get install haproxy redis-server` (a missing
// one fails the run). SWITCHBOARD_BIN overrides the node binary.

import { randomBytes } from "node:crypto";
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";

import { io } from "socket.io-client";

import { binaryPath, redisCommand, sleep, startRedis, startServer, withTimeout } from "../harness.js";
import { nodeOfSid, startHaproxy } from "../balancers.js";

const BIN = binaryPath("SWITCHBOARD_BIN", "target/debug/switchboard");
/** How long anything that should happen may take (failures show up as these timeouts). */
const WAIT_MS = 10_000;
/** The nodes' maxDisconnectionDuration. */
const WINDOW_MS = 2000;
/** The nodes' --recovery-max-log-packets. */
const LOG_PACKETS = 200;
const PREFIX = `rc-${randomBytes(3).toString("hex")}`;

function startNode(redis) {
  return startServer({
    bin: BIN,
    hint: "Build it first with `cargo build -p switchboard` (from the workspace root), or set SWITCHBOARD_BIN.",
    nodeIdPrefix: "rc",
    args: ({ port, nodeId }) => [
      "--app", "bench",
      "--host", "127.0.0.1",
      "--port", String(port),
      "--node-id", nodeId,
      "--adapter", "redis",
      "--redis-url", redis.url,
      "--cluster-prefix", PREFIX,
      "--connection-state-recovery",
      "--max-disconnection-duration", String(WINDOW_MS),
      "--recovery-max-log-packets", String(LOG_PACKETS),
      "--ping-interval", "300",
      "--ping-timeout", "200",
      "--drain-window", "200",
    ],
    env: { RUST_LOG: process.env.RUST_LOG ?? "warn", RUST_BACKTRACE: "0" },
    outputLimit: 8000,
  });
}

/** Resolves on `connect`, rejects on `connect_error`. */
function connected(socket, what = "connect") {
  if (socket.connected) return Promise.resolve(socket);
  const outcome = new Promise((resolve, reject) => {
    socket.once("connect", () => resolve(socket));
    socket.once("connect_error", (err) => reject(new Error(`connect_error: ${err.message}`)));
  });
  return withTimeout(outcome, WAIT_MS, what);
}

/** Emits with an ack and resolves with it. */
function ack(socket, event, ...args) {
  return new Promise((resolve, reject) => {
    socket.timeout(WAIT_MS).emit(event, ...args, (err, answer) => (err ? reject(err) : resolve(answer)));
  });
}

/** Resolves once `cond()` holds, checked on every `msg` of `socket`. */
function until(socket, cond, what) {
  if (cond()) return Promise.resolve();
  const outcome = new Promise((resolve) => {
    const check = () => {
      if (cond()) {
        socket.off("msg", check);
        resolve();
      }
    };
    socket.on("msg", check);
  });
  return withTimeout(outcome, WAIT_MS, what);
}

/** Polls `check` (async) until it holds. */
async function eventually(check, what) {
  const deadline = Date.now() + WAIT_MS;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

describe("connection state recovery across three nodes over Redis behind HAProxy", () => {
  let redis;
  let haproxy;
  const nodes = [];
  const killed = new Set();
  const sockets = [];

  before(async () => {
    redis = await startRedis();
    for (let i = 0; i < 3; i++) nodes.push(await startNode(redis));
    haproxy = await startHaproxy({ backend: "sid_sticky", nodes });
  });

  after(async () => {
    for (const socket of sockets) socket.disconnect();
    await haproxy?.stop();
    for (const node of nodes) if (!killed.has(node)) await node.stop();
    await redis?.stop();
  });

  /** A client through HAProxy that reconnects at once, and the node that owns it. */
  async function client() {
    const socket = io(haproxy.url, { transports: ["websocket"], forceNew: true, reconnectionDelay: 50, reconnectionDelayMax: 50 });
    sockets.push(socket);
    await connected(socket);
    const node = nodes.find((n) => n.nodeId === nodeOfSid(socket.io.engine.id));
    assert.ok(node, `the node of ${socket.io.engine.id}`);
    return { socket, node };
  }

  /** A publisher connected straight to a node that is up and, if another one is, not `not`. */
  async function publisherBesides(not) {
    const live = nodes.filter((n) => !killed.has(n));
    const others = live.filter((n) => n !== not);
    const node = (others.length > 0 ? others : live).at(-1);
    const socket = io(node.url, { transports: ["websocket"], forceNew: true });
    sockets.push(socket);
    return connected(socket, "the publisher");
  }

  /** The victim's messages (the numbers) as they arrive, and whether a new socket replaced it. */
  function record(socket) {
    const got = [];
    socket.on("msg", (n) => got.push(n));
    return got;
  }

  it("restores a client whose node was killed, on another node, with every message once and in order", async () => {
    const { socket: victim, node: owner } = await client();
    const firstId = victim.id;
    await ack(victim, "join", "news");
    const got = record(victim);
    const publisher = await publisherBesides(owner);
    const COUNT = 150;
    let kill = false;
    // The socket's next `connect` after it lost its node (the manager's `reconnect` comes earlier,
    // before the CONNECT answer that says whether it was recovered).
    const back = new Promise((resolve) => victim.once("disconnect", () => victim.once("connect", resolve)));
    // Numbered messages, to the room and to the victim's own id in turn, one at a time.
    const publishing = (async () => {
      for (let n = 0; n < COUNT; n++) {
        await ack(publisher, "broadcast", { room: n % 2 === 0 ? "news" : firstId, data: n });
        if (n === 40) {
          await until(victim, () => got.length >= 20, "the first messages");
          owner.signal("SIGKILL");
          killed.add(owner);
          kill = true;
        }
        await sleep(2);
      }
    })();
    await withTimeout(back, WAIT_MS, "the reconnect");
    assert.ok(kill, "the owner was killed first");
    assert.equal(victim.recovered, true, "socket.recovered");
    assert.equal(victim.id, firstId, "the same socket id");
    const now = nodes.find((n) => n.nodeId === nodeOfSid(victim.io.engine.id));
    assert.notEqual(now, owner, "restored by another node");
    await publishing;
    await until(victim, () => got.length >= COUNT, `${COUNT} messages`);
    // The room and the id room came back: messages after the restore reached it too.
    assert.deepEqual(got, Array.from({ length: COUNT }, (_, n) => n), "an unbroken sequence, no duplicates");
    await sleep(100);
    assert.equal(got.length, COUNT, "nothing more");
    // The node that restored it reports its log and how far behind the stream it reads.
    const metrics = await (await fetch(`${now.url}/metrics`)).text();
    const value = (name) => Number(new RegExp(`^${name} (\\S+)$`, "m").exec(metrics)?.[1]);
    assert.ok(value("switchboard_recovery_log_packets") >= COUNT, "the log's size");
    assert.ok(value("switchboard_recovery_log_lag_seconds_count") > 0, "the lag observed");
    assert.ok(value("switchboard_recovery_restored_total") >= 1);
  });

  it("restores a client whose node was drained (SIGTERM, a rolling deploy) on another node", async () => {
    const { socket: victim, node: owner } = await client();
    const firstId = victim.id;
    await ack(victim, "join", "deploy");
    const got = record(victim);
    const publisher = await publisherBesides(owner);
    await ack(publisher, "broadcast", { room: "deploy", data: 0 });
    await until(victim, () => got.length === 1, "the first message");
    const back = new Promise((resolve) => victim.once("disconnect", () => victim.once("connect", resolve)));
    // As an orchestrator does: the node leaves the balancer, then gets SIGTERM.
    await haproxy.command(`set server sid_sticky/node${nodes.indexOf(owner) + 1} state maint`);
    owner.signal("SIGTERM");
    killed.add(owner);
    const gone = new Promise((resolve) => victim.once("disconnect", resolve));
    await withTimeout(gone, WAIT_MS, "the drain's disconnect");
    for (let n = 1; n <= 20; n++) await ack(publisher, "broadcast", { room: "deploy", data: n });
    await withTimeout(back, WAIT_MS, "the reconnect");
    assert.equal(victim.recovered, true, "socket.recovered");
    assert.equal(victim.id, firstId);
    assert.notEqual(nodeOfSid(victim.io.engine.id), owner.nodeId, "restored by another node");
    await ack(publisher, "broadcast", { room: "deploy", data: 21 });
    await until(victim, () => got.length >= 22, "22 messages");
    assert.deepEqual(got, Array.from({ length: 22 }, (_, n) => n));
    await withTimeout(owner.exited, WAIT_MS, "the drained node to exit");
  });

  it("does not restore a client that stayed away longer than maxDisconnectionDuration", async () => {
    const { socket: victim } = await client();
    const firstId = victim.id;
    await ack(victim, "join", "news");
    const pid = victim._pid;
    assert.ok(pid, "a private session id");
    victim.io.reconnection(false);
    victim.io.engine.close();
    // Its session key expires with the window (its node saved it when the connection dropped).
    const key = `${PREFIX}#/#session#${pid}`;
    const exists = async () => (await redisCommand(redis.port, ["EXISTS", key])) === 1;
    assert.ok(await exists(), "the session saved in Redis");
    await eventually(async () => !(await exists()), "the session to expire");
    victim.io.reconnection(true);
    victim.connect();
    await connected(victim);
    assert.ok(!victim.recovered, "socket.recovered");
    assert.notEqual(victim.id, firstId);
  });

  it("does not restore a client whose missed messages left the log", async () => {
    const { socket: victim, node } = await client();
    const firstId = victim.id;
    await ack(victim, "join", "trimmed");
    const got = record(victim);
    const publisher = await publisherBesides(node);
    await ack(publisher, "broadcast", { room: "trimmed", data: 0 });
    await until(victim, () => got.length === 1, "the first message");
    victim.io.reconnection(false);
    const gone = new Promise((resolve) => victim.once("disconnect", resolve));
    victim.io.engine.close();
    await withTimeout(gone, WAIT_MS, "disconnect");
    // Well past the log's bound (MAXLEN ~ keeps up to one stream node, 100 entries, more).
    for (let n = 1; n <= 2 * LOG_PACKETS + 100; n++) await ack(publisher, "broadcast", { room: "trimmed", data: n });
    victim.io.reconnection(true);
    victim.connect();
    await connected(victim);
    assert.ok(!victim.recovered, "socket.recovered");
    assert.notEqual(victim.id, firstId);
    assert.deepEqual(got, [0], "nothing replayed");
  });
});
