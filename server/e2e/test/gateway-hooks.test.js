// The gateway's webhooks besides the event routes, as a backend developer uses them: the connect
// webhook (allow with user, data and rooms; deny with the message and data the client's
// `connect_error` shows; the backend down, slow or answering nonsense) and the lifecycle webhook
// (connect, disconnect with its reason, join, leave: in order with the socket's events, dropped
// and counted when its queue is full), and client-side rooms: joins and publishes allowed by the
// token's patterns (a publish reaching the other node's member with no backend call) or by the
// subscribe webhook, against the official
// socket.io-client and a real node:http backend started here.
// Run: `cargo build -p switchboard && npm ci && node --test test/gateway-hooks.test.js`.
// SWITCHBOARD_BIN overrides the binary (default: ../../target/debug/switchboard).

import { EventEmitter } from "node:events";
import { mkdtempSync, writeFileSync } from "node:fs";
import http from "node:http";
import os from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";

import { API_KEYS, SECRET, claims, cleanUp, client, connected, jwt, post, startGateway } from "../gateway/support.js";
import { freePort, startRedis, withTimeout } from "../harness.js";

const CONNECT_TIMEOUT_MS = 400;

/**
 * The backend: records every POST by path (`backend.received`, and a `hook` event); `/connect`
 * answers what the client put in `auth.answer` (allow by default), `/subscribe` allows the rooms
 * starting with `ok:` and refuses the others, `/slow` never answers, `/junk`
 * answers text that is not JSON, the others `{}` after the `delayMs` of the first argument.
 */
function startBackend() {
  const received = [];
  const backend = { received, hooks: new EventEmitter() };
  const server = http.createServer((req, res) => {
    let body = "";
    req.setEncoding("utf8");
    req.on("data", (chunk) => (body += chunk));
    req.on("end", () => {
      const hook = { path: req.url, ...JSON.parse(body) };
      received.push(hook);
      backend.hooks.emit("hook", hook);
      if (req.url === "/slow") return;
      if (req.url === "/junk") return res.end("<html>");
      const answers = {
        "/connect": () => hook.auth?.answer ?? { allow: true },
        "/subscribe": () => ({ allow: hook.args[0].startsWith("ok:"), message: `not ${hook.args[0]}` }),
      };
      const answer = answers[req.url]?.() ?? {};
      setTimeout(() => {
        res.writeHead(200, { "content-type": "application/json" });
        res.end(JSON.stringify(answer));
      }, hook.args?.[0]?.delayMs ?? 0);
    });
  });
  return new Promise((resolve) => {
    server.listen(0, "127.0.0.1", () => resolve(Object.assign(backend, { server, port: server.address().port })));
  });
}

