// The gateway as a backend developer uses it: `switchboard --app gateway --config <file>` with a
// config file written here, official socket.io-client sockets with JWTs signed here (HS256 and
// EdDSA, with node:crypto), and a real HTTP backend (node:http) that receives the event webhooks.
// Covers: tokens valid / expired / wrong key / missing (and from the Authorization header), the
// disconnect at expiry, joins allowed and refused by the token's patterns, an event webhook whose
// answer is the ack (binary as a base64 marker, events in order), a backend down or too slow
// (error acks, the node still serves), and the HTTP API: emit to a room reaching its member, fetch,
// disconnect, bad input (400 naming the field), a wrong key (401), a body over the bound (413).
// Run: `cargo build -p switchboard && npm ci && node --test test/gateway.test.js`.
// SWITCHBOARD_BIN overrides the binary (default: ../../target/debug/switchboard).

import { spawnSync } from "node:child_process";
import crypto from "node:crypto";
import { EventEmitter } from "node:events";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import http from "node:http";
import os from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";

import { API_KEYS, BIN, SECRET, claims, cleanUp, client, connected, eventually, jwt, now, post, startGateway } from "../gateway/support.js";
import { freePort, startRedis, withTimeout } from "../harness.js";

const WEBHOOK_TIMEOUT_MS = 500;
const CLUSTER_SECRET = "gateway-e2e-cluster-secret";
const MAX_API_BODY = 4096;
const RATE_LIMIT = 50;
const MAX_QUEUED_BYTES = 16384;
const ed25519 = crypto.generateKeyPairSync("ed25519");
const p256 = crypto.generateKeyPairSync("ec", { namedCurve: "P-256" });
const rsa = crypto.generateKeyPairSync("rsa", { modulusLength: 2048 });
const COOKIE = "sb_token";
// The backend's JWKS keys: it publishes A, then rotates to B.
const jwksA = crypto.generateKeyPairSync("ed25519");
const jwksB = crypto.generateKeyPairSync("ed25519");
const jwkOf = (pair, kid) => ({ ...pair.publicKey.export({ format: "jwk" }), kid, alg: "EdDSA", use: "sig" });

/**
 * The backend: publishes `backend.jwks` at `/jwks`, records every webhook body; `/events` answers
 * `{reply}` after a delay the event asks for.
 */
function startBackend() {
  const received = [];
  const backend = { jwks: { keys: [jwkOf(jwksA, "a")] }, received, hooks: new EventEmitter() };
  const server = http.createServer((req, res) => {
    if (req.method === "GET" && req.url === "/jwks") {
      res.writeHead(200, { "content-type": "application/json" });
      return res.end(JSON.stringify(backend.jwks));
    }
    let body = "";
    req.setEncoding("utf8");
    req.on("data", (chunk) => (body += chunk));
    req.on("end", () => {
      if (req.url === "/slow") return; // never answers: the gateway's timeout must
      const hook = JSON.parse(body);
      received.push(hook);
      backend.hooks.emit("hook", hook);
      const delay = hook.args[0]?.delayMs ?? 0;
      setTimeout(() => {
        res.writeHead(200, { "content-type": "application/json" });
        res.end(JSON.stringify({ reply: hook.args, user: hook.user }));
      }, delay);
    });
  });
  return new Promise((resolve) => {
    server.listen(0, "127.0.0.1", () => resolve(Object.assign(backend, { server, port: server.address().port })));
  });
}

