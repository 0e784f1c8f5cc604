// What the gateway's e2e tests (test/gateway*.test.js) share: JWTs signed with node:crypto, the
// official client with reconnection off, waiting for a connect or its `connect_error`, a gateway
// process started on a config file, and a JSON POST to its API or a backend.

import crypto from "node:crypto";
import { rmSync } from "node:fs";

import { io } from "socket.io-client";

import { binaryPath, startServer, withTimeout } from "../harness.js";

export const BIN = binaryPath("SWITCHBOARD_BIN", "target/debug/switchboard");
export const SECRET = "e2e-secret-0123456789abcdef-0123456789";
export const API_KEYS = ["first-key-0123456789", "second-key-0123456789"];

const b64url = (data) => Buffer.from(data).toString("base64url");
export const now = () => Math.floor(Date.now() / 1000);

/** A JWT of `claims`, signed with HS256 (`secret`), or `alg` (EdDSA, ES256, RS256) with `key`, named `kid`. */
export function jwt(claims, { secret = SECRET, key, alg = key ? "EdDSA" : "HS256", kid } = {}) {
  const header = b64url(JSON.stringify({ alg, typ: "JWT", ...(kid ? { kid } : {}) }));
  const data = Buffer.from(`${header}.${b64url(JSON.stringify(claims))}`);
  const signature = {
    HS256: () => crypto.createHmac("sha256", secret).update(data).digest(),
    EdDSA: () => crypto.sign(null, data, key),
    ES256: () => crypto.sign("sha256", data, { key, dsaEncoding: "ieee-p1363" }),
    RS256: () => crypto.sign("sha256", data, key),
  }[alg]();
  return `${data}.${b64url(signature)}`;
}

/** Claims of a token for alice, valid 10 minutes, plus `extra`. */
export const claims = (extra = {}) => ({ sub: "alice", exp: now() + 600, ...extra });

/** A socket.io-client socket on `url` (websocket, no reconnection). */
export function client(url, options = {}) {
  return io(url, { transports: ["websocket"], forceNew: true, reconnection: false, ...options });
}

/** Resolves with `attempt()`'s value once it stops throwing; throws its last error after `ms`. */
export async function eventually(attempt, ms, what) {
  const deadline = Date.now() + ms;
  for (;;) {
    try {
      return await attempt();
    } catch (e) {
      if (Date.now() > deadline) throw new Error(`${what}: still failing after ${ms} ms: ${e.message}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

/** Resolves once `socket` is connected; rejects with the `connect_error` message (and its `data`). */
export function connected(socket) {
  return withTimeout(
    new Promise((resolve, reject) => {
      socket.once("connect", () => resolve(socket));
      socket.once("connect_error", (err) => reject(Object.assign(new Error(err.message), { data: err.data })));
    }),
    5000,
    "connect or connect_error",
  );
}

/** Starts `switchboard --app gateway --config <config>` plus `extra` flags. */
export function startGateway(config, extra = []) {
  return startServer({
    bin: BIN,
    hint: "Build it first with `cargo build -p switchboard` (from the workspace root).",
    nodeIdPrefix: "gw",
    args: ({ port, nodeId }) => [
      "--app",
      "gateway",
      "--config",
      config,
      "--port",
      String(port),
      "--node-id",
      nodeId.replace(/[^A-Za-z0-9_-]/g, "_"),
      ...extra,
    ],
    env: { RUST_LOG: "warn" },
    outputLimit: 8000,
  });
}

/** POSTs `body` to the API at `apiUrl` with `key`: `{status, json}`. */
export async function post(apiUrl, endpoint, body, key = API_KEYS[0]) {
  const res = await fetch(`${apiUrl}${endpoint}`, {
    method: "POST",
    headers: { "content-type": "application/json", ...(key ? { authorization: `Bearer ${key}` } : {}) },
    body: typeof body === "string" ? body : JSON.stringify(body),
  });
  return { status: res.status, json: await res.json() };
}

/** A describe's `after`: closes `sockets`, stops `server` and the `backend`'s HTTP server, removes `dir`. */
export async function cleanUp({ sockets, server, backend, dir }) {
  for (const s of sockets) s.close();
  await server?.stop();
  backend?.server.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
}
