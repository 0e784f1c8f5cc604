// What an operator relies on, with the real `switchboard` binary and official socket.io-client
// sockets: /metrics, /healthz and /readyz on --metrics-port, and the drain on SIGTERM (readiness
// off at once, new handshakes refused, clients disconnected in batches over --drain-window with a
// reason that makes them reconnect, then a clean exit).
// Also: the adapter's series on two nodes joined by a real redis-server / nats-server (publishes,
// the publish latency histogram, the node count, the link going down while readiness stays).
// Run: `cargo build -p switchboard && npm ci && npm test` (the broker part needs redis-server and
// nats-server: `sudo apt-get install redis-server nats-server`).
// SWITCHBOARD_BIN overrides the binary (default: ../../target/debug/switchboard).

import { spawnSync } from "node:child_process";
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";

import { io } from "socket.io-client";

import { binaryPath, freePort, sleep, startNats, startRedis, startServer, withTimeout } from "../harness.js";

const BIN = binaryPath("SWITCHBOARD_BIN", "target/debug/switchboard");
const DRAIN_MS = 2000;
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

/** Starts a bench node with its metrics on `metricsPort`, plus `extra` flags. */
function startNode(nodeIdPrefix, metricsPort, extra) {
  return startServer({
    bin: BIN,
    hint: "Build it first with `cargo build -p switchboard` (from the workspace root).",
    nodeIdPrefix,
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
      ...extra,
    ],
    env: { RUST_LOG: "warn" },
    outputLimit: 8000,
  });
}

describe("operations: metrics port, readiness and drain on SIGTERM", () => {
  let server;
  let metricsPort;
  const sockets = [];

  before(async () => {
    metricsPort = await freePort();
    server = await startNode("ops", metricsPort, ["--drain-window", String(DRAIN_MS)]);
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
    assert.equal(sample(scrape, 'switchboard_sockets{nsp="/"}'), 3 * PER_TRANSPORT);
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
      DRAIN_MS + 3000,
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
    assert.ok(first < DRAIN_MS / 2, `the first client left ${first} ms after SIGTERM`);
    assert.ok(last >= DRAIN_MS / 2, `every client was gone ${last} ms after SIGTERM: not spread`);
    assert.ok(last <= DRAIN_MS + 1000, `the last client left ${last} ms after SIGTERM`);
  });
});

/** Every `name{...}` sample of a scrape summed (all label sets). */
function total(scrape, name) {
  return scrape
    .split("\n")
    .filter((l) => l.startsWith(`${name} `) || l.startsWith(`${name}{`))
    .reduce((sum, l) => sum + Number(l.slice(l.lastIndexOf(" ") + 1)), 0);
}

