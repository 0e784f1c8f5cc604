// The chat example (server/examples/chat.rs), the program a user would copy first, run as its
// README says and driven by the official socket.io-client: two clients join a room, one speaks,
// the other hears it and the speaker gets its ack; a client outside the room hears nothing.
// Run: `cargo build -p switchboard --examples && npm ci && npm test`.
// SWITCHBOARD_CHAT_BIN overrides the binary (default: ../../target/debug/examples/chat).

import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";

import { io } from "socket.io-client";

import { binaryPath, sleep, startServer, withTimeout } from "../harness.js";

const BIN = binaryPath("SWITCHBOARD_CHAT_BIN", "target/debug/examples/chat");
const WAIT_MS = 5000;

describe("the chat example with socket.io-client", () => {
  let server;
  const clients = [];

  before(async () => {
    server = await startServer({
      bin: BIN,
      hint: "Build it first with `cargo build -p switchboard --examples` (from the workspace root).",
      env: ({ port }) => ({ PORT: String(port), RUST_LOG: "warn" }),
      // The example prints its address once it listens: that line names this process's port.
      readyCheck: async (s) => s.output().includes(`listening on http://127.0.0.1:${s.port}`),
    });
  });

  after(async () => {
    for (const c of clients) c.close();
    await server?.stop();
  });

  const connect = async () => {
    const socket = io(server.url, { transports: ["websocket"], reconnection: false });
    clients.push(socket);
    await withTimeout(new Promise((resolve, reject) => {
      socket.once("connect", resolve);
      socket.once("connect_error", reject);
    }), WAIT_MS, "connect");
    return socket;
  };

  it("relays what one member says to the others in the room, and only to them", async () => {
    const [alice, bob, carol] = [await connect(), await connect(), await connect()];
    const heard = { bob: [], carol: [] };
    bob.on("said", (m) => heard.bob.push(m));
    carol.on("said", (m) => heard.carol.push(m));

    assert.deepEqual(await withTimeout(alice.emitWithAck("join", "lobby"), WAIT_MS, "alice joins"), [alice.id]);
    const joined = withTimeout(new Promise((resolve) => alice.once("joined", resolve)), WAIT_MS, "joined");
    const members = await withTimeout(bob.emitWithAck("join", "lobby"), WAIT_MS, "bob joins");
    assert.deepEqual([...members].sort(), [alice.id, bob.id].sort());
    assert.equal(await joined, bob.id, "alice hears bob join");

    const delivered = await withTimeout(alice.emitWithAck("say", { room: "lobby", text: "hi" }), WAIT_MS, "say");
    assert.equal(delivered, true);
    while (heard.bob.length === 0) await sleep(10);
    assert.deepEqual(heard.bob, [{ from: alice.id, text: "hi" }]);
    // Carol is not in the lobby. An ack of hers that comes back after bob heard "hi" went through
    // the same server after the emit, so "hi" would have reached her by then too.
    await withTimeout(carol.emitWithAck("join", "other"), WAIT_MS, "carol joins another room");
    assert.deepEqual(heard.carol, []);
  });
});
