// Cross-node end-to-end tests: three `cluster_node` processes (server/e2e/fixtures/src/bin/cluster_node.rs,
// which documents the events used here) joined by a real redis-server or nats-server, with official
// socket.io-client sockets spread over them (websocket, polling, and polling with upgrade).
// Suites: Redis, NATS, Redis sharded over two instances, and Redis killed and restarted.
// Run: `cargo build -p switchboard-e2e-fixtures && npm ci && npm test` (needs redis-server and
// nats-server: `sudo apt-get install redis-server nats-server`).
// SWITCHBOARD_CLUSTER_BIN overrides the node binary (default: ../../target/debug/cluster_node).

import { randomBytes } from "node:crypto";
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";

import { io } from "socket.io-client";

import { binaryPath, redisCommand, sleep, startNats, startRedis, startServer, withTimeout } from "../harness.js";

const BIN = binaryPath("SWITCHBOARD_CLUSTER_BIN", "target/debug/cluster_node");
/** How long to wait for anything that should happen (generous: failures show up as timeouts). */
const WAIT_MS = 5000;
/** How long a client that must not get an event is watched. */
const QUIET_MS = 300;
/** A fresh cluster must see all its peers within this (heartbeat interval 5 s, plus slack). */
const FORM_MS = 12_000;
/** The cluster's request timeout (`ClusterConfig` default): fetchSockets gives up after it. */
const REQUEST_TIMEOUT_MS = 5000;

// ---------------------------------------------------------------------------------------------
// Processes
// ---------------------------------------------------------------------------------------------

/** Starts one cluster node on a free port with `env` (ADAPTER, REDIS_URL / NATS_URL, CLUSTER_PREFIX). */
function startNode(env, label) {
  return startServer({
    bin: BIN,
    hint:
      "Build it first with `cargo build -p switchboard-e2e-fixtures` (from the workspace root), " +
      "or point SWITCHBOARD_CLUSTER_BIN at a built binary.",
    nodeIdPrefix: label,
    env: ({ port, nodeId }) => ({
      ...env,
      PORT: String(port),
      NODE_ID: nodeId,
      RUST_LOG: process.env.RUST_LOG ?? "warn",
      RUST_BACKTRACE: "0",
    }),
    outputLimit: 8000,
  });
}

// ---------------------------------------------------------------------------------------------
// Clients
// ---------------------------------------------------------------------------------------------

const TRANSPORTS = {
  websocket: { transports: ["websocket"] },
  polling: { transports: ["polling"] },
  upgrade: { transports: ["polling", "websocket"] },
};

/** A socket.io-client socket on one node that records what it receives and answers `question`. */
class Client {
  constructor(name, node, transport) {
    this.name = name;
    this.node = node;
    this.transport = transport;
    /** While true, `question` goes unanswered. */
    this.silent = false;
    this.events = [];
    this.waiters = new Set();
    this.socket = io(node.url, { ...TRANSPORTS[transport], forceNew: true, reconnection: false, auth: { name } });
    this.socket.onAny((event, ...args) => {
      this.events.push({ event, args });
      for (const waiter of [...this.waiters]) waiter();
    });
    this.socket.on("question", (_data, answer) => {
      if (!this.silent) answer(this.socket.id);
    });
  }

  get id() {
    return this.socket.id;
  }

  connected() {
    const socket = this.socket;
    if (socket.connected) return Promise.resolve(this);
    const outcome = new Promise((resolve, reject) => {
      socket.once("connect", () => resolve(this));
      socket.once("connect_error", (err) => reject(new Error(`${this.name}: connect_error ${err.message}`)));
    });
    return withTimeout(outcome, WAIT_MS, `${this.name} to connect to ${this.node.nodeId}`);
  }

  /** The received `event`s whose first argument has this `tag`. */
  got(event, tag) {
    return this.events.filter((e) => e.event === event && e.args[0]?.tag === tag);
  }

