// Sticky sessions through real load balancers: three `switchboard --app bench` nodes joined by a
// real redis-server, behind HAProxy (deploy/haproxy/haproxy.cfg, each of its backends) and nginx
// (deploy/nginx/nginx.conf), with official socket.io-client sockets on polling (with and without
// cookies), websocket, and polling with upgrade. Each group connects, exchanges acks for a few
// seconds (many heartbeats at pingInterval 300 ms) and receives broadcasts sent from sockets on
// other nodes, with zero client errors. The round-robin backend works because nodes forward
// requests for other nodes' sessions to their owner (--forward-polling, on by default); with
// forwarding off it shows why stickiness is needed.
//
// Needs: `cargo build -p switchboard` and `sudo apt-get install haproxy nginx-light redis-server`
// (a missing one fails the run). SWITCHBOARD_BIN overrides the node binary.

import { randomBytes } from "node:crypto";
import http from "node:http";
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";

import { io } from "socket.io-client";

import { binaryPath, sleep, startRedis, startServer, withTimeout } from "../harness.js";
import { handshake, httpRequest, nodeOfSid, startHaproxy, startNginx } from "../balancers.js";

const BIN = binaryPath("SWITCHBOARD_BIN", "target/debug/switchboard");
/** How long anything that should happen may take (failures show up as these timeouts). */
const WAIT_MS = 5000;
/** How long each group of clients keeps exchanging acks and broadcasts. */
const EXERCISE_MS = 3000;
/** How long clients are watched for duplicates after the last broadcast. */
const QUIET_MS = 300;
const PING_INTERVAL_MS = 300;

let counter = 0;
const unique = (what) => `${what}-${++counter}-${randomBytes(3).toString("hex")}`;

// ---------------------------------------------------------------------------------------------
// Nodes
// ---------------------------------------------------------------------------------------------

/** The cluster secret every node of these tests shares: their cluster messages are all sealed. */
const CLUSTER_SECRET = "balancer-e2e-cluster-secret";

/**
 * The real binary as an operator runs it: bench app, Redis adapter with a cluster secret,
 * handshake cookie `io`, request forwarding on (the default); `extra` flags are appended.
 */
function startNode(redis, prefix, label, extra = []) {
  return startServer({
    bin: BIN,
    hint: "Build it first with `cargo build -p switchboard` (from the workspace root), or set SWITCHBOARD_BIN.",
    nodeIdPrefix: label,
    args: ({ port, nodeId }) => [
      "--app", "bench",
      "--host", "127.0.0.1",
      "--port", String(port),
      "--node-id", nodeId,
      "--adapter", "redis",
      "--redis-url", redis.url,
      "--cluster-prefix", prefix,
      "--cluster-secret", CLUSTER_SECRET,
      "--cookie", "io",
      "--ping-interval", String(PING_INTERVAL_MS),
      "--ping-timeout", "200",
      ...extra,
    ],
    env: { RUST_LOG: process.env.RUST_LOG ?? "warn", RUST_BACKTRACE: "0" },
    outputLimit: 8000,
  });
}

// ---------------------------------------------------------------------------------------------
// Clients
// ---------------------------------------------------------------------------------------------

const TRANSPORTS = { polling: ["polling"], websocket: ["websocket"], upgrade: ["polling", "websocket"] };

/**
 * A socket.io-client socket through a balancer. `spec`: `{ name, transport, cookies, from }`:
 * `cookies` turns on the Node client's cookie jar (`withCredentials: true`; without it the Node
 * client sends no cookie at all), `from` the local source address (for nginx's address hashing).
 * Every error, connect_error and unexpected disconnect is recorded in `errors`.
 */
