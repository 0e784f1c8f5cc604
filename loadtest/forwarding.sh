#!/usr/bin/env bash
# The cost of request forwarding (--forward-polling) on polling throughput.
#
# Three release nodes (`--app bench --adapter redis --workers 1`) over a local redis-server, behind
# HAProxy (deploy/haproxy/haproxy.cfg), run `switchboard-loadtest polling` through HAProxy, K
# times alternating between two backends:
#   sticky:  sid_sticky, every request reaches the session's owner (nothing is forwarded);
#   forward: round_robin, each request goes to the next node, so about 2 in 3 reach a node that
#            forwards them to the owner.
# CPU of the three nodes (and, apart, of HAProxy) is read from /proc around each run; the result
# is one JSON line per run and the medians: round trips per node CPU-second, and the ratio.
#
#   loadtest/forwarding.sh            # K=3 RATE=1000 SESSIONS=50 DURATION=10
# Needs redis-server and haproxy (sudo apt-get install redis-server haproxy).
set -euo pipefail
cd "$(dirname "$0")/.."

K=${K:-3}
RATE=${RATE:-1000}
SESSIONS=${SESSIONS:-50}
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
BASE=${BASE_PORT:-3310}

for bin in redis-server haproxy; do
  command -v "$bin" >/dev/null || PATH="$PATH:/usr/sbin"
  command -v "$bin" >/dev/null || { echo "missing $bin: sudo apt-get install redis-server haproxy" >&2; exit 1; }
done
cargo build --release -q -p switchboard -p switchboard-loadtest
SB=target/release/switchboard
LT=target/release/switchboard-loadtest
LOGS=target/loadtest-logs/forwarding
mkdir -p "$LOGS"
TICK=$(getconf CLK_TCK)

PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

# CPU ticks (user + system) of the given pids, summed.
ticks() {
  local sum=0 p
  for p in "$@"; do
    local stat
    stat=$(<"/proc/$p/stat")
    stat=${stat##*) }
    # shellcheck disable=SC2086
    set -- $stat
    sum=$((sum + ${12} + ${13}))
  done
  echo "$sum"
}

wait_port() {
  for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "nothing listens on port $1" >&2
  exit 1
}

REDIS_PORT=$((BASE + 9))
redis-server --port "$REDIS_PORT" --save "" --appendonly no >"$LOGS/redis.log" 2>&1 &
PIDS+=($!)
wait_port "$REDIS_PORT"
NODES=()
for i in 1 2 3; do
  RUST_LOG=warn "$SB" --app bench --host 127.0.0.1 --port $((BASE + i)) --node-id "fw$i" --adapter redis \
    --redis-url "redis://127.0.0.1:$REDIS_PORT" --cluster-prefix "fw$$" --cookie io --workers 1 \
    >"$LOGS/node$i.log" 2>&1 &
  PIDS+=($!)
  NODES+=($!)
  wait_port $((BASE + i))
done
sleep 1 # membership: every node knows the others' addresses

run() { # backend label
  local port=$((BASE + 5))
  SB_HAPROXY_BIND="127.0.0.1:$port" SB_HAPROXY_BACKEND=$1 SB_NODE1="127.0.0.1:$((BASE + 1))" \
    SB_NODE2="127.0.0.1:$((BASE + 2))" SB_NODE3="127.0.0.1:$((BASE + 3))" \
    haproxy -f deploy/haproxy/haproxy.cfg -db >"$LOGS/haproxy-$1.log" 2>&1 &
  local hp=$!
  wait_port "$port"
  sleep 2.5 # health checks see every node up
  local before hbefore
  before=$(ticks "${NODES[@]}")
  hbefore=$(ticks "$hp")
  local line
  line=$("$LT" polling --port "$port" -n "$SESSIONS" -r "$RATE" -d "$DURATION" --warmup "$WARMUP" 2>>"$LOGS/loadtest.log" | tail -1)
  local after hafter
  after=$(ticks "${NODES[@]}")
  hafter=$(ticks "$hp")
  kill "$hp"
  wait "$hp" 2>/dev/null || true
  python3 - "$2" "$line" "$((after - before))" "$((hafter - hbefore))" "$TICK" "$RATE" "$WARMUP" <<'EOF'
import json, sys
label, line, node_ticks, hap_ticks, tick, rate, warmup = sys.argv[1:]
r = json.loads(line)
f, fail = r["figures"], r["failures"]
# CPU was read around the whole run: count the warm-up's round trips too.
trips = f["acked"] + float(rate) * float(warmup)
node_cpu = int(node_ticks) / int(tick)
print(json.dumps({
    "mode": label, "acked": f["acked"], "failures": sum(fail.values()),
    "p50_ms": f["latency_p50_ms"], "p99_ms": f["latency_p99_ms"],
    "node_cpu_s": node_cpu, "haproxy_cpu_s": int(hap_ticks) / int(tick),
    "round_trips_per_node_cpu_s": round(trips / node_cpu) if node_cpu else None,
}))
EOF
}

RESULTS="$LOGS/results.jsonl"
: >"$RESULTS"
for k in $(seq "$K"); do
  run sid_sticky sticky | tee -a "$RESULTS"
  run round_robin forward | tee -a "$RESULTS"
done
python3 - "$RESULTS" <<'EOF'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
med = lambda mode, key: statistics.median(r[key] for r in rows if r["mode"] == mode)
s, f = med("sticky", "round_trips_per_node_cpu_s"), med("forward", "round_trips_per_node_cpu_s")
print(f"round trips per node CPU-second: sticky {s:.0f}, forward {f:.0f}, forward/sticky {f / s:.2f}")
print(f"p99 ms: sticky {med('sticky', 'p99_ms')}, forward {med('forward', 'p99_ms')}")
print(f"failures: {sum(r['failures'] for r in rows)}")
EOF
