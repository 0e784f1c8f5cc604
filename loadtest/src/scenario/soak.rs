//! `soak`'s load: a base of persistent WebSocket clients spread over rooms, churning clients that
//! connect, join a room, receive for a while and leave (cleanly or by dropping the connection, over
//! WebSocket or long-polling), and one publisher broadcasting at a fixed rate, some broadcasts to
//! everyone and the rest to one room at a time. Every `sample_every` the server's RSS, open file
//! descriptors, threads and CPU (from `/proc`) and its socket and session gauges (from `/metrics`) are
//! handed to the caller as a [`Sample`]; [`crate::soak`] turns them into the verdict.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use serde::Serialize;
use switchboard_protocol::socketio::Value;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{Context, check_open_files, stop_all};
use crate::acks::{AckOutcome, AckTracker};
use crate::conn::Conn;
use crate::driver::{Behaviour, Call, Connection, Hold, Outcome};
use crate::failures::Failures;
use crate::fleet::{Fleet, OpenPlan, seconds};
use crate::latency::{Recorder, Summary};
use crate::outbox::Outbox;
use crate::polling::PollingConn;
use crate::progress::Progress;
use crate::target::Target;
use crate::wire::{self, EventTemplate, STAMP_LEN};
use crate::{SetupError, clock, procfs, scrape};

/// Parameters of the soak's load.
#[derive(Debug, Clone, Serialize)]
pub struct SoakLoad {
    /// Time the load runs once the base is connected.
    #[serde(serialize_with = "seconds")]
    pub duration: Duration,
    /// Time between two samples.
    #[serde(serialize_with = "seconds")]
    pub sample_every: Duration,
    /// Persistent WebSocket clients, dealt round-robin over the rooms.
    pub base: usize,
    /// Rooms (`soak-0` …).
    pub rooms: usize,
    /// New churning clients per second.
    pub churn_rate: f64,
    /// How long a churning client stays after its join.
    #[serde(serialize_with = "seconds")]
    pub churn_hold: Duration,
    /// Every n-th churning client long-polls instead of using WebSocket (0: none do).
    pub polling_every: u64,
    /// Every n-th churning client drops its connection instead of disconnecting (0: none do).
    pub abrupt_every: u64,
    /// Churning clients in progress at most; one more is skipped (and counted) rather than started.
    pub churn_max: usize,
    /// Broadcasts per second.
    pub broadcast_rate: f64,
    /// Every n-th broadcast goes to everyone, the others to one room after another (0: rooms only).
    pub all_every: u64,
    /// Bytes of the broadcast data (the first 16 carry the send time).
    pub payload: usize,
    /// A handshake, join or broadcast ack later than this counts as failed.
    #[serde(serialize_with = "seconds")]
    pub timeout: Duration,
}

impl Default for SoakLoad {
    fn default() -> Self {
        Self {
            duration: Duration::from_secs(3_600),
            sample_every: Duration::from_secs(10),
            base: 2_000,
            rooms: 20,
            churn_rate: 50.0,
            churn_hold: Duration::from_secs(2),
            polling_every: 5,
            abrupt_every: 2,
            churn_max: 1_000,
            broadcast_rate: 20.0,
            all_every: 4,
            payload: 64,
            timeout: Duration::from_secs(10),
        }
    }
}

/// Where broadcast `k` goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Audience {
    /// Every client of the node.
    All,
    /// One room, by index.
    Room(usize),
}

/// The audience of broadcast `k` (numbered from 0): every `all_every`-th to all, starting with the
/// first, and the others to the rooms in turn.
pub fn audience(k: u64, all_every: u64, rooms: usize) -> Audience {
    let rooms = rooms.max(1) as u64;
    if all_every == 0 {
        return Audience::Room((k % rooms) as usize);
    }
    if k % all_every == 0 {
        return Audience::All;
    }
    // Room broadcasts before k: k minus the broadcasts to all among 0..=k.
    Audience::Room(((k - k / all_every - 1) % rooms) as usize)
}

