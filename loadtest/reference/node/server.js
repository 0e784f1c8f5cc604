// Reference peer for benchmarks: stock socket.io (defaults as shipped) speaking the
// same "bench contract" as Switchboard's `--app bench` (server/src/apps/bench.rs).
import http from "node:http";
import { Server } from "socket.io";

const HOST = process.env.HOST || "127.0.0.1";
const PORT = Number(process.env.PORT || 3001);

const httpServer = http.createServer((req, res) => {
  // socket.io handles its own path (/socket.io/); everything else lands here.
  if (req.method === "GET" && req.url.split("?")[0] === "/healthz") {
    res.writeHead(200, { "Content-Type": "text/plain" });
    res.end("ok");
    return;
  }
  res.writeHead(404, { "Content-Type": "text/plain" });
  res.end("not found");
});

const io = new Server(httpServer);

const ackOf = (args) =>
  args.length > 0 && typeof args[args.length - 1] === "function" ? args.pop() : undefined;

io.on("connection", (socket) => {
  // echo(...args, ack?) → ack with the same args, or emit `echo` with them.
  socket.on("echo", (...args) => {
    const ack = ackOf(args);
    if (ack) ack(...args);
    else socket.emit("echo", ...args);
  });

  socket.on("join", (...args) => {
    const ack = ackOf(args);
    if (typeof args[0] === "string") socket.join(args[0]);
    if (ack) ack();
  });

  socket.on("leave", (...args) => {
    const ack = ackOf(args);
    if (typeof args[0] === "string") socket.leave(args[0]);
    if (ack) ack();
  });

  // broadcast({room, event, data}, ack) → (room ? io.to(room) : io).emit(event || "msg", data).
  socket.on("broadcast", (...args) => {
    const ack = ackOf(args);
    const spec = args[0] && typeof args[0] === "object" ? args[0] : {};
    const event = typeof spec.event === "string" && spec.event ? spec.event : "msg";
    const data = spec.data === undefined ? null : spec.data;
    const target = typeof spec.room === "string" && spec.room ? io.to(spec.room) : io;
    try {
      target.emit(event, data);
    } catch (err) {
      console.error("bench: broadcast failed:", err.message);
    }
    if (ack) ack();
  });
});

const shutdown = () => {
  io.close(() => process.exit(0));
  // io.close() also closes the HTTP server; don't hang on lingering keep-alive sockets.
  setTimeout(() => process.exit(0), 2000).unref();
};
process.on("SIGTERM", shutdown);
process.on("SIGINT", shutdown);

httpServer.listen(PORT, HOST, () => {
  console.log(`listening on http://${HOST}:${PORT}`);
});
