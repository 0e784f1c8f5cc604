// A Node socket.io 4.8 server with @socket.io/redis-adapter 8.3 (classic `createAdapter`), the
// peer of a Switchboard node in test/node-interop.test.js: what a team running Node today runs.
//
// Environment: PORT (127.0.0.1), REDIS_URL, NODE_ID (printed, so the harness knows the process is
// ours), KEY (the adapter's key, default "socket.io"). Prints `ready <NODE_ID>` once listening.
//
// The contract, on `/`: each socket's `data` is `{node: "node"}` and it answers `question(x, ack)`
// with `ack("node:" + x)`. `do(request, ack)` runs one cluster operation on this server and acks
// `{ok: value}` or `{error: message}`; `request.op` is one of
// - `emit {to?, except?, event, args, volatile?, compress?, local?}` → io.to().except().emit();
// - `emitWithAck {to?, event, args, timeout}` → the acks;
// - `serverCount` → io.of("/").adapter.serverCount();
// - `fetch {to?}` → [{id, rooms, data, auth}];
// - `socketsJoin|socketsLeave {to?, rooms}`, `disconnectSockets {to?, close}`;
// - `serverSideEmit {event, args}`, `serverSideEmitWithAck {event, args}` → the answers (within requestsTimeout);
// - `serverSideReceived` → the server-side events this server got, as `[event, ...args]`.
// `join(room, ack)` joins a room and acks the socket's rooms.
// Server-side `ping(...args, ack)` is answered with `"pong-node"`, and `gateway:node(ack)` with
// `{id: NODE_ID, sockets}` (what a Switchboard gateway node answers for its `/v1/nodes`).

import { createServer } from "node:http";

import { createAdapter } from "@socket.io/redis-adapter";
import { createClient } from "redis";
import { Server } from "socket.io";

const port = Number(process.env.PORT ?? 3000);
const pub = createClient({ url: process.env.REDIS_URL });
const sub = pub.duplicate();
await Promise.all([pub.connect(), sub.connect()]);

const http = createServer();
const io = new Server(http, {
  adapter: createAdapter(pub, sub, {
    key: process.env.KEY ?? "socket.io",
    publishOnSpecificResponseChannel: process.env.SPECIFIC_RESPONSE_CHANNEL === "1",
  }),
  pingInterval: 300,
  pingTimeout: 200,
});

const received = [];
io.on("ping", (...args) => {
  const ack = typeof args.at(-1) === "function" ? args.pop() : null;
  received.push(["ping", ...args]);
  ack?.("pong-node");
});
io.on("news", (...args) => received.push(["news", ...args]));
// What a Switchboard gateway node answers for /v1/nodes, so the API lists this server too.
io.on("gateway:node", (...args) => {
  received.push(["gateway:node"]);
  args.at(-1)?.({ id: process.env.NODE_ID, sockets: io.of("/").sockets.size });
});

/** `to` and `except` of a request applied to an operator. */
function select(request, target = io) {
  let op = target;
  for (const room of [request.to ?? []].flat()) op = op.to(room);
  for (const room of [request.except ?? []].flat()) op = op.except(room);
  return op;
}

const ops = {
  emit: (r) => {
    let op = select(r);
    if (r.volatile) op = op.volatile;
    if (r.local) op = op.local;
    if (r.compress !== undefined) op = op.compress(r.compress);
    return op.emit(r.event, ...(r.args ?? []));
  },
  emitWithAck: (r) => select(r).timeout(r.timeout ?? 2000).emitWithAck(r.event, ...(r.args ?? [])),
  serverCount: () => io.of("/").adapter.serverCount(),
  fetch: async (r) =>
    (await select(r).fetchSockets()).map((s) => ({
      id: s.id,
      rooms: [...s.rooms],
      data: s.data,
      auth: s.handshake.auth,
    })),
  socketsJoin: (r) => select(r).socketsJoin(r.rooms),
  socketsLeave: (r) => select(r).socketsLeave(r.rooms),
  disconnectSockets: (r) => select(r).disconnectSockets(r.close ?? false),
  serverSideEmit: (r) => io.serverSideEmit(r.event, ...(r.args ?? [])),
  serverSideEmitWithAck: (r) => io.serverSideEmitWithAck(r.event, ...(r.args ?? [])),
  serverSideReceived: () => received,
};

io.on("connection", (socket) => {
  socket.data = { node: "node" };
  socket.on("question", (x, ack) => ack?.(`node:${x}`));
  socket.on("join", (room, ack) => {
    socket.join(room);
    ack?.([...socket.rooms]);
  });
  socket.on("do", async (request, ack) => {
    try {
      const value = await ops[request.op](request);
      ack?.({ ok: value ?? true });
    } catch (e) {
      ack?.({ error: String(e?.message ?? e) });
    }
  });
});

http.listen(port, "127.0.0.1", () => console.log(`ready ${process.env.NODE_ID}`));
