//! `echo`: C connections send acked `echo` events at a fixed total rate R for D seconds (an open model:
//! send times are fixed in advance, latency counts from them), and the server's CPU per round trip.
//! With `closed_loop` each connection instead keeps exactly one request in flight and sends the next
//! as soon as the ack arrives (a closed model: the rate is whatever the server sustains, latency is
//! the round trip). [`run_over`] runs it over any [`Connection`]: `echo` is WebSocket, `polling`
//! long-polling.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use switchboard_protocol::socketio::Value;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{Context, check_open_files, cpu_delta, finish, per_million, sleep_until_ns, stop_all};
use crate::acks::{AckOutcome, AckTracker};
use crate::conn::Conn;
use crate::driver::{Behaviour, Connection, Hold, Outcome};
use crate::fleet::{Fleet, OpenPlan, seconds};
use crate::latency::Recorder;
use crate::outbox::Outbox;
use crate::procfs;
use crate::progress::Progress;
use crate::report::Report;
use crate::schedule::Schedule;
use crate::wire::{self, EventTemplate};
use crate::{SetupError, clock};

/// Parameters of `echo`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct EchoParams {
    /// How the connections are opened.
    #[serde(flatten)]
    pub open: OpenPlan,
    /// Echo requests per second, over all connections.
    pub rate: f64,
    /// Measured time.
    #[serde(serialize_with = "seconds")]
    pub duration: Duration,
    /// Time at the same rate before the measured window (not counted).
    #[serde(serialize_with = "seconds")]
    pub warmup: Duration,
    /// Bytes of the string argument.
    pub payload: usize,
    /// An ack later than this (from the scheduled send) is a timeout.
    #[serde(serialize_with = "seconds")]
    pub ack_timeout: Duration,
    /// One request in flight per connection, the next sent on the ack (`rate` is then unused).
    pub closed_loop: bool,
}

impl Default for EchoParams {
    fn default() -> Self {
        Self {
            open: OpenPlan {
                connections: 50,
                in_flight: 100,
                rate: None,
                timeout: Duration::from_secs(10),
                limit: Duration::from_secs(60),
            },
            rate: 5_000.0,
            duration: Duration::from_secs(10),
            warmup: Duration::from_secs(2),
            payload: 64,
            ack_timeout: Duration::from_secs(5),
            closed_loop: false,
        }
    }
}

/// Counters shared by the connection tasks.
#[derive(Debug)]
struct Stats {
    sent: AtomicU64,
    acked: AtomicU64,
    ack_timeouts: AtomicU64,
    unsent: AtomicU64,
    unexpected_acks: AtomicU64,
    bad_acks: AtomicU64,
    max_lag_ns: AtomicU64,
    done: AtomicU64,
    latency: Recorder,
    round_trip: Recorder,
}

/// When sending starts and over how many connections the rate is spread.
#[derive(Debug, Clone, Copy)]
struct Start {
    at: u64,
    slots: u64,
}

/// How a connection paces its requests.
enum Pace {
    /// The open model: send times fixed in advance.
    Open(Schedule),
    /// The closed model: one request in flight, the next sent on its ack, until `end`.
    Closed(ClosedLoop),
}

/// The closed model's clock for one connection.
#[derive(Debug, Clone, Copy)]
struct ClosedLoop {
    /// When to send the next request if none is in flight (the start, or after a timeout).
    next: Option<u64>,
    /// Requests sent from here on are measured.
    warmup_end: u64,
    /// No request is sent from here on.
    end: u64,
    /// `end` has passed: only the request in flight is still awaited.
    stopped: bool,
}

/// One connection's part of the run.
struct Echo {
    pace: Pace,
    acks: AckTracker,
    template: Arc<EventTemplate>,
    stats: Arc<Stats>,
    rank: usize,
    timeout: u64,
}

