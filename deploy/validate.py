#!/usr/bin/env python3
"""Checks of the deploy/ files that schemas cannot make (run by scripts/validate-deploy).

  validate.py k8s RENDERED.yaml --overlay NAME --help-text FILE
      Cross-object rules of one rendered kustomization: the grace period covers preStop and the
      drain, the probes and ports match the ConfigMap, every SWITCHBOARD_* key is a flag of the
      binary, proxy timeouts exceed pingInterval + pingTimeout, broker URLs name a Service of the
      set, selectors and references resolve, the memory overlay never scales, no ConfigMap holds a
      secret (a *SECRET*/*PASSWORD*/*API_KEY*/*TOKEN* key, or a secret setting of a .toml file),
      and a gateway reads its config file from a mounted ConfigMap, its key files from a mounted
      Secret, and serves its API on the container's `api` port behind a Service.
  validate.py grafana DASHBOARD.json --rules-out FILE
      Dashboard structure, and every query written out as a recording rule for `promtool check
      rules` (which parses PromQL), with Grafana's variables replaced.
  validate.py names FILE...
      Every switchboard_* and process_* metric name used in the files is one of METRICS.
  validate.py runbooks RULES.yml RUNBOOKS.md
      Every alert links its own section of docs/runbooks.md in `runbook_url`, and every section
      there is an alert's.
  validate.py adapter-rules RULES.yaml --test-out FILE
      The prometheus-adapter rules, rendered as prometheus-adapter would for one namespace's pods,
      written out as a promtool unit test over series labelled as a ServiceMonitor scrapes them.
  validate.py scrape SCRAPE.txt FILE...
      Every metric the files use, and every one of METRICS, is in a real scrape of /metrics; no
      series carries a label a scrape target adds; switchboard_sockets is labelled nsp,
      switchboard_build_info carries a commit, switchboard_cluster_info names the cluster.

Needs PyYAML (installed with kubernetes-validate). Exit status 1 on any error.
"""

import argparse
import json
import re
import sys
import tomllib
from urllib.parse import urlparse

import yaml

# The metric names of the nodes' /metrics: the table of docs/metrics.md, registered by each layer of
# server/src (engine/, socketio/, http/ and cluster/, each in its metrics.rs), and the process
# collector's (the binary registers it). Histograms add _bucket/_sum/_count. `scrape` fails when a
# live node lacks one of them.
METRICS = {
    "switchboard_build_info",
    "switchboard_sessions",
    "switchboard_sockets",
    "switchboard_connections_accepted_total",
    "switchboard_connections_closed_total",
    "switchboard_handshake_errors_total",
    "switchboard_packets_received_total",
    "switchboard_packets_sent_total",
    "switchboard_bytes_received_total",
    "switchboard_bytes_sent_total",
    "switchboard_upgrades_total",
    "switchboard_polling_requests_total",
    "switchboard_broadcasts_total",
    "switchboard_deliveries_total",
    "switchboard_dropped_packets_total",
    "switchboard_ack_timeouts_total",
    "switchboard_adapter_publishes_total",
    "switchboard_adapter_receives_total",
    "switchboard_adapter_errors_total",
    "switchboard_adapter_reconnects_total",
    "switchboard_adapter_publish_duration_seconds",
    "switchboard_adapter_connected",
    "switchboard_cluster_nodes",
    "switchboard_cluster_info",
    "switchboard_event_handler_duration_seconds",
    "switchboard_ready",
    "switchboard_draining",
    "switchboard_forwarded_requests_total",
    "process_cpu_seconds_total",
    "process_resident_memory_bytes",
    "process_virtual_memory_bytes",
    "process_open_fds",
    "process_max_fds",
    "process_threads",
    "process_start_time_seconds",
}
# --app gateway's own metrics (server/src/gateway/metrics.rs): the dashboard and the alerts use
# them, but `scrape` reads a bench node, which does not register them.
GATEWAY_METRICS = {
    "switchboard_gateway_auth_failures_total",
    "switchboard_gateway_webhook_requests_total",
    "switchboard_gateway_webhook_seconds",
    "switchboard_gateway_api_requests_total",
}
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")
# A metric name of ours, or of the process collector's.
METRIC_NAME = r"(?:switchboard|process)_[a-z0-9_]+"