describe("gateway: the connect webhook", () => {
  let backend;
  let server;
  let apiUrl;
  let dir;
  const sockets = [];
  const open = (nsp, options) => {
    const socket = client(`${server.url}${nsp}`, options);
    sockets.push(socket);
    return socket;
  };
  const hooksTo = (p) => backend.received.filter((h) => h.path === p);

  before(async () => {
    backend = await startBackend();
    const apiPort = await freePort();
    const deadPort = await freePort();
    apiUrl = `http://127.0.0.1:${apiPort}`;
    dir = mkdtempSync(path.join(os.tmpdir(), "switchboard-gateway-hooks-"));
    const config = path.join(dir, "switchboard.toml");
    const base = `http://127.0.0.1:${backend.port}`;
    const namespacesWithoutToken = [
      ["/open", `${base}/connect`],
      ["/down", `http://127.0.0.1:${deadPort}/connect`],
      ["/slow", `${base}/slow`],
      ["/junk", `${base}/junk`],
    ];
    writeFileSync(
      config,
      `host = "127.0.0.1"
api-port = ${apiPort}

[gateway]
api-keys = ${JSON.stringify(API_KEYS)}

[[gateway.namespace]]
name = "/"
connect-url = "${base}/connect"

${namespacesWithoutToken
  .map(([name, url]) => `[[gateway.namespace]]\nname = "${name}"\nauth = "none"\nconnect-url = "${url}"\n`)
  .join("\n")}
[gateway.jwt]
hs256-secret = "${SECRET}"

[gateway.connect]
headers = ["X-Tenant", "user-agent"]
timeout = ${CONNECT_TIMEOUT_MS}
`,
    );
    server = await startGateway(config);
  });

  after(() => cleanUp({ sockets, server, backend, dir }));

  it("posts the handshake after the JWT check, with only the allow-listed headers, and applies the allow", async () => {
    const token = jwt(claims({ rooms: ["from-token"] }));
    const answer = { allow: true, user: "alice@hook", data: { plan: "pro" }, rooms: ["from-hook"] };
    const socket = await connected(
      open("/", {
        auth: { token, answer },
        query: { room: "lobby" },
        extraHeaders: { "x-tenant": "acme", "x-other": "no", cookie: "session=secret", authorization: `Bearer ${token}` },
      }),
    );
    const [hook] = hooksTo("/connect").filter((h) => h.socket === socket.id);
    assert.ok(hook, "the connect webhook was called with the socket's id");
    assert.equal(hook.namespace, "/");
    assert.equal(hook.user, "alice");
    assert.deepEqual(hook.rooms, ["from-token"]);
    assert.equal(hook.query.room, "lobby");
    assert.deepEqual(hook.auth, { token, answer });
    assert.deepEqual(Object.keys(hook.headers), ["x-tenant"], "no cookie, authorization or unlisted header");
    assert.equal(hook.headers["x-tenant"], "acme");
    assert.equal(hook.address, "127.0.0.1");
    const { json } = await post(apiUrl, "/v1/sockets/fetch", { socket: socket.id });
    const [fetched] = json.sockets;
    assert.deepEqual(fetched.data, { plan: "pro", user: "alice@hook" });
    assert.deepEqual(fetched.rooms.sort(), ["from-hook", "from-token"]);
  });

  it("is not asked when the JWT is refused", async () => {
    const before = hooksTo("/connect").length;
    await assert.rejects(connected(open("/", { auth: {} })), { data: { code: "missing" } });
    assert.equal(hooksTo("/connect").length, before);
  });

  it("alone (auth = none): a deny reaches the client's connect_error with its message and data", async () => {
    const answer = { allow: false, message: "banned until tomorrow", data: { code: "banned", until: 1234 } };
    await assert.rejects(connected(open("/open", { auth: { answer } })), {
      message: "banned until tomorrow",
      data: { code: "banned", until: 1234 },
    });
    await assert.rejects(connected(open("/open", { auth: { answer: { allow: false } } })), { message: "connection refused" });
    const allowed = await connected(open("/open", { auth: { answer: { allow: true, room_patterns: ["team:*"] } } }));
    assert.deepEqual(await allowed.emitWithAck("join", "team:1"), { ok: true }, "the answer's room patterns apply");
  });

  it("denies with a clear message and a metric when the backend is down, too slow or answers nonsense", async () => {
    const cases = [
      ["/down", "the connect webhook failed: the backend is unreachable", "backend_unreachable"],
      ["/slow", "the connect webhook failed: the backend did not answer in time", "backend_timeout"],
      ["/junk", "the connect webhook failed: the backend's answer is not JSON", "backend_bad_answer"],
    ];
    for (const [nsp, message, code] of cases) {
      const started = Date.now();
      await assert.rejects(connected(open(nsp)), { message, data: { code } }, nsp);
      if (code === "backend_timeout") assert.ok(Date.now() - started >= CONNECT_TIMEOUT_MS - 50, "refused before the timeout");
    }
    await assert.rejects(connected(open("/open", { auth: { answer: { allow: "yes" } } })), { data: { code: "backend_bad_answer" } });
    const scrape = await (await fetch(`${server.url}/metrics`)).text();
    for (const series of [
      'switchboard_gateway_webhook_requests_total{result="backend_unreachable",route="/down connect"} 1',
      'switchboard_gateway_webhook_requests_total{result="backend_timeout",route="/slow connect"} 1',
      'switchboard_gateway_auth_failures_total{reason="backend"} 4',
      'switchboard_gateway_auth_failures_total{reason="denied"} 2',
    ]) {
      assert.ok(scrape.includes(series), `${series} not in the scrape`);
    }
    await connected(open("/open"));
  });
});

