//! `fanout`: N receivers (joined to a room, or everyone), one publisher calling
//! `broadcast({room, event: "msg", data})` M times with at most W un-acked; every receiver counts what it
//! gets and the latency from the send time stamped in the payload.
//!
//! [`run_spread`] is the same fan-out with the receivers dealt over several targets (the nodes of a
//! cluster, see [`crate::cluster`]), latency kept per group of targets and CPU summed over several processes.

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
use crate::latency::{Recorder, Summary};
use crate::outbox::Outbox;
use crate::procfs::{self, Probe};
use crate::progress::Progress;
use crate::report::Report;
use crate::target::Target;
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
    /// Broadcasts per second on a fixed schedule (an open model: each is stamped with its scheduled
    /// time, so a late send counts in the latency); `None` sends whenever the window allows.
    pub broadcast_rate: Option<f64>,
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
            broadcast_rate: None,
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
    groups: Vec<GroupStats>,
}

/// Counters of one group of receivers (e.g. those on the publisher's node).
#[derive(Debug)]
struct GroupStats {
    receivers: AtomicU64,
    delivered: AtomicU64,
    latency: Recorder,
}

/// A receiver: counts deliveries and records their latency from the stamp.
struct Deliveries {
    prefix: Arc<[u8]>,
    stats: Arc<Stats>,
    rank: usize,
    group: Option<usize>,
}

impl Behaviour for Deliveries {
    fn on_message(&mut self, text: &[u8], now: u64, _out: &mut Outbox) {
        if let Some(stamp) = wire::delivery_stamp(text, &self.prefix) {
            let latency = now.saturating_sub(stamp);
            self.stats.delivered.fetch_add(1, Relaxed);
            self.stats.latency.record(self.rank, latency);
            self.stats.last_delivery_ns.fetch_max(now, Relaxed);
            if let Some(group) = self.group.and_then(|g| self.stats.groups.get(g)) {
                group.delivered.fetch_add(1, Relaxed);
                group.latency.record(self.rank, latency);
            }
        }
    }
}

/// The publisher: keeps up to `window` broadcasts un-acked until `total` are sent and answered,
/// sending the k-th at `start + k * interval` when paced.
struct Publisher {
    template: EventTemplate,
    total: u64,
    window: usize,
    /// Nanoseconds between scheduled sends (`None`: as fast as the window allows).
    interval: Option<u64>,
    /// When the first broadcast was sent (the schedule's origin).
    start: Option<u64>,
    sent: u64,
    acks: AckTracker,
    timeout: u64,
    stats: Arc<Stats>,
}