# Labels a Prometheus scrape target carries on Kubernetes (a ServiceMonitor adds all of them). A
# series of the node's own with one of these names is scraped as exported_<name>, and rules,
# panels and the prometheus-adapter rule that match the target's label see the wrong value.
TARGET_LABELS = {"job", "instance", "namespace", "pod", "service", "endpoint", "container"}

errors = []
warnings = []


def error(msg):
    errors.append(msg)


def warn(msg):
    warnings.append(msg)


def finish(what):
    for w in warnings:
        print(f"WARN  {what}: {w}")
    for e in errors:
        print(f"ERROR {what}: {e}")
    if errors:
        sys.exit(1)
    print(f"ok    {what}")


# ---------------------------------------------------------------------------------------------
# Kubernetes
# ---------------------------------------------------------------------------------------------


def matches(selector, labels):
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def by_kind(docs, kind):
    return [d for d in docs if d.get("kind") == kind]


def one(docs, kind, name=None):
    found = [d for d in by_kind(docs, kind) if name is None or d["metadata"]["name"] == name]
    return found[0] if len(found) == 1 else None


def known_env_vars(help_text):
    # A variable whose value is hidden (a URL with a password) is listed without "=value".
    return set(re.findall(r"\[env: (SWITCHBOARD_[A-Z0-9_]+)[=\]]", help_text))


