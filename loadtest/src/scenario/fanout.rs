//! `fanout`: N receivers (joined to a room, or everyone), one publisher calling
//! `broadcast({room, event: "msg", data})` M times with at most W un-acked; every receiver counts what it
//! gets and the latency from the send time stamped in the payload.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use switchboard_protocol::socketio::Value;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{Context, check_open_files, cpu_delta, finish, per_million, stop_all};
use crate::acks::{AckOutcome, AckTracker};
use crate::conn::Conn;
use crate::driver::{Behaviour, Call, Hold, Outcome};
use crate::fleet::{Fleet, OpenPlan, seconds};
use crate::latency::Recorder;
use crate::outbox::Outbox;
use crate::procfs;
use crate::progress::Progress;
use crate::report::Report;
use crate::wire::{self, EventTemplate, STAMP_LEN};
use crate::{SetupError, clock};

/// Parameters of `fanout`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FanoutParams {
    /// How the receivers are opened.
    #[serde(flatten)]
    pub open: OpenPlan,
    /// Broadcasts the publisher sends.
    pub messages: u64,
    /// Bytes of the broadcast data string (the first 16 carry the send time).
    pub payload: usize,
    /// Broadcasts waiting for their ack at most.
    pub window: usize,
    /// The room receivers join (`None`: broadcast to every connection, the publisher included).
    pub room: Option<String>,
    /// A `join` or `broadcast` ack later than this is a timeout.
    #[serde(serialize_with = "seconds")]
    pub ack_timeout: Duration,
    /// How long to wait for missing deliveries after the last broadcast was acked.
    #[serde(serialize_with = "seconds")]
    pub drain: Duration,
    /// Time the publishing phase may take in all.
    #[serde(serialize_with = "seconds")]
    pub limit: Duration,
}

impl Default for FanoutParams {
    fn default() -> Self {
        Self {
            open: OpenPlan {
                connections: 1_000,
                in_flight: 100,
                rate: None,
                timeout: Duration::from_secs(10),
                limit: Duration::from_secs(60),
            },
            messages: 1_000,
            payload: 64,
            window: 16,
            room: Some("fanout".into()),
            ack_timeout: Duration::from_secs(5),
            drain: Duration::from_secs(5),
            limit: Duration::from_secs(120),
        }
    }
}

/// Counters shared by the receivers and the publisher.
#[derive(Debug)]
struct Stats {
    ready: AtomicU64,
    join_failed: AtomicU64,
    delivered: AtomicU64,
    last_delivery_ns: AtomicU64,
    published: AtomicU64,
    publish_acked: AtomicU64,
    publish_ack_timeouts: AtomicU64,
    latency: Recorder,
    publish_ack_latency: Recorder,
}

/// A receiver: counts deliveries and records their latency from the stamp.
struct Deliveries {
    prefix: Arc<[u8]>,
    stats: Arc<Stats>,
    rank: usize,
}

impl Behaviour for Deliveries {
    fn on_message(&mut self, text: &[u8], now: u64, _out: &mut Outbox) {
        if let Some(stamp) = wire::delivery_stamp(text, &self.prefix) {
            self.stats.delivered.fetch_add(1, Relaxed);
            self.stats.latency.record(self.rank, now.saturating_sub(stamp));
            self.stats.last_delivery_ns.fetch_max(now, Relaxed);
        }
    }
}

/// The publisher: keeps up to `window` broadcasts un-acked until `total` are sent and answered.
struct Publisher {
    template: EventTemplate,
    total: u64,
    window: usize,
    sent: u64,
    acks: AckTracker,
    timeout: u64,
    stats: Arc<Stats>,
}

impl Behaviour for Publisher {
    fn next_tick(&self) -> Option<u64> {
        if self.sent < self.total && self.acks.waiting() < self.window {
            Some(0)
        } else {
            self.acks.next_deadline(self.timeout)
        }
    }

    fn on_tick(&mut self, now: u64, out: &mut Outbox) {
        while self.sent < self.total && self.acks.waiting() < self.window {
            let id = self.acks.issue(now, now, true);
            let template = &self.template;
            out.push_with(|buf| template.write(buf, id, now));
            self.sent += 1;
            self.stats.published.fetch_add(1, Relaxed);
        }
        let expired = self.acks.expire(now, self.timeout);
        self.stats.publish_ack_timeouts.fetch_add(expired, Relaxed);
    }

