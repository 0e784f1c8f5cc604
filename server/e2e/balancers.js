// Real load balancers for test/balancer.test.js: HAProxy and nginx started with the shipped
// configurations (deploy/haproxy/haproxy.cfg, deploy/nginx/nginx.conf) on free ports of 127.0.0.1
// in front of given nodes, plus raw HTTP helpers to look at what the balancer does. A missing
// binary throws with the apt-get line: the balancer tests never skip.
//
// Lives outside test/ for the same reason as harness.js (`node --test test/` runs every file there).

import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import http from "node:http";
import net from "node:net";
import os from "node:os";
import path from "node:path";

import { REPO_ROOT, findExecutable, sleep, startServer } from "./harness.js";

export const HAPROXY_CONFIG = path.join(REPO_ROOT, "deploy/haproxy/haproxy.cfg");
export const NGINX_CONFIG = path.join(REPO_ROOT, "deploy/nginx/nginx.conf");

const SBIN = ["/usr/sbin", "/usr/local/sbin", "/usr/local/bin"];
const HAPROXY_HINT = "Install it with: sudo apt-get install haproxy (or set HAPROXY_BIN).";
const NGINX_HINT = "Install it with: sudo apt-get install nginx-light (or set NGINX_BIN).";

/**
 * One HTTP request with node:http (a fresh connection each time, as the Node client makes them),
 * from `localAddress` if given. Resolves `{ status, headers, body }`.
 */
export function httpRequest(url, { method = "GET", body, headers = {}, localAddress, timeoutMs = 5000 } = {}) {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method, headers, localAddress, agent: false, timeout: timeoutMs }, (res) => {
      let text = "";
      res.setEncoding("utf8");
      res.on("data", (chunk) => (text += chunk));
      res.on("end", () => resolve({ status: res.statusCode, headers: res.headers, body: text }));
      res.on("error", reject);
    });
    req.on("timeout", () => req.destroy(new Error(`${method} ${url}: no answer within ${timeoutMs} ms`)));
    req.on("error", reject);
    req.end(body);
  });
}

/** The Engine.IO sid of a polling handshake answer (`0{"sid":...}`), or null. */
export function sidOf(body) {
  try {
    return body.startsWith("0") ? JSON.parse(body.slice(1)).sid : null;
  } catch {
    return null;
  }
}

/** The node id in a sid (`<node-id>.<random>`). */
export const nodeOfSid = (sid) => sid.slice(0, sid.indexOf("."));

/** A polling handshake through `url`: `{ sid, node, headers }`; throws unless it is a 200 with a sid. */
export async function handshake(url, options = {}) {
  const res = await httpRequest(`${url}/socket.io/?EIO=4&transport=polling`, options);
  const sid = res.status === 200 ? sidOf(res.body) : null;
  if (!sid) throw new Error(`handshake through ${url}: ${res.status} ${res.body}`);
  return { sid, node: nodeOfSid(sid), headers: res.headers };
}

/** Polls `check()` (resolving true, false, or "foreign") for up to `ms`; resolves its last answer. */
async function poll(check, ms) {
  const deadline = Date.now() + ms;
  let answer = false;
  while (Date.now() < deadline) {
    answer = await check().catch(() => false);
    if (answer === true || answer === "foreign") return answer;
    await sleep(50);
  }
  return answer;
}

/** Ready once a handshake through the balancer is answered by one of `nodes` (else someone else listens). */
function balancerReady(nodes) {
  const ours = new Set(nodes.map((n) => n.nodeId));
  return (server) =>
    poll(async () => {
      const res = await httpRequest(`${server.url}/socket.io/?EIO=4&transport=polling`, { timeoutMs: 1000 });
      const sid = sidOf(res.body);
      if (!sid) return res.status === 503 ? false : "foreign";
      return ours.has(nodeOfSid(sid)) ? true : "foreign";
    }, 5000).then((answer) => answer === true);
}

/** Sends one command to HAProxy's admin socket and resolves with the answer. */
function haproxyCommand(socketPath, command) {
  return new Promise((resolve, reject) => {
    let answer = "";
    const sock = net.connect(socketPath);
    sock.setEncoding("utf8");
    sock.once("connect", () => sock.write(`${command}\n`));
    sock.on("data", (chunk) => (answer += chunk));
    sock.once("end", () => resolve(answer));
    sock.once("error", reject);
  });
}

