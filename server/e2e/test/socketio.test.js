// End-to-end tests of Switchboard's Socket.IO layer, driven by the official socket.io-client over
// polling only, websocket only, and polling with upgrade. The server is the `e2e_server` example
// (server/e2e/fixtures/src/bin/e2e_server.rs), which documents the events used here.
// Run: `cargo build -p switchboard-e2e-fixtures && npm ci && npm test`.
// SWITCHBOARD_E2E_BIN overrides the binary (default: ../../target/debug/e2e_server).

import { randomBytes } from "node:crypto";
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";

import { io, Manager } from "socket.io-client";

import { binaryPath, sleep, startServer as startProcess, withTimeout } from "../harness.js";

const BIN = binaryPath("SWITCHBOARD_E2E_BIN", "target/debug/e2e_server");
const ENGINE_PATH = "/socket.io/";
/** How long to wait for anything that should happen (generous: failures show up as timeouts). */
const WAIT_MS = 5000;

// ---------------------------------------------------------------------------------------------
// Server process (../harness.js: a free port, then wait until it answers as our process)
// ---------------------------------------------------------------------------------------------

/** Starts the e2e_server example on a free port; it takes the port and node id from its environment. */
function startServer() {
  return startProcess({
    bin: BIN,
    hint:
      "Build it first with `cargo build -p switchboard-e2e-fixtures` (from the workspace root), " +
      "or point SWITCHBOARD_E2E_BIN at a built binary.",
    // No panic backtraces: symbolizing one stalls a runtime worker for ~200 ms in a debug build,
    // long enough to trip the 500 ms heartbeat of other clients on a busy machine.
    env: ({ port, nodeId }) => ({
      PORT: String(port),
      NODE_ID: nodeId,
      RUST_LOG: process.env.RUST_LOG ?? "warn",
      RUST_BACKTRACE: "0",
    }),
    enginePath: ENGINE_PATH,
    outputLimit: 8000,
  });
}

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/** The arguments of the next `event` on `emitter`. */
function next(emitter, event, what = event) {
  return withTimeout(new Promise((resolve) => emitter.once(event, (...args) => resolve(args))), WAIT_MS, what);
}

/** The reason of the next `disconnect` of a client socket. */
function disconnectReason(socket) {
  return withTimeout(new Promise((resolve) => socket.once("disconnect", resolve)), WAIT_MS, `disconnect of ${socket.nsp}`);
}

/** Resolves on `connect`, rejects on `connect_error`. */
function connected(socket) {
  if (socket.connected) return Promise.resolve(socket);
  const outcome = new Promise((resolve, reject) => {
    socket.once("connect", () => resolve(socket));
    socket.once("connect_error", (err) => reject(new Error(`connect_error on ${socket.nsp}: ${err.message}`)));
  });
  return withTimeout(outcome, WAIT_MS, `connect to ${socket.nsp}`);
}

/** The `connect_error` a socket gets (failing if it connects instead). */
function connectError(socket) {
  const outcome = new Promise((resolve, reject) => {
    socket.once("connect_error", resolve);
    socket.once("connect", () => reject(new Error(`${socket.nsp} connected; expected connect_error`)));
  });
  return withTimeout(outcome, WAIT_MS, `connect_error on ${socket.nsp}`);
}

/** Emits with an ack and resolves with all the ack's arguments. */
function ack(socket, event, ...args) {
  return new Promise((resolve, reject) => {
    socket.timeout(WAIT_MS).emit(event, ...args, (err, ...answer) => (err ? reject(err) : resolve(answer)));
  });
}

/** Records every event a socket receives, in order, as `[name, ...args]`. */
function record(socket) {
  const events = [];
  socket.onAny((...args) => events.push(args));
  return events;
}

/** Buffers, ArrayBuffers and typed arrays anywhere in a value, as Buffers (for deepEqual). */
function norm(value) {
  if (Buffer.isBuffer(value)) return value;
  if (value instanceof ArrayBuffer) return Buffer.from(new Uint8Array(value));
  if (ArrayBuffer.isView(value)) return Buffer.from(value.buffer, value.byteOffset, value.byteLength);
  if (Array.isArray(value)) return value.map(norm);
  if (value && typeof value === "object") return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, norm(v)]));
  return value;
}