describe("gateway: the lifecycle webhook", () => {
  let backend;
  let server;
  let dir;
  const sockets = [];
  const open = (nsp, options) => {
    const socket = client(`${server.url}${nsp}`, options);
    sockets.push(socket);
    return socket;
  };
  /** Resolves with the first webhook body `matches` accepts from now on. */
  const nextHook = (matches) =>
    withTimeout(
      new Promise((resolve) => {
        const seen = (h) => matches(h) && (backend.hooks.off("hook", seen), resolve(h));
        backend.hooks.on("hook", seen);
      }),
      5000,
      "a webhook",
    );
  const scrape = async () => (await fetch(`${server.url}/metrics`)).text();

  before(async () => {
    backend = await startBackend();
    dir = mkdtempSync(path.join(os.tmpdir(), "switchboard-gateway-hooks-"));
    const config = path.join(dir, "switchboard.toml");
    const base = `http://127.0.0.1:${backend.port}`;
    writeFileSync(
      config,
      `host = "127.0.0.1"

[gateway]

[[gateway.namespace]]
name = "/live"
auth = "none"
connect-url = "${base}/connect"
lifecycle-url = "${base}/lifecycle"

[[gateway.namespace]]
name = "/quiet"
auth = "none"
lifecycle-url = "${base}/lifecycle"
lifecycle-events = ["disconnect"]

[gateway.webhook]
max-pending-per-socket = 2

[[gateway.route]]
namespace = "/live"
event = "msg"
url = "${base}/events"
`,
    );
    server = await startGateway(config);
  });

  after(() => cleanUp({ sockets, server, backend, dir }));

  it("tells connect, join, leave and disconnect (with the reason), in order with the socket's events", async () => {
    const socket = await connected(open("/live", { auth: { answer: { allow: true, user: "ann", room_patterns: ["r:*"] } } }));
    const id = socket.id;
    const gone = nextHook((h) => h.socket === id && h.event === "disconnect");
    // The event's answer comes late: the join after it must still reach the backend after it.
    const joined = nextHook((h) => h.socket === id && h.event === "join");
    socket.emit("msg", { delayMs: 200 });
    assert.deepEqual(await socket.emitWithAck("join", "r:1"), { ok: true });
    await joined; // (the queue holds 2: the next two wait for room)
    assert.deepEqual(await socket.emitWithAck("leave", "r:1"), { ok: true });
    socket.disconnect();
    const disconnect = await gone;
    assert.deepEqual(disconnect.args, ["client namespace disconnect"]);
    const seen = backend.received.filter((h) => h.socket === id && h.path !== "/connect");
    assert.deepEqual(
      seen.map((h) => [h.path, h.event, h.args]),
      [
        ["/lifecycle", "connect", []],
        ["/events", "msg", [{ delayMs: 200 }]],
        ["/lifecycle", "join", ["r:1"]],
        ["/lifecycle", "leave", ["r:1"]],
        ["/lifecycle", "disconnect", ["client namespace disconnect"]],
      ],
    );
    assert.deepEqual([seen[0].namespace, seen[0].user, seen[0].data], ["/live", "ann", { user: "ann" }]);
    assert.deepEqual(seen[2].rooms, ["r:1"], "the join's notice shows the room joined");
  });

  it("sends only the configured events", async () => {
    const socket = await connected(open("/quiet"));
    const id = socket.id;
    const gone = nextHook((h) => h.socket === id);
    socket.disconnect();
    assert.equal((await gone).event, "disconnect");
    assert.deepEqual(backend.received.filter((h) => h.socket === id).map((h) => h.event), ["disconnect"]);
  });

  it("drops a notice and counts it when the socket's queue is full, and the socket carries on", async () => {
    const socket = await connected(open("/live", { auth: { answer: { allow: true, room_patterns: ["r:*"] } } }));
    const id = socket.id;
    const first = nextHook((h) => h.socket === id && h.event === "msg");
    socket.emit("msg", { delayMs: 800 });
    await first; // in flight: the queue behind it holds 2 (max-pending-per-socket)
    socket.emit("msg", { delayMs: 0 });
    socket.emit("msg", { delayMs: 1 });
    assert.deepEqual(await socket.emitWithAck("join", "r:full"), { ok: true }, "the join itself is done");
    await nextHook((h) => h.socket === id && h.args[0]?.delayMs === 1);
    const gone = nextHook((h) => h.socket === id && h.event === "disconnect");
    socket.disconnect();
    await gone;
    const events = backend.received.filter((h) => h.socket === id && h.path !== "/connect").map((h) => h.event);
    assert.deepEqual(events, ["connect", "msg", "msg", "msg", "disconnect"]);
    assert.ok((await scrape()).includes('switchboard_gateway_webhook_requests_total{result="dropped",route="/live join"} 1'));
  });
});