/**
 * Starts HAProxy with deploy/haproxy/haproxy.cfg in front of `nodes` (three, in server order
 * node1..node3), choosing the backend with SB_HAPROXY_BACKEND and, if given, the health check
 * path with SB_HEALTH_URI (otherwise the file's default, /readyz). A second config file adds an
 * admin socket for the test. Resolves `{ url, port, output(), stop(), command(cmd), stat() }`.
 */
export async function startHaproxy({ backend, nodes, healthUri }) {
  const bin = findExecutable("haproxy", { envVar: "HAPROXY_BIN", extraDirs: SBIN, hint: HAPROXY_HINT });
  const dir = mkdtempSync(path.join(os.tmpdir(), "sb-haproxy-"));
  const socketPath = path.join(dir, "admin.sock");
  const adminConfig = path.join(dir, "admin.cfg");
  writeFileSync(adminConfig, `global\n    stats socket ${socketPath} mode 600 level admin\n`);
  const env = ({ port }) => ({
    SB_HAPROXY_BIND: `127.0.0.1:${port}`,
    SB_HAPROXY_BACKEND: backend,
    ...(healthUri ? { SB_HEALTH_URI: healthUri } : {}),
    ...Object.fromEntries(nodes.map((n, i) => [`SB_NODE${i + 1}`, `127.0.0.1:${n.port}`])),
  });
  // -db: foreground; -dR: no SO_REUSEPORT, so a port someone else holds fails instead of being shared.
  const server = await startServer({
    bin,
    args: ["-db", "-dR", "-f", HAPROXY_CONFIG, "-f", adminConfig],
    env,
    hint: HAPROXY_HINT,
    readyCheck: balancerReady(nodes),
    outputLimit: 20_000,
  });
  const command = (cmd) => haproxyCommand(socketPath, cmd);
  return {
    ...server,
    command,
    /** `show stat` of this backend's servers: `[{ server, status, check }]` (status UP/DOWN/..., check L7OK/L7STS/...). */
    async stat() {
      const csv = await command("show stat");
      const [header, ...rows] = csv.trim().split("\n");
      const cols = header.replace(/^# /, "").split(",");
      const at = (name) => cols.indexOf(name);
      return rows
        .map((row) => row.split(","))
        .filter((f) => f[at("pxname")] === backend && !["FRONTEND", "BACKEND"].includes(f[at("svname")]))
        .map((f) => ({ server: f[at("svname")], status: f[at("status")], check: f[at("check_status")] }));
    },
    async stop() {
      await server.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** deploy/nginx/nginx.conf with `${NAME}` replaced from `vars` (envsubst with a variable list). */
export function renderTemplate(text, vars) {
  return text.replace(/\$\{(SB_[A-Z0-9_]+)\}/g, (whole, name) => {
    if (!(name in vars)) throw new Error(`template variable ${name} has no value`);
    return vars[name];
  });
}

/**
 * Starts nginx with deploy/nginx/nginx.conf rendered for `nodes` (three) on a free port of
 * 127.0.0.1, in its own prefix directory. Resolves `{ url, port, output(), stop() }`.
 */
export async function startNginx({ nodes }) {
  const bin = findExecutable("nginx", { envVar: "NGINX_BIN", extraDirs: SBIN, hint: NGINX_HINT });
  const template = readFileSync(NGINX_CONFIG, "utf8");
  const dir = mkdtempSync(path.join(os.tmpdir(), "sb-nginx-"));
  const config = path.join(dir, "nginx.conf");
  const args = ({ port }) => {
    const vars = { SB_NGINX_LISTEN: `127.0.0.1:${port}` };
    nodes.forEach((n, i) => (vars[`SB_NODE${i + 1}`] = `127.0.0.1:${n.port}`));
    writeFileSync(config, renderTemplate(template, vars));
    // -e stderr before the config is read; pid and daemon here so the file stays deployable.
    return ["-p", dir, "-c", config, "-e", "stderr", "-g", `daemon off; pid ${path.join(dir, "nginx.pid")};`];
  };
  const server = await startServer({ bin, args, hint: NGINX_HINT, readyCheck: balancerReady(nodes), outputLimit: 20_000 });
  return {
    ...server,
    async stop() {
      await server.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