class Client {
  constructor(url, spec) {
    Object.assign(this, spec);
    this.errors = [];
    this.events = [];
    this.waiters = new Set();
    this.closing = false;
    const agent = spec.from ? new http.Agent({ localAddress: spec.from }) : undefined;
    this.socket = io(url, {
      transports: TRANSPORTS[spec.transport],
      withCredentials: Boolean(spec.cookies),
      forceNew: true,
      reconnection: false,
      ...(agent ? { agent } : {}),
    });
    this.socket.on("connect_error", (e) => this.errors.push(`connect_error: ${e.message}`));
    this.socket.on("disconnect", (reason) => {
      if (!this.closing) this.errors.push(`disconnect: ${reason}`);
    });
    this.socket.io.on("error", (e) => this.errors.push(`manager error: ${e.message}`));
    this.socket.onAny((event, ...args) => {
      this.events.push({ event, data: args[0] });
      for (const waiter of [...this.waiters]) waiter();
    });
  }

  get label() {
    return `${this.name} (${this.transport}${this.cookies ? ", cookies" : ""}${this.from ? ` from ${this.from}` : ""})`;
  }

  /** The Engine.IO session id; its prefix is the node that owns the session. */
  get sid() {
    return this.socket.io.engine?.id;
  }

  get node() {
    return nodeOfSid(this.sid);
  }

  get transportName() {
    return this.socket.io.engine?.transport?.name;
  }

  /** Resolves once connected (and, for `upgrade`, once on websocket); rejects on connect_error. */
  async ready() {
    const socket = this.socket;
    if (!socket.connected) {
      const outcome = new Promise((resolve, reject) => {
        socket.once("connect", resolve);
        socket.once("connect_error", (e) => reject(new Error(`${this.label}: connect_error ${e.message}`)));
      });
      await withTimeout(outcome, WAIT_MS, `${this.label} to connect`);
    }
    if (this.transport === "upgrade" && this.transportName !== "websocket") {
      const upgraded = new Promise((resolve) => socket.io.engine.once("upgrade", resolve));
      await withTimeout(upgraded, WAIT_MS, `${this.label} to upgrade to websocket`);
    }
    return this;
  }

  got(event, tag) {
    return this.events.filter((e) => e.event === event && e.data?.tag === tag);
  }

  /** Waits until `event` with `tag` has arrived (it may have already). */
  waitFor(event, tag, ms = WAIT_MS) {
    let waiter;
    const arrived = new Promise((resolve) => {
      waiter = () => this.got(event, tag).length > 0 && resolve();
      this.waiters.add(waiter);
      waiter();
    });
    return withTimeout(arrived, ms, `${this.label} to get ${event} ${tag}`).finally(() => this.waiters.delete(waiter));
  }

  /** echo(value) through the bench contract; resolves with what the ack carried. */
  echo(value) {
    return withTimeout(this.socket.emitWithAck("echo", value), WAIT_MS, `the echo ack of ${this.label}`);
  }

  /** Broadcasts `event({tag, from})` to the whole namespace (every node, sender included). */
  broadcast(event, tag) {
    const data = { tag, from: this.name };
    return withTimeout(this.socket.emitWithAck("broadcast", { event, data }), WAIT_MS, `the broadcast ack of ${this.label}`);
  }

  close() {
    this.closing = true;
    this.socket.disconnect();
  }
}

/** Opens clients for `specs` through `url`; `use(clients)` runs with them, and they are closed after. */
async function withClients(url, specs, use) {
  const clients = specs.map((spec) => new Client(url, spec));
  try {
    return await use(clients);
  } finally {
    for (const c of clients) c.close();
  }
}

/** Until a probe broadcast from a client on each node reaches every client (room subscriptions are live). */
async function settle(clients) {
  const senders = [...new Map(clients.map((c) => [c.node, c])).values()];
  const tags = [];
  const deadline = Date.now() + WAIT_MS;
  const reached = () => clients.every((c) => senders.every((s) => tags.some((t) => t.from === s && c.got("probe", t.tag).length > 0)));
  while (!reached()) {
    assert.ok(Date.now() < deadline, "probe broadcasts from every node did not reach every client");
    for (const s of senders) {
      const tag = unique("probe");
      tags.push({ tag, from: s });
      await s.broadcast("probe", tag);
    }
    await sleep(100);
  }
}