/// One reading of the server and the load, every `sample_every`.
#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    /// Always `"soak_sample"`.
    pub kind: &'static str,
    /// Seconds since the load started (the base was connected).
    pub t_s: f64,
    /// Server resident memory.
    pub rss_kib: Option<u64>,
    /// Server open file descriptors.
    pub fds: Option<u64>,
    /// Server threads.
    pub threads: Option<u64>,
    /// `switchboard_sockets`, all namespaces.
    pub sockets: Option<f64>,
    /// `switchboard_sessions`, both transports.
    pub sessions: Option<f64>,
    /// Server CPU in the last interval, in % of one core.
    pub server_cpu_pct: Option<f64>,
    /// This process's CPU in the last interval, in % of one core.
    pub client_cpu_pct: Option<f64>,
    /// Base clients connected now.
    pub base_connected: u64,
    /// Churning clients opened so far.
    pub churn_opened: u64,
    /// Broadcasts sent so far.
    pub published: u64,
    /// Deliveries received so far, base and churning clients.
    pub deliveries: u64,
}

/// What the whole load did, for the summary.
#[derive(Debug, Clone)]
pub struct SoakRun {
    /// Every sample, in order.
    pub samples: Vec<Sample>,
    /// The server before the first client and after the last one was gone.
    pub idle: [Idle; 2],
    /// Seconds from the last client's leave until the node reported no socket and no session (the
    /// ping timeout of a dropped polling session, or at once when every client left cleanly).
    pub idle_wait_s: f64,
    /// Base clients that joined their room.
    pub base_ready: u64,
    /// Churning clients that opened.
    pub churn_opened: u64,
    /// Churning clients that left with a DISCONNECT.
    pub churn_clean: u64,
    /// Churning clients that dropped their connection.
    pub churn_dropped: u64,
    /// Broadcasts sent.
    pub published: u64,
    /// Broadcasts acked in time.
    pub acked: u64,
    /// Broadcasts whose ack did not come within the timeout. The bench app acks once every local
    /// receiver's connection took the frame, and a long-polling session whose client vanished takes
    /// nothing until the node drops it at pingInterval + pingTimeout: so a broadcast to everyone while
    /// such a session lingers is acked late. Not a loss: deliveries are checked on their own.
    pub ack_timeouts: u64,
    /// Deliveries the base should have had from the broadcasts sent.
    pub base_expected: u64,
    /// Deliveries the base had.
    pub base_deliveries: u64,
    /// Deliveries churning clients had.
    pub churn_deliveries: u64,
    /// Send-to-receive latency of the base's deliveries.
    pub latency: Summary,
    /// Server CPU seconds over the load, and the load's length in seconds.
    pub server_cpu_s: Option<f64>,
    /// Seconds the load ran.
    pub load_s: f64,
    /// Failures by kind (base, churn and publisher together).
    pub failures: Vec<(&'static str, u64)>,
    /// The first error seen, to tell what the counters mean.
    pub first_error: Option<String>,
}

/// The server with no client: what must come back once the load is gone.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Idle {
    /// Resident memory.
    pub rss_kib: Option<u64>,
    /// Open file descriptors.
    pub fds: Option<u64>,
    /// Threads.
    pub threads: Option<u64>,
    /// `switchboard_sockets`.
    pub sockets: Option<f64>,
    /// `switchboard_sessions`.
    pub sessions: Option<f64>,
}