/** Writes the gateway's config file into `dir` (with `api-port` when given): its path. */
function writeConfig(dir, { apiPort, backendPort, deadPort }) {
  const config = path.join(dir, "switchboard.toml");
  const pem = (pair) => pair.publicKey.export({ type: "spki", format: "pem" });
  writeFileSync(
    config,
    `host = "127.0.0.1"
${apiPort ? `api-port = ${apiPort}` : ""}

[gateway]
api-keys = ${JSON.stringify(API_KEYS)}
api-max-body-bytes = ${MAX_API_BODY}
api-rate-limit = ${RATE_LIMIT}

[[gateway.namespace]]
name = "/"

[gateway.jwt]
hs256-secret = "${SECRET}"
cookie = "${COOKIE}"

jwks-url = "http://127.0.0.1:${backendPort}/jwks"
jwks-refresh = 1000

[[gateway.jwt.public-key]]
algorithm = "EdDSA"
pem = """
${pem(ed25519)}"""

[[gateway.jwt.public-key]]
algorithm = "ES256"
pem = """
${pem(p256)}"""

[[gateway.jwt.public-key]]
algorithm = "RS256"
pem = """
${pem(rsa)}"""

[gateway.webhook]
timeout = ${WEBHOOK_TIMEOUT_MS}
max-queued-bytes = ${MAX_QUEUED_BYTES}

[[gateway.route]]
event = "echo"
url = "http://127.0.0.1:${backendPort}/events"

[[gateway.route]]
event = "down"
url = "http://127.0.0.1:${deadPort}/events"

[[gateway.route]]
event = "slow"
url = "http://127.0.0.1:${backendPort}/slow"

[[gateway.route]]
event = "*"
url = "http://127.0.0.1:${backendPort}/events"
`,
  );
  return config;
}