impl Behaviour for Echo {
    fn next_tick(&self) -> Option<u64> {
        let deadline = self.acks.next_deadline(self.timeout);
        let send = match &self.pace {
            Pace::Open(schedule) => schedule.peek().map(|p| p.at),
            Pace::Closed(closed) => closed.next.filter(|_| !closed.stopped),
        };
        match (send, deadline) {
            (Some(p), Some(d)) => Some(p.min(d)),
            (p, d) => p.or(d),
        }
    }

    fn on_tick(&mut self, now: u64, out: &mut Outbox) {
        if let Pace::Open(schedule) = &mut self.pace {
            while let Some(planned) = schedule.peek().filter(|p| p.at <= now) {
                let id = self.acks.issue(planned.at, now, planned.measured);
                let template = &self.template;
                out.push_with(|buf| template.write(buf, id, 0));
                if planned.measured {
                    self.stats.sent.fetch_add(1, Relaxed);
                    self.stats.max_lag_ns.fetch_max(now - planned.at, Relaxed);
                }
                schedule.advance();
            }
        }
        let expired = self.acks.expire(now, self.timeout);
        self.stats.ack_timeouts.fetch_add(expired, Relaxed);
        // Closed: the first request is due, or the one in flight timed out and the loop goes on.
        if let Pace::Closed(closed) = &mut self.pace
            && self.acks.waiting() == 0
            && closed.next.is_none_or(|at| at <= now)
        {
            closed.next = None;
            self.send_closed(now, out);
        }
    }

    fn on_message(&mut self, text: &[u8], now: u64, out: &mut Outbox) {
        let Some(id) = wire::ack_id(text) else { return };
        match self.acks.ack(id, now, self.timeout) {
            AckOutcome::Answered { latency, round_trip, measured: true } => {
                self.stats.acked.fetch_add(1, Relaxed);
                self.stats.latency.record(self.rank, latency);
                self.stats.round_trip.record(self.rank, round_trip);
                if text.len() != self.template.echo_ack_len(id) {
                    self.stats.bad_acks.fetch_add(1, Relaxed);
                }
            }
            AckOutcome::Answered { measured: false, .. } | AckOutcome::Late { measured: false } => {}
            AckOutcome::Late { measured: true } => {
                self.stats.ack_timeouts.fetch_add(1, Relaxed);
            }
            AckOutcome::Unknown => {
                self.stats.unexpected_acks.fetch_add(1, Relaxed);
                return;
            }
        }
        if matches!(self.pace, Pace::Closed(_)) && self.acks.waiting() == 0 {
            self.send_closed(now, out);
        }
    }

    fn finished(&self) -> bool {
        let sending = match &self.pace {
            Pace::Open(schedule) => schedule.peek().is_some(),
            Pace::Closed(closed) => !closed.stopped,
        };
        !sending && self.acks.waiting() == 0
    }
}

impl Echo {
    /// The closed model's next request, sent at `now` (so latency is the round trip), unless the
    /// run is over.
    fn send_closed(&mut self, now: u64, out: &mut Outbox) {
        let Pace::Closed(closed) = &mut self.pace else { return };
        if now >= closed.end {
            closed.stopped = true;
            return;
        }
        let measured = now >= closed.warmup_end;
        let id = self.acks.issue(now, now, measured);
        let template = &self.template;
        out.push_with(|buf| template.write(buf, id, 0));
        if measured {
            self.stats.sent.fetch_add(1, Relaxed);
        }
    }

    /// What is lost when the connection dies: measured sends not made yet, and requests left unanswered.
    fn abandon(&mut self) {
        let mut unsent = 0;
        match &mut self.pace {
            Pace::Open(schedule) => {
                while let Some(p) = schedule.peek() {
                    unsent += u64::from(p.measured);
                    schedule.advance();
                }
            }
            // A closed loop has no planned sends: what it would have sent depends on the answers.
            Pace::Closed(closed) => closed.stopped = true,
        }
        self.stats.unsent.fetch_add(unsent, Relaxed);
        let waiting = self.acks.expire(u64::MAX, 0);
        self.stats.ack_timeouts.fetch_add(waiting, Relaxed);
    }
}