/// Counters shared by every task of the load.
#[derive(Debug)]
struct Load {
    prefix: Arc<[u8]>,
    base_ready: AtomicU64,
    base_lost: AtomicU64,
    base_join_failed: AtomicU64,
    base_delivered: AtomicU64,
    /// Base clients in each room.
    members: Vec<AtomicU64>,
    latency: Recorder,
    churn: Failures,
    churn_opened: AtomicU64,
    churn_join_failed: AtomicU64,
    churn_clean: AtomicU64,
    churn_dropped: AtomicU64,
    churn_close_timeouts: AtomicU64,
    churn_skipped: AtomicU64,
    churn_delivered: AtomicU64,
    published: AtomicU64,
    /// Broadcasts sent to everyone.
    sent_all: AtomicU64,
    /// Broadcasts sent per room.
    sent_room: Vec<AtomicU64>,
    acked: AtomicU64,
    ack_timeouts: AtomicU64,
}

impl Load {
    fn new(rooms: usize, shards: usize) -> Result<Self, SetupError> {
        let zeros = || (0..rooms).map(|_| AtomicU64::new(0)).collect();
        Ok(Self {
            prefix: wire::event_string_prefix("msg").into(),
            base_ready: AtomicU64::new(0),
            base_lost: AtomicU64::new(0),
            base_join_failed: AtomicU64::new(0),
            base_delivered: AtomicU64::new(0),
            members: zeros(),
            latency: Recorder::new(shards)?,
            churn: Failures::default(),
            churn_opened: AtomicU64::new(0),
            churn_join_failed: AtomicU64::new(0),
            churn_clean: AtomicU64::new(0),
            churn_dropped: AtomicU64::new(0),
            churn_close_timeouts: AtomicU64::new(0),
            churn_skipped: AtomicU64::new(0),
            churn_delivered: AtomicU64::new(0),
            published: AtomicU64::new(0),
            sent_all: AtomicU64::new(0),
            sent_room: zeros(),
            acked: AtomicU64::new(0),
            ack_timeouts: AtomicU64::new(0),
        })
    }

    fn deliveries(&self) -> u64 {
        self.base_delivered.load(Relaxed) + self.churn_delivered.load(Relaxed)
    }

    /// Deliveries the base should have had: the node takes every broadcast the publisher sent (its own
    /// connection stays up, or the publisher fails), and each reaches every base client of its audience,
    /// all of which joined before the first one.
    fn base_expected(&self) -> u64 {
        let all = self.sent_all.load(Relaxed) * self.base_ready.load(Relaxed);
        let rooms: u64 =
            self.sent_room.iter().zip(&self.members).map(|(a, m)| a.load(Relaxed) * m.load(Relaxed)).sum();
        all + rooms
    }
}

/// A receiver: counts deliveries (and, for the base, their latency from the stamp).
struct Receiver {
    load: Arc<Load>,
    base: bool,
    rank: usize,
}

impl Behaviour for Receiver {
    fn on_message(&mut self, text: &[u8], now: u64, _out: &mut Outbox) {
        let Some(stamp) = wire::delivery_stamp(text, &self.load.prefix) else { return };
        if self.base {
            self.load.base_delivered.fetch_add(1, Relaxed);
            self.load.latency.record(self.rank, now.saturating_sub(stamp));
        } else {
            self.load.churn_delivered.fetch_add(1, Relaxed);
        }
    }
}

/// The publisher: broadcast `k` at `start + k / rate` to [`audience`]`(k)`, counting acks per audience.
struct Publisher {
    load: Arc<Load>,
    all: EventTemplate,
    rooms: Vec<EventTemplate>,
    all_every: u64,
    interval: u64,
    start: Option<u64>,
    sent: u64,
    /// No more sends after this many (set when the load stops, to wait for the last acks).
    limit: u64,
    acks: AckTracker,
    timeout: u64,
}

impl Publisher {
    fn due(&self) -> u64 {
        self.start.map_or(0, |start| start + self.sent * self.interval)
    }

    fn audience(&self, k: u64) -> Audience {
        audience(k, self.all_every, self.rooms.len())
    }
}