def check_k8s(docs, overlay, help_text):
    deployment = one(docs, "Deployment", "switchboard")
    if not deployment:
        return error("no Deployment named switchboard")
    pod = deployment["spec"]["template"]
    pod_labels = pod["metadata"].get("labels", {})
    spec = pod["spec"]
    containers = {c["name"]: c for c in spec["containers"]}
    node = containers.get("switchboard")
    if not node:
        return error("the Deployment has no container named switchboard")

    # The ConfigMap the container reads (kustomize rewrote the name with its hash).
    refs = [e["configMapRef"]["name"] for e in node.get("envFrom", []) if "configMapRef" in e]
    config_maps = [one(docs, "ConfigMap", r) for r in refs]
    if not refs or None in config_maps:
        return error(f"envFrom names ConfigMaps {refs} that are not in the set")
    env = {}
    for cm in config_maps:
        env.update(cm.get("data", {}))
    for e in node.get("env", []):
        env[e["name"]] = e.get("value", "<from " + ",".join(e.get("valueFrom", {}).keys()) + ">")

    # Every SWITCHBOARD_* setting is a flag of this binary (a typo would be silently ignored).
    known = known_env_vars(help_text)
    if not known:
        error("the --help text lists no [env: SWITCHBOARD_*] variables")
    for name in sorted(k for k in env if k.startswith("SWITCHBOARD_") and k not in known):
        error(f"{name} is not a flag of the switchboard binary (switchboard --help)")

    def number(name):
        try:
            return int(env[name])
        except (KeyError, ValueError):
            error(f"{name} missing or not a number in the ConfigMap")
            return 0

    # Ports: the container's named ports are the ones the node listens on.
    ports = {p["name"]: p["containerPort"] for p in node.get("ports", [])}
    if ports.get("http") != number("SWITCHBOARD_PORT"):
        error(f"containerPort http {ports.get('http')} != SWITCHBOARD_PORT {env.get('SWITCHBOARD_PORT')}")
    if ports.get("metrics") != number("SWITCHBOARD_METRICS_PORT"):
        error(f"containerPort metrics {ports.get('metrics')} != SWITCHBOARD_METRICS_PORT")

    # Probes: readiness on /readyz and liveness on /healthz, on the metrics port.
    for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
        get = node.get(probe, {}).get("httpGet", {})
        if get.get("path") != path or get.get("port") != "metrics":
            error(f"{probe} must GET {path} on port metrics, not {get}")

    # Grace period: preStop sleep + drain window + time to exit.
    pre_stop = node.get("lifecycle", {}).get("preStop", {})
    sleep = pre_stop.get("sleep", {}).get("seconds", 0)
    drain = number("SWITCHBOARD_DRAIN_WINDOW") / 1000
    grace = spec.get("terminationGracePeriodSeconds", 30)
    if grace < sleep + drain + 5:
        error(f"terminationGracePeriodSeconds {grace} < preStop {sleep} + drain {drain} + 5 s to exit")

    # The pod name is the node id (sids name their pod).
    node_id = [e for e in node.get("env", []) if e["name"] == "SWITCHBOARD_NODE_ID"]
    if not node_id or node_id[0].get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") != "metadata.name":
        error("SWITCHBOARD_NODE_ID must come from the pod name (fieldRef metadata.name)")

    if not node.get("resources", {}).get("requests"):
        error("the switchboard container has no resource requests")
    if not spec.get("topologySpreadConstraints"):
        error("the Deployment has no topologySpreadConstraints")
    if not spec.get("securityContext", {}).get("runAsNonRoot"):
        error("the pod must run as non-root")

    # Selectors and references.
    selector = deployment["spec"]["selector"]["matchLabels"]
    if not matches(selector, pod_labels):
        error("the Deployment's selector does not match its pod labels")
    service = one(docs, "Service", "switchboard")
    if not service:
        error("no Service named switchboard")
    else:
        if not matches(service["spec"]["selector"], pod_labels):
            error("the switchboard Service does not select the switchboard pods")
        targets = {p.get("targetPort") for p in service["spec"]["ports"]}
        for port in targets:
            if port not in ports:
                error(f"Service targetPort {port} is not a named port of the container")
    pdb = one(docs, "PodDisruptionBudget")
    if not pdb or not matches(pdb["spec"]["selector"]["matchLabels"], pod_labels):
        error("no PodDisruptionBudget selecting the switchboard pods")

    # Timeouts on the way: above pingInterval + pingTimeout.
    heartbeat = (number("SWITCHBOARD_PING_INTERVAL") + number("SWITCHBOARD_PING_TIMEOUT")) / 1000
    for ingress in by_kind(docs, "Ingress"):
        a = ingress["metadata"].get("annotations", {})
        for key in ("proxy-read-timeout", "proxy-send-timeout"):
            value = a.get(f"nginx.ingress.kubernetes.io/{key}")
            if value is None or float(value) <= heartbeat:
                error(f"Ingress {key} {value} must exceed pingInterval + pingTimeout ({heartbeat:g} s)")
        if a.get("nginx.ingress.kubernetes.io/affinity") != "cookie":
            error("the Ingress has no cookie affinity")
        if a.get("nginx.ingress.kubernetes.io/affinity-mode") != "persistent":
            error("the Ingress affinity-mode must be persistent (balanced moves sessions when scaling)")
        check_backends(docs, [p["backend"]["service"] for r in ingress["spec"]["rules"] for p in r["http"]["paths"]])
    routes = by_kind(docs, "HTTPRoute")
    for route in routes:
        for rule in route["spec"]["rules"]:
            check_backends(docs, [{"name": b["name"], "port": {"number": b["port"]}} for b in rule["backendRefs"]])
            if "sessionPersistence" not in rule:
                error("an HTTPRoute rule has no sessionPersistence")
    if not by_kind(docs, "Ingress") and not routes:
        error("neither an Ingress nor an HTTPRoute")

    for monitor in by_kind(docs, "ServiceMonitor"):
        selected = [s for s in by_kind(docs, "Service") if matches(monitor["spec"]["selector"]["matchLabels"], s["metadata"].get("labels", {}))]
        if not selected:
            error("the ServiceMonitor selects no Service")
        for endpoint in monitor["spec"]["endpoints"]:
            for s in selected:
                if endpoint["port"] not in {p.get("name") for p in s["spec"]["ports"]}:
                    error(f"ServiceMonitor port {endpoint['port']} is not a port of Service {s['metadata']['name']}")

    # Scaling: the memory adapter cannot share rooms across pods.
    hpas = by_kind(docs, "HorizontalPodAutoscaler")
    adapter = env.get("SWITCHBOARD_ADAPTER")
    replicas = deployment["spec"].get("replicas", 1)
    if adapter == "memory":
        if replicas != 1 or hpas:
            error(f"the memory adapter must run exactly one pod (replicas {replicas}, {len(hpas)} HPA)")
    else:
        if len(hpas) != 1:
            error(f"adapter {adapter}: expected one HorizontalPodAutoscaler, found {len(hpas)}")
        for hpa in hpas:
            ref = hpa["spec"]["scaleTargetRef"]
            if ref["kind"] != "Deployment" or ref["name"] != "switchboard":
                error(f"the HPA scales {ref}, not the switchboard Deployment")
            if hpa["spec"].get("minReplicas", 1) < 2:
                error("a clustered deployment needs minReplicas >= 2")

    # Broker URLs name a Service (or a StatefulSet pod behind its headless Service) of the set.
    urls = {"redis": "SWITCHBOARD_REDIS_URL", "nats": "SWITCHBOARD_NATS_URL"}
    if adapter in urls:
        for url in env.get(urls[adapter], "").split(","):
            check_broker_url(docs, url.strip(), adapter)
        check_broker_credentials(docs, node, config_maps, urls[adapter], overlay)
    elif adapter != "memory":
        error(f"unknown SWITCHBOARD_ADAPTER {adapter!r}")

    if overlay in ("memory", "redis", "nats") and adapter != overlay:
        error(f"overlay {overlay} runs adapter {adapter}")

    for cm in by_kind(docs, "ConfigMap"):
        check_no_secret(cm)
    if env.get("SWITCHBOARD_APP") == "gateway":
        check_gateway(docs, spec, node, env, ports)