/**
 * The check every sticky setup must pass: all `clients` connect (upgrade clients reach
 * websocket), spread over at least two nodes; then for EXERCISE_MS, round after round, every
 * client gets its echo ack and every client receives the round's broadcast exactly once, sent in
 * turn by each client (so from sockets on other nodes). At the end: zero client errors, every
 * session id unchanged (no silent reconnect) and every client still on its transport.
 * Resolves `{ rounds, spread }` for diagnostics.
 */
async function exercise(clients) {
  await Promise.all(clients.map((c) => c.ready()));
  const sids = clients.map((c) => c.sid);
  const spread = {};
  for (const c of clients) spread[c.node] = (spread[c.node] ?? 0) + 1;
  assert.ok(Object.keys(spread).length >= 2, `the balancer put every client on one node: ${JSON.stringify(spread)}`);
  await settle(clients);

  const sent = [];
  const started = Date.now();
  for (let round = 0; Date.now() - started < EXERCISE_MS; round++) {
    const sender = clients[round % clients.length];
    const tag = unique("msg");
    sent.push({ tag, sender });
    const echoes = clients.map(async (c) => {
      const value = { round, name: c.name, pad: "x".repeat(round % 7) };
      assert.deepEqual(await c.echo(value), value, `echo of ${c.label}`);
    });
    await Promise.all([...echoes, sender.broadcast("msg", tag)]);
    await Promise.all(clients.map((c) => c.waitFor("msg", tag)));
  }
  await sleep(QUIET_MS);

  for (const [i, c] of clients.entries()) {
    assert.deepEqual(c.errors, [], `${c.label} had errors`);
    assert.ok(c.socket.connected, `${c.label} is still connected`);
    assert.equal(c.sid, sids[i], `${c.label} kept its session (no reconnect)`);
    assert.equal(c.transportName, c.transport === "polling" ? "polling" : "websocket", `${c.label} transport`);
    for (const { tag } of sent) assert.equal(c.got("msg", tag).length, 1, `${c.label} got ${tag} once`);
    const fromOtherNodes = sent.filter(({ sender }) => sender.node !== c.node).length;
    assert.ok(fromOtherNodes > 0, `${c.label} received broadcasts sent from other nodes`);
  }
  return { rounds: sent.length, spread };
}

/**
 * One polling session driven by hand, as a client without cookies does it: `POST 40` (connect),
 * `GET` (answers the CONNECT at once), then `pings` times `GET` (held until the node's ping,
 * pingInterval) and `POST 3` (the pong). Resolves every answer `{ status, body }`, in order.
 */
async function pollingSession(url, sid, { pings = 1, ...options } = {}) {
  const at = `${url}/socket.io/?EIO=4&transport=polling&sid=${encodeURIComponent(sid)}`;
  const post = (body) =>
    httpRequest(at, { ...options, method: "POST", body, headers: { ...options.headers, "content-type": "text/plain" } });
  const answers = [await post("40"), await httpRequest(at, options)];
  for (let i = 0; i < pings; i++) answers.push(await httpRequest(at, options), await post("3"));
  return answers.map(({ status, body }) => ({ status, body }));
}

/** The answers of a session whose requests all reached its node. */
function served(answers, pings) {
  const ok = { status: 200, body: "ok" };
  return [ok, { status: 200, body: answers[1]?.body }, ...Array(pings).fill([{ status: 200, body: "2" }, ok]).flat()];
}

const UNKNOWN_SID = { status: 400, body: JSON.stringify({ code: 1, message: "Session ID unknown" }) };

/** Until every one of `nodes` counts `n` cluster nodes (and so knows their addresses). */
async function clusterOf(n, nodes) {
  const deadline = Date.now() + WAIT_MS;
  for (const node of nodes) {
    for (;;) {
      const { body } = await httpRequest(`${node.url}/metrics`);
      if (body.split("\n").includes(`switchboard_cluster_nodes ${n}`)) break;
      assert.ok(Date.now() < deadline, `${node.nodeId} does not count ${n} cluster nodes`);
      await sleep(50);
    }
  }
}