impl Behaviour for Publisher {
    fn next_tick(&self) -> Option<u64> {
        let send = (self.sent < self.limit).then(|| self.due());
        match (send, self.acks.next_deadline(self.timeout)) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn on_tick(&mut self, now: u64, out: &mut Outbox) {
        self.start.get_or_insert(now);
        while self.sent < self.limit && self.due() <= now {
            let due = self.due();
            let id = self.acks.issue(due, now, true);
            let template = match self.audience(id) {
                Audience::All => {
                    self.load.sent_all.fetch_add(1, Relaxed);
                    &self.all
                }
                Audience::Room(r) => {
                    self.load.sent_room[r].fetch_add(1, Relaxed);
                    &self.rooms[r]
                }
            };
            out.push_with(|buf| template.write(buf, id, due));
            self.sent += 1;
            self.load.published.fetch_add(1, Relaxed);
        }
        let expired = self.acks.expire(now, self.timeout);
        self.load.ack_timeouts.fetch_add(expired, Relaxed);
    }

    fn on_message(&mut self, text: &[u8], now: u64, _out: &mut Outbox) {
        let Some(id) = wire::ack_id(text) else { return };
        match self.acks.ack(id, now, self.timeout) {
            AckOutcome::Answered { .. } => self.load.acked.fetch_add(1, Relaxed),
            AckOutcome::Late { .. } => self.load.ack_timeouts.fetch_add(1, Relaxed),
            AckOutcome::Unknown => return,
        };
    }

    fn finished(&self) -> bool {
        self.sent >= self.limit && self.acks.waiting() == 0
    }
}

/// How long the last deliveries get after the last ack.
const DRAIN: Duration = Duration::from_secs(5);
/// Time the node gets to notice every client has gone; a dropped long-polling session lives for
/// pingInterval + pingTimeout (45 s by default).
const IDLE_LIMIT: Duration = Duration::from_secs(90);

fn room_name(r: usize) -> String {
    format!("soak-{r}")
}

/// Runs the load against `ctx`, calling `on_sample` with every sample as it is taken.
pub async fn run(
    ctx: &Context,
    params: &SoakLoad,
    mut on_sample: impl FnMut(&Sample),
) -> Result<SoakRun, SetupError> {
    if params.payload < STAMP_LEN {
        return Err(SetupError::Param(format!(
            "--payload must be at least {STAMP_LEN} bytes (the send time)"
        )));
    }
    if params.rooms == 0 || params.sample_every.is_zero() || params.broadcast_rate <= 0.0 {
        return Err(SetupError::Param(
            "--rooms, --sample-every and --broadcast-rate must be positive".into(),
        ));
    }
    let churn_sockets = params.churn_max * if params.polling_every > 0 { PollingConn::SOCKETS } else { 1 };
    check_open_files(params.base + churn_sockets + 2)?;
    let target = &ctx.target;
    let fleet = Fleet::new(ctx.shards)?;
    let load = Arc::new(Load::new(params.rooms, ctx.shards)?);
    let timeout = clock::ns(params.timeout);
    let joins: Arc<[Vec<u8>]> =
        (0..params.rooms).map(|r| wire::call("join", &[Value::from(room_name(r))], 0)).collect();
    let idle_before = idle(ctx).await;

    // The base: join room rank mod rooms, then receive until the end.
    let (base_tracker, base_stop) = (TaskTracker::new(), CancellationToken::new());
    let plan = OpenPlan {
        connections: params.base,
        in_flight: 100,
        rate: None,
        timeout: params.timeout,
        limit: Duration::from_secs(120),
    };
    {
        let (task_fleet, task_load, task_stop, joins) =
            (fleet.clone(), load.clone(), base_stop.clone(), joins.clone());
        fleet.launch(target, &plan, &base_tracker, &base_stop, move |rank, mut conn: Conn| {
            let (fleet, load, stop) = (task_fleet.clone(), task_load.clone(), task_stop.clone());
            let room = rank as usize % joins.len();
            let join = joins[room].clone();
            async move {
                let mut call = Call::new(join, timeout);
                match conn.drive(&mut call, stop.cancelled()).await {
                    Ok(Outcome::Finished) if call.answered() => {}
                    Ok(Outcome::Finished) => {
                        load.base_join_failed.fetch_add(1, Relaxed);
                        if let Err(e) = conn.drive(&mut Hold, stop.cancelled()).await {
                            fleet.failures.running(&e);
                        }
                        return;
                    }
                    Ok(Outcome::Interrupted) => return,
                    Err(e) => {
                        load.base_join_failed.fetch_add(1, Relaxed);
                        return fleet.failures.running(&e);
                    }
                }
                load.members[room].fetch_add(1, Relaxed);
                load.base_ready.fetch_add(1, Relaxed);
                let mut receiver = Receiver { load: load.clone(), base: true, rank: rank as usize };
                if let Err(e) = conn.drive(&mut receiver, stop.cancelled()).await {
                    load.base_lost.fetch_add(1, Relaxed);
                    fleet.failures.running(&e);
                }
            }
        });
    }
    let progress = Progress::new(params.base as u64, "base connecting");
    fleet.wait_settled(params.base as u64, plan.limit, &progress).await;
    progress.finish();
    let deadline = clock::now_ns() + timeout + clock::ns(Duration::from_secs(1));
    while load.base_ready.load(Relaxed) + load.base_join_failed.load(Relaxed) < fleet.opened()
        && clock::now_ns() < deadline
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // The churn and the publisher, until the load stops.
    let (load_tracker, load_stop) = (TaskTracker::new(), CancellationToken::new());
    load_tracker.spawn(churn(
        target.clone(),
        params.clone(),
        load.clone(),
        joins,
        load_tracker.clone(),
        load_stop.clone(),
    ));
    let publisher_failed = Arc::new(AtomicU64::new(0));
    load_tracker.spawn(publish(
        target.clone(),
        params.clone(),
        load.clone(),
        publisher_failed.clone(),
        load_stop.clone(),
    ));

    let start = clock::now_ns();
    let (cpu_start, own_start) = (ctx.probe.cpu_seconds(), procfs::own_cpu_seconds());
    let (mut cpu_prev, mut own_prev, mut prev_t) = (cpu_start, own_start, 0.0);
    let every = clock::ns(params.sample_every);
    let count = params.duration.as_nanos() / params.sample_every.as_nanos();
    let mut samples = Vec::with_capacity(count as usize + 1);
    for k in 0..=count as u64 {
        super::sleep_until_ns(start + k * every).await;
        let t_s = (clock::now_ns() - start) as f64 / 1e9;
        // /proc first: the scrape's own connection must not be counted among the descriptors.
        let (rss_kib, fds, threads) = (ctx.probe.rss_kib(), ctx.probe.open_fds(), ctx.probe.threads());
        let (cpu, own) = (ctx.probe.cpu_seconds(), procfs::own_cpu_seconds());
        let page = scrape::fetch(target.addr(), Duration::from_secs(5)).await.ok();
        let gauge = |name| page.as_deref().and_then(|p| scrape::gauge_sum(p, name));
        let span = t_s - prev_t;
        // The first sample closes no interval.
        let pct = |now: Option<f64>, before: Option<f64>| {
            (k > 0 && span > 0.0).then(|| super::cpu_delta(before, now).map(|d| d / span * 100.0)).flatten()
        };
        let sample = Sample {
            kind: "soak_sample",
            t_s,
            rss_kib,
            fds,
            threads,
            sockets: gauge("switchboard_sockets"),
            sessions: gauge("switchboard_sessions"),
            server_cpu_pct: pct(cpu, cpu_prev),
            client_cpu_pct: pct(own, own_prev),
            base_connected: load.base_ready.load(Relaxed) - load.base_lost.load(Relaxed),
            churn_opened: load.churn_opened.load(Relaxed),
            published: load.published.load(Relaxed),
            deliveries: load.deliveries(),
        };
        (cpu_prev, own_prev, prev_t) = (cpu, own, t_s);
        on_sample(&sample);
        samples.push(sample);
    }
    let cpu_end = ctx.probe.cpu_seconds();
    let load_s = (clock::now_ns() - start) as f64 / 1e9;

    // The end: stop the churn, let the publisher collect its last acks, the base its last deliveries.
    load_stop.cancel();
    load_tracker.close();
    let load_stopped = tokio::time::timeout(params.timeout + DRAIN, load_tracker.wait()).await.is_ok();
    let drain_end = clock::now_ns() + clock::ns(DRAIN);
    while load.base_delivered.load(Relaxed) < load.base_expected() && clock::now_ns() < drain_end {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let base_stopped = stop_all(&base_stop, &base_tracker).await;
    let left = clock::now_ns();
    let idle_after = wait_idle(ctx).await;
    let idle_wait_s = (clock::now_ns() - left) as f64 / 1e9;

    let base_expected = load.base_expected();
    let base_deliveries = load.base_delivered.load(Relaxed);
    let published = load.published.load(Relaxed);
    let mut failures: Vec<(&'static str, u64)> =
        fleet.failures.counts().into_iter().map(|(name, n)| (base_name(name), n)).collect();
    failures.push(("base_not_attempted", (params.base as u64).saturating_sub(fleet.settled())));
    failures.push(("base_join_failed", load.base_join_failed.load(Relaxed)));
    failures.push(("base_lost_deliveries", base_expected.saturating_sub(base_deliveries)));
    failures.push(("base_extra_deliveries", base_deliveries.saturating_sub(base_expected)));
    failures.extend(load.churn.counts().into_iter().map(|(name, n)| (churn_name(name), n)));
    failures.push(("churn_join_failed", load.churn_join_failed.load(Relaxed)));
    failures.push(("churn_close_timeouts", load.churn_close_timeouts.load(Relaxed)));
    failures.push(("churn_skipped", load.churn_skipped.load(Relaxed)));
    failures.push(("publisher_failed", publisher_failed.load(Relaxed)));
    failures.push(("tasks_not_stopped", u64::from(!load_stopped) + u64::from(!base_stopped)));
    Ok(SoakRun {
        samples,
        idle: [idle_before, idle_after],
        idle_wait_s,
        base_ready: load.base_ready.load(Relaxed),
        churn_opened: load.churn_opened.load(Relaxed),
        churn_clean: load.churn_clean.load(Relaxed),
        churn_dropped: load.churn_dropped.load(Relaxed),
        published,
        acked: load.acked.load(Relaxed),
        ack_timeouts: load.ack_timeouts.load(Relaxed),
        base_expected,
        base_deliveries,
        churn_deliveries: load.churn_delivered.load(Relaxed),
        latency: load.latency.summary(),
        server_cpu_s: super::cpu_delta(cpu_start, cpu_end),
        load_s,
        failures,
        first_error: fleet.failures.first_error().or_else(|| load.churn.first_error()),
    })
}

/// The base's failure counters, named apart from the churn's.
fn base_name(name: &'static str) -> &'static str {
    match name {
        "refused" => "base_refused",
        "connect_timed_out" => "base_connect_timed_out",
        "connect_failed" => "base_connect_failed",
        "closed" => "base_closed",
        "protocol_errors" => "base_protocol_errors",
        "http_errors" => "base_http_errors",
        "stalls" => "base_stalls",
        other => other,
    }
}

/// The churn's failure counters, named apart from the base's.
fn churn_name(name: &'static str) -> &'static str {
    match name {
        "refused" => "churn_refused",
        "connect_timed_out" => "churn_connect_timed_out",
        "connect_failed" => "churn_connect_failed",
        "closed" => "churn_closed",
        "protocol_errors" => "churn_protocol_errors",
        "http_errors" => "churn_http_errors",
        "stalls" => "churn_stalls",
        other => other,
    }
}

/// One reading of the server with (supposedly) no client.
async fn idle(ctx: &Context) -> Idle {
    let (rss_kib, fds, threads) = (ctx.probe.rss_kib(), ctx.probe.open_fds(), ctx.probe.threads());
    let page = scrape::fetch(ctx.target.addr(), Duration::from_secs(5)).await.ok();
    let gauge = |name| page.as_deref().and_then(|p| scrape::gauge_sum(p, name));
    Idle {
        rss_kib,
        fds,
        threads,
        sockets: gauge("switchboard_sockets"),
        sessions: gauge("switchboard_sessions"),
    }
}

/// Waits until the node reports no socket and no session (or [`IDLE_LIMIT`] passed), then reads it
/// once more a second later.
async fn wait_idle(ctx: &Context) -> Idle {
    let deadline = clock::now_ns() + clock::ns(IDLE_LIMIT);
    loop {
        let reading = idle(ctx).await;
        let gone = reading.sockets == Some(0.0) && reading.sessions == Some(0.0);
        if gone || clock::now_ns() >= deadline {
            // Let the kernel and the node finish closing what the last clients left.
            tokio::time::sleep(Duration::from_secs(1)).await;
            return idle(ctx).await;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Starts `churn_rate` clients a second until the stop, each in its own task on `tracker`.
async fn churn(
    target: Arc<Target>,
    params: SoakLoad,
    load: Arc<Load>,
    joins: Arc<[Vec<u8>]>,
    tracker: TaskTracker,
    stop: CancellationToken,
) {
    if params.churn_rate <= 0.0 {
        return;
    }
    let permits = Arc::new(Semaphore::new(params.churn_max.max(1)));
    let start = clock::now_ns();
    for i in 0_u64.. {
        let at = clock::instant(start + (i as f64 * 1e9 / params.churn_rate) as u64);
        tokio::select! {
            () = tokio::time::sleep_until(at) => {}
            () = stop.cancelled() => return,
        }
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            load.churn_skipped.fetch_add(1, Relaxed);
            continue;
        };
        let join = joins[i as usize % joins.len()].clone();
        let abrupt = params.abrupt_every > 0 && i % params.abrupt_every == 0;
        let polling = params.polling_every > 0 && i % params.polling_every == 0;
        let (target, load, stop, params) = (target.clone(), load.clone(), stop.clone(), params.clone());
        tracker.spawn(async move {
            if polling {
                churn_one::<PollingConn>(&target, &params, &load, join, abrupt, &stop).await;
            } else {
                churn_one::<Conn>(&target, &params, &load, join, abrupt, &stop).await;
            }
            drop(permit);
        });
    }
}

/// One churning client: connect, join, receive for `churn_hold` (or until the stop), leave.
async fn churn_one<C: Connection>(
    target: &Target,
    params: &SoakLoad,
    load: &Arc<Load>,
    join: Vec<u8>,
    abrupt: bool,
    stop: &CancellationToken,
) {
    // Not cut short by the stop (the open has its own timeout): a session half opened and then
    // abandoned would hold the node until its ping timeout.
    let mut conn = match C::open(target, params.timeout).await {
        Ok(conn) => conn,
        Err(e) => return load.churn.opening(&e),
    };
    load.churn_opened.fetch_add(1, Relaxed);
    let mut call = Call::new(join, clock::ns(params.timeout));
    // Stopped or not, a client that got this far leaves as planned, so the node ends up idle
    // without waiting for the ping timeouts of sessions the stop would otherwise abandon.
    let joined = match conn.drive(&mut call, stop.cancelled()).await {
        Ok(Outcome::Finished) if call.answered() => true,
        Ok(Outcome::Finished) => {
            load.churn_join_failed.fetch_add(1, Relaxed);
            false
        }
        Ok(Outcome::Interrupted) => false,
        Err(e) => return load.churn.running(&e),
    };
    if joined {
        let mut receiver = Receiver { load: load.clone(), base: false, rank: 0 };
        let hold = async {
            tokio::select! {
                () = tokio::time::sleep(params.churn_hold) => {}
                () = stop.cancelled() => {}
            }
        };
        if let Err(e) = conn.drive(&mut receiver, hold).await {
            return load.churn.running(&e);
        }
    }
    if abrupt {
        drop(conn);
        load.churn_dropped.fetch_add(1, Relaxed);
        return;
    }
    match tokio::time::timeout(params.timeout, conn.close()).await {
        Ok(Ok(())) => {
            load.churn_clean.fetch_add(1, Relaxed);
        }
        Ok(Err(e)) => load.churn.running(&e),
        Err(_) => {
            load.churn_close_timeouts.fetch_add(1, Relaxed);
        }
    }
}

/// The publisher's connection: broadcasts until the stop, then waits for the acks still due.
async fn publish(
    target: Arc<Target>,
    params: SoakLoad,
    load: Arc<Load>,
    failed: Arc<AtomicU64>,
    stop: CancellationToken,
) {
    let mut conn = match Conn::open(&target, params.timeout).await {
        Ok(conn) => conn,
        Err(e) => {
            load.churn.opening(&e);
            failed.fetch_add(1, Relaxed);
            return;
        }
    };
    let data = Value::from(wire::payload(params.payload, true));
    let template = |room: Option<String>| {
        let mut spec = Vec::new();
        if let Some(room) = room {
            spec.push(("room".to_owned(), Value::from(room)));
        }
        spec.push(("event".to_owned(), Value::from("msg")));
        spec.push(("data".to_owned(), data.clone()));
        EventTemplate::stamped("broadcast", &[Value::Object(spec)])
    };
    let mut publisher = Publisher {
        load: load.clone(),
        all: template(None),
        rooms: (0..params.rooms).map(|r| template(Some(room_name(r)))).collect(),
        all_every: params.all_every,
        interval: (1e9 / params.broadcast_rate) as u64,
        start: None,
        sent: 0,
        limit: u64::MAX,
        acks: AckTracker::default(),
        timeout: clock::ns(params.timeout),
    };
    let mut result = conn.drive(&mut publisher, stop.cancelled()).await;
    if result.is_ok() {
        publisher.limit = publisher.sent;
        result = conn.drive(&mut publisher, tokio::time::sleep(params.timeout + DRAIN)).await;
    }
    if let Err(e) = result {
        load.churn.running(&e);
        failed.fetch_add(1, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_other_broadcast_goes_to_all_and_the_rest_visit_each_room_in_turn() {
        let seq: Vec<Audience> = (0..8).map(|k| audience(k, 2, 3)).collect();
        use Audience::{All, Room};
        assert_eq!(seq, [All, Room(0), All, Room(1), All, Room(2), All, Room(0)]);
        let quarter: Vec<Audience> = (0..6).map(|k| audience(k, 4, 20)).collect();
        assert_eq!(quarter, [All, Room(0), Room(1), Room(2), All, Room(3)]);
        assert_eq!(audience(7, 1, 5), All);
        assert_eq!(audience(7, 0, 5), Room(2));
    }

    #[test]
    fn the_base_expects_each_broadcast_once_per_member_of_its_audience() -> Result<(), SetupError> {
        let load = Load::new(2, 1)?;
        load.base_ready.store(10, Relaxed);
        load.members[0].store(6, Relaxed);
        load.members[1].store(4, Relaxed);
        load.sent_all.store(3, Relaxed);
        load.sent_room[0].store(2, Relaxed);
        load.sent_room[1].store(1, Relaxed);
        // 3 × 10 to all, 2 × 6 to room 0, 1 × 4 to room 1.
        assert_eq!(load.base_expected(), 30 + 12 + 4);
        Ok(())
    }
}