# ConfigMap keys (SWITCHBOARD_* variables) and config-file settings that are secrets: they belong
# in a Secret, mounted as a file or referenced from env.
SECRET_VARIABLES = re.compile(r"SECRET|PASSWORD|API_KEY|TOKEN")
SECRET_SETTINGS = {("gateway", "api-keys"), ("gateway", "jwt", "hs256-secret"), ("cluster-secret",)}


def check_no_secret(cm):
    name = cm["metadata"]["name"]
    for key, value in cm.get("data", {}).items():
        if SECRET_VARIABLES.search(key):
            error(f"ConfigMap {name} holds {key}: a secret belongs in a Secret")
        if not key.endswith(".toml"):
            continue
        try:
            settings = tomllib.loads(value)
        except tomllib.TOMLDecodeError as e:
            error(f"ConfigMap {name}: {key} is not TOML: {e}")
            continue
        for path in SECRET_SETTINGS:
            found = settings
            for part in path:
                found = found.get(part) if isinstance(found, dict) else None
            if found:
                error(f"ConfigMap {name}: {key} sets {'.'.join(path)}: a secret belongs in a Secret (use the -file key)")


def check_gateway(docs, spec, node, env, ports):
    """The gateway's config file is a mounted ConfigMap key, its key files are in a mounted
    Secret, and its API port is the container's `api` port behind a Service."""
    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    mounts = {m["mountPath"].rstrip("/"): volumes.get(m["name"], {}) for m in node.get("volumeMounts", [])}

    def source(path):
        directory, _, file = path.rpartition("/")
        return mounts.get(directory), file

    config_path = env.get("SWITCHBOARD_CONFIG", "")
    volume, file = source(config_path)
    cm = one(docs, "ConfigMap", (volume or {}).get("configMap", {}).get("name"))
    if not cm or file not in cm.get("data", {}):
        return error(f"SWITCHBOARD_CONFIG {config_path!r} is not a key of a ConfigMap mounted in the container")
    try:
        gateway = tomllib.loads(cm["data"][file]).get("gateway")
    except tomllib.TOMLDecodeError:
        return  # check_no_secret said so
    if not gateway:
        error(f"{config_path} has no [gateway] section")
        return
    for key, path in (("api-keys-file", gateway.get("api-keys-file")), ("jwt.hs256-secret-file", gateway.get("jwt", {}).get("hs256-secret-file"))):
        if path is None:
            continue
        volume, _ = source(path)
        if not volume or "secret" not in volume:
            error(f"{key} {path!r} is not in a Secret mounted in the container")
    api_port = env.get("SWITCHBOARD_API_PORT")
    if api_port is not None:
        if str(ports.get("api")) != api_port:
            error(f"containerPort api {ports.get('api')} != SWITCHBOARD_API_PORT {api_port}")
        if not (gateway.get("api-keys") or gateway.get("api-keys-file")):
            error("SWITCHBOARD_API_PORT without api-keys-file: the node refuses to start")
        services = [s for s in by_kind(docs, "Service") if "api" in {p.get("targetPort") for p in s["spec"]["ports"]}]
        if not services:
            error("no Service targets the container's api port")


