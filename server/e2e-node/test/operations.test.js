// What an operator relies on, with the real `switchboard` binary and official socket.io-client
// sockets: /metrics, /healthz and /readyz on --metrics-port, and the drain on SIGTERM (readiness
// off at once, new handshakes refused, clients disconnected in batches over --drain-seconds with a
// reason that makes them reconnect, then a clean exit).
// Run: `cargo build -p switchboard && npm ci && npm test`.
// SWITCHBOARD_BIN overrides the binary (default: ../../target/debug/switchboard).

import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";

import { io } from "socket.io-client";

import { binaryPath, freePort, sleep, startServer, withTimeout } from "../harness.js";

const BIN = binaryPath("SWITCHBOARD_BIN", "target/debug/switchboard");
const DRAIN_S = 2;
const PER_TRANSPORT = 10;
const MODES = {
  websocket: { transports: ["websocket"] },
  polling: { transports: ["polling"] },
  upgrade: { transports: ["polling", "websocket"] },
};

/** The value of one exported series (`name{labels}` as written in the scrape). */
function sample(scrape, series) {
  const line = scrape.split("\n").find((l) => l.startsWith(`${series} `));
  assert.ok(line, `${series} not in the scrape:\n${scrape}`);
  return Number(line.slice(series.length + 1));
}

describe("operations: metrics port, readiness and drain on SIGTERM", () => {
  let server;
  let metricsPort;
  const sockets = [];

  before(async () => {
    metricsPort = await freePort();
    server = await startServer({
      bin: BIN,
      hint: "Build it first with `cargo build -p switchboard` (from the workspace root).",
      nodeIdPrefix: "ops",
      args: ({ port, nodeId }) => [
        "--app",
        "bench",
        "--host",
        "127.0.0.1",
        "--port",
        String(port),
        "--node-id",
        nodeId.replace(/[^A-Za-z0-9_-]/g, "_"),
        "--metrics-port",
        String(metricsPort),
        "--drain-seconds",
        String(DRAIN_S),
      ],
      env: { RUST_LOG: "warn" },
      outputLimit: 8000,
    });
  });

  after(async () => {
    for (const s of sockets) s.close();
    await server?.stop();
  });

  const metricsUrl = (path) => `http://127.0.0.1:${metricsPort}${path}`;

  it("serves metrics off the public port and drains every client on SIGTERM", async () => {
    for (const [mode, options] of Object.entries(MODES)) {
      for (let i = 0; i < PER_TRANSPORT; i++) {
        const socket = io(server.url, { ...options, forceNew: true, reconnectionDelay: 200 });
        socket.mode = mode;
        socket.reasons = [];
        socket.on("disconnect", (reason) => socket.reasons.push({ reason, at: Date.now() }));
        sockets.push(socket);
      }
    }
    await withTimeout(
      Promise.all(sockets.map((s) => new Promise((resolve) => s.once("connect", resolve)))),
      10_000,
      "every client to connect",
    );
    // Each client works: an acked echo.
    await withTimeout(
      Promise.all(sockets.map((s) => s.timeout(5000).emitWithAck("echo", s.id))),
      10_000,
      "every echo",
    );

    assert.equal((await fetch(`${server.url}/metrics`)).status, 404, "/metrics is not on the public port");
    assert.equal((await fetch(`${server.url}/readyz`)).status, 200);
    assert.equal((await fetch(metricsUrl("/healthz"))).status, 200);
    assert.equal((await fetch(metricsUrl("/readyz"))).status, 200);
    const scrape = await (await fetch(metricsUrl("/metrics"))).text();
    const sessions =
      sample(scrape, 'switchboard_sessions{transport="polling"}') +
      sample(scrape, 'switchboard_sessions{transport="websocket"}');
    // The harness's start-up check opened one more (polling) session, which never joined `/`.
    assert.equal(sessions, 3 * PER_TRANSPORT + 1);
    assert.equal(sample(scrape, 'switchboard_sockets{namespace="/"}'), 3 * PER_TRANSPORT);
    assert.equal(sample(scrape, "switchboard_ready"), 1);
    assert.equal(sample(scrape, "switchboard_event_handler_duration_seconds_count"), 3 * PER_TRANSPORT);

    const term = Date.now();
    server.signal("SIGTERM");
    // Readiness goes off at once, and new handshakes are refused, while the clients drain.
    let ready = 200;
    for (let i = 0; i < 50 && ready === 200; i++) {
      ready = (await fetch(metricsUrl("/readyz"))).status;
      if (ready === 200) await sleep(10);
    }
    assert.equal(ready, 503, "/readyz after SIGTERM");
    const refused = await fetch(`${server.url}/socket.io/?EIO=4&transport=polling`);
    assert.equal(refused.status, 503);
    assert.deepEqual(await refused.json(), { code: 4, message: "Server shutting down" });

    await withTimeout(
      Promise.all(
        sockets.map((s) =>
          s.reasons.length > 0 ? null : new Promise((resolve) => s.once("disconnect", resolve)),
        ),
      ),
      (DRAIN_S + 3) * 1000,
      "every client to be disconnected",
    );
    const exit = await withTimeout(server.exited, 5000, "the process to exit after the drain");
    assert.deepEqual(exit, { code: 0, signal: null }, `exit status; output:\n${server.output()}`);

    // "transport close" is what makes socket.io-client reconnect (to another node behind the
    // balancer); "io server disconnect" would not.
    for (const s of sockets) {
      assert.equal(s.reasons[0].reason, "transport close", `${s.mode} client's disconnect reason`);
    }
    const offsets = sockets.map((s) => s.reasons[0].at - term).sort((a, b) => a - b);
    const [first, last] = [offsets[0], offsets[offsets.length - 1]];
    assert.ok(first < (DRAIN_S * 1000) / 2, `the first client left ${first} ms after SIGTERM`);
    assert.ok(last >= (DRAIN_S * 1000) / 2, `every client was gone ${last} ms after SIGTERM: not spread`);
    assert.ok(last <= (DRAIN_S + 1) * 1000, `the last client left ${last} ms after SIGTERM`);
  });
});