/** Requests the `nodes` forwarded to an owner that answered, summed from their /metrics. */
async function forwardedOk(nodes) {
  let sum = 0;
  for (const n of nodes) {
    const { body } = await httpRequest(`${n.url}/metrics`);
    for (const line of body.split("\n")) {
      if (line.startsWith("switchboard_forwarded_requests_total{") && line.includes('result="ok"')) {
        sum += Number(line.slice(line.lastIndexOf(" ") + 1));
      }
    }
  }
  return sum;
}

// ---------------------------------------------------------------------------------------------
// Suites
// ---------------------------------------------------------------------------------------------

describe("balancers: 3 nodes over Redis", () => {
  let redis;
  let nodes = [];
  const nodeIds = () => nodes.map((n) => n.nodeId);

  before(async () => {
    redis = await startRedis();
    const prefix = unique("sb");
    nodes = await Promise.all(["a", "b", "c"].map((label) => startNode(redis, prefix, label)));
  });
  after(async () => {
    await Promise.all(nodes.map((n) => n.stop()));
    await redis?.stop();
  });

  describe("HAProxy, backend sid_sticky (sid learned from the io cookie, matched on ?sid=)", () => {
    let lb;
    before(async () => {
      lb = await startHaproxy({ backend: "sid_sticky", nodes });
    });
    after(async () => lb?.stop());

    it("routes every request of a session to its node, by ?sid= alone (no cookie sent), and spreads handshakes", async () => {
      const owners = new Set();
      for (let i = 0; i < 12; i++) {
        const { sid, node, headers } = await handshake(lb.url);
        assert.match(String(headers["set-cookie"]), new RegExp(`^io=${sid};`), "the node sets the io cookie HAProxy learns from");
        owners.add(node);
        const answers = await pollingSession(lb.url, sid);
        assert.deepEqual(answers, served(answers, 1), `every request of ${sid} reached ${node}`);
        assert.match(answers[1].body, /^40\{"sid":"/, "the GET after the connect carries the CONNECT answer");
      }
      assert.deepEqual([...owners].sort(), nodeIds().sort(), "12 handshakes reached all three nodes");
    });

    it("carries polling (with and without cookies), websocket and polling+upgrade clients with zero errors", async (t) => {
      const specs = [
        { name: "p1", transport: "polling" },
        { name: "p2", transport: "polling" },
        { name: "p3", transport: "polling" },
        { name: "pc1", transport: "polling", cookies: true },
        { name: "pc2", transport: "polling", cookies: true },
        { name: "w1", transport: "websocket" },
        { name: "w2", transport: "websocket" },
        { name: "u1", transport: "upgrade" },
        { name: "u2", transport: "upgrade" },
        { name: "uc1", transport: "upgrade", cookies: true },
      ];
      const result = await withClients(lb.url, specs, exercise);
      t.diagnostic(`${result.rounds} rounds, clients per node ${JSON.stringify(result.spread)}`);
    });

    it("sends no new handshakes to a node whose health check fails, and keeps its sessions there (option persist)", async () => {
      await withClients(lb.url, [{ name: "p", transport: "polling" }], async (clients) => {
        await Promise.all(clients.map((c) => c.ready()));
        const [polling] = clients;
        const down = `node${nodeIds().indexOf(polling.node) + 1}`;
        // As if its /readyz had answered 503 (checks stopped so they do not bring it back).
        await lb.command(`disable health sid_sticky/${down}`);
        await lb.command(`set server sid_sticky/${down} health down`);
        try {
          const stat = await lb.stat();
          assert.equal(stat.find((s) => s.server === down).status, "DOWN", JSON.stringify(stat));
          const owners = new Set();
          for (let i = 0; i < 9; i++) owners.add((await handshake(lb.url)).node);
          assert.ok(!owners.has(polling.node), `handshakes went to ${[...owners]}, not to the down node ${polling.node}`);
          // The session on the down node keeps being served: acks for a few heartbeats.
          for (let i = 0; i < 10; i++) {
            assert.equal(await polling.echo(i), i);
            await sleep(PING_INTERVAL_MS / 2);
          }
          assert.deepEqual(polling.errors, []);
          assert.equal(polling.transportName, "polling");
        } finally {
          await lb.command(`enable health sid_sticky/${down}`);
          await lb.command(`set server sid_sticky/${down} health up`);
        }
      });
    });
  });

  describe("HAProxy health checks on /readyz (the shipped default)", () => {
    it("finds every node ready", async () => {
      const lb = await startHaproxy({ backend: "sid_sticky", nodes });
      try {
        // Wait until each server has been checked once (checks start within `inter` = 2 s).
        let stat = [];
        const deadline = Date.now() + WAIT_MS;
        while (Date.now() < deadline) {
          stat = await lb.stat();
          if (stat.length === 3 && stat.every((s) => s.check.startsWith("L7") || s.check.startsWith("L4"))) break;
          await sleep(100);
        }
        assert.deepEqual(
          stat.map((s) => [s.server, s.status, s.check]),
          [["node1", "UP", "L7OK"], ["node2", "UP", "L7OK"], ["node3", "UP", "L7OK"]],
        );
      } finally {
        await lb.stop();
      }
    });
  });

  describe("HAProxy, backend cookie_sticky (HAProxy inserts a cookie naming the node)", () => {
    let lb;
    before(async () => {
      lb = await startHaproxy({ backend: "cookie_sticky", nodes });
    });
    after(async () => lb?.stop());

    it("sets a cookie naming the node of the handshake, and the cookie leads back to it", async () => {
      for (let i = 0; i < 6; i++) {
        const { sid, node, headers } = await handshake(lb.url);
        const cookie = [headers["set-cookie"]].flat().find((c) => c.startsWith("sbnode="));
        assert.ok(cookie, `HAProxy inserted its cookie: ${headers["set-cookie"]}`);
        const server = cookie.slice("sbnode=".length, cookie.indexOf(";"));
        assert.equal(server, `node${nodeIds().indexOf(node) + 1}`, "the cookie names the sid's node");
        const answers = await pollingSession(lb.url, sid, { headers: { cookie: `sbnode=${server}` } });
        assert.deepEqual(answers, served(answers, 1), `every request of ${sid} with the cookie reached ${node}`);
      }
    });

    it("carries clients with a cookie jar (polling, polling+upgrade) and websocket clients with zero errors", async (t) => {
      const specs = [
        { name: "pc1", transport: "polling", cookies: true },
        { name: "pc2", transport: "polling", cookies: true },
        { name: "pc3", transport: "polling", cookies: true },
        { name: "w1", transport: "websocket" },
        { name: "w2", transport: "websocket" },
        { name: "uc1", transport: "upgrade", cookies: true },
        { name: "uc2", transport: "upgrade", cookies: true },
      ];
      const result = await withClients(lb.url, specs, exercise);
      t.diagnostic(`${result.rounds} rounds, clients per node ${JSON.stringify(result.spread)}`);
    });
  });

  describe("HAProxy, backend round_robin (no stickiness)", () => {
    let lb;
    before(async () => {
      lb = await startHaproxy({ backend: "round_robin", nodes });
    });
    after(async () => lb?.stop());

    it("carries websocket-only clients with zero errors (a session is one TCP connection)", async (t) => {
      const specs = ["w1", "w2", "w3", "w4", "w5", "w6"].map((name) => ({ name, transport: "websocket" }));
      const result = await withClients(lb.url, specs, exercise);
      t.diagnostic(`${result.rounds} rounds, clients per node ${JSON.stringify(result.spread)}`);
    });

    it("carries polling and polling+upgrade clients too: the nodes forward requests to the session's owner", async (t) => {
      const { sid } = await handshake(lb.url);
      const answers = await pollingSession(lb.url, sid);
      assert.deepEqual(answers, served(answers, 1));
      const specs = [
        { name: "p1", transport: "polling" },
        { name: "p2", transport: "polling" },
        { name: "w1", transport: "websocket" },
        { name: "u1", transport: "upgrade" },
        { name: "u2", transport: "upgrade" },
      ];
      const before = await forwardedOk(nodes);
      const result = await withClients(lb.url, specs, exercise);
      const forwarded = (await forwardedOk(nodes)) - before;
      t.diagnostic(`${result.rounds} rounds, clients per node ${JSON.stringify(result.spread)}, ${forwarded} requests forwarded`);
      assert.ok(forwarded > 0, "the nodes forwarded requests (switchboard_forwarded_requests_total{result=ok})");
    });
  });

  describe("request forwarding: one hop", () => {
    it("does not forward a request another node already forwarded (no loop): it is answered 400 where it lands", async () => {
      const [a, b] = nodes;
      const { sid } = await handshake(a.url);
      const at = `${b.url}/socket.io/?EIO=4&transport=polling&sid=${encodeURIComponent(sid)}`;
      const marked = await httpRequest(at, { headers: { "x-switchboard-forwarded": "elsewhere" } });
      assert.deepEqual({ status: marked.status, body: marked.body }, UNKNOWN_SID);
      // Unmarked, the same request reaches the owner: the session is alive and well.
      const answers = await pollingSession(b.url, sid);
      assert.deepEqual(answers, served(answers, 1));
    });
  });

  describe("HAProxy, backend round_robin, nodes with --forward-polling false", () => {
    let plain = [];
    let lb;
    before(async () => {
      const prefix = unique("sb-plain");
      plain = await Promise.all(["p", "q", "r"].map((label) => startNode(redis, prefix, label, ["--forward-polling", "false"])));
      lb = await startHaproxy({ backend: "round_robin", nodes: plain });
    });
    after(async () => {
      await lb?.stop();
      await Promise.all(plain.map((n) => n.stop()));
    });

    it("breaks polling sessions: the next request reaches another node, which answers 400 Session ID unknown", async (t) => {
      // Alone on this balancer, round-robin sends consecutive requests to consecutive nodes.
      const { sid, node } = await handshake(lb.url);
      const answers = await pollingSession(lb.url, sid);
      t.diagnostic(`requests of ${sid} (owner ${node}) through round_robin: ${JSON.stringify(answers.map((a) => a.status))}`);
      assert.deepEqual(answers.slice(0, 2), [UNKNOWN_SID, UNKNOWN_SID], "the connect and the first GET went to the two other nodes");

      // What a user sees: the official client in polling mode (and with upgrade) fails at once.
      for (const transport of ["polling", "upgrade"]) {
        await withClients(lb.url, [{ name: transport, transport }], async ([c]) => {
          const failed = new Promise((resolve) => {
            c.socket.once("connect_error", (e) => resolve(`connect_error: ${e.message}`));
            c.socket.once("disconnect", (reason) => resolve(`disconnect: ${reason}`));
          });
          const outcome = await withTimeout(failed, WAIT_MS, `the ${transport} client to fail`);
          t.diagnostic(`${transport} client through round_robin: ${outcome}`);
          assert.match(outcome, /^(connect_error|disconnect): /);
        });
      }
    });
  });

  describe("request forwarding to a node that died", () => {
    it("answers 400 Session ID unknown: after 5 s for a frozen owner, within a second for a killed one; the next session works", async () => {
      const prefix = unique("sb-dead");
      const [owner, other] = await Promise.all(["d", "e"].map((label) => startNode(redis, prefix, label)));
      try {
        await clusterOf(2, [owner, other]);
        const { sid } = await handshake(owner.url);
        const answers = await pollingSession(other.url, sid);
        assert.deepEqual(answers, served(answers, 1), "forwarded while the owner lives");

        // A frozen owner (SIGSTOP) still accepts connections in the kernel but answers nothing:
        // a POST through the other node gives up after 5 s instead of hanging. The POST leaves
        // only once every thread of the owner is stopped: kill(2) returns before that, and under
        // CPU load the owner used to answer it 200 `ok` first.
        const at = `${other.url}/socket.io/?EIO=4&transport=polling&sid=${encodeURIComponent(sid)}`;
        await owner.freeze();
        const frozenAt = Date.now();
        const frozen = await httpRequest(at, { method: "POST", body: "3", headers: { "content-type": "text/plain" }, timeoutMs: 15_000 })
          .finally(() => owner.signal("SIGCONT"));
        const frozenFor = Date.now() - frozenAt;
        assert.deepEqual({ status: frozen.status, body: frozen.body }, UNKNOWN_SID);
        assert.ok(frozenFor >= 4500 && frozenFor < 8000, `a frozen owner was given up on after ${frozenFor} ms`);

        await owner.stop();
        const started = Date.now();
        const res = await httpRequest(at);
        const took = Date.now() - started;
        assert.deepEqual({ status: res.status, body: res.body }, UNKNOWN_SID);
        assert.ok(took < 1500, `answered after ${took} ms`);
        const metrics = await httpRequest(`${other.url}/metrics`);
        assert.match(metrics.body, /switchboard_forwarded_requests_total\{kind="polling",result="failed"\} [1-9]/);
        const again = await handshake(other.url);
        assert.equal(again.node, other.nodeId, "a new session on the surviving node");
      } finally {
        await Promise.all([owner.stop(), other.stop()]);
      }
    });
  });

  describe("nginx, hash $remote_addr consistent", () => {
    let lb;
    /** Source address -> node: 40 addresses, each handshaking 3 times (one node each time) and polling. */
    let nodeOf = null;
    async function addressMap() {
      if (nodeOf) return nodeOf;
      const map = new Map();
      for (let i = 2; i < 42; i++) {
        const from = `127.0.0.${i}`;
        const first = await handshake(lb.url, { localAddress: from });
        for (let k = 0; k < 2; k++) {
          assert.equal((await handshake(lb.url, { localAddress: from })).node, first.node, `${from} lands on one node`);
        }
        const answers = await pollingSession(lb.url, first.sid, { pings: 0, localAddress: from });
        assert.deepEqual(answers, served(answers, 0), `the session of ${from} stays on ${first.node}`);
        map.set(from, first.node);
      }
      return (nodeOf = map);
    }
    before(async () => {
      lb = await startNginx({ nodes });
    });
    after(async () => lb?.stop());

    it("sends each client address to one node, always, and spreads 40 addresses over all three", async () => {
      assert.deepEqual([...new Set((await addressMap()).values())].sort(), nodeIds().sort(), "40 addresses reach all three nodes");
    });

    it("carries polling (with and without cookies), websocket and polling+upgrade clients with zero errors", async (t) => {
      // One source address per client, chosen so that each node gets clients of several kinds.
      const byNode = new Map();
      for (const [from, node] of await addressMap()) byNode.set(node, [...(byNode.get(node) ?? []), from]);
      const kinds = [
        { transport: "polling" },
        { transport: "polling", cookies: true },
        { transport: "websocket" },
        { transport: "upgrade" },
      ];
      const specs = [];
      for (const [n, addresses] of [...byNode.values()].entries()) {
        addresses.slice(0, 3).forEach((from, i) => {
          const kind = kinds[(n + i) % kinds.length];
          specs.push({ name: `c${specs.length}`, ...kind, from });
        });
      }
      const result = await withClients(lb.url, specs, exercise);
      assert.equal(Object.keys(result.spread).length, 3, `clients on all three nodes: ${JSON.stringify(result.spread)}`);
      t.diagnostic(`${result.rounds} rounds, ${specs.length} clients, per node ${JSON.stringify(result.spread)}`);
    });
  });
});
