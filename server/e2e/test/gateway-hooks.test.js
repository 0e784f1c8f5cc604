// The gateway's webhooks besides the event routes, as a backend developer uses them: the connect
// webhook (allow with user, data and rooms; deny with the message and data the client's
// `connect_error` shows; the backend down, slow or answering nonsense), against the official
// socket.io-client and a real node:http backend started here.
// Run: `cargo build -p switchboard && npm ci && node --test test/gateway-hooks.test.js`.
// SWITCHBOARD_BIN overrides the binary (default: ../../target/debug/switchboard).

import { EventEmitter } from "node:events";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import http from "node:http";
import os from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";

import { API_KEYS, SECRET, claims, client, connected, jwt, post, startGateway } from "../gateway/support.js";
import { freePort } from "../harness.js";

const CONNECT_TIMEOUT_MS = 400;

/**
 * The backend: records every POST by path (`backend.received`, and a `hook` event); `/connect`
 * answers what the client put in `auth.answer` (allow by default), `/slow` never answers, `/junk`
 * answers text that is not JSON.
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
      const answer = req.url === "/connect" ? (hook.auth.answer ?? { allow: true }) : {};
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify(answer));
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

  after(async () => {
    for (const s of sockets) s.close();
    await server?.stop();
    backend?.server.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

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