  /** Waits until `event` with `tag` arrived (it may have already). */
  waitFor(event, tag, ms = WAIT_MS) {
    let waiter;
    const arrived = new Promise((resolve) => {
      waiter = () => {
        if (this.got(event, tag).length > 0) resolve();
      };
      this.waiters.add(waiter);
      waiter();
    });
    return withTimeout(arrived, ms, `${this.name} to get ${event} ${tag}`).finally(() => this.waiters.delete(waiter));
  }

  /** Emits `event(arg)` and resolves with the ack's `{ok}` or `{error}`. */
  call(event, arg, ms = WAIT_MS) {
    return withTimeout(this.socket.emitWithAck(event, arg), ms, `the ack of ${event} from ${this.name}`);
  }

  /** Like `call`, and fails the test on `{error}`. */
  async ok(event, arg, ms) {
    const answer = await this.call(event, arg, ms);
    assert.ok(answer && "ok" in answer, `${event} ${JSON.stringify(arg)} from ${this.name} failed: ${JSON.stringify(answer)}`);
    return answer.ok;
  }

  close() {
    this.socket.disconnect();
  }
}

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

let counter = 0;
/** A unique room name or tag. */
const unique = (what) => `${what}-${++counter}-${randomBytes(3).toString("hex")}`;

const sorted = (list) => [...list].sort();
const ids = (clients) => sorted(clients.map((c) => c.id));

/** Retries `check` (which throws until satisfied) until it passes; rethrows its last error after `ms`. */
async function eventually(check, ms = WAIT_MS, intervalMs = 50) {
  const deadline = Date.now() + ms;
  for (;;) {
    try {
      return await check();
    } catch (e) {
      if (Date.now() > deadline) throw e;
    }
    await sleep(intervalMs);
  }
}

/**
 * Broadcasts `{...selection, event: "msg", data: {tag}}` from `from` and checks that exactly the
 * `expected` clients get it, once each (the others are watched for QUIET_MS after the last one).
 * Resolves with the ack's `ok` (the emitting node's local recipient count).
 */
async function broadcastReaches(from, selection, expected, everyone) {
  const tag = unique("tag");
  const sent = await from.ok("broadcast", { ...selection, event: "msg", data: { tag } });
  await Promise.all(expected.map((c) => c.waitFor("msg", tag)));
  await sleep(QUIET_MS);
  for (const c of everyone) {
    const want = expected.includes(c) ? 1 : 0;
    const got = c.got("msg", tag).length;
    assert.equal(got, want, `${c.name} (${c.node.nodeId}) got ${tag} ${got} time(s), want ${want}`);
  }
  return sent;
}

/**
 * Waits until a room emit from `prober` reaches every one of `members`. A join's ack already
 * waits for the room's subscription on the broker (the test "reaches a member right after its
 * join" checks that alone); the matrix tests also settle this way before cross-node operations
 * on a fresh room, so a failure there points at the operation, not at the join.
 */
async function subscribed(prober, room, members) {
  const tags = [];
  const reachedAll = () => members.every((m) => tags.some((tag) => m.got("probe", tag).length > 0));
  const deadline = Date.now() + WAIT_MS;
  while (Date.now() < deadline) {
    const tag = unique("probe");
    tags.push(tag);
    await prober.ok("broadcast", { room, event: "probe", data: { tag } });
    for (const until = Date.now() + 100; Date.now() < until; await sleep(10)) {
      if (reachedAll()) return;
    }
  }
  const missing = members.filter((m) => !tags.some((tag) => m.got("probe", tag).length > 0)).map((m) => m.name);
  throw new Error(`room ${room} emits never reached ${missing} within ${WAIT_MS} ms`);
}

/** Joins each client to `room` (through its own node), then waits until room emits reach them all. */
async function join(room, clients) {
  await Promise.all(clients.map((c) => c.ok("join", room)));
  await subscribed(clients[0], room, clients);
}