const MODES = [
  { name: "polling only", opts: { transports: ["polling"] }, transport: "polling" },
  { name: "websocket only", opts: { transports: ["websocket"] }, transport: "websocket" },
  { name: "polling with upgrade", opts: { transports: ["polling", "websocket"] }, transport: "websocket", upgrade: true },
];

/** Namespaces the test app serves; each must be empty again after every test. */
const APP_NAMESPACES = ["/", "/admin", "/private", "/dyn-1", "/dyn-42"];

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

describe("switchboard Socket.IO with socket.io-client", () => {
  let server;
  /** A `/stats` observer: socket counts, and `left` reports of every socket that disconnects. */
  let stats;
  let statsLost = null;
  const lefts = new Map();
  const leftWaiters = new Map();

  before(async () => {
    server = await startServer();
    stats = io(`${server.url}/stats`, { path: ENGINE_PATH, transports: ["websocket"], forceNew: true, reconnection: false });
    stats.on("left", ({ id, reason }) => {
      lefts.set(id, reason);
      leftWaiters.get(id)?.(reason);
    });
    stats.on("disconnect", (reason) => (statsLost = reason));
    await connected(stats);
  });

  after(async () => {
    stats?.disconnect();
    await server?.stop();
  });

  /** The reason the server gave when socket `id` disconnected. */
  function leftReason(id) {
    assert.equal(statsLost, null, `the /stats observer lost its connection (${statsLost})`);
    if (lefts.has(id)) return Promise.resolve(lefts.get(id));
    return withTimeout(new Promise((resolve) => leftWaiters.set(id, resolve)), WAIT_MS, `the server to report ${id} left`);
  }

  /** `{sockets, fetched}` of a namespace, as the server counts them. */
  async function count(nsp) {
    assert.equal(statsLost, null, `the /stats observer lost its connection (${statsLost}); later results are void`);
    const [counts] = await ack(stats, "count", nsp);
    return counts;
  }

  /** Waits until no socket is left in the test namespaces (the server handles disconnects asynchronously). */
  async function expectNoSockets() {
    const deadline = Date.now() + WAIT_MS;
    for (;;) {
      const counts = await Promise.all(APP_NAMESPACES.map(count));
      if (counts.every((c) => c.sockets === 0 && c.fetched === 0)) return;
      if (Date.now() > deadline) {
        const report = Object.fromEntries(APP_NAMESPACES.map((nsp, i) => [nsp, counts[i]]));
        assert.fail(`sockets still counted by the server after every client left: ${JSON.stringify(report)}`);
      }
      await sleep(20);
    }
  }

  for (const mode of MODES) {
    describe(mode.name, () => {
      /**
       * A test with its own clients: `t.socket(nsp, opts)` / `t.manager(opts)` make clients in this
       * mode that are disconnected afterwards; then the server must count no socket anymore.
       */
      function scenario(name, body) {
        it(name, { timeout: 20_000 }, async () => {
          const sockets = [];
          const options = (opts) => ({ path: ENGINE_PATH, ...mode.opts, forceNew: true, reconnection: false, ...opts });
          const t = {
            socket(nsp = "/", opts = {}) {
              const socket = io(`${server.url}${nsp}`, options(opts));
              sockets.push(socket);
              return socket;
            },
            async connect(nsp = "/", opts = {}) {
              return connected(t.socket(nsp, opts));
            },
            manager(opts = {}) {
              const manager = new Manager(server.url, options(opts));
              return {
                manager,
                socket(nsp, socketOpts) {
                  const socket = manager.socket(nsp, socketOpts);
                  sockets.push(socket);
                  return socket;
                },
              };
            },
          };
          try {
            await body(t);
          } finally {
            for (const socket of sockets) socket.disconnect();
          }
          await expectNoSockets();
        });
      }

      /** Waits until the client's connection runs on the transport this mode ends on. */
      async function settled(socket) {
        const engine = socket.io.engine;
        if (mode.upgrade && engine.transport.name !== "websocket") {
          await next(engine, "upgrade", "the upgrade to websocket");
        }
        assert.equal(engine.transport.name, mode.transport);
      }

      scenario("connects with auth, which the server sees", async (t) => {
        const socket = t.socket("/", { auth: { token: "abc", n: 1, nested: { ok: true } } });
        const auth = next(socket, "auth");
        await connected(socket);
        assert.deepEqual(await auth, [{ token: "abc", n: 1, nested: { ok: true } }, "/"]);
        const [me] = await ack(socket, "whoami");
        assert.deepEqual(me, { nsp: "/", id: socket.id });
        await settled(socket);
        // Still working on the final transport.
        assert.deepEqual(await ack(socket, "ack", "after settling"), ["after settling"]);
      });

      scenario("a middleware refusal is a connect_error with message and data", async (t) => {
        const refused = t.socket("/private", { auth: { token: "wrong" } });
        const err = await connectError(refused);
        assert.equal(err.message, "not authorized");
        assert.deepEqual(err.data, { reason: "bad token", token: "wrong" });
        assert.equal(refused.connected, false);
        assert.equal(refused.active, false, "a middleware refusal is final (no retry)");

        const accepted = t.socket("/private", { auth: { token: "let-me-in" } });
        const auth = next(accepted, "auth");
        await connected(accepted);
        assert.deepEqual(await auth, [{ token: "let-me-in" }, "/private"]);
        assert.deepEqual(await ack(accepted, "ack", 1), [1]);

        // A refusal on a shared connection leaves its other namespaces alone.
        const { socket } = t.manager();
        const main = await connected(socket("/"));
        const refusedToo = await connectError(socket("/private", { auth: {} }));
        assert.deepEqual([refusedToo.message, refusedToo.data], ["not authorized", { reason: "bad token", token: null }]);
        assert.deepEqual(await ack(main, "ack", "main"), ["main"]);
      });

      scenario("events both ways, in order", async (t) => {
        const socket = await t.connect();
        const events = record(socket);
        const args = ["héllo ✓", 42, 1.5, true, null, { a: [1, { b: "c" }] }, [], {}];
        const echoed = next(socket, "echo");
        socket.emit("echo", ...args);
        assert.deepEqual(await echoed, args);

        const burst = 50;
        const all = new Promise((resolve) => {
          let seen = 0;
          socket.on("echo", () => ++seen === burst && resolve());
        });
        for (let i = 0; i < burst; i++) socket.emit("echo", i, `n${i}`);
        await withTimeout(all, WAIT_MS, `${burst} echoes`);
        const got = events.filter(([name]) => name === "echo").slice(1);
        assert.deepEqual(got, Array.from({ length: burst }, (_, i) => ["echo", i, `n${i}`]));
      });

      scenario("acks both ways, and their timeouts", async (t) => {
        const socket = await t.connect();

        // Client → server ack, several arguments.
        assert.deepEqual(await ack(socket, "ack", "x", { y: [1, 2] }, null), ["x", { y: [1, 2] }, null]);
        assert.deepEqual(await socket.timeout(WAIT_MS).emitWithAck("ack", "first"), "first");

        // Server → client emitWithAck, answered.
        socket.once("question", (...args) => {
          const callback = args.pop();
          callback("answer", ...args);
        });
        let answer = next(socket, "answer");
        socket.emit("ask", 2000, "q1", { n: 1 });
        assert.deepEqual(await answer, [{ ok: true, args: ["answer", "q1", { n: 1 }] }]);

        // Client timeout: no server ack.
        const err = await new Promise((resolve) => socket.timeout(200).emit("nobody-acks-this", (e) => resolve(e)));
        assert.ok(err instanceof Error, `expected a timeout error, got ${err}`);
        assert.equal(err.message, "operation has timed out");

        // Server timeout: the client never acks.
        const unanswered = next(socket, "question"); // takes the ack callback and never calls it
        answer = next(socket, "answer");
        socket.emit("ask", 200, "q2");
        assert.deepEqual((await unanswered).length, 2, "the question carries an ack callback");
        assert.deepEqual(await answer, [{ ok: false, error: "ack timed out" }]);

        // Still usable afterwards.
        assert.deepEqual(await ack(socket, "ack", "still here"), ["still here"]);
      });

      scenario("broadcast with acks collects answers and counts the missing ones", async (t) => {
        const [asker, answering, silent] = await Promise.all([t.connect(), t.connect(), t.connect()]);
        await ack(answering, "join", "acks");
        await ack(silent, "join", "acks");
        answering.on("poll", (callback) => callback("yes"));
        silent.on("poll", () => {});
        const [result] = await ack(asker, "room-ask", "acks", 300);
        assert.deepEqual(result, { answers: ["yes"], missing: 1 });
        silent.removeAllListeners("poll");
        silent.on("poll", (callback) => callback("me too"));
        const [all] = await ack(asker, "room-ask", "acks", 2000);
        assert.deepEqual({ ...all, answers: all.answers.sort() }, { answers: ["me too", "yes"], missing: 0 });
      });

      scenario("binary arguments both ways, top-level and nested", async (t) => {
        const socket = await t.connect();
        const bytes = Buffer.from([0, 1, 2, 253, 254, 255]);
        const nested = { file: Buffer.from("file"), list: [Buffer.from([9]), "text", { deep: new Uint8Array([7, 8]) }] };

        // The server decodes them as binary (it answers with hex).
        assert.deepEqual(await ack(socket, "inspect", bytes, nested, "plain"), [
          { binary: "000102fdfeff" },
          { file: { binary: "66696c65" }, list: [{ binary: "09" }, "text", { deep: { binary: "0708" } }] },
          "plain",
        ]);

        // Client → server → client, as an event and as an ack.
        const echoed = next(socket, "echo");
        socket.emit("echo", bytes, nested);
        const expectedNested = { file: Buffer.from("file"), list: [Buffer.from([9]), "text", { deep: Buffer.from([7, 8]) }] };
        assert.deepEqual(norm(await echoed), [bytes, expectedNested]);
        assert.deepEqual(norm(await ack(socket, "ack", nested, bytes)), [expectedNested, bytes]);

        // Made by the server, as an event and as an ack.
        const made = [
          Buffer.from([0, 255, 128]),
          { kind: "nested", data: Buffer.from([1, 2, 3]), list: [Buffer.from("ab"), 7] },
        ];
        const binaryEvent = next(socket, "binary");
        const acked = await ack(socket, "make-binary");
        assert.deepEqual(norm(await binaryEvent), made);
        assert.deepEqual(norm(acked), made);

        // A large one (base64 over polling).
        const large = randomBytes(200_000);
        const largeEcho = next(socket, "echo");
        socket.emit("echo", { large });
        assert.ok(norm(await largeEcho)[0].large.equals(large), "200 kB buffer echoed intact");

        // Binary in the client's answer to the server's emitWithAck.
        socket.once("question", (callback) => callback(Buffer.from("reply"), { inner: Buffer.from([5]) }));
        const answer = next(socket, "answer");
        socket.emit("ask", 2000);
        assert.deepEqual(norm(await answer), [{ ok: true, args: [Buffer.from("reply"), { inner: Buffer.from([5]) }] }]);
      });

      scenario("rooms: to(room), except, socket.to, socket.broadcast, leave, socketsJoin", async (t) => {
        const [a, b, c] = await Promise.all([t.connect(), t.connect(), t.connect()]);
        const got = { a: record(a), b: record(b), c: record(c) };
        const msgs = (who, name) => got[who].filter(([n]) => n === name).map(([, m]) => m);
        // Everyone has seen everything sent before: each socket's own round trip flushes its queue.
        const sync = () => Promise.all([a, b, c].map((s) => ack(s, "whoami")));

        assert.deepEqual(await ack(a, "join", "r1"), [["r1"]]);
        assert.deepEqual(await ack(b, "join", "r1"), [["r1"]]);
        assert.deepEqual(await ack(b, "join", "r2"), [["r1", "r2"]]);
        const [members] = await ack(c, "members", "r1");
        assert.deepEqual(members.Ok.sort(), [a.id, b.id].sort());

        // io.to(room): members only (the sender c is not a member).
        const toA = next(a, "room-msg");
        const toB = next(b, "room-msg");
        assert.deepEqual(await ack(c, "to-room", "r1", "", "to r1"), [{ Ok: 2 }]);
        assert.deepEqual([await toA, await toB], [["to r1"], ["to r1"]]);

        // io.to(room).except(room2).
        const exceptA = next(a, "room-msg");
        assert.deepEqual(await ack(c, "to-room", "r1", "r2", "r1 minus r2"), [{ Ok: 1 }]);
        assert.deepEqual(await exceptA, ["r1 minus r2"]);

        // socket.to(room): the sender is excluded even as a member.
        const fromA = next(b, "room-msg");
        assert.deepEqual(await ack(a, "socket-to", "r1", "from a"), [{ Ok: 1 }]);
        assert.deepEqual(await fromA, ["from a"]);

        // socket.broadcast: everyone but the sender.
        const toBoth = [next(b, "broadcast-msg"), next(c, "broadcast-msg")];
        assert.deepEqual(await ack(a, "broadcast", "all but a"), [{ Ok: 2 }]);
        assert.deepEqual(await Promise.all(toBoth), [["all but a"], ["all but a"]]);

        await sync();
        assert.deepEqual(msgs("a", "room-msg"), ["to r1", "r1 minus r2"]);
        assert.deepEqual(msgs("b", "room-msg"), ["to r1", "from a"]);
        assert.deepEqual(msgs("c", "room-msg"), []);
        assert.deepEqual(msgs("a", "broadcast-msg"), []);

        // leave, then socketsJoin.
        assert.deepEqual(await ack(b, "leave", "r1"), [["r2"]]);
        assert.deepEqual(await ack(c, "to-room", "r1", "", "after leave"), [{ Ok: 1 }]);
        assert.deepEqual(await ack(c, "sockets-join", "r2", "r3"), [{ Ok: null }]);
        assert.deepEqual(await ack(c, "members", "r3"), [{ Ok: [b.id] }]);
        assert.deepEqual(await ack(c, "to-room", "r3", "", "to r3"), [{ Ok: 1 }]);
        await sync();
        assert.deepEqual(msgs("a", "room-msg"), ["to r1", "r1 minus r2", "after leave"]);
        assert.deepEqual(msgs("b", "room-msg"), ["to r1", "from a", "to r3"]);

        // A socket that disconnects leaves its rooms.
        const aId = a.id;
        a.disconnect();
        await leftReason(aId);
        assert.deepEqual(await ack(c, "members", "r1"), [{ Ok: [] }]);
        assert.deepEqual(await ack(c, "to-room", "r1", "", "nobody"), [{ Ok: 0 }]);
      });

      scenario("volatile emits do not error and reach a reading websocket client", async (t) => {
        const socket = t.socket();
        // The server emits `auth` from its connection handler, after the CONNECT answer: over
        // polling it may come in a later response, so it is awaited before recording starts.
        const auth = next(socket, "auth");
        await connected(socket);
        await auth;
        const got = record(socket);
        const [result] = await ack(socket, "volatile", "v0");
        assert.equal(typeof result.Ok, "number", `volatile emit failed: ${JSON.stringify(result)}`);
        if (mode.transport === "websocket") {
          await settled(socket);
          for (let i = 1; i <= 5; i++) {
            const arrived = next(socket, "volatile-msg");
            assert.deepEqual(await ack(socket, "volatile", `v${i}`), [{ Ok: 1 }]);
            assert.deepEqual(await arrived, [`v${i}`]);
          }
        }
        // Nothing else came in, and the socket still works.
        assert.ok(got.every(([name]) => name === "volatile-msg"), JSON.stringify(got));
        assert.deepEqual(await ack(socket, "ack", "ok"), ["ok"]);
      });

      scenario("several namespaces on one connection", async (t) => {
        const { manager, socket } = t.manager();
        const main = socket("/");
        const admin = socket("/admin", { auth: { role: "admin" } });
        const mainAuth = next(main, "auth");
        const adminAuth = next(admin, "auth");
        await Promise.all([connected(main), connected(admin)]);
        assert.deepEqual(await mainAuth, [{}, "/"]);
        assert.deepEqual(await adminAuth, [{ role: "admin" }, "/admin"]);
        assert.notEqual(main.id, admin.id);
        assert.deepEqual(await ack(main, "whoami"), [{ nsp: "/", id: main.id }]);
        assert.deepEqual(await ack(admin, "whoami"), [{ nsp: "/admin", id: admin.id }]);
        assert.deepEqual((await count("/admin")).sockets, 1);

        // Events stay in their namespace.
        const mainGot = record(main);
        const echoed = next(admin, "echo");
        admin.emit("echo", "admin only");
        assert.deepEqual(await echoed, ["admin only"]);
        await ack(main, "whoami");
        assert.deepEqual(mainGot, []);

        // Leaving one namespace keeps the other (and the connection).
        const engine = manager.engine;
        const adminId = admin.id;
        admin.disconnect();
        assert.equal(await leftReason(adminId), "client namespace disconnect");
        assert.deepEqual(await ack(main, "ack", "main still here"), ["main still here"]);
        assert.equal(manager.engine, engine, "same connection");
        assert.equal(engine.readyState, "open");
      });

      scenario("dynamic namespaces, and Invalid namespace for other names", async (t) => {
        const { socket } = t.manager();
        const main = socket("/");
        const dyn1 = socket("/dyn-1");
        const dyn42 = socket("/dyn-42", { auth: { x: 1 } });
        const auth42 = next(dyn42, "auth");
        await Promise.all([connected(main), connected(dyn1), connected(dyn42)]);
        assert.deepEqual(await auth42, [{ x: 1 }, "/dyn-42"]);
        assert.deepEqual(await ack(dyn1, "whoami"), [{ nsp: "/dyn-1", id: dyn1.id }]);
        assert.deepEqual(await ack(dyn42, "whoami"), [{ nsp: "/dyn-42", id: dyn42.id }]);

        for (const name of ["/dyn-x", "/dyn-", "/nope"]) {
          const err = await connectError(socket(name));
          assert.equal(err.message, "Invalid namespace", name);
        }
        // A separate connection to an unknown namespace is refused the same way.
        assert.equal((await connectError(t.socket("/unknown"))).message, "Invalid namespace");

        // The connection still serves its namespaces.
        assert.deepEqual(await ack(dyn1, "ack", "dyn"), ["dyn"]);
        assert.deepEqual(await ack(main, "ack", "main"), ["main"]);
        assert.equal((await count("/dyn-1")).sockets, 1);
      });

      scenario("disconnect reasons on both sides", async (t) => {
        // Server socket.disconnect() → "io server disconnect"; no reconnection.
        const kicked = await t.connect("/", { reconnection: true });
        const kickedId = kicked.id;
        let reason = disconnectReason(kicked);
        kicked.emit("disconnect-me");
        assert.equal(await reason, "io server disconnect");
        assert.equal(kicked.active, false, "no reconnection after io server disconnect");
        assert.equal(await leftReason(kickedId), "server namespace disconnect");
        // It may come back by itself: a new CONNECT, a new socket id.
        kicked.connect();
        await connected(kicked);
        assert.notEqual(kicked.id, kickedId);
        assert.deepEqual(await ack(kicked, "whoami"), [{ nsp: "/", id: kicked.id }]);

        // Client socket.disconnect() → the server sees "client namespace disconnect".
        const leaving = await t.connect();
        const leavingId = leaving.id;
        reason = disconnectReason(leaving);
        leaving.disconnect();
        assert.equal(await reason, "io client disconnect");
        assert.equal(await leftReason(leavingId), "client namespace disconnect");

        // The client closes the connection → "transport close" on the server.
        const closing = await t.connect();
        const closingId = closing.id;
        closing.io.engine.close();
        assert.equal(await leftReason(closingId), "transport close");

        // disconnectSockets on a room: its members only.
        const [member, other] = await Promise.all([t.connect(), t.connect()]);
        await ack(member, "join", "doomed");
        reason = disconnectReason(member);
        assert.deepEqual(await ack(other, "kick-room", "doomed"), [{ Ok: null }]);
        assert.equal(await reason, "io server disconnect");
        assert.equal(other.connected, true);
        assert.deepEqual(await ack(other, "ack", "alive"), ["alive"]);
      });

      scenario("server disconnect(true) disconnects every namespace of the connection", async (t) => {
        const { socket } = t.manager();
        const main = socket("/");
        const admin = socket("/admin");
        await Promise.all([connected(main), connected(admin)]);
        const [mainId, adminId] = [main.id, admin.id];
        const reasons = Promise.all([disconnectReason(main), disconnectReason(admin)]);
        main.emit("close-me");
        assert.equal(await leftReason(mainId), "server namespace disconnect");
        assert.equal(await leftReason(adminId), "server namespace disconnect");
        assert.deepEqual(await reasons, ["io server disconnect", "io server disconnect"]);
      });

      scenario("reconnects after the server closes the connection", async (t) => {
        const socket = t.socket("/", {
          reconnection: true,
          reconnectionDelay: 50,
          reconnectionDelayMax: 100,
          auth: { user: "re" },
        });
        const auths = [];
        socket.on("auth", (auth) => auths.push(auth));
        await connected(socket);
        const firstId = socket.id;
        const reason = disconnectReason(socket);
        const reconnected = next(socket.io, "reconnect", "the manager's reconnect");
        socket.emit("drop-connection");
        assert.equal(await reason, "transport close");
        assert.equal(await leftReason(firstId), "forced close");
        await reconnected;
        await connected(socket);
        assert.notEqual(socket.id, firstId, "a fresh socket after reconnecting");
        assert.ok(!socket.recovered, "no connection state recovery");
        assert.deepEqual(await ack(socket, "whoami"), [{ nsp: "/", id: socket.id }]);
        assert.deepEqual(auths, [{ user: "re" }, { user: "re" }], "auth sent again on reconnect");
      });

      scenario("a failing handler disconnects only its socket", async (t) => {
        const bystander = await t.connect();
        for (const failure of ["panic", "panic-later", "fail"]) {
          const { socket } = t.manager();
          const victim = socket("/");
          const sibling = socket("/admin"); // same connection, other namespace
          await Promise.all([connected(victim), connected(sibling)]);
          const victimId = victim.id;
          const reason = disconnectReason(victim);
          victim.emit(failure);
          assert.equal(await reason, "io server disconnect", failure);
          assert.equal(await leftReason(victimId), "server namespace disconnect", failure);
          assert.deepEqual(await ack(sibling, "ack", failure), [failure], `${failure}: sibling namespace still works`);
          assert.deepEqual(await ack(bystander, "ack", failure), [failure], `${failure}: other client still works`);
        }
        assert.equal((await count("/")).sockets, 1);
      });

      scenario("the server counts connected sockets per namespace", async (t) => {
        const clients = await Promise.all([t.connect(), t.connect(), t.connect(), t.connect("/admin")]);
        assert.deepEqual(await count("/"), { sockets: 3, fetched: 3 });
        assert.deepEqual(await count("/admin"), { sockets: 1, fetched: 1 });
        const firstId = clients[0].id;
        clients[0].disconnect();
        await leftReason(firstId);
        assert.deepEqual(await count("/"), { sockets: 2, fetched: 2 });
        // The rest leave when the test ends; the scenario then checks every count is 0.
      });
    });
  }
});
