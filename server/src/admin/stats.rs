//! `server_stats`, what the admin UI's dashboard and servers page show of each node: its id,
//! host, pid, uptime, clients (and how many poll), sockets per namespace, and the connections,
//! disconnections, packets and bytes since the last report (its `aggregatedEvents`), read from the
//! engine's counters rather than counted again.

use serde_json::{Value, json};
use tokio::time::Instant;

use crate::engine::EngineMetrics;
use crate::socketio::SocketIo;

/// The engine's counters at the last report.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Counters {
    accepted: u64,
    sessions: i64,
    packets_in: u64,
    packets_out: u64,
    bytes_in: u64,
    bytes_out: u64,
}

impl Counters {
    fn read(metrics: &EngineMetrics) -> Self {
        let [p, w] = [&metrics.polling, &metrics.websocket];
        Self {
            accepted: p.accepted.get() + w.accepted.get(),
            sessions: p.sessions.get() + w.sessions.get(),
            packets_in: p.packets_in.get() + w.packets_in.get(),
            packets_out: p.packets_out.get() + w.packets_out.get(),
            bytes_in: p.bytes_in.get() + w.bytes_in.get(),
            bytes_out: p.bytes_out.get() + w.bytes_out.get(),
        }
    }
}

/// One node's reports; see the module docs.
pub(crate) struct Stats {
    server_id: String,
    hostname: String,
    started: Instant,
    last: Counters,
}

impl Stats {
    pub(crate) fn new(io: &SocketIo) -> Self {
        let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .or_else(|| std::env::var("HOSTNAME").ok())
            .map(|h| h.trim().to_owned())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "unknown".to_owned());
        Self {
            server_id: io.engine().config().node_id().to_owned(),
            hostname,
            started: Instant::now(),
            last: Counters::read(io.engine().metrics()),
        }
    }

    /// The report now, and what changed since the previous one.
    pub(crate) fn report(&mut self, io: &SocketIo) -> Value {
        let metrics = io.engine().metrics();
        let counters = Counters::read(metrics);
        let last = std::mem::replace(&mut self.last, counters);
        let opened = counters.accepted.saturating_sub(last.accepted);
        // Sessions that went: those opened, less the growth in open ones.
        let closed = (opened as i64 - (counters.sessions - last.sessions)).max(0) as u64;
        let timestamp = now_ms_second();
        let mut events = Vec::new();
        for (kind, count) in [
            ("rawConnection", opened),
            ("rawDisconnection", closed),
            ("packetsIn", counters.packets_in.saturating_sub(last.packets_in)),
            ("packetsOut", counters.packets_out.saturating_sub(last.packets_out)),
            ("bytesIn", counters.bytes_in.saturating_sub(last.bytes_in)),
            ("bytesOut", counters.bytes_out.saturating_sub(last.bytes_out)),
        ] {
            if count > 0 {
                events.push(json!({"timestamp": timestamp, "type": kind, "count": count}));
            }
        }
        let mut names = io.namespace_names();
        names.sort();
        let namespaces: Vec<Value> = names
            .iter()
            .filter_map(|name| io.namespace(name))
            .map(|ns| json!({"name": ns.name(), "socketsCount": ns.socket_count()}))
            .collect();
        json!({
            "serverId": self.server_id,
            "hostname": self.hostname,
            "pid": std::process::id(),
            "uptime": self.started.elapsed().as_secs_f64(),
            "clientsCount": io.engine().session_count(),
            "pollingClientsCount": metrics.polling.sessions.get().max(0),
            "aggregatedEvents": events,
            "namespaces": namespaces,
        })
    }
}

/// Now in ms since the Unix epoch, cut to the second (the admin-ui's buckets).
fn now_ms_second() -> u64 {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    ms - ms % 1000
}