/** Waits until every node sees the two others (serverSideEmit answers) and fetchSockets sees everyone. */
async function clusterFormed(nodes, clientsOf, everyone) {
  await eventually(
    async () => {
      for (const node of nodes) {
        const client = clientsOf(node)[0];
        const answers = await client.ok("server_side", { data: "formed?", timeout: 300 });
        const others = nodes.filter((n) => n !== node).map((n) => n.nodeId);
        assert.deepEqual(sorted(answers.map((a) => a.node)), sorted(others), `peers of ${node.nodeId}`);
        const found = await client.ok("fetch", {});
        assert.deepEqual(sorted(found.map((s) => s.id)), ids(everyone), `fetchSockets from ${node.nodeId}`);
      }
    },
    FORM_MS,
    100,
  );
}

/**
 * Starts three nodes on `env` and, per node, clients with these transports; resolves with
 * `{ nodes, clients, clientsOf, stop }`. `clients` is in node order: a1, a2, b1, b2, c1, c2.
 */
async function startCluster(env, transports) {
  const started = await Promise.allSettled([0, 1, 2].map(() => startNode(env, env.ADAPTER)));
  const nodes = started.filter((s) => s.status === "fulfilled").map((s) => s.value);
  if (nodes.length < started.length) {
    await Promise.all(nodes.map((n) => n.stop()));
    throw started.find((s) => s.status === "rejected").reason;
  }
  const clients = [];
  nodes.forEach((node, i) => {
    transports[i].forEach((transport, j) => clients.push(new Client(`${"abc"[i]}${j + 1}`, node, transport)));
  });
  const stop = async () => {
    for (const c of clients) c.close();
    await Promise.all(nodes.map((n) => n.stop()));
  };
  try {
    await Promise.all(clients.map((c) => c.connected()));
    const clientsOf = (node) => clients.filter((c) => c.node === node);
    await clusterFormed(nodes, clientsOf, clients);
    return { nodes, clients, clientsOf, stop };
  } catch (e) {
    const logs = nodes.map((n) => `--- ${n.nodeId}:\n${n.output()}`).join("\n");
    await stop();
    throw new Error(`${e.message}\n${logs}`);
  }
}

/** Per node: the transports of its clients (two each, every transport on two nodes). */
const SPREAD = [
  ["websocket", "polling"],
  ["polling", "upgrade"],
  ["upgrade", "websocket"],
];

// ---------------------------------------------------------------------------------------------
// The cross-node matrix, run over each broker
// ---------------------------------------------------------------------------------------------

/**
 * Registers the matrix tests. `ctx()` returns the running `{ nodes, clients }`; the tests only
 * use fresh room names, so they do not depend on each other.
 */