for (const broker of ["redis", "nats"]) {
  describe(`operations: adapter metrics over a real ${broker}-server`, () => {
    let brokerProcess;
    const nodes = [];
    const clients = [];

    before(async () => {
      brokerProcess = broker === "redis" ? await startRedis() : await startNats();
      const prefix = `ops${Date.now().toString(36)}`;
      for (let i = 0; i < 2; i++) {
        const metricsPort = await freePort();
        const node = await startNode(`m${i}`, metricsPort, [
          "--adapter",
          broker,
          `--${broker}-url`,
          brokerProcess.url,
          "--cluster-prefix",
          prefix,
        ]);
        node.metricsUrl = (path) => `http://127.0.0.1:${metricsPort}${path}`;
        node.scrape = async () => (await fetch(node.metricsUrl("/metrics"))).text();
        nodes.push(node);
      }
    });

    after(async () => {
      for (const c of clients) c.close();
      for (const n of nodes) await n.stop();
      await brokerProcess?.stop();
    });

    it("exports publishes, their latency histogram and the node count, and a broker outage shows in the gauge, not in readiness", async () => {
      for (const node of nodes) {
        const client = io(node.url, { transports: ["websocket"], forceNew: true, reconnection: false });
        client.received = [];
        client.on("msg", (data) => client.received.push(data));
        clients.push(client);
      }
      await withTimeout(
        Promise.all(clients.map((c) => new Promise((resolve) => c.once("connect", resolve)))),
        10_000,
        "both clients connect",
      );
      // Membership: each node counts the other.
      const deadline = Date.now() + 10_000;
      for (const node of nodes) {
        while (sample(await node.scrape(), "switchboard_cluster_nodes") !== 2) {
          assert.ok(Date.now() < deadline, `${node.nodeId} never counted 2 nodes:\n${await node.scrape()}`);
          await sleep(100);
        }
      }
      const before = await nodes[0].scrape();
      const N = 20;
      for (let i = 0; i < N; i++) {
        await withTimeout(clients[0].emitWithAck("broadcast", { data: i }), 5_000, `broadcast ${i} acked`);
      }
      while (clients[1].received.length < N) {
        assert.ok(Date.now() < deadline + 5_000, `the other node's client got ${clients[1].received.length} of ${N}`);
        await sleep(50);
      }
      assert.deepEqual(clients[1].received, [...Array(N).keys()], "every broadcast crossed, in order");
      const after = await nodes[0].scrape();
      const published = sample(after, "switchboard_adapter_publishes_total") - sample(before, "switchboard_adapter_publishes_total");
      const timed =
        sample(after, "switchboard_adapter_publish_duration_seconds_count") -
        sample(before, "switchboard_adapter_publish_duration_seconds_count");
      assert.ok(published >= N, `publishes_total rose by ${published}, at least the ${N} broadcasts`);
      // Heartbeats published meanwhile may not have been taken yet: at most a few in flight.
      assert.ok(timed >= N && timed <= published, `publish latency observed ${timed} times for ${published} publishes`);
      const sum = sample(after, "switchboard_adapter_publish_duration_seconds_sum");
      assert.ok(sum > 0 && sum / sample(after, "switchboard_adapter_publish_duration_seconds_count") < 0.5,
        `mean publish latency ${sum} s total is positive and sane`);
      assert.equal(sample(after, 'switchboard_adapter_publish_duration_seconds_bucket{le="+Inf"}'),
        sample(after, "switchboard_adapter_publish_duration_seconds_count"), "+Inf bucket holds every observation");
      assert.equal(sample(after, "switchboard_adapter_connected"), 1);
      assert.equal(total(after, "switchboard_adapter_errors_total"), 0, "no adapter errors");

      // The broker goes away: the link gauge says so; readiness and liveness do not (the node
      // still serves its own clients, so the balancer keeps sending it new ones).
      await brokerProcess.kill();
      const killed = Date.now();
      for (const node of nodes) {
        while (sample(await node.scrape(), "switchboard_adapter_connected") !== 0) {
          assert.ok(Date.now() - killed < 10_000, `${node.nodeId} still connected 10 s after the broker died`);
          await sleep(100);
        }
        const ready = await fetch(node.metricsUrl("/readyz"));
        assert.equal(ready.status, 200, "/readyz while the broker is down");
        assert.equal(await ready.text(), "ready\n");
        assert.equal((await fetch(node.metricsUrl("/healthz"))).status, 200);
        assert.equal(sample(await node.scrape(), "switchboard_ready"), 1);
      }
      // And back: connected again, one reconnect counted.
      await brokerProcess.restart();
      const restarted = Date.now();
      for (const node of nodes) {
        while (sample(await node.scrape(), "switchboard_adapter_connected") !== 1) {
          assert.ok(Date.now() - restarted < 10_000, `${node.nodeId} not connected 10 s after the broker came back`);
          await sleep(100);
        }
        assert.ok(sample(await node.scrape(), "switchboard_adapter_reconnects_total") >= 1, "the reconnect is counted");
      }
    });
  });
}

describe("operations: --advertise-address is checked at start-up", () => {
  it("refuses an address without a port, or a URL, with a clear error", () => {
    for (const bad of ["10.0.0.7", "http://10.0.0.7:3000"]) {
      const run = spawnSync(BIN, ["--adapter", "redis", "--redis-url", "redis://127.0.0.1:1", "--advertise-address", bad], {
        encoding: "utf8",
        timeout: 10_000,
      });
      assert.notEqual(run.status, 0, `${bad} was accepted`);
      assert.match(run.stderr, /--advertise-address must be host:port/);
    }
  });
});