describe("gateway: JWT connect, rooms by claims, event webhooks, HTTP API", () => {
  let backend;
  let server;
  let apiUrl;
  let dir;
  const sockets = [];
  const open = (options) => {
    const socket = client(server.url, options);
    sockets.push(socket);
    return socket;
  };

  before(async () => {
    backend = await startBackend();
    const deadPort = await freePort(); // nothing listens there: the backend is down
    const apiPort = await freePort();
    apiUrl = `http://127.0.0.1:${apiPort}`;
    dir = mkdtempSync(path.join(os.tmpdir(), "switchboard-gateway-"));
    const config = writeConfig(dir, { apiPort, backendPort: backend.port, deadPort });
    server = await startGateway(config);
  });

  after(() => cleanUp({ sockets, server, backend, dir }));

  const api = (endpoint, body, key) => post(apiUrl, endpoint, body, key);

  it("accepts a valid HS256, EdDSA, ES256 or RS256 token from auth, the Authorization header or the cookie", async () => {
    await connected(open({ auth: { token: jwt(claims()) } }));
    await connected(open({ auth: { token: jwt(claims(), { key: ed25519.privateKey }) } }));
    await connected(open({ auth: { token: jwt(claims(), { alg: "ES256", key: p256.privateKey }) } }));
    await connected(open({ auth: { token: jwt(claims(), { alg: "RS256", key: rsa.privateKey }) } }));
    await connected(open({ extraHeaders: { authorization: `Bearer ${jwt(claims())}` } }));
    await connected(open({ extraHeaders: { cookie: `other=1; ${COOKIE}=${jwt(claims())}` } }));
    await assert.rejects(connected(open({ extraHeaders: { cookie: `token=${jwt(claims())}` } })), { data: { code: "missing" } });
    // A key of another algorithm does not verify: an ES256 token is not checked against the RSA key.
    await assert.rejects(connected(open({ auth: { token: jwt(claims(), { alg: "ES256", key: crypto.generateKeyPairSync("ec", { namedCurve: "P-256" }).privateKey }) } })), { data: { code: "signature" } });
  });

  it("refuses an expired, wrongly signed or missing token with a clear connect_error", async () => {
    const cases = [
      [{ auth: { token: jwt(claims({ exp: now() - 10 })) } }, "token expired", "expired"],
      [{ auth: { token: jwt(claims(), { secret: "another-secret-0123456789abcdef-xx" }) } }, "invalid token signature", "signature"],
      [{ auth: { token: jwt(claims(), { key: crypto.generateKeyPairSync("ed25519").privateKey }) } }, "invalid token signature", "signature"],
      [{ auth: { token: jwt({ sub: "alice" }) } }, "invalid token: no `exp` claim", "invalid"],
      [{ auth: { token: "not-a-jwt" } }, "invalid token: not a JWT", "invalid"],
      [{}, "authentication required: no token (send auth: { token })", "missing"],
    ];
    for (const [options, message, code] of cases) {
      await assert.rejects(connected(open(options)), { message, data: { code } }, JSON.stringify(options));
    }
  });

  it("verifies tokens with the backend's JWKS keys and follows their rotation", async () => {
    const tokenA = () => jwt(claims(), { key: jwksA.privateKey, kid: "a" });
    const tokenB = () => jwt(claims(), { key: jwksB.privateKey, kid: "b" });
    await eventually(() => connected(open({ auth: { token: tokenA() } })), 5000, "a token of JWKS key a");
    await assert.rejects(connected(open({ auth: { token: tokenB() } })), { message: "invalid token signature" });
    backend.jwks = { keys: [jwkOf(jwksB, "b")] };
    await eventually(() => connected(open({ auth: { token: tokenB() } })), 5000, "a token of the rotated-in key b");
    await eventually(
      () => assert.rejects(connected(open({ auth: { token: tokenA() } })), { data: { code: "signature" } }),
      5000,
      "the refusal of the rotated-out key a",
    );
  });

  it("disconnects a socket when its token expires", async () => {
    const socket = await connected(open({ auth: { token: jwt(claims({ exp: now() + 2 })) } }));
    const reason = await withTimeout(new Promise((r) => socket.once("disconnect", r)), 5000, "the expiry disconnect");
    assert.equal(reason, "io server disconnect");
  });

  it("keeps a socket that refreshes its token past the first one's expiry, and refuses bad refreshes", async () => {
    const firstExp = now() + 2;
    const socket = await connected(open({ auth: { token: jwt(claims({ exp: firstExp })) } }));
    const gone = new Promise((resolve) => socket.once("disconnect", () => resolve(Date.now())));
    const refused = [
      [jwt(claims({ sub: "mallory", exp: now() + 600 })), "forbidden"],
      [jwt(claims({ exp: now() - 10 })), "expired"],
      [jwt(claims(), { secret: "another-secret-0123456789abcdef-xx" }), "signature"],
    ];
    for (const [token, code] of refused) {
      assert.equal((await socket.emitWithAck("refresh", token)).error.code, code);
    }
    const secondExp = firstExp + 2;
    assert.deepEqual(await socket.emitWithAck("refresh", jwt(claims({ exp: secondExp, room_patterns: ["late:*"] }))), { ok: true });
    assert.deepEqual(await socket.emitWithAck("join", "late:1"), { ok: true }, "the new token's patterns apply");
    const at = await withTimeout(gone, 8000, "the disconnect at the refreshed expiry");
    assert.ok(at >= firstExp * 1000 + 900, `disconnected ${firstExp * 1000 - at} ms before the first token's expiry passed`);
  });

  it("joins the token's rooms, allows joins its patterns match and refuses others", async () => {
    const token = jwt(claims({ sub: "bob", rooms: ["team:1"], room_patterns: ["chat:*"] }));
    const socket = await connected(open({ auth: { token } }));
    assert.deepEqual(await socket.emitWithAck("join", "chat:general"), { ok: true });
    const refused = await socket.emitWithAck("join", "admin");
    assert.equal(refused.error.code, "forbidden");
    const { status, json } = await api("/v1/sockets/fetch", { socket: socket.id });
    assert.equal(status, 200);
    assert.equal(json.sockets.length, 1);
    const [fetched] = json.sockets;
    assert.deepEqual(fetched.data, { user: "bob" });
    assert.deepEqual(fetched.rooms.sort(), ["chat:general", "team:1"]);
    assert.equal(fetched.node, server.nodeId.replace(/[^A-Za-z0-9_-]/g, "_"));
    assert.deepEqual(await socket.emitWithAck("leave", "chat:general"), { ok: true });
  });

  it("posts routed events to the backend in order and acks with its answer, binary included", async () => {
    const socket = await connected(open({ auth: { token: jwt(claims({ rooms: ["r1"] })) } }));
    const start = backend.received.length;
    // Earlier events answer later: an out-of-order path would show in the backend's log.
    const answers = await Promise.all(
      [0, 1, 2, 3, 4].map((n) => socket.emitWithAck("echo", { n, delayMs: (4 - n) * 20 }, Buffer.from([n, 255]))),
    );
    const hooks = backend.received.slice(start);
    assert.deepEqual(hooks.map((h) => h.args[0].n), [0, 1, 2, 3, 4]);
    const first = hooks[0];
    assert.equal(first.namespace, "/");
    assert.equal(first.socket, socket.id);
    assert.equal(first.user, "alice");
    assert.deepEqual(first.data, { user: "alice" });
    assert.deepEqual(first.rooms, ["r1"]);
    assert.equal(first.event, "echo");
    assert.deepEqual(first.args[1], { $binary: Buffer.from([0, 255]).toString("base64") });
    // The answer's marker becomes binary again for the client.
    assert.equal(answers[2].user, "alice");
    assert.deepEqual(answers[2].reply[0], { n: 2, delayMs: 40 });
    assert.deepEqual(Buffer.from(answers[2].reply[1]), Buffer.from([2, 255]));
  });

  it("forwards every other event through a `*` route (without an ack)", async () => {
    const socket = await connected(open({ auth: { token: jwt(claims()) } }));
    const hook = new Promise((resolve) => {
      const seen = (h) => h.event === "anything" && (backend.hooks.off("hook", seen), resolve(h));
      backend.hooks.on("hook", seen);
    });
    socket.emit("anything", { x: 1 });
    const got = await withTimeout(hook, 5000, "the `*` route's webhook");
    assert.deepEqual([got.socket, got.args], [socket.id, [{ x: 1 }]]);
  });

  it("answers an error ack when the backend is down, too slow or the node too full, and keeps serving", async () => {
    const socket = await connected(open({ auth: { token: jwt(claims()) } }));
    const down = await socket.timeout(5000).emitWithAck("down", 1);
    assert.equal(down.error.code, "backend_unreachable");
    const started = Date.now();
    const slow = await socket.timeout(5000).emitWithAck("slow", 1);
    assert.equal(slow.error.code, "backend_timeout");
    assert.ok(Date.now() - started >= WEBHOOK_TIMEOUT_MS - 50, "answered before the timeout");
    const huge = await socket.timeout(5000).emitWithAck("echo", "x".repeat(MAX_QUEUED_BYTES + 1));
    assert.equal(huge.error.code, "busy", "more than the node's max-queued-bytes waits for nothing");
    const echo = await socket.timeout(5000).emitWithAck("echo", { n: 9 });
    assert.deepEqual(echo.reply, [{ n: 9 }]);
    const scrape = await (await fetch(`${server.url}/metrics`)).text();
    for (const series of [
      'switchboard_gateway_webhook_requests_total{result="backend_unreachable",route="/ down"} 1',
      'switchboard_gateway_webhook_requests_total{result="backend_timeout",route="/ slow"} 1',
      'switchboard_gateway_webhook_requests_total{result="busy",route="/ echo"} 1',
    ]) {
      assert.ok(scrape.includes(series), `${series} not in the scrape`);
    }
    await connected(open({ auth: { token: jwt(claims()) } }));
  });

  it("emits through the API to a room's members only, with either key", async () => {
    const member = await connected(open({ auth: { token: jwt(claims({ rooms: ["news"] })) } }));
    const other = await connected(open({ auth: { token: jwt(claims()) } }));
    let otherGot = 0;
    other.on("headline", () => otherGot++);
    const heard = new Promise((resolve) => member.once("headline", (...args) => resolve(args)));
    const { status, json } = await api("/v1/emit", { rooms: ["news"], event: "headline", args: ["hi", { $binary: "AAE=" }] }, API_KEYS[1]);
    assert.deepEqual([status, json], [200, { ok: true }]);
    const [text, bytes] = await withTimeout(heard, 5000, "the API emit");
    assert.equal(text, "hi");
    assert.deepEqual(Buffer.from(bytes), Buffer.from([0, 1]));
    // The same emit to everyone then reaches `other`: it did not hear the room's.
    const everyone = new Promise((resolve) => other.once("all", resolve));
    assert.equal((await api("/v1/emit", { event: "all" })).status, 200);
    await withTimeout(everyone, 5000, "the emit to everyone");
    assert.equal(otherGot, 0);
  });

  it("emits with acks through the API: the answers that came, and how many did not", async () => {
    const token = jwt(claims({ rooms: ["poll"] }));
    const yes = await connected(open({ auth: { token } }));
    const no = await connected(open({ auth: { token } }));
    const silent = await connected(open({ auth: { token } })); // no listener: it never answers
    yes.on("vote", (question, ack) => ack({ choice: "yes", question }));
    no.on("vote", (question, ack) => ack({ choice: "no", question }, Buffer.from([7])));
    const started = Date.now();
    const { status, json } = await api("/v1/emit", { rooms: ["poll"], event: "vote", args: ["lunch?"], ack: true, timeout: 300 });
    assert.equal(status, 200);
    assert.ok(Date.now() - started >= 250, "answered before the timeout");
    assert.equal(json.missing, 1);
    const bySocket = Object.fromEntries(json.responses.map((r) => [r.socket, r.args]));
    assert.deepEqual(Object.keys(bySocket).sort(), [yes.id, no.id].sort());
    assert.deepEqual(bySocket[yes.id], [{ choice: "yes", question: "lunch?" }]);
    assert.deepEqual(bySocket[no.id], [{ choice: "no", question: "lunch?" }, { $binary: "Bw==" }]);
    assert.ok(!(silent.id in bySocket));
    const counted = await api("/v1/rooms", { rooms: ["poll", "nobody"] });
    assert.deepEqual(counted.json, { rooms: [{ name: "poll", sockets: 3 }, { name: "nobody", sockets: 0 }] });
    const all = await api("/v1/emit", { socket: yes.id, event: "vote", args: ["tea?"], ack: true });
    assert.deepEqual([all.json.missing, all.json.responses.length], [0, 1]);
    assert.equal((await api("/v1/emit", { event: "vote", timeout: 10 })).json.error.field, "timeout");
    assert.equal((await api("/v1/emit", { event: "vote", ack: true, timeout: 0 })).json.error.field, "timeout");
  });

  it("joins and disconnects sockets through the API", async () => {
    const socket = await connected(open({ auth: { token: jwt(claims()) } }));
    assert.equal((await api("/v1/sockets/join", { socket: socket.id, join: ["vip"] })).status, 200);
    const heard = new Promise((resolve) => socket.once("perk", resolve));
    await api("/v1/emit", { rooms: ["vip"], event: "perk", args: [1] });
    assert.equal(await withTimeout(heard, 5000, "the emit to the joined room"), 1);
    const gone = new Promise((resolve) => socket.once("disconnect", resolve));
    assert.equal((await api("/v1/sockets/disconnect", { socket: socket.id })).status, 200);
    assert.equal(await withTimeout(gone, 5000, "the API disconnect"), "io server disconnect");
  });

  it("refuses bad input with the field, a wrong key with 401 and a large body with 413", async () => {
    const cases = [
      [{ event: 1 }, "event"],
      [{}, "event"],
      [{ event: "x", rooms: "news" }, "rooms"],
      [{ event: "x", room: ["news"] }, "room"],
      [{ event: "x", namespace: "/nope" }, "namespace"],
      [{ event: "connect" }, "event"],
    ];
    for (const [body, field] of cases) {
      const { status, json } = await api("/v1/emit", body);
      assert.equal(status, 400, JSON.stringify(body));
      assert.equal(json.error.field, field, JSON.stringify(json));
    }
    assert.equal((await api("/v1/sockets/join", { rooms: ["a"] })).json.error.field, "join");
    assert.equal((await api("/v1/rooms", { socket: "x" })).json.error.field, "socket");
    assert.equal((await api("/v1/rooms", {})).json.error.field, "rooms");
    assert.equal((await api("/v1/emit", "{not json")).status, 400);
    for (const key of ["wrong-key-0123456789", null]) {
      const { status, json } = await api("/v1/emit", { event: "x" }, key);
      assert.deepEqual([status, json.error.code], [401, "unauthorized"]);
    }
    const large = await api("/v1/emit", { event: "x", args: ["y".repeat(MAX_API_BODY)] });
    assert.deepEqual([large.status, large.json.error.code], [413, "too_large"]);
  });

  it("serves its OpenAPI document without a key", async () => {
    const res = await fetch(`${apiUrl}/v1/openapi.json`);
    assert.equal(res.status, 200);
    const doc = await res.json();
    assert.equal(doc.openapi, "3.1.0");
    assert.ok("/v1/emit" in doc.paths && "/v1/sockets/fetch" in doc.paths, Object.keys(doc.paths).join(", "));
  });

  it("limits each API key's requests per second on its own (429 with Retry-After)", async () => {
    const burst = await Promise.all(
      Array.from({ length: RATE_LIMIT * 6 }, () =>
        fetch(`${apiUrl}/v1/sockets/fetch`, { method: "POST", headers: { authorization: `Bearer ${API_KEYS[1]}` }, body: "{}" }),
      ),
    );
    const statuses = burst.map((r) => r.status);
    assert.ok(statuses.includes(200), "the burst allowance passes");
    const limited = burst.find((r) => r.status === 429);
    assert.ok(limited, `no 429 in ${statuses.length} requests`);
    assert.equal(limited.headers.get("retry-after"), "1");
    assert.equal((await limited.json()).error.code, "rate_limited");
    assert.equal((await api("/v1/sockets/fetch", {})).status, 200, "the other key is not limited");
  });
});

