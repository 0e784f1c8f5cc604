// A broker outage is not a node outage, as official socket.io-client sockets see it: two
// `switchboard --app bench` nodes started while their redis-server / nats-server is down answer
// /readyz 200 and serve their own clients (acked echoes, broadcasts that stay on the node); when
// the broker starts, they connect by themselves and broadcasts cross between them; when it is
// killed again, they stay ready and keep serving their clients.
// Run: `cargo build -p switchboard && npm ci && node --test test/broker.test.js` (needs
// redis-server and nats-server: `sudo apt-get install redis-server nats-server`).

import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";

import { io } from "socket.io-client";

import { binaryPath, freePort, sleep, startNats, startRedis, startServer, withTimeout } from "../harness.js";

const BIN = binaryPath("SWITCHBOARD_BIN", "target/debug/switchboard");
/** How long a node may take to notice its broker came or went. */
const NOTICE_MS = 10_000;

/** The value of one exported series, or undefined. */
function sample(scrape, series) {
  const line = scrape.split("\n").find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

/** Waits until `check()` resolves true, for at most `ms`; fails with `what`. */
async function until(check, ms, what) {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    assert.ok(Date.now() < deadline, `${what} within ${ms} ms`);
    await sleep(50);
  }
}

for (const broker of ["redis", "nats"]) {
  describe(`broker: nodes started without their ${broker}-server`, () => {
    let brokerProcess;
    const nodes = [];
    const clients = [];

    before(async () => {
      brokerProcess = broker === "redis" ? await startRedis() : await startNats();
      await brokerProcess.kill();
      const prefix = `brk${Date.now().toString(36)}`;
      for (let i = 0; i < 2; i++) {
        const metricsPort = await freePort();
        const node = await startServer({
          bin: BIN,
          hint: "Build it first with `cargo build -p switchboard` (from the workspace root).",
          nodeIdPrefix: `b${i}`,
          args: ({ port, nodeId }) => [
            "--app", "bench", "--host", "127.0.0.1", "--port", String(port),
            "--node-id", nodeId.replace(/[^A-Za-z0-9_-]/g, "_"), "--metrics-port", String(metricsPort),
            "--adapter", broker, `--${broker}-url`, brokerProcess.url, "--cluster-prefix", prefix,
          ],
          env: { RUST_LOG: "warn" },
          outputLimit: 8000,
        });
        node.metricsUrl = (path) => `http://127.0.0.1:${metricsPort}${path}`;
        node.scrape = async () => (await fetch(node.metricsUrl("/metrics"))).text();
        node.connected = async () => sample(await node.scrape(), "switchboard_adapter_connected");
        nodes.push(node);
      }
    });

    after(async () => {
      for (const c of clients) c.close();
      for (const n of nodes) await n.stop();
      await brokerProcess?.stop();
    });

    /** Both nodes answer /readyz 200 and /healthz 200. */
    async function assertReady(when) {
      for (const node of nodes) {
        const ready = await fetch(node.metricsUrl("/readyz"));
        assert.equal(ready.status, 200, `${node.nodeId} /readyz ${when}`);
        assert.equal(await ready.text(), "ready\n");
        assert.equal((await fetch(node.metricsUrl("/healthz"))).status, 200, `${node.nodeId} /healthz ${when}`);
      }
    }

    /** Broadcasts `data` through client `from`; resolves once its ack came. */
    async function broadcast(from, data) {
      await withTimeout(from.emitWithAck("broadcast", { data }), 5000, `broadcast ${data} acked`);
    }

    it("serve their own clients while the broker is down, and join each other when it appears", async () => {
      await assertReady("with the broker down at start-up");
      for (const node of nodes) assert.equal(await node.connected(), 0, `${node.nodeId} gauge with the broker down`);

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
      const [a, b] = clients;
      assert.equal(await withTimeout(a.emitWithAck("echo", "hi"), 5000, "echo"), "hi");
      // Local delivery only: the sender's client gets it, the other node's does not.
      await broadcast(a, 1);
      await until(async () => a.received.includes(1), 5000, "the sender's own client got broadcast 1");
      assert.ok(!b.received.includes(1), "a broadcast crossed nodes without a broker");

      // The broker starts on the URL the nodes were given: they connect by themselves.
      await brokerProcess.restart();
      for (const node of nodes) await until(async () => (await node.connected()) === 1, NOTICE_MS, `${node.nodeId} connected`);
      await assertReady("with the broker up");
      // Membership settles within a heartbeat or two: broadcast until one crosses.
      let data = 100;
      await until(async () => {
        data += 1;
        await broadcast(a, data);
        await sleep(100);
        return b.received.includes(data);
      }, NOTICE_MS, "a broadcast from the first node reaching the second");
      await broadcast(b, 500);
      await until(async () => a.received.includes(500), 5000, "a broadcast from the second node reaching the first");

      // The broker dies under them: still ready, still serving, the gauge at 0.
      await brokerProcess.kill();
      for (const node of nodes) await until(async () => (await node.connected()) === 0, NOTICE_MS, `${node.nodeId} disconnected`);
      await assertReady("with the broker killed");
      assert.equal(await withTimeout(b.emitWithAck("echo", "still"), 5000, "echo during the outage"), "still");
      await broadcast(b, 900);
      await until(async () => b.received.includes(900), 5000, "local delivery during the outage");
    });
  });
}