describe("operations: a renamed setting is refused, not ignored", () => {
  it("refuses SWITCHBOARD_DRAIN_SECONDS and names its replacement", () => {
    const run = spawnSync(BIN, ["--port", "0", "--host", "127.0.0.1"], {
      encoding: "utf8",
      timeout: 10_000,
      env: { ...process.env, SWITCHBOARD_DRAIN_SECONDS: "20" },
    });
    assert.notEqual(run.status, 0, "the old setting was accepted");
    assert.match(run.stderr, /SWITCHBOARD_DRAIN_SECONDS is no longer read: use SWITCHBOARD_DRAIN_WINDOW \(--drain-window\) \(milliseconds\)/);
  });
});

describe("operations: logs and version", () => {
  it("--log-format json writes one JSON object per line with the node id, and the build's commit", async () => {
    const node = await startServer({
      bin: BIN,
      nodeIdPrefix: "logs",
      args: ({ port, nodeId }) => [
        "--app", "bench", "--host", "127.0.0.1", "--port", String(port), "--node-id", nodeId,
        "--log-format", "json", "--log-level", "info",
      ],
      env: { RUST_LOG: "" },
    });
    await node.stop();
    const lines = node.output().split("\n").filter((l) => l.trim() !== "");
    const objects = lines.map((line) => {
      try {
        return JSON.parse(line);
      } catch {
        assert.fail(`not a JSON line: ${JSON.stringify(line)}`);
      }
    });
    for (const o of objects) {
      assert.equal(o.node_id, node.nodeId, JSON.stringify(o));
      assert.match(o.timestamp, /^\d{4}-\d\d-\d\dT.*Z$/);
      assert.ok(["INFO", "WARN", "ERROR"].includes(o.level), `a line below --log-level info: ${JSON.stringify(o)}`);
      assert.equal(typeof o.target, "string");
    }
    const listening = objects.find((o) => o.fields?.message === "switchboard listening");
    assert.ok(listening, `no start-up line in:\n${lines.join("\n")}`);
    assert.match(listening.fields.commit, /^[0-9a-f]{12}$/);

    const version = spawnSync(BIN, ["--version"], { encoding: "utf8", timeout: 10_000 });
    assert.equal(version.stdout.trim(), `switchboard ${listening.fields.version} (${listening.fields.commit})`);
  });

  it("text logs carry no colour codes when the output is not a terminal", async () => {
    const node = await startServer({
      bin: BIN,
      nodeIdPrefix: "text",
      args: ({ port, nodeId }) => ["--app", "bench", "--host", "127.0.0.1", "--port", String(port), "--node-id", nodeId],
      env: { RUST_LOG: "info" },
    });
    await node.stop();
    assert.match(node.output(), /switchboard listening/);
    assert.ok(!node.output().includes("\u001b["), `escape codes in:\n${node.output()}`);
  });

  it("refuses a --log-level that is not a filter, before starting", () => {
    const run = spawnSync(BIN, ["--log-level", "info,=x=", "--port", "0"], { encoding: "utf8", timeout: 10_000 });
    assert.notEqual(run.status, 0);
    assert.match(run.stderr, /--log-level "info,=x=" is not a valid filter/);
  });
});

describe("operations: options that cannot work are refused at start-up", () => {
  for (const [args, message] of [
    [["--ping-interval", "0"], /--ping-interval must be between 1 ms and 1 day/],
    [["--ping-timeout", "86400001"], /--ping-timeout must be between 1 ms and 1 day/],
    [["--cors-origin", "*", "--cors-credentials"], /any origin \(--cors-origin '\*'\) with --cors-credentials/],
    [["--max-header-size", "10"], /--max-header-size must be at least 1024 bytes/],
    [["--cluster-secret", "short"], /a cluster secret needs at least 16 bytes/],
    [["--connection-state-recovery", "--adapter", "nats"], /--connection-state-recovery works with --adapter memory or redis, not nats yet/],
    [["--connection-state-recovery", "--max-disconnection-duration", "0"], /--max-disconnection-duration must be 1 to 86400000 ms/],
    [["--connection-state-recovery", "--recovery-max-log-packets", "0"], /--recovery-max-log-packets must be at least 1/],
  ]) {
    it(`refuses ${args.join(" ")}`, () => {
      const run = spawnSync(BIN, [...args, "--host", "127.0.0.1", "--port", "0"], { encoding: "utf8", timeout: 10_000 });
      assert.notEqual(run.status, 0, `${args.join(" ")} was accepted`);
      assert.match(run.stderr, message);
    });
  }
});