describe("gateway: two nodes over a real redis-server", () => {
  let redis;
  let dir;
  const nodes = [];
  const apiUrls = [];
  const sockets = [];

  before(async () => {
    redis = await startRedis();
    dir = mkdtempSync(path.join(os.tmpdir(), "switchboard-gateway-"));
    const config = writeConfig(dir, { backendPort: await freePort(), deadPort: await freePort() });
    const prefix = `gw${crypto.randomBytes(4).toString("hex")}`;
    for (let i = 0; i < 2; i++) {
      const apiPort = await freePort();
      apiUrls.push(`http://127.0.0.1:${apiPort}`);
      const cluster = ["--adapter", "redis", "--redis-url", redis.url, "--cluster-prefix", prefix];
      nodes.push(await startGateway(config, [...cluster, "--cluster-secret", CLUSTER_SECRET, "--api-port", String(apiPort)]));
    }
  });

  after(async () => {
    for (const s of sockets) s.close();
    await Promise.all(nodes.map((n) => n.stop()));
    await redis?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it("an API emit (with acks too) on one node reaches a room member on the other; fetch names its node", async () => {
    const token = jwt(claims({ room_patterns: ["chat:*"] }));
    const member = await connected(client(nodes[0].url, { auth: { token } }));
    sockets.push(member);
    // The join's ack comes once the broker confirmed the room's subscription.
    assert.deepEqual(await member.emitWithAck("join", "chat:1"), { ok: true });
    const heard = new Promise((resolve) => member.once("msg", resolve));
    const { status } = await post(apiUrls[1], "/v1/emit", { rooms: ["chat:1"], event: "msg", args: ["across"] });
    assert.equal(status, 200);
    assert.equal(await withTimeout(heard, 5000, "the emit from the other node"), "across");
    const memberNode = nodes[0].nodeId.replace(/[^A-Za-z0-9_-]/g, "_");
    const fetched = await post(apiUrls[1], "/v1/sockets/fetch", { rooms: ["chat:1"] });
    assert.deepEqual(fetched.json.sockets.map((s) => [s.id, s.node]), [[member.id, memberNode]]);
    const listed = await post(apiUrls[1], "/v1/nodes", {});
    assert.equal(listed.json.missing, 0);
    assert.deepEqual(
      listed.json.nodes.map((n) => [n.id, n.sockets]).sort(),
      [[memberNode, 1], [nodes[1].nodeId.replace(/[^A-Za-z0-9_-]/g, "_"), 0]].sort(),
    );
    member.on("ask", (ack) => ack("answer"));
    const asked = await post(apiUrls[1], "/v1/emit", { rooms: ["chat:1"], event: "ask", ack: true, timeout: 5000 });
    assert.deepEqual(asked.json, { responses: [{ socket: member.id, node: memberNode, args: ["answer"] }], missing: 0 });
  });
});

describe("gateway: only the configured namespaces", () => {
  let dir;
  let server;
  before(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), "switchboard-gateway-"));
    const config = path.join(dir, "switchboard.toml");
    writeFileSync(config, `host = "127.0.0.1"\n[gateway]\n[[gateway.namespace]]\nname = "/chat"\nauth = "none"\n`);
    server = await startGateway(config);
  });
  after(async () => {
    await server?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it("refuses the main namespace when it is not configured, and lets anyone into an auth = none one", async () => {
    const main = client(server.url);
    await assert.rejects(connected(main), { message: "Invalid namespace" });
    main.close();
    const chat = await connected(client(`${server.url}/chat`));
    assert.equal((await chat.emitWithAck("join", "any")).error.code, "forbidden", "no token, no room patterns");
    chat.close();
  });
});

