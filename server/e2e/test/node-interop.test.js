// Switchboard in a Node socket.io cluster (issue 16, classic format): a real Node socket.io 4.8
// server with @socket.io/redis-adapter 8.3 (node/cluster-server.mjs, which documents its `do`
// operations) and a `switchboard --app bench --adapter redis --redis-format node` node on one real
// redis-server; the official socket.io-client on each; @socket.io/redis-emitter 5.1 publishing from
// this process. Two suites: a bench node (its `join` and `broadcast`, and everything a Node server
// or an emitter asks of it), and a gateway node whose HTTP API makes the requests Node answers
// (fetchSockets, acked broadcasts, socketsJoin/Leave, disconnectSockets, serverSideEmit with ack).
// Run: `cargo build -p switchboard --bins && npm ci && node --test test/node-interop.test.js`
// (needs redis-server: `sudo apt-get install redis-server`).

import crypto, { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";

import { Emitter } from "@socket.io/redis-emitter";
import { createClient } from "redis";
import { io } from "socket.io-client";

import { REPO_ROOT, binaryPath, freePort, sleep, startRedis, startServer, withTimeout } from "../harness.js";

const SWITCHBOARD = binaryPath("SWITCHBOARD_BIN", "target/debug/switchboard");
const NODE_SERVER = path.join(REPO_ROOT, "server/e2e/node/cluster-server.mjs");
/** How long anything that should happen may take (failures show up as timeouts). */
const WAIT_MS = 5000;
/** How long a client that must not get an event is watched. */
const QUIET_MS = 300;

/** Retries `check` (which throws until satisfied) until it passes; rethrows its last error after `ms`. */
async function eventually(check, ms = WAIT_MS) {
  const deadline = Date.now() + ms;
  for (;;) {
    try {
      return await check();
    } catch (e) {
      if (Date.now() >= deadline) throw e;
      await sleep(20);
    }
  }
}

let counter = 0;
/** A unique room name or tag. */
const unique = (what) => `${what}-${++counter}-${randomBytes(3).toString("hex")}`;

/** The Node socket.io server (node/cluster-server.mjs) on `redis`. */
function startNodeServer(redis, { specificResponseChannel = false } = {}) {
  return startServer({
    bin: process.execPath,
    args: [NODE_SERVER],
    nodeIdPrefix: "node",
    env: ({ port, nodeId }) => ({
      PORT: String(port),
      NODE_ID: nodeId,
      REDIS_URL: redis.url,
      SPECIFIC_RESPONSE_CHANNEL: specificResponseChannel ? "1" : "0",
    }),
    readyCheck: async (server) => {
      await eventually(() => assert.ok(server.output().includes(`ready ${server.nodeId}`), server.output()));
      return true;
    },
    hint: "Install the e2e dependencies with `npm ci` in server/e2e.",
    outputLimit: 8000,
  });
}

/** A Switchboard node in the Node format on `redis`, running `app` (flags). */
function startSwitchboard(redis, app) {
  return startServer({
    bin: SWITCHBOARD,
    hint: "Build it first with `cargo build -p switchboard --bins` (from the workspace root).",
    nodeIdPrefix: "sb",
    args: ({ port, nodeId }) => [
      ...app,
      "--host", "127.0.0.1",
      "--port", String(port),
      "--node-id", nodeId,
      "--adapter", "redis",
      "--redis-format", "node",
      "--redis-url", redis.url,
    ],
    env: { RUST_LOG: process.env.RUST_LOG ?? "warn" },
    outputLimit: 8000,
  });
}

/** A socket.io-client socket that records what it receives and answers `question`. */
class Client {
  constructor(name, server, auth = {}) {
    this.name = name;
    this.events = [];
    this.waiters = new Set();
    this.disconnects = [];
    this.socket = io(server.url, { transports: ["websocket"], forceNew: true, reconnection: false, auth });
    this.socket.onAny((event, ...args) => {
      this.events.push({ event, args });
      this.wake();
    });
    this.socket.on("question", (x, answer) => answer(`${name}:${x}`));
    this.socket.on("disconnect", (reason) => {
      this.disconnects.push(reason);
      this.wake();
    });
  }

  wake() {
    for (const waiter of [...this.waiters]) waiter();
  }

  get id() {
    return this.socket.id;
  }

  connected() {
    if (this.socket.connected) return Promise.resolve(this);
    const outcome = new Promise((resolve, reject) => {
      this.socket.once("connect", () => resolve(this));
      this.socket.once("connect_error", (err) => reject(new Error(`${this.name}: ${err.message}`)));
    });
    return withTimeout(outcome, WAIT_MS, `${this.name} to connect`);
  }

  /** The received `event`s whose first argument is `tag`. */
  got(event, tag) {
    return this.events.filter((e) => e.event === event && e.args[0] === tag);
  }

  /** Waits until `holds()`; resolves with its value. */
  until(holds, what) {
    let waiter;
    const done = new Promise((resolve) => {
      waiter = () => {
        const value = holds();
        if (value) resolve(value);
      };
      this.waiters.add(waiter);
      waiter();
    });
    return withTimeout(done, WAIT_MS, `${this.name} ${what}`).finally(() => this.waiters.delete(waiter));
  }

  /** Waits for `event` whose first argument is `tag`; resolves with its arguments. */
  async waitFor(event, tag) {
    const [first] = await this.until(() => this.got(event, tag).length > 0 && this.got(event, tag), `to get ${event} ${tag}`);
    return first.args;
  }

  /** Emits and resolves with the ack. */
  call(event, ...args) {
    return withTimeout(this.socket.emitWithAck(event, ...args), WAIT_MS, `the ack of ${event} from ${this.name}`);
  }

  /** Runs an operation on the Node server (its `do`), failing the test on `{error}`. */
  async node(request) {
    const answer = await this.call("do", request);
    assert.ok(answer && "ok" in answer, `${JSON.stringify(request)} failed: ${JSON.stringify(answer)}`);
    return answer.ok;
  }

  close() {
    this.socket.disconnect();
  }
}

describe("Switchboard as a member of a Node socket.io cluster (@socket.io/redis-adapter 8, classic)", () => {
  let redis;
  let nodeServer;
  let switchboard;
  let emitterClient;
  let emitter;
  const clients = [];
  /** A connected client on `server`. */
  const client = async (name, server) => {
    const c = new Client(name, server);
    clients.push(c);
    return c.connected();
  };
  /** A Node-side client used to drive the Node server's operations. */
  let driver;

  before(async () => {
    redis = await startRedis();
    nodeServer = await startNodeServer(redis);
    switchboard = await startSwitchboard(redis, ["--app", "bench"]);
    emitterClient = createClient({ url: redis.url });
    await emitterClient.connect();
    emitter = new Emitter(emitterClient);
    driver = await client("driver", nodeServer);
    // Both servers subscribed: Node counts them with NUMSUB of the request channel.
    await eventually(async () => assert.equal(await driver.node({ op: "serverCount" }), 2));
  });

  after(async () => {
    for (const c of clients) c.close();
    await emitterClient?.quit().catch(() => {});
    await switchboard?.stop();
    await nodeServer?.stop();
    await redis?.stop();
  });

  it("counts both servers on the Node side (serverCount: PUBSUB NUMSUB of the request channel)", async () => {
    assert.equal(await driver.node({ op: "serverCount" }), 2);
  });

  it("exports its link to the Node cluster on /metrics, garbage from Redis counted as malformed", async () => {
    const metric = async (line) => {
      const text = await (await fetch(`${switchboard.url}/metrics`)).text();
      const found = text.split("\n").find((l) => l.startsWith(`${line} `));
      assert.ok(found, `${line} missing from /metrics`);
      return Number(found.slice(line.length + 1));
    };
    assert.equal(await metric("switchboard_adapter_connected"), 1);
    assert.equal(await metric('switchboard_cluster_info{adapter="redis-node",prefix="socket.io"}'), 1);
    const malformed = 'switchboard_adapter_errors_total{kind="malformed"}';
    const before = await metric(malformed);
    await emitterClient.publish("socket.io#/#", "not a message");
    await eventually(async () => assert.equal(await metric(malformed), before + 1));
    assert.ok((await metric("switchboard_adapter_receives_total")) > 0);
  });

  it("delivers Node's room broadcasts with binary arguments to Switchboard clients in the room only", async () => {
    const room = unique("room");
    const [inRoom, outside] = [await client("sb-in", switchboard), await client("sb-out", switchboard)];
    await inRoom.call("join", room);
    const tag = unique("hello");
    await driver.node({ op: "emit", to: room, event: "hello", args: [tag, 1, Buffer.from([1, 2, 3])] });
    const args = await inRoom.waitFor("hello", tag);
    assert.equal(args[1], 1);
    assert.deepEqual([...new Uint8Array(args[2])], [1, 2, 3]);
    await sleep(QUIET_MS);
    assert.equal(outside.got("hello", tag).length, 0, "a socket outside the room got it");
  });

  it("applies Node's except, to several rooms, volatile and compress, and keeps local broadcasts on Node", async () => {
    const [a, b] = [await client("sb-a", switchboard), await client("sb-b", switchboard)];
    const [r1, r2, excluded] = [unique("r1"), unique("r2"), unique("x")];
    await a.call("join", r1);
    await b.call("join", r2);
    await b.call("join", excluded);
    const tag = unique("multi");
    await driver.node({ op: "emit", to: [r1, r2], except: excluded, event: "multi", args: [tag] });
    await a.waitFor("multi", tag);
    const volatile = unique("volatile");
    await driver.node({ op: "emit", to: r2, event: "v", args: [volatile], volatile: true, compress: false });
    await b.waitFor("v", volatile);
    const local = unique("local");
    await driver.node({ op: "emit", event: "l", args: [local], local: true });
    await sleep(QUIET_MS);
    assert.equal(b.got("multi", tag).length, 0, "except was ignored");
    assert.equal(a.got("l", local).length, 0, "a local broadcast left the Node server");
  });

  it("delivers Switchboard's room broadcasts with binary data to Node clients in the room only", async () => {
    const room = unique("room");
    const [inRoom, outside] = [await client("node-in", nodeServer), await client("node-out", nodeServer)];
    await inRoom.call("join", room);
    const sender = await client("sb-sender", switchboard);
    const tag = unique("from-sb");
    await sender.call("broadcast", { room, event: tag, data: Buffer.from([9, 8, 7]) });
    const [data] = await inRoom.until(() => inRoom.events.find((e) => e.event === tag)?.args, `to get ${tag}`);
    assert.deepEqual([...new Uint8Array(data)], [9, 8, 7]);
    const all = unique("to-all");
    await sender.call("broadcast", { event: all, data: "everyone" });
    await outside.until(() => outside.events.some((e) => e.event === all), `to get ${all}`);
    await sleep(QUIET_MS);
    assert.equal(outside.events.filter((e) => e.event === tag).length, 0, "a Node socket outside the room got it");
  });

  it("serves @socket.io/redis-emitter: rooms, except, socketsJoin, socketsLeave and disconnectSockets", async () => {
    const [a, b] = [await client("sb-em-a", switchboard), await client("sb-em-b", switchboard)];
    const [room, excluded, joined] = [unique("em"), unique("em-x"), unique("em-joined")];
    await a.call("join", room);
    await b.call("join", room);
    await b.call("join", excluded);
    const tag = unique("emitted");
    emitter.to(room).except(excluded).emit("em", tag, Buffer.from([4, 2]));
    const args = await a.waitFor("em", tag);
    assert.deepEqual([...new Uint8Array(args[1])], [4, 2]);
    emitter.in(excluded).socketsJoin(joined);
    const after = unique("after-join");
    await eventually(async () => {
      emitter.to(joined).emit("joined", after);
      await b.until(() => b.got("joined", after).length > 0, "to be in the joined room");
    });
    await sleep(QUIET_MS);
    assert.equal(b.got("em", tag).length, 0, "except was ignored");
    assert.equal(a.got("joined", after).length, 0, "socketsJoin picked the wrong sockets");
    emitter.in(excluded).socketsLeave(joined);
    emitter.in(excluded).disconnectSockets();
    await b.until(() => b.disconnects.length > 0, "to be disconnected");
    assert.deepEqual(b.disconnects, ["io server disconnect"]);
    assert.ok(a.socket.connected, "disconnectSockets picked the wrong sockets");
  });

  it("answers Node's fetchSockets, socketsJoin, socketsLeave and disconnectSockets", async () => {
    const sb = await client("sb-req", switchboard);
    const room = unique("fetched");
    await sb.call("join", room);
    const found = await driver.node({ op: "fetch", to: room });
    assert.deepEqual(found.map((s) => s.id), [sb.id]);
    assert.ok(found[0].rooms.includes(room) && found[0].rooms.includes(sb.id), JSON.stringify(found[0]));
    const all = await driver.node({ op: "fetch" });
    assert.ok(all.some((s) => s.id === sb.id) && all.some((s) => s.id === driver.id));

    // To the socket's own id (a RemoteSocket's emit): its id room's channel.
    const direct = unique("direct");
    await driver.node({ op: "emit", to: sb.id, event: "direct", args: [direct] });
    await sb.waitFor("direct", direct);

    const target = unique("target");
    await driver.node({ op: "socketsJoin", to: sb.id, rooms: [target] });
    const tag = unique("joined");
    await eventually(async () => {
      await driver.node({ op: "emit", to: target, event: "t", args: [tag] });
      await sb.until(() => sb.got("t", tag).length > 0, "to be in the room Node made it join");
    });
    await driver.node({ op: "socketsLeave", to: sb.id, rooms: [target] });
    await eventually(async () => assert.deepEqual(await driver.node({ op: "fetch", to: target }), []));

    await driver.node({ op: "disconnectSockets", to: room, close: true });
    await sb.until(() => sb.disconnects.length > 0, "to be disconnected");
  });

  it("collects Switchboard clients' acks of Node's broadcast with acks", async () => {
    const sb = await client("sb-ack", switchboard);
    const room = unique("acked");
    await sb.call("join", room);
    const acks = await driver.node({ op: "emitWithAck", to: room, event: "question", args: ["x"], timeout: 2000 });
    assert.deepEqual(acks, ["sb-ack:x"]);
    // Nobody in the room: the Switchboard node still reports its count (0), so it completes at once.
    const started = Date.now();
    assert.deepEqual(await driver.node({ op: "emitWithAck", to: unique("empty"), event: "question", args: ["y"], timeout: 2000 }), []);
    assert.ok(Date.now() - started < 1500, "the acked broadcast waited for its timeout");
  });
});

// ---------------------------------------------------------------------------------------------
// The other direction: requests a Switchboard node makes, through the gateway's HTTP API
// (docs/gateway.md), answered by the Node server.
// ---------------------------------------------------------------------------------------------

const SECRET = "node-interop-hs256-secret-0123456789";
const API_KEY = "node-interop-api-key-0123456789";

/** An HS256 JWT for the gateway. */
function jwt(claims) {
  const b64url = (data) => Buffer.from(data).toString("base64url");
  const data = `${b64url(JSON.stringify({ alg: "HS256", typ: "JWT" }))}.${b64url(JSON.stringify(claims))}`;
  return `${data}.${b64url(crypto.createHmac("sha256", SECRET).update(data).digest())}`;
}

for (const specificResponseChannel of [false, true]) {
  describe(`a Switchboard gateway's cluster requests answered by a Node socket.io server (publishOnSpecificResponseChannel: ${specificResponseChannel})`, () => {
    let redis;
    let nodeServer;
    let gateway;
    let apiPort;
    let dir;
    const clients = [];
    let driver;

    /** Calls the gateway's API; resolves with the JSON answer (fails the test on another status). */
    async function api(endpoint, body) {
      const response = await fetch(`http://127.0.0.1:${apiPort}/v1/${endpoint}`, {
        method: "POST",
        headers: { authorization: `Bearer ${API_KEY}`, "content-type": "application/json" },
        body: JSON.stringify(body),
      });
      const answer = await response.json();
      assert.equal(response.status, 200, `${endpoint}: ${JSON.stringify(answer)}`);
      return answer;
    }

    /** A connected client on `server`; on the gateway it carries a token that joins `rooms`. */
    async function client(name, server, rooms = []) {
      const c = new Client(name, server, { token: jwt({ sub: name, exp: Math.floor(Date.now() / 1000) + 600, rooms }) });
      clients.push(c);
      return c.connected();
    }

    before(async () => {
      redis = await startRedis();
      nodeServer = await startNodeServer(redis, { specificResponseChannel });
      apiPort = await freePort();
      dir = mkdtempSync(path.join(tmpdir(), "node-interop-"));
      const config = path.join(dir, "switchboard.toml");
      writeFileSync(
        config,
        `host = "127.0.0.1"
  api-port = ${apiPort}

  [gateway]
  api-keys = ["${API_KEY}"]

  [[gateway.namespace]]
  name = "/"

  [gateway.jwt]
  hs256-secret = "${SECRET}"
  `,
      );
      gateway = await startSwitchboard(redis, ["--app", "gateway", "--config", config]);
      driver = await client("driver", nodeServer);
      await eventually(async () => assert.equal(await driver.node({ op: "serverCount" }), 2));
    });

    after(async () => {
      for (const c of clients) c.close();
      await gateway?.stop();
      await nodeServer?.stop();
      await redis?.stop();
      if (dir) rmSync(dir, { recursive: true, force: true });
    });

    it("fetchSockets from Switchboard lists the Node server's sockets with their rooms and data", async () => {
      const room = unique("fetch");
      const [n, g] = [await client("node-f", nodeServer), await client("gw-f", gateway, [room])];
      await n.call("join", room);
      const { sockets } = await api("sockets/fetch", { rooms: [room] });
      const byId = Object.fromEntries(sockets.map((s) => [s.id, s]));
      assert.deepEqual(Object.keys(byId).sort(), [n.id, g.id].sort());
      assert.deepEqual(byId[n.id].data, { node: "node" });
      assert.ok(byId[n.id].rooms.includes(room), JSON.stringify(byId[n.id]));
    });

    it("a Switchboard broadcast with acks collects the Node clients' acks and its own", async () => {
      const room = unique("acks");
      const [n, g] = [await client("node-a", nodeServer), await client("gw-a", gateway, [room])];
      await n.call("join", room);
      const answer = await api("emit", { rooms: [room], event: "question", args: ["q"], ack: true, timeout: 3000 });
      assert.equal(answer.missing, 0, JSON.stringify(answer));
      assert.deepEqual(answer.responses.map((r) => r.args[0]).sort(), ["gw-a:q", "node-a:q"]);
      // Volatile, except, binary-free JSON: a plain emit reaches the Node client too.
      const tag = unique("plain");
      await api("emit", { rooms: [room], except: [g.id], event: "plain", args: [tag], volatile: true });
      await n.waitFor("plain", tag);
      await sleep(QUIET_MS);
      assert.equal(g.got("plain", tag).length, 0, "except was ignored");
    });

    it("socketsJoin, socketsLeave and disconnectSockets from Switchboard reach Node's sockets", async () => {
      const n = await client("node-j", nodeServer);
      const target = unique("joined-by-sb");
      await api("sockets/join", { rooms: [n.id], join: [target] });
      await eventually(async () => {
        const found = await driver.node({ op: "fetch", to: target });
        assert.deepEqual(found.map((s) => s.id), [n.id]);
      });
      await api("sockets/leave", { rooms: [n.id], leave: [target] });
      await eventually(async () => assert.deepEqual(await driver.node({ op: "fetch", to: target }), []));
      await api("sockets/disconnect", { rooms: [n.id] });
      await n.until(() => n.disconnects.length > 0, "to be disconnected");
      assert.deepEqual(n.disconnects, ["io server disconnect"]);
    });

    it("serverSideEmit with ack goes both ways (the gateway's /v1/nodes, and Node asking the gateway)", async () => {
      const { nodes, missing } = await api("nodes", {});
      assert.equal(missing, 0);
      assert.deepEqual(nodes.map((n) => n.id).sort(), [gateway.nodeId, nodeServer.nodeId].sort());
      const answers = await driver.node({ op: "serverSideEmitWithAck", event: "gateway:node" });
      assert.deepEqual(answers.map((a) => a.id), [gateway.nodeId]);
    });
  });
}