/// Runs `echo` (over WebSocket).
pub async fn run(ctx: &Context, params: &EchoParams) -> Result<Report, SetupError> {
    run_over::<Conn>(ctx, params, "echo").await
}

/// Runs the echo open model over connections of type `C`, reported as `scenario`.
pub async fn run_over<C: Connection>(
    ctx: &Context,
    params: &EchoParams,
    scenario: &'static str,
) -> Result<Report, SetupError> {
    let n = params.open.connections;
    check_open_files(n * C::SOCKETS)?;
    if !params.closed_loop && (!params.rate.is_finite() || params.rate <= 0.0) {
        return Err(SetupError::Param("--rate must be positive".into()));
    }
    let fleet = Fleet::new(ctx.shards)?;
    let stats = Arc::new(Stats {
        sent: AtomicU64::new(0),
        acked: AtomicU64::new(0),
        ack_timeouts: AtomicU64::new(0),
        unsent: AtomicU64::new(0),
        unexpected_acks: AtomicU64::new(0),
        bad_acks: AtomicU64::new(0),
        max_lag_ns: AtomicU64::new(0),
        done: AtomicU64::new(0),
        latency: Recorder::new(ctx.shards)?,
        round_trip: Recorder::new(ctx.shards)?,
    });
    let template = Arc::new(EventTemplate::new("echo", &[Value::from(wire::payload(params.payload, false))]));
    let (tracker, stop) = (TaskTracker::new(), CancellationToken::new());
    let (start_tx, start_rx) = watch::channel(None::<Start>);
    let params_json = serde_json::to_value(params).unwrap_or_default();
    let mut report = Report::new(scenario, C::url(&ctx.target), ctx.probe.pid(), params_json);

    let (rate, warmup, duration, timeout) =
        (params.rate, clock::ns(params.warmup), clock::ns(params.duration), clock::ns(params.ack_timeout));
    let closed_loop = params.closed_loop;
    let (task_fleet, task_stats, task_stop) = (fleet.clone(), stats.clone(), stop.clone());
    fleet.launch(&ctx.target, &params.open, &tracker, &stop, move |rank, mut conn: C| {
        let (fleet, stats, stop, template) =
            (task_fleet.clone(), task_stats.clone(), task_stop.clone(), template.clone());
        let mut start_rx = start_rx.clone();
        async move {
            let mut hold = Hold;
            let waited = conn.drive(&mut hold, async {
                let _ = start_rx.wait_for(Option::is_some).await;
            });
            let connected = match waited.await {
                Ok(_) => true,
                Err(e) => {
                    fleet.failures.running(&e);
                    // Still take the slot, so its planned sends count as unsent rather than vanish.
                    let _ = start_rx.wait_for(Option::is_some).await;
                    false
                }
            };
            let start = *start_rx.borrow();
            if let Some(Start { at, slots }) = start.filter(|s| rank < s.slots) {
                let pace = match closed_loop {
                    false => Pace::Open(Schedule::new(at, rate, slots, rank, warmup, duration)),
                    true => Pace::Closed(ClosedLoop {
                        next: Some(at),
                        warmup_end: at + warmup,
                        end: at + warmup + duration,
                        stopped: false,
                    }),
                };
                let acks = AckTracker::default();
                let mut echo =
                    Echo { pace, acks, template, stats: stats.clone(), rank: rank as usize, timeout };
                if !connected {
                    echo.abandon();
                    stats.done.fetch_add(1, Relaxed);
                    return;
                }
                let result = conn.drive(&mut echo, stop.cancelled()).await;
                stats.done.fetch_add(1, Relaxed);
                match result {
                    Ok(Outcome::Finished) => {}
                    Ok(Outcome::Interrupted) => return echo.abandon(),
                    Err(e) => {
                        echo.abandon();
                        return fleet.failures.running(&e);
                    }
                }
            } else if !connected {
                return;
            }
            if let Err(e) = conn.drive(&mut Hold, stop.cancelled()).await {
                fleet.failures.running(&e);
            }
        }
    });

    let progress = Progress::new(n as u64, "connecting");
    let all_settled = fleet.wait_settled(n as u64, params.open.limit, &progress).await;
    progress.finish();
    let slots = fleet.opened();
    let start = clock::now_ns() + clock::ns(Duration::from_millis(200));
    let _ = start_tx.send(Some(Start { at: start, slots }));

    let measured_from = start + warmup;
    sleep_until_ns(measured_from).await;
    let (cpu_before, own_before) = (ctx.probe.cpu_seconds(), procfs::own_cpu_seconds());
    let sys_before = ctx.probe.sys_cpu_seconds();
    let end = measured_from + duration;
    let limit = end + timeout + clock::ns(Duration::from_secs(2));
    let progress = Progress::new(params.duration.as_secs().max(1), "echo (s)");
    let mut all_done = true;
    while stats.done.load(Relaxed) < slots {
        let now = clock::now_ns();
        if now >= limit {
            all_done = false;
            break;
        }
        progress.set(now.saturating_sub(measured_from) / 1_000_000_000);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    progress.finish();
    let (cpu_after, own_after) = (ctx.probe.cpu_seconds(), procfs::own_cpu_seconds());
    let sys_after = ctx.probe.sys_cpu_seconds();
    let rss = ctx.probe.rss_kib();
    let stopped = stop_all(&stop, &tracker).await;

    let acked = stats.acked.load(Relaxed);
    let server_cpu = cpu_delta(cpu_before, cpu_after);
    let f = &mut report.figures;
    f.push("connections", slots as f64);
    f.push("sent", stats.sent.load(Relaxed) as f64);
    f.push("acked", acked as f64);
    f.push("throughput_per_s", acked as f64 / params.duration.as_secs_f64());
    let l = stats.latency.summary();
    f.push("latency_p50_ms", l.p50_ms);
    f.push("latency_p99_ms", l.p99_ms);
    f.push("latency_p999_ms", l.p999_ms);
    f.push("latency_max_ms", l.max_ms);
    f.push("latency_mean_ms", l.mean_ms);
    let rt = stats.round_trip.summary();
    f.push("rtt_p50_ms", rt.p50_ms);
    f.push("rtt_p99_ms", rt.p99_ms);
    f.push("rtt_p999_ms", rt.p999_ms);
    f.push("send_lag_max_ms", stats.max_lag_ns.load(Relaxed) as f64 / 1e6);
    f.push_some("server_cpu_s", server_cpu);
    f.push_some("server_cpu_s_per_million", per_million(server_cpu, acked));
    f.push_some("server_sys_cpu_s_per_million", per_million(cpu_delta(sys_before, sys_after), acked));
    // The same, inverted: how goals per server CPU-second are stated.
    f.push_some("round_trips_per_server_cpu_s", server_cpu.filter(|s| *s > 0.0).map(|s| acked as f64 / s));
    f.push_some("client_cpu_s", cpu_delta(own_before, own_after));
    f.push_some("rss_kib", rss.map(|v| v as f64));

    report.failures.0 = fleet.failures.counts();
    report.failures.push("not_attempted", (n as u64).saturating_sub(fleet.settled()));
    report.failures.push("ack_timeouts", stats.ack_timeouts.load(Relaxed));
    report.failures.push("unsent", stats.unsent.load(Relaxed));
    report.failures.push("unexpected_acks", stats.unexpected_acks.load(Relaxed));
    report.failures.push("bad_acks", stats.bad_acks.load(Relaxed));
    finish(&mut report, &fleet.failures, all_settled && all_done && stopped);
    Ok(report)
}