function crossNodeMatrix(ctx) {
  const all = () => ctx().clients;
  const named = (...names) => names.map((n) => all().find((c) => c.name === n));

  it("serves each client on its own node, with the node id in socket ids and fetched data", async () => {
    for (const c of all()) {
      const me = await c.ok("whoami");
      assert.deepEqual(me, { node: c.node.nodeId, id: c.id });
      assert.ok(c.id.startsWith(`${c.node.nodeId}.`), `${c.id} has the prefix of ${c.node.nodeId}`);
    }
    const [a1] = named("a1");
    const found = await a1.ok("fetch", {});
    for (const c of all()) {
      const s = found.find((f) => f.id === c.id);
      assert.ok(s, `${c.name} fetched`);
      assert.deepEqual(s.data, { node: c.node.nodeId });
      assert.deepEqual(s.auth, { name: c.name });
    }
  });

  it("broadcasts to all sockets of every node, each once", async () => {
    const [a1, b2, c1] = named("a1", "b2", "c1");
    // From one node of each kind of client, at the same time (each emit has its own tag).
    const sent = await Promise.all([a1, b2, c1].map((from) => broadcastReaches(from, {}, all(), all())));
    assert.deepEqual(sent, [2, 2, 2], "local recipients on each emitting node");
  });

  it("broadcasts to a room only its members on other nodes, also from a node without any", async () => {
    const room = unique("room");
    const members = named("a1", "b2"); // on nodes A and B; node C has none
    await join(room, members);
    const [a2, b1, c1] = named("a2", "b1", "c1");
    // From a non-member next to a member, from the other member node, and from node C.
    await Promise.all([a2, b1, c1].map((from) => broadcastReaches(from, { room }, members, all())));
    // Several rooms, on all three nodes: each socket once, even when it is in two of them.
    const other = unique("room");
    await join(other, named("a1", "c2"));
    await broadcastReaches(b1, { room: [room, other] }, named("a1", "b2", "c2"), all());
  });

  it("broadcasts with except, namespace-wide and within a room", async () => {
    const room = unique("room");
    const skip = unique("except");
    await join(room, named("a1", "b1", "b2", "c1"));
    await join(skip, named("a2", "b2", "c2"));
    const [a1, b1, c2] = named("a1", "b1", "c2");
    await Promise.all([
      broadcastReaches(c2, { except: skip }, named("a1", "b1", "c1"), all()),
      broadcastReaches(a1, { room, except: skip }, named("a1", "b1", "c1"), all()),
      // Except a socket id room: that socket alone is left out, wherever it is.
      broadcastReaches(a1, { room, except: b1.id }, named("a1", "b2", "c1"), all()),
    ]);
  });

  it("collects broadcast acks from every node", async () => {
    const [a2, c1, c2] = named("a2", "c1", "c2");
    const everyone = await a2.ok("ask", { data: "who?", timeout: 2000 });
    assert.equal(everyone.missing, 0);
    assert.deepEqual(sorted(everyone.answers.map((a) => a.socket)), ids(all()));
    for (const answer of everyone.answers) assert.deepEqual(answer.args, [answer.socket], "each socket answers with its id");

    const room = unique("room");
    const members = named("a1", "b1", "c2");
    await join(room, members);
    const inRoom = await c1.ok("ask", { room, timeout: 2000 });
    assert.deepEqual(inRoom, { answers: inRoom.answers, missing: 0 });
    assert.deepEqual(sorted(inRoom.answers.map((a) => a.socket)), ids(members));

    // One silent socket on another node: the others' answers come back, one is missing.
    c2.silent = true;
    try {
      const started = Date.now();
      const partial = await a2.ok("ask", { room, timeout: 500 });
      const took = Date.now() - started;
      assert.equal(partial.missing, 1);
      assert.deepEqual(sorted(partial.answers.map((a) => a.socket)), ids(named("a1", "b1")));
      assert.ok(took >= 450 && took < 2500, `waited for the silent socket until the timeout (${took} ms)`);
    } finally {
      c2.silent = false;
    }
  });

  it("fetches sockets with their rooms across nodes", async () => {
    const room = unique("room");
    const members = named("a2", "b1", "c1", "c2");
    await join(room, members);
    const extra = unique("room");
    await join(extra, named("b1"));
    for (const node of ctx().nodes) {
      const asker = all().find((c) => c.node === node);
      const found = await asker.ok("fetch", { room });
      assert.deepEqual(sorted(found.map((s) => s.id)), ids(members), `fetch from ${node.nodeId}`);
      for (const s of found) {
        assert.ok(s.rooms.includes(room), `${s.id} lists ${room}`);
        const c = members.find((m) => m.id === s.id);
        assert.equal(s.rooms.includes(extra), c.name === "b1", `${c.name}'s rooms ${s.rooms}`);
        assert.deepEqual(s.data, { node: c.node.nodeId });
      }
      const excepted = await asker.ok("fetch", { room, except: extra });
      assert.deepEqual(sorted(excepted.map((s) => s.id)), ids(named("a2", "c1", "c2")));
    }
  });

  it("makes sockets on every node join and leave rooms (socketsJoin / socketsLeave)", async () => {
    const from = unique("from");
    const to = unique("to");
    const members = named("a1", "b2", "c2");
    await join(from, members);
    const [a2, b1, c1] = named("a2", "b1", "c1");
    assert.equal(await c1.ok("sockets_join", { room: from, target: to }), true);
    // Remote joins are applied when the other nodes get the message: wait for them.
    await eventually(async () => {
      const found = await a2.ok("fetch", { room: to });
      assert.deepEqual(sorted(found.map((s) => s.id)), ids(members));
    });
    // The joins subscribed the nodes to the new room: an emit to it reaches all members.
    await subscribed(b1, to, members);
    await broadcastReaches(b1, { room: to }, members, all());

    // socketsLeave of one member's node id room, then of everyone.
    const [b2] = named("b2");
    assert.equal(await a2.ok("sockets_leave", { room: b2.id, target: to }), true);
    await eventually(async () => {
      const found = await c1.ok("fetch", { room: to });
      assert.deepEqual(sorted(found.map((s) => s.id)), ids(named("a1", "c2")));
    });
    await broadcastReaches(a2, { room: to }, named("a1", "c2"), all());
    assert.equal(await b1.ok("sockets_leave", { target: [to, from] }), true);
    await eventually(async () => {
      assert.deepEqual(await a2.ok("fetch", { room: to }), []);
      assert.deepEqual(await a2.ok("fetch", { room: from }), []);
    });
    await broadcastReaches(b1, { room: to }, [], all());
  });

  it("disconnects sockets on every node (disconnectSockets)", async () => {
    const room = unique("kick");
    const { nodes } = ctx();
    const victims = [
      new Client("d1", nodes[0], "polling"),
      new Client("d2", nodes[1], "websocket"),
      new Client("d3", nodes[2], "upgrade"),
    ];
    try {
      await Promise.all(victims.map((v) => v.connected()));
      await join(room, victims);
      const reasons = victims.map((v) => {
        const reason = new Promise((resolve) => v.socket.once("disconnect", resolve));
        return withTimeout(reason, WAIT_MS, `${v.name} to be disconnected`);
      });
      const [b1] = named("b1");
      assert.equal(await b1.ok("disconnect_sockets", { room }), true);
      assert.deepEqual(await Promise.all(reasons), victims.map(() => "io server disconnect"));
      // Everyone else is still connected and served, and nobody is left in the room.
      for (const c of all()) assert.equal((await c.ok("whoami")).id, c.id);
      await eventually(async () => assert.deepEqual(await b1.ok("fetch", { room }), []));
    } finally {
      for (const v of victims) v.close();
    }
  });

  // A join holds the socket's output (its ack included) until the broker confirmed the room's
  // subscription, so an emit another node sends after the ack reaches the new member. Before
  // that hold, about 1 in 10 of these emits was lost on Redis and NATS.
  it("reaches a member right after its join, from another node", async (t) => {
    // Both on websocket (polling round trips are slow enough to hide the race).
    const [a1, c2] = named("a1", "c2");
    const rooms = Array.from({ length: 30 }, () => unique("fresh"));
    for (const room of rooms) {
      await c2.ok("join", room);
      await a1.ok("broadcast", { room, event: "msg", data: { tag: room } });
    }
    await eventually(() => assert.ok(rooms.every((room) => c2.got("msg", room).length === 1)), 1000).catch(() => {});
    const lost = rooms.filter((room) => c2.got("msg", room).length === 0).length;
    t.diagnostic(`${lost} of ${rooms.length} emits sent right after the join ack were lost`);
    assert.equal(lost, 0, `${lost} of ${rooms.length} emits to a just-joined room were lost`);
  });

  it("serverSideEmit collects one answer from each other node", async () => {
    const { nodes } = ctx();
    for (const node of nodes) {
      const client = all().find((c) => c.node === node);
      const data = unique("ping");
      const answers = await client.ok("server_side", { data, timeout: 2000 });
      const others = nodes.filter((n) => n !== node).map((n) => n.nodeId);
      assert.deepEqual(
        answers.sort((x, y) => x.node.localeCompare(y.node)),
        sorted(others).map((n) => ({ node: n, data })),
      );
    }
  });
}

