#!/usr/bin/env python3
"""The backend of a chat on the Switchboard gateway, with only Python's standard library.

It serves the chat's page (GET /, index.html), issues the clients' tokens (POST /login), receives the gateway's webhooks (POST /events for the
clients' `message` and `private` events, POST /lifecycle for connects and disconnects) and talks
to the clients through the gateway's HTTP API. It reads the API key, the JWT secret and the API
port from the gateway's own config file. README.md says how to run it.
"""

import argparse
import base64
import hashlib
import hmac
import json
import pathlib
import threading
import time
import tomllib
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MAX_BODY = 64 * 1024
PAGE = pathlib.Path(__file__).with_name("index.html")


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def sign(claims, secret):
    """An HS256 JWT of `claims`."""
    signed = b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode()) + "." + b64url(json.dumps(claims).encode())
    return signed + "." + b64url(hmac.new(secret.encode(), signed.encode(), hashlib.sha256).digest())


def refusal(code, message):
    return {"error": {"code": code, "message": message}}


class Chat:
    def __init__(self, config):
        gateway = config["gateway"]
        self.secret = gateway["jwt"]["hs256-secret"]
        self.key = gateway["api-keys"][0]
        self.api = f"http://127.0.0.1:{config['api-port']}"
        self.online = {}  # user -> connected sockets
        self.lock = threading.Lock()

    def call(self, endpoint, body):
        """POSTs `body` to the gateway's API."""
        headers = {"Authorization": f"Bearer {self.key}", "Content-Type": "application/json"}
        request = urllib.request.Request(self.api + endpoint, json.dumps(body).encode(), headers)
        with urllib.request.urlopen(request, timeout=5) as answer:
            return json.load(answer)

    def login(self, body):
        """A token for `name`: its own room `user:<name>`, and any `room:*` it wants to join."""
        name = str(body.get("name", ""))
        if not (0 < len(name) <= 32 and name.isalnum()):
            return refusal("bad_name", "a name is 1 to 32 letters or digits")
        claims = {"sub": name, "exp": int(time.time()) + 3600, "rooms": [f"user:{name}"], "room_patterns": ["room:*"]}
        return {"token": sign(claims, self.secret)}

    def event(self, hook):
        """`message({room, text})` to a room the sender is in, `private({to, text})` to a user."""
        message = hook["args"][0] if hook["args"] and isinstance(hook["args"][0], dict) else {}
        text = str(message.get("text", ""))[:500]
        if not text:
            return refusal("empty", "say something")
        if hook["event"] == "message":
            room = message.get("room")
            if room not in hook["rooms"]:
                return refusal("not_member", f"join {room} first")
            said = {"from": hook["user"], "room": room, "text": text}
            self.call("/v1/emit", {"rooms": [room], "event": "message", "args": [said]})
        elif hook["event"] == "private":
            said = {"from": hook["user"], "text": text}
            self.call("/v1/emit", {"rooms": [f"user:{message.get('to')}"], "event": "private", "args": [said]})
        return {"ok": True}

    def lifecycle(self, hook):
        """Keeps who is online, and tells everyone when it changes."""
        user, step = hook["user"], {"connect": 1, "disconnect": -1}.get(hook["event"], 0)
        with self.lock:
            before = set(self.online)
            self.online[user] = self.online.get(user, 0) + step
            if self.online[user] <= 0:
                del self.online[user]
            online = sorted(self.online)
        if set(online) != before:
            self.call("/v1/emit", {"event": "presence", "args": [online]})
        return {}


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path.split("?")[0] != "/":
            return self.reply(404, refusal("not_found", self.path))
        self.reply(200, PAGE.read_bytes(), "text/html; charset=utf-8")

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            return self.reply(413, refusal("too_large", "too large"))
        try:
            body = json.loads(self.rfile.read(length) or b"{}")
        except ValueError:
            return self.reply(400, refusal("bad_json", "not JSON"))
        route = {"/login": self.server.chat.login, "/events": self.server.chat.event, "/lifecycle": self.server.chat.lifecycle}
        if self.path not in route:
            return self.reply(404, refusal("not_found", self.path))
        self.reply(200, route[self.path](body))

    def reply(self, status, body, content_type="application/json"):
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format, *args):
        pass


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="switchboard.toml", help="the gateway's config file")
    parser.add_argument("--port", type=int, default=8080, help="where the webhooks and /login are")
    args = parser.parse_args()
    with open(args.config, "rb") as f:
        chat = Chat(tomllib.load(f))
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.chat = chat
    print(f"chat backend on http://127.0.0.1:{args.port}, gateway API at {chat.api}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