describe("gateway: a config that cannot work is refused at start-up, naming the file and the key", () => {
  let dir;
  before(() => {
    dir = mkdtempSync(path.join(os.tmpdir(), "switchboard-gateway-"));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  /** Runs the binary with `args` (and a config file of `text`, if given): its exit code and stderr. */
  function run(args, text) {
    const file = path.join(dir, "bad.toml");
    if (text !== undefined) writeFileSync(file, text);
    const done = spawnSync(BIN, [...args, ...(text !== undefined ? ["--config", file] : [])], {
      encoding: "utf8",
      timeout: 10_000,
      env: { ...process.env, RUST_BACKTRACE: "0", RUST_LOG: "error" },
    });
    return { code: done.status, stderr: done.stderr, file };
  }

  const gateway = `[gateway]\n[[gateway.namespace]]\nname = "/"\nauth = "none"\n`;
  const cases = [
    [["--app", "gateway"], undefined, "--app gateway needs --config with a [gateway] section"],
    [["--app", "gateway", "--config", "/nonexistent/switchboard.toml"], undefined, "cannot read the config file /nonexistent/switchboard.toml"],
    [["--app", "gateway"], `prot = 3000\n${gateway}`, "bad.toml: unknown key `prot`"],
    [["--app", "gateway"], `port = "http"\n${gateway}`, "bad.toml: key `port`: invalid value 'http'"],
    [["--app", "gateway"], `${gateway}apikeys = []\n`, "unknown field `apikeys`"],
    [["--app", "gateway"], `${gateway}[[gateway.route]]\nevent = "a"\nurl = "ftp://b/"\n`, "[gateway] route[0].url: \"ftp://b/\" is not an http://host/... URL"],
    [["--app", "gateway", "--api-port", "0"], gateway, "--api-port needs at least one key in [gateway] api-keys"],
    [["--app", "demo"], gateway, "the config file's [gateway] section is read only by --app gateway"],
  ];
  for (const [args, text, message] of cases) {
    it(`refuses: ${message}`, () => {
      const { code, stderr } = run(args, text);
      assert.notEqual(code, 0, stderr);
      assert.ok(stderr.includes(message), `stderr lacks ${JSON.stringify(message)}:\n${stderr}`);
    });
  }
});