def check_backends(docs, backends):
    for b in backends:
        service = one(docs, "Service", b["name"])
        if not service:
            error(f"backend Service {b['name']} is not in the set")
            continue
        port = b["port"]
        names = {p.get("name") for p in service["spec"]["ports"]}
        numbers = {p["port"] for p in service["spec"]["ports"]}
        if ("name" in port and port["name"] not in names) or ("number" in port and port["number"] not in numbers):
            error(f"backend port {port} is not a port of Service {b['name']}")


def check_broker_credentials(docs, node, config_maps, variable, overlay):
    """A broker URL with credentials never sits in a ConfigMap in clear; in the redis and nats
    overlays the broker requires a password, and the nodes' URL takes it from the Secret the
    broker reads it from ($(VAR) of an env entry with a secretKeyRef)."""
    for cm in config_maps:
        value = cm.get("data", {}).get(variable, "")
        if any(urlparse(u.strip()).password or "@" in urlparse(u.strip()).netloc for u in value.split(",") if u.strip()):
            error(f"{variable} carries credentials in the ConfigMap {cm['metadata']['name']}: take them from a Secret")
    if overlay not in ("redis", "nats"):
        return
    env = {e["name"]: e for e in node.get("env", [])}
    url = env.get(variable, {}).get("value", "")
    refs = re.findall(r"\$\(([A-Za-z0-9_]+)\)", url.split("@")[0]) if "@" in url else []
    secrets = {env[r]["valueFrom"]["secretKeyRef"]["name"] for r in refs if "secretKeyRef" in env.get(r, {}).get("valueFrom", {})}
    if not secrets:
        return error(f"{variable} must carry the broker's password as $(VAR) of an env entry from a Secret")
    flags = {"redis": "--requirepass", "nats": "--pass"}
    brokers = [s for s in by_kind(docs, "StatefulSet") if s["metadata"]["name"] == f"switchboard-{overlay}"]
    for sts in brokers:
        container = sts["spec"]["template"]["spec"]["containers"][0]
        args = container.get("args", [])
        from_secret = {e["valueFrom"]["secretKeyRef"]["name"] for e in container.get("env", []) if "secretKeyRef" in e.get("valueFrom", {})}
        if flags[overlay] not in args:
            error(f"StatefulSet {sts['metadata']['name']} does not require a password ({flags[overlay]})")
        if not secrets & from_secret:
            error(f"StatefulSet {sts['metadata']['name']} does not read its password from the Secret the nodes use ({sorted(secrets)})")