impl Behaviour for Publisher {
    fn next_tick(&self) -> Option<u64> {
        let next = (self.sent < self.total && self.acks.waiting() < self.window).then(|| self.due());
        match (next, self.acks.next_deadline(self.timeout)) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn on_tick(&mut self, now: u64, out: &mut Outbox) {
        self.start.get_or_insert(now);
        while self.sent < self.total && self.acks.waiting() < self.window && self.due() <= now {
            // Paced: stamped with the schedule, so a send held back by a full window counts as late.
            let stamp = if self.interval.is_some() { self.due() } else { now };
            let id = self.acks.issue(stamp, now, true);
            let template = &self.template;
            out.push_with(|buf| template.write(buf, id, stamp));
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

impl Publisher {
    /// When the next broadcast is due: 0 (now) unless paced and started.
    fn due(&self) -> u64 {
        match (self.interval, self.start) {
            (Some(interval), Some(start)) => start + self.sent * interval,
            _ => 0,
        }
    }
}

/// Where a fan-out's connections go, for [`run_spread`].
#[derive(Debug, Clone)]
pub struct Spread {
    /// One target per node: receivers are dealt round-robin over them, the publisher uses the first.
    pub targets: Vec<Arc<Target>>,
    /// The latency group of each target's receivers (empty: no groups), so same-node and cross-node
    /// deliveries can be told apart.
    pub groups: Vec<usize>,
    /// Every process whose CPU and memory count (all nodes and the broker).
    pub probes: Vec<Probe>,
    /// Pause between the last join and the first broadcast, so a node's room subscription at the broker
    /// (made in the background after a join) is in place before the publishing starts.
    pub settle: Duration,
    /// Latency histogram shards.
    pub shards: usize,
}

/// What one group of receivers got.
#[derive(Debug, Clone, Copy, Default)]
pub struct GroupResult {
    /// Receivers that joined.
    pub receivers: u64,
    /// Deliveries they counted.
    pub deliveries: u64,
    /// Latency of those deliveries.
    pub latency: Summary,
}

/// A [`run_spread`] result: the report, plus what only the cluster comparison reads.
#[derive(Debug, Clone)]
pub struct SpreadRun {
    /// The run's report (figures and failures as `fanout` reports them).
    pub report: Report,
    /// One entry per latency group.
    pub groups: Vec<GroupResult>,
    /// CPU seconds each probed process used in the measured window, in [`Spread::probes`] order.
    pub cpu: Vec<Option<f64>>,
}

/// Runs `fanout`.
pub async fn run(ctx: &Context, params: &FanoutParams) -> Result<Report, SetupError> {
    let spread = Spread {
        targets: vec![ctx.target.clone()],
        groups: Vec::new(),
        probes: vec![ctx.probe],
        settle: Duration::ZERO,
        shards: ctx.shards,
    };
    Ok(run_spread("fanout", &spread, params).await?.report)
}

/// Sums readings of several processes; `None` if any is missing, so a gone process shows as a gap.
fn sum(values: impl IntoIterator<Item = Option<f64>>) -> Option<f64> {
    values.into_iter().sum()
}

/// Runs a fan-out with the receivers dealt over `spread.targets`; `scenario` names the report.
pub async fn run_spread(
    scenario: &'static str,
    spread: &Spread,
    params: &FanoutParams,
) -> Result<SpreadRun, SetupError> {
    let n = params.open.connections;
    check_open_files(n + 1)?;
    if params.payload < STAMP_LEN {
        return Err(SetupError::Param(format!(
            "--payload must be at least {STAMP_LEN} bytes (the send time)"
        )));
    }
    let Some(first_target) = spread.targets.first() else {
        return Err(SetupError::Param("a fan-out needs at least one target".into()));
    };
    if !spread.groups.is_empty() && spread.groups.len() != spread.targets.len() {
        return Err(SetupError::Param("one latency group per target is needed".into()));
    }
    let shards = spread.shards;
    let fleet = Fleet::new(shards)?;
    let group_count = spread.groups.iter().max().map_or(0, |g| g + 1);
    let groups = (0..group_count)
        .map(|_| {
            Ok(GroupStats {
                receivers: AtomicU64::new(0),
                delivered: AtomicU64::new(0),
                latency: Recorder::new(shards)?,
            })
        })
        .collect::<Result<Vec<_>, SetupError>>()?;
    let stats = Arc::new(Stats {
        ready: AtomicU64::new(0),
        join_failed: AtomicU64::new(0),
        delivered: AtomicU64::new(0),
        last_delivery_ns: AtomicU64::new(0),
        published: AtomicU64::new(0),
        publish_acked: AtomicU64::new(0),
        publish_ack_timeouts: AtomicU64::new(0),
        latency: Recorder::new(shards)?,
        publish_ack_latency: Recorder::new(1)?,
        groups,
    });
    let (tracker, stop) = (TaskTracker::new(), CancellationToken::new());
    let params_json = serde_json::to_value(params).unwrap_or_default();
    let pid = spread.probes.first().and_then(Probe::pid);
    let mut report = Report::new(scenario, first_target.url(), pid, params_json);
    let timeout = clock::ns(params.ack_timeout);

    // Receivers: join the room (if any), then count deliveries until the stop. Receiver i goes to
    // target i mod T, so each target gets its share; the handshakes in flight are shared out too.
    let prefix: Arc<[u8]> = wire::event_string_prefix("msg").into();
    let join = params.room.as_ref().map(|room| wire::call("join", &[Value::from(room.as_str())], 0));
    let targets = spread.targets.len();
    for (t, target) in spread.targets.iter().enumerate() {
        let plan = OpenPlan {
            connections: n / targets + usize::from(t < n % targets),
            in_flight: params.open.in_flight.div_ceil(targets).max(1),
            rate: params.open.rate.map(|r| r / targets as f64),
            ..params.open.clone()
        };
        let group = spread.groups.get(t).copied();
        let (task_fleet, task_stats, task_stop) = (fleet.clone(), stats.clone(), stop.clone());
        let (prefix, join) = (prefix.clone(), join.clone());
        fleet.launch(target, &plan, &tracker, &stop, move |rank, mut conn: Conn| {
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
                if let Some(g) = group.and_then(|g| stats.groups.get(g)) {
                    g.receivers.fetch_add(1, Relaxed);
                }
                stats.ready.fetch_add(1, Relaxed);
                let mut deliveries = Deliveries { prefix, stats, rank: rank as usize, group };
                if let Err(e) = conn.drive(&mut deliveries, stop.cancelled()).await {
                    fleet.failures.running(&e);
                }
            }
        });
    }
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
    if !spread.settle.is_zero() {
        tokio::time::sleep(spread.settle).await;
    }

    // The publisher.
    let mut publisher_failed = 0;
    let mut publish_seconds = 0.0;
    let probes = &spread.probes;
    let cpu_now = || probes.iter().map(Probe::cpu_seconds).collect::<Vec<_>>();
    let sys_now = || sum(probes.iter().map(Probe::sys_cpu_seconds));
    let (mut cpu_before, mut cpu_after) = (vec![None; probes.len()], vec![None; probes.len()]);
    let (mut own_before, mut own_after) = (None, None);
    let (mut sys_before, mut sys_after) = (None, None);
    let mut first_send = 0;
    match Conn::open(first_target, params.open.timeout).await {
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
                interval: params.broadcast_rate.filter(|r| *r > 0.0).map(|r| (1e9 / r) as u64),
                start: None,
                sent: 0,
                acks: AckTracker::default(),
                timeout,
                stats: stats.clone(),
            };
            (cpu_before, own_before) = (cpu_now(), procfs::own_cpu_seconds());
            sys_before = sys_now();
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
            (cpu_after, own_after) = (cpu_now(), procfs::own_cpu_seconds());
            sys_after = sys_now();
        }
    }
    let rss = probes.iter().map(Probe::rss_kib).sum::<Option<u64>>();
    let stopped = stop_all(&stop, &tracker).await;

    let published = stats.published.load(Relaxed);
    let delivered = stats.delivered.load(Relaxed);
    let expected = receivers * published;
    let last = stats.last_delivery_ns.load(Relaxed);
    let delivery_seconds =
        if last > first_send && first_send > 0 { (last - first_send) as f64 / 1e9 } else { 0.0 };
    let cpu: Vec<Option<f64>> =
        cpu_before.iter().zip(&cpu_after).map(|(&before, &after)| cpu_delta(before, after)).collect();
    let server_cpu = sum(cpu.iter().copied());
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
    let groups = stats
        .groups
        .iter()
        .map(|g| GroupResult {
            receivers: g.receivers.load(Relaxed),
            deliveries: g.delivered.load(Relaxed),
            latency: g.latency.summary(),
        })
        .collect();
    Ok(SpreadRun { report, groups, cpu })
}

/// Keeps a connection that could not join open until the stop, so it fails only once.
async fn hold(mut conn: Conn, fleet: &Fleet, stop: &CancellationToken) {
    if let Err(e) = conn.drive(&mut Hold, stop.cancelled()).await {
        fleet.failures.running(&e);
    }
}