// ---------------------------------------------------------------------------------------------
// Suites
// ---------------------------------------------------------------------------------------------

describe("cluster over Redis: 3 nodes, socket.io-client on each", () => {
  let redis;
  let cluster;
  before(async () => {
    redis = await startRedis();
    cluster = await startCluster({ ADAPTER: "redis", REDIS_URL: redis.url, CLUSTER_PREFIX: unique("sb") }, SPREAD);
  });
  after(async () => {
    await cluster?.stop();
    await redis?.stop();
  });
  crossNodeMatrix(() => cluster);
});

describe("cluster over NATS: 3 nodes, socket.io-client on each", () => {
  let nats;
  let cluster;
  before(async () => {
    nats = await startNats();
    cluster = await startCluster({ ADAPTER: "nats", NATS_URL: nats.url, CLUSTER_PREFIX: unique("sb") }, SPREAD);
  });
  after(async () => {
    await cluster?.stop();
    await nats?.stop();
  });
  crossNodeMatrix(() => cluster);
});

describe("cluster over Redis sharded on 2 instances", () => {
  let shards = [];
  let cluster;
  let prefix;
  before(async () => {
    shards = await Promise.all([startRedis(), startRedis()]);
    prefix = unique("sb");
    const env = { ADAPTER: "redis", REDIS_URL: shards.map((s) => s.url).join(","), CLUSTER_PREFIX: prefix };
    cluster = await startCluster(env, SPREAD);
  });
  after(async () => {
    await cluster?.stop();
    await Promise.all(shards.map((s) => s.stop()));
  });

  it("spreads room channels over both instances, and room emits reach members through each", async () => {
    const { clients } = cluster;
    const [a1, b1, c1] = ["a1", "b1", "c1"].map((n) => clients.find((c) => c.name === n));
    const rooms = Array.from({ length: 16 }, () => unique("spread"));
    await Promise.all(rooms.map((room) => join(room, [a1, b1])));
    // Every instance carries some of the room channels (16 rooms all on one of 2: p = 2^-15).
    await eventually(async () => {
      for (const shard of shards) {
        const channels = await redisCommand(shard.port, ["PUBSUB", "CHANNELS", `${prefix}#*`]);
        const roomChannels = channels.filter((ch) => rooms.some((r) => ch.endsWith(`#room#${r}`)));
        assert.ok(roomChannels.length > 0, `redis on port ${shard.port} has room channels: ${channels}`);
      }
    });
    // c1's node has no member: each emit is published on the room's instance and received by A and B.
    await Promise.all(rooms.map((room) => broadcastReaches(c1, { room }, [a1, b1], [a1, b1, c1])));
  });

  crossNodeMatrix(() => cluster);
});