def check_broker_url(docs, url, scheme):
    parsed = urlparse(url)
    if parsed.scheme != scheme or not parsed.hostname:
        return error(f"{url!r} is not a {scheme}:// URL")
    host = parsed.hostname.split(".")
    pod = re.fullmatch(r"(.+)-(\d+)", host[0])
    if len(host) >= 2 and pod and one(docs, "StatefulSet", pod[1]):
        # <statefulset>-<ordinal>.<its headless service>
        sts = one(docs, "StatefulSet", pod[1])
        service = one(docs, "Service", host[1])
        if not service or sts["spec"].get("serviceName") != host[1] or service["spec"].get("clusterIP") != "None":
            return error(f"{url}: {host[1]} is not the headless serviceName of StatefulSet {pod[1]}")
        if int(pod[2]) >= sts["spec"].get("replicas", 1):
            error(f"{url}: StatefulSet {pod[1]} has no pod {pod[2]}")
    else:
        service = one(docs, "Service", host[0])
        if not service:
            return warn(f"{url}: not a Service of this set (an external broker)")
    if parsed.port not in {p["port"] for p in service["spec"]["ports"]}:
        error(f"{url}: port {parsed.port} is not a port of Service {service['metadata']['name']}")


# ---------------------------------------------------------------------------------------------
# Grafana
# ---------------------------------------------------------------------------------------------

GRAFANA_VARS = {"$__rate_interval": "1m", "$__interval": "1m", "$job": "switchboard", "$instance": ".+"}


def check_grafana(path, rules_out):
    dash = json.load(open(path))
    for key in ("title", "uid", "panels", "templating", "schemaVersion"):
        if key not in dash:
            error(f"the dashboard has no {key}")
    variables = {v["name"] for v in dash.get("templating", {}).get("list", [])}
    for needed in ("datasource", "job", "instance"):
        if needed not in variables:
            error(f"no ${needed} variable")
    ids = [p["id"] for p in dash["panels"]]
    if len(ids) != len(set(ids)):
        error("panel ids are not unique")
    rules = []
    occupied = set()
    for p in dash["panels"]:
        g = p.get("gridPos", {})
        cells = {(g["x"] + dx, g["y"] + dy) for dx in range(g["w"]) for dy in range(g["h"])} if g else set()
        if not g or g["x"] + g["w"] > 24:
            error(f"panel {p.get('title')!r} has no valid gridPos")
        if cells & occupied:
            error(f"panel {p.get('title')!r} overlaps another panel")
        occupied |= cells
        if p["type"] == "row":
            continue
        if p.get("datasource", {}).get("uid") != "${datasource}":
            error(f"panel {p['title']!r} does not use the $datasource variable")
        if not p.get("targets"):
            error(f"panel {p['title']!r} has no query")
        for t in p.get("targets", []):
            expr = t["expr"]
            for var, value in GRAFANA_VARS.items():
                expr = expr.replace(var, value)
            if "$" in expr:
                error(f"panel {p['title']!r}: unknown variable in {t['expr']!r}")
            rules.append({"record": f"dashboard:panel{p['id']}:{t['refId']}", "expr": expr})
    if not rules:
        error("the dashboard has no queries")
    with open(rules_out, "w") as f:
        yaml.safe_dump({"groups": [{"name": "dashboard-queries", "rules": rules}]}, f, sort_keys=False)
    print(f"      {len(rules)} dashboard queries written to {rules_out} for promtool")


# ---------------------------------------------------------------------------------------------
# Metric names
# ---------------------------------------------------------------------------------------------


def base_name(name):
    for suffix in HISTOGRAM_SUFFIXES:
        if name.endswith(suffix) and name[: -len(suffix)] in METRICS | GATEWAY_METRICS:
            return name[: -len(suffix)]
    return name


def used_names(paths):
    used = set()
    for path in paths:
        used |= set(re.findall(rf"\b{METRIC_NAME}", open(path).read()))
    return used


def check_names(paths):
    used = used_names(paths)
    for name in sorted(used):
        if base_name(name) not in METRICS | GATEWAY_METRICS:
            error(f"{name} is not a Switchboard metric (docs/metrics.md)")
    print(f"      {len(used)} metric names used")