describe("gateway: client-side rooms on two nodes over a real redis-server", () => {
  let backend;
  let redis;
  let dir;
  const nodes = [];
  const sockets = [];
  const open = (node, token) => {
    const socket = client(nodes[node].url, { auth: { token } });
    sockets.push(socket);
    return connected(socket);
  };
  const heard = (socket, event) => withTimeout(new Promise((resolve) => socket.once(event, (...args) => resolve(args))), 5000, event);
  const subscribeHooks = () => backend.received.filter((h) => h.path === "/subscribe");

  before(async () => {
    backend = await startBackend();
    redis = await startRedis();
    dir = mkdtempSync(path.join(os.tmpdir(), "switchboard-gateway-rooms-"));
    const config = path.join(dir, "switchboard.toml");
    writeFileSync(
      config,
      `host = "127.0.0.1"

[gateway]

[[gateway.namespace]]
name = "/"
subscribe-url = "http://127.0.0.1:${backend.port}/subscribe"

[gateway.jwt]
hs256-secret = "${SECRET}"
`,
    );
    const prefix = `gwrooms${process.pid}`;
    for (let i = 0; i < 2; i++) {
      const cluster = ["--adapter", "redis", "--redis-url", redis.url, "--cluster-prefix", prefix, "--cluster-secret", "rooms-e2e-cluster-secret"];
      nodes.push(await startGateway(config, cluster));
    }
  });

  after(async () => {
    await cleanUp({ sockets, backend, dir });
    await Promise.all(nodes.map((n) => n.stop()));
    await redis?.stop();
  });

  it("publishes to a room its token allows, reaching a member on the other node without asking the backend", async () => {
    const member = await open(1, jwt(claims({ sub: "bob", room_patterns: ["chat:*"] })));
    const other = await open(1, jwt(claims({ sub: "carol", rooms: ["elsewhere"] })));
    assert.deepEqual(await member.emitWithAck("join", "chat:1"), { ok: true });
    const publisher = await open(0, jwt(claims({ publish_patterns: ["chat:*"], room_patterns: ["chat:*"] })));
    assert.deepEqual(await publisher.emitWithAck("join", "chat:1"), { ok: true });
    let echoed = 0;
    let otherGot = 0;
    publisher.on("said", () => echoed++);
    other.on("said", () => otherGot++);
    const said = heard(member, "said");
    assert.deepEqual(await publisher.emitWithAck("publish", "chat:1", "said", "hi", { n: 1 }), { ok: true });
    assert.deepEqual(await said, ["hi", { n: 1 }]);
    assert.deepEqual([echoed, otherGot], [0, 0], "the publisher and non-members hear nothing");
    assert.equal(subscribeHooks().length, 0, "no backend call on the claim's path");
    const refused = [
      [["chat:1", "connect", 1], "bad_request"],
      [["chat:1"], "bad_request"],
    ];
    for (const [args, code] of refused) {
      assert.equal((await publisher.emitWithAck("publish", ...args)).error.code, code, JSON.stringify(args));
    }
  });

  it("asks the subscribe webhook about joins and publishes the token does not allow", async () => {
    const token = jwt(claims({ sub: "dave" }));
    const member = await open(1, token);
    const asker = await open(0, token);
    assert.deepEqual(await member.emitWithAck("join", "ok:team"), { ok: true });
    assert.deepEqual(await asker.emitWithAck("join", "no:team"), { error: { code: "forbidden", message: "not no:team" } });
    const hooks = subscribeHooks();
    assert.deepEqual(hooks.map((h) => [h.event, h.args, h.user]), [["join", ["ok:team"], "dave"], ["join", ["no:team"], "dave"]]);
    const got = heard(member, "news");
    assert.deepEqual(await asker.emitWithAck("publish", "ok:team", "news", 42), { ok: true });
    assert.deepEqual(await got, [42]);
    assert.deepEqual(subscribeHooks().at(-1).args, ["ok:team", "news"], "the webhook is shown the room and the event, not the payload");
    assert.equal((await asker.emitWithAck("publish", "no:team", "news", 1)).error.code, "forbidden");
  });
});