describe("cluster over Redis when Redis dies and comes back", () => {
  let redis;
  let cluster;
  before(async () => {
    redis = await startRedis();
    cluster = await startCluster({ ADAPTER: "redis", REDIS_URL: redis.url, CLUSTER_PREFIX: unique("sb") }, SPREAD);
  });
  after(async () => {
    await cluster?.stop();
    await redis?.stop();
  });

  it("keeps serving local sockets, fails requests fast, and resumes cross-node delivery within 2 s", async (t) => {
    const { clients } = cluster;
    const [a1, a2, b1, b2, c1, c2] = clients;
    const room = unique("room");
    await join(room, clients);
    await broadcastReaches(a1, { room }, clients, clients);

    await redis.kill();
    const killed = Date.now();
    // A request sent the moment Redis dies may already sit in the publish queue, so it is not
    // refused: it must still end with an error, at the latest at the cluster request timeout.
    const first = a1
      .call("fetch", { room }, REQUEST_TIMEOUT_MS + 2000)
      .then((answer) => ({ answer, took: Date.now() - killed }));

    // Every node notices and reports it...
    await eventually(
      async () => {
        for (const c of [a1, b1, c1]) assert.equal((await c.ok("health")).connected, false, `${c.node.nodeId} sees redis down`);
      },
      3000,
      20,
    );
    t.diagnostic(`every node reported redis down ${Date.now() - killed} ms after SIGKILL`);
    // ...and from then on requests that need other nodes fail at once with a clear error.
    const requests = [
      [a1, "fetch", { room }],
      [b1, "server_side", { data: "down?", timeout: 2000 }],
      [c1, "ask", { room, timeout: 2000 }],
      [b2, "sockets_join", { room, target: unique("never") }],
      [c2, "disconnect_sockets", { room: unique("nobody") }],
    ];
    for (const [client, event, arg] of requests) {
      const started = Date.now();
      const answer = await client.call(event, arg);
      const took = Date.now() - started;
      assert.match(answer.error ?? "", /^broker unavailable/, `${event} with redis down: ${JSON.stringify(answer)}`);
      assert.ok(took < 1000, `${event} failed after ${took} ms`);
    }

    // Each node still serves its own sockets: events, acks, and emits to its local room members.
    for (const c of clients) assert.equal((await c.ok("whoami")).id, c.id);
    assert.equal(await broadcastReaches(a1, { room }, [a1, a2], clients), 2);
    assert.equal(await broadcastReaches(b2, { room }, [b1, b2], clients), 2);
    assert.equal(await broadcastReaches(c2, {}, [c1, c2], clients), 2);

    // Back on the same port: cross-node emits flow again within 2 s of Redis answering PING.
    await redis.restart();
    const restarted = Date.now();
    const tags = new Set();
    let resumed = false;
    const receivedFromA = () => [b1, c1].every((c) => [...tags].some((tag) => c.got("msg", tag).length > 0));
    while (Date.now() - restarted < 2000) {
      const tag = unique("resume");
      tags.add(tag);
      await a1.ok("broadcast", { room, event: "msg", data: { tag } });
      await sleep(50);
      if (receivedFromA()) {
        resumed = true;
        break;
      }
    }
    const took = Date.now() - restarted;
    t.diagnostic(`cross-node broadcast resumed ${took} ms after redis answered PING again`);
    const log = cluster.nodes[0].output();
    assert.ok(resumed, `cross-node broadcast did not resume within 2 s of the restart (${took} ms):\n${log}`);

    // And the whole matrix works again: fetch, acks, server-side emits, every node to every node.
    await broadcastReaches(c2, { room }, clients, clients);
    await eventually(async () => {
      assert.deepEqual(sorted((await b2.ok("fetch", { room })).map((s) => s.id)), ids(clients));
    });
    const answers = await a2.ok("ask", { room, timeout: 2000 });
    assert.deepEqual(sorted(answers.answers.map((a) => a.socket)), ids(clients));
    const others = await c1.ok("server_side", { data: "up?", timeout: 2000 });
    assert.equal(others.length, 2);

    // The fetch sent as Redis died ended with an error too, within the request timeout.
    const { answer, took: firstTook } = await first;
    t.diagnostic(`fetch sent at the SIGKILL: ${JSON.stringify(answer)} after ${firstTook} ms`);
    assert.match(answer.error ?? "", /^(broker unavailable|cluster request timed out)/, JSON.stringify(answer));
    assert.ok(firstTook < REQUEST_TIMEOUT_MS + 1500, `the fetch sent at the SIGKILL answered after ${firstTook} ms`);
  });
});