    fn on_message(&mut self, text: &[u8], now: u64, _out: &mut Outbox) {
        let Some(id) = wire::ack_id(text) else { return };
        match self.acks.ack(id, now, self.timeout) {
            AckOutcome::Answered { latency, .. } => {
                self.stats.publish_acked.fetch_add(1, Relaxed);
                self.stats.publish_ack_latency.record(0, latency);
            }
            AckOutcome::Late { .. } => {
                self.stats.publish_ack_timeouts.fetch_add(1, Relaxed);
            }
            AckOutcome::Unknown => {}
        }
    }

    fn finished(&self) -> bool {
        self.sent >= self.total && self.acks.waiting() == 0
    }
}

/// Runs `fanout`.
pub async fn run(ctx: &Context, params: &FanoutParams) -> Result<Report, SetupError> {
    let n = params.open.connections;
    check_open_files(n + 1)?;
    if params.payload < STAMP_LEN {
        return Err(SetupError::Param(format!(
            "--payload must be at least {STAMP_LEN} bytes (the send time)"
        )));
    }
    let fleet = Fleet::new(ctx.shards)?;
    let stats = Arc::new(Stats {
        ready: AtomicU64::new(0),
        join_failed: AtomicU64::new(0),
        delivered: AtomicU64::new(0),
        last_delivery_ns: AtomicU64::new(0),
        published: AtomicU64::new(0),
        publish_acked: AtomicU64::new(0),
        publish_ack_timeouts: AtomicU64::new(0),
        latency: Recorder::new(ctx.shards)?,
        publish_ack_latency: Recorder::new(1)?,
    });
    let (tracker, stop) = (TaskTracker::new(), CancellationToken::new());
    let params_json = serde_json::to_value(params).unwrap_or_default();
    let mut report = Report::new("fanout", ctx.target.url(), ctx.probe.pid(), params_json);
    let timeout = clock::ns(params.ack_timeout);

    // Receivers: join the room (if any), then count deliveries until the stop.
    let prefix: Arc<[u8]> = wire::event_string_prefix("msg").into();
    let join = params.room.as_ref().map(|room| wire::call("join", &[Value::from(room.as_str())], 0));
    let (task_fleet, task_stats, task_stop) = (fleet.clone(), stats.clone(), stop.clone());
    fleet.launch(&ctx.target, &params.open, &tracker, &stop, move |rank, mut conn: Conn| {
        let (fleet, stats, stop, prefix, join) =
            (task_fleet.clone(), task_stats.clone(), task_stop.clone(), prefix.clone(), join.clone());
        async move {
            if let Some(packet) = join {
                let mut call = Call::new(packet, timeout);
                match conn.drive(&mut call, stop.cancelled()).await {
                    Ok(Outcome::Finished) if call.answered() => {}
                    Ok(Outcome::Finished) => {
                        stats.join_failed.fetch_add(1, Relaxed);
                        return hold(conn, &fleet, &stop).await;
                    }
                    Ok(Outcome::Interrupted) => return,
                    Err(e) => {
                        stats.join_failed.fetch_add(1, Relaxed);
                        return fleet.failures.running(&e);
                    }
                }
            }
            stats.ready.fetch_add(1, Relaxed);
            let mut deliveries = Deliveries { prefix, stats, rank: rank as usize };
            if let Err(e) = conn.drive(&mut deliveries, stop.cancelled()).await {
                fleet.failures.running(&e);
            }
        }
    });
    let progress = Progress::new(n as u64, "connecting");
    let mut complete = fleet.wait_settled(n as u64, params.open.limit, &progress).await;
    progress.finish();
    // Every opened receiver has joined, or failed to.
    let deadline = clock::now_ns() + timeout + clock::ns(Duration::from_secs(1));
    while stats.ready.load(Relaxed) + stats.join_failed.load(Relaxed) < fleet.opened()
        && clock::now_ns() < deadline
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let receivers = stats.ready.load(Relaxed);

    // The publisher.
    let mut publisher_failed = 0;
    let mut publish_seconds = 0.0;
    let (mut cpu_before, mut cpu_after, mut own_before, mut own_after) = (None, None, None, None);
    let (mut sys_before, mut sys_after) = (None, None);
    let mut first_send = 0;
    match Conn::open(&ctx.target, params.open.timeout).await {
        Err(e) => {
            fleet.failures.opening(&e);
            publisher_failed = 1;
        }
        Ok(mut conn) => {
            let mut spec = Vec::new();
            if let Some(room) = &params.room {
                spec.push(("room".to_owned(), Value::from(room.as_str())));
            }
            spec.push(("event".to_owned(), Value::from("msg")));
            spec.push(("data".to_owned(), Value::from(wire::payload(params.payload, true))));
            let template = EventTemplate::stamped("broadcast", &[Value::Object(spec)]);
            let mut publisher = Publisher {
                template,
                total: params.messages,
                window: params.window.max(1),
                sent: 0,
                acks: AckTracker::default(),
                timeout,
                stats: stats.clone(),
            };
            (cpu_before, own_before) = (ctx.probe.cpu_seconds(), procfs::own_cpu_seconds());
            sys_before = ctx.probe.sys_cpu_seconds();
            first_send = clock::now_ns();
            let expected = receivers * params.messages;
            let progress = Progress::new(expected, "deliveries");
            let limit = first_send + clock::ns(params.limit);
            let publishing = conn.drive(&mut publisher, async {
                loop {
                    progress.set(stats.delivered.load(Relaxed));
                    if clock::now_ns() >= limit {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            });
            match publishing.await {
                Ok(Outcome::Finished) => {}
                Ok(Outcome::Interrupted) => complete = false,
                Err(e) => {
                    fleet.failures.running(&e);
                    publisher_failed = 1;
                }
            }
            publish_seconds = (clock::now_ns() - first_send) as f64 / 1e9;
            // Wait for the deliveries still on their way, answering pings meanwhile.
            let expected = receivers * stats.published.load(Relaxed);
            let drain_end = (clock::now_ns() + clock::ns(params.drain)).min(limit);
            let mut hold = Hold;
            let drained = conn.drive(&mut hold, async {
                loop {
                    progress.set(stats.delivered.load(Relaxed));
                    if stats.delivered.load(Relaxed) >= expected || clock::now_ns() >= drain_end {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            });
            if let Err(e) = drained.await {
                fleet.failures.running(&e);
            }
            progress.finish();
            (cpu_after, own_after) = (ctx.probe.cpu_seconds(), procfs::own_cpu_seconds());
            sys_after = ctx.probe.sys_cpu_seconds();
        }
    }
    let rss = ctx.probe.rss_kib();
    let stopped = stop_all(&stop, &tracker).await;

    let published = stats.published.load(Relaxed);
    let delivered = stats.delivered.load(Relaxed);
    let expected = receivers * published;
    let last = stats.last_delivery_ns.load(Relaxed);
    let delivery_seconds =
        if last > first_send && first_send > 0 { (last - first_send) as f64 / 1e9 } else { 0.0 };
    let server_cpu = cpu_delta(cpu_before, cpu_after);
    let f = &mut report.figures;
    f.push("receivers", receivers as f64);
    f.push("published", published as f64);
    f.push("publish_acked", stats.publish_acked.load(Relaxed) as f64);
    f.push("expected_deliveries", expected as f64);
    f.push("deliveries", delivered as f64);
    f.push_some("deliveries_per_s", (delivery_seconds > 0.0).then(|| delivered as f64 / delivery_seconds));
    f.push("publish_s", publish_seconds);
    let l = stats.latency.summary();
    f.push("latency_p50_ms", l.p50_ms);
    f.push("latency_p99_ms", l.p99_ms);
    f.push("latency_p999_ms", l.p999_ms);
    f.push("latency_max_ms", l.max_ms);
    f.push("latency_mean_ms", l.mean_ms);
    f.push("publish_ack_p50_ms", stats.publish_ack_latency.summary().p50_ms);
    f.push_some("server_cpu_s", server_cpu);
    f.push_some("server_cpu_s_per_million_deliveries", per_million(server_cpu, delivered));
    f.push_some(
        "server_sys_cpu_s_per_million_deliveries",
        per_million(cpu_delta(sys_before, sys_after), delivered),
    );
    f.push_some("client_cpu_s", cpu_delta(own_before, own_after));
    f.push_some("rss_kib", rss.map(|v| v as f64));

    report.failures.0 = fleet.failures.counts();
    report.failures.push("not_attempted", (n as u64).saturating_sub(fleet.settled()));
    report.failures.push("join_failed", stats.join_failed.load(Relaxed));
    report.failures.push("publisher_failed", publisher_failed);
    report.failures.push("publish_ack_timeouts", stats.publish_ack_timeouts.load(Relaxed));
    report.failures.push("lost_deliveries", expected.saturating_sub(delivered));
    report.failures.push("extra_deliveries", delivered.saturating_sub(expected));
    finish(&mut report, &fleet.failures, complete && stopped);
    Ok(report)
}

/// Keeps a connection that could not join open until the stop, so it fails only once.
async fn hold(mut conn: Conn, fleet: &Fleet, stop: &CancellationToken) {
    if let Err(e) = conn.drive(&mut Hold, stop.cancelled()).await {
        fleet.failures.running(&e);
    }
}