def scraped_series(scrape):
    """(name, {label: value}) of each sample line of a text-format scrape."""
    series = []
    for line in open(scrape):
        m = re.match(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? \S+", line)
        if m and not line.startswith("#"):
            labels = dict(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"', m[2] or ""))
            series.append((m[1], labels))
    return series


def check_scrape(scrape, paths):
    series = scraped_series(scrape)
    exposed = {name for name, _ in series if re.fullmatch(METRIC_NAME, name)}
    for name in sorted(used_names(paths)):
        if name not in exposed and base_name(name) not in GATEWAY_METRICS:
            error(f"{name} is used but not in the scrape")
    for name in sorted(METRICS):
        if name not in {base_name(n) for n in exposed}:
            error(f"{name} (docs/metrics.md) is missing from the scrape")

    def of(metric):
        return [labels for name, labels in series if name == metric]

    for name, labels in series:
        clash = TARGET_LABELS & labels.keys()
        if name in exposed and clash:
            error(f"{name} has the label(s) {sorted(clash)}, which scrape targets carry (scraped as exported_*)")
    sockets = of("switchboard_sockets")
    if not sockets or any(set(labels) != {"nsp"} for labels in sockets):
        error(f"switchboard_sockets must be labelled nsp alone, got {sockets}")
    builds = of("switchboard_build_info")
    if len(builds) != 1 or not builds[0].get("version") or not builds[0].get("commit"):
        error(f"switchboard_build_info needs one series with a version and a commit, got {builds}")
    clusters = of("switchboard_cluster_info")
    if len(clusters) != 1 or clusters[0].get("adapter") not in ("memory", "redis", "nats") or not clusters[0].get("prefix"):
        error(f"switchboard_cluster_info needs one series naming the adapter and the prefix, got {clusters}")
    print(f"      {len(series)} series; build {builds[0] if builds else None}")


# ---------------------------------------------------------------------------------------------
# Runbooks
# ---------------------------------------------------------------------------------------------


def anchor(heading):
    """The anchor GitHub (and most Markdown renderers) give a heading."""
    return re.sub(r"[^a-z0-9 _-]", "", heading.strip().lower()).replace(" ", "-")


def check_runbooks(rules_path, runbooks_path):
    alerts = [r for g in yaml.safe_load(open(rules_path))["groups"] for r in g["rules"] if "alert" in r]
    sections = {anchor(h) for h in re.findall(r"^## (.+)$", open(runbooks_path).read(), re.M)}
    linked = set()
    for rule in alerts:
        url = rule.get("annotations", {}).get("runbook_url", "")
        page, _, fragment = url.partition("#")
        if not page.endswith("/docs/runbooks.md") or fragment != rule["alert"].lower():
            error(f"{rule['alert']}: runbook_url {url!r} is not docs/runbooks.md#{rule['alert'].lower()}")
        elif fragment not in sections:
            error(f"{rule['alert']}: no section '## {rule['alert']}' in {runbooks_path}")
        linked.add(fragment)
    for section in sorted(sections - linked):
        error(f"{runbooks_path}: section #{section} is no alert's runbook")
    print(f"      {len(alerts)} alerts, {len(sections)} runbook sections")


# ---------------------------------------------------------------------------------------------
# prometheus-adapter
# ---------------------------------------------------------------------------------------------

# Two pods of namespace `shop` as a ServiceMonitor scrapes them (their own labels plus the target's),
# each with a series per transport, and a pod of the same name in namespace `dev`, which a rule for
# `shop` must leave out.
ADAPTER_PODS = [("shop", "switchboard-a", "10.0.0.1", {"polling": 20, "websocket": 100}),
                ("shop", "switchboard-b", "10.0.0.2", {"polling": 0, "websocket": 60}),
                ("dev", "switchboard-a", "10.1.0.1", {"polling": 5, "websocket": 5})]


def check_adapter_rules(path, test_out):
    rules = yaml.safe_load(open(path))
    tests = []
    for rule in rules:
        overrides = rule.get("resources", {}).get("overrides", {})
        by_resource = {v["resource"]: label for label, v in overrides.items()}
        if set(by_resource) != {"namespace", "pod"}:
            error(f"{rule['seriesQuery']}: resources must map a namespace and a pod label, got {overrides}")
            continue
        unknown = set(by_resource.values()) - TARGET_LABELS
        if unknown:
            error(f"{rule['seriesQuery']}: {sorted(unknown)} are not labels a scrape target carries")
        metric = re.match(r"[a-zA-Z_:][a-zA-Z0-9_:]*", rule["seriesQuery"])[0]
        if not re.fullmatch(rule["name"]["matches"], metric):
            error(f"name.matches {rule['name']['matches']!r} does not match {metric}")
        ns, pod = by_resource["namespace"], by_resource["pod"]
        shop = [p for p in ADAPTER_PODS if p[0] == "shop"]
        query = (rule["metricsQuery"].replace("<<.Series>>", metric)
                 .replace("<<.LabelMatchers>>", f'{ns}="shop",{pod}=~"' + "|".join(p[1] for p in shop) + '"')
                 .replace("<<.GroupBy>>", pod))
        inputs = [{"series": f'{metric}{{transport="{t}", namespace="{n}", pod="{p}", service="switchboard", '
                             f'job="switchboard", instance="{ip}:9090", endpoint="metrics", container="switchboard"}}',
                   "values": f"{v}x5"}
                  for n, p, ip, per in ADAPTER_PODS for t, v in per.items()]
        tests.append({
            "name": f"prometheus-adapter rule {rule['name']['as']}: discovery and per-pod values",
            "interval": "1m",
            "input_series": inputs,
            "promql_expr_test": [
                {"expr": f"count({rule['seriesQuery']})", "eval_time": "2m",
                 "exp_samples": [{"labels": "{}", "value": len(inputs)}]},
                {"expr": query, "eval_time": "2m",
                 "exp_samples": [{"labels": f'{{{pod}="{p}"}}', "value": sum(per.values())} for _, p, _, per in shop]},
            ],
        })
    if not tests:
        error(f"{path} has no rule")
    with open(test_out, "w") as f:
        yaml.safe_dump({"rule_files": [], "evaluation_interval": "1m", "tests": tests}, f, sort_keys=False)
    print(f"      {len(tests)} prometheus-adapter rule(s) written to {test_out} as promtool tests")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    k8s = sub.add_parser("k8s")
    k8s.add_argument("rendered")
    k8s.add_argument("--overlay", required=True)
    k8s.add_argument("--help-text", required=True, help="the output of `switchboard --help`")
    grafana = sub.add_parser("grafana")
    grafana.add_argument("dashboard")
    grafana.add_argument("--rules-out", required=True)
    names = sub.add_parser("names")
    names.add_argument("files", nargs="+")
    runbooks = sub.add_parser("runbooks")
    runbooks.add_argument("rules")
    runbooks.add_argument("runbooks")
    adapter = sub.add_parser("adapter-rules")
    adapter.add_argument("rules")
    adapter.add_argument("--test-out", required=True)
    scrape = sub.add_parser("scrape")
    scrape.add_argument("scrape")
    scrape.add_argument("files", nargs="+")
    args = parser.parse_args()

    if args.command == "k8s":
        docs = [d for d in yaml.safe_load_all(open(args.rendered)) if d]
        check_k8s(docs, args.overlay, open(args.help_text).read())
        finish(f"k8s {args.overlay}: {len(docs)} objects, cross-checks")
    elif args.command == "grafana":
        check_grafana(args.dashboard, args.rules_out)
        finish(f"grafana {args.dashboard}")
    elif args.command == "names":
        check_names(args.files)
        finish("metric names")
    elif args.command == "runbooks":
        check_runbooks(args.rules, args.runbooks)
        finish(f"runbooks {args.runbooks}")
    elif args.command == "adapter-rules":
        check_adapter_rules(args.rules, args.test_out)
        finish(f"prometheus-adapter rules {args.rules}")
    else:
        check_scrape(args.scrape, args.files)
        finish(f"metrics and labels of the scrape {args.scrape}")


if __name__ == "__main__":
    main()
