//! `connect`: open N connections (Engine.IO handshake + Socket.IO CONNECT to `/`), hold them answering
//! pings, and measure how long opening took and how much server memory each connection costs.

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{Context, check_open_files, finish, stop_all};
use crate::conn::Conn;
use crate::driver::Hold;
use crate::fleet::{Fleet, OpenPlan, seconds};
use crate::procfs;
use crate::progress::Progress;
use crate::report::Report;
use crate::{SetupError, clock};

/// Parameters of `connect`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ConnectParams {
    /// How the connections are opened.
    #[serde(flatten)]
    pub open: OpenPlan,
    /// How long all connections are held open once the last one opened.
    #[serde(serialize_with = "seconds")]
    pub hold: Duration,
    /// Wait after the last connection opened before reading the server's memory (part of the hold).
    #[serde(serialize_with = "seconds")]
    pub settle: Duration,
}

impl Default for ConnectParams {
    fn default() -> Self {
        Self {
            open: OpenPlan {
                connections: 5_000,
                in_flight: 100,
                rate: None,
                timeout: Duration::from_secs(10),
                limit: Duration::from_secs(60),
            },
            hold: Duration::from_secs(5),
            settle: Duration::from_secs(2),
        }
    }
}

/// Runs `connect`.
pub async fn run(ctx: &Context, params: &ConnectParams) -> Result<Report, SetupError> {
    let n = params.open.connections;
    check_open_files(n)?;
    let fleet = Fleet::new(ctx.shards)?;
    let (tracker, stop) = (TaskTracker::new(), CancellationToken::new());
    let params_json = serde_json::to_value(params).unwrap_or_default();
    let mut report = Report::new("connect", ctx.target.url(), ctx.probe.pid(), params_json);

    let rss_before = ctx.probe.rss_kib();
    let (cpu_before, own_before) = (ctx.probe.cpu_seconds(), procfs::own_cpu_seconds());
    let sys_before = ctx.probe.sys_cpu_seconds();
    let progress = Progress::new(n as u64, "connecting");
    let (task_fleet, task_stop) = (fleet.clone(), stop.clone());
    fleet.launch(&ctx.target, &params.open, &tracker, &stop, move |_rank, mut conn: Conn| {
        let (fleet, stop) = (task_fleet.clone(), task_stop.clone());
        async move {
            if let Err(e) = conn.drive(&mut Hold, stop.cancelled()).await {
                fleet.failures.running(&e);
            }
        }
    });
    let limit = params.open.limit
        + params.open.rate.map_or(Duration::ZERO, |r| Duration::from_secs_f64(n as f64 / r));
    let all_settled = fleet.wait_settled(n as u64, limit, &progress).await;
    progress.finish();
    let open_seconds = fleet.open_seconds();
    let opened = fleet.opened();
    let (cpu_open, own_open) = (ctx.probe.cpu_seconds(), procfs::own_cpu_seconds());
    let sys_open = ctx.probe.sys_cpu_seconds();

    let held_from = clock::now_ns();
    let settle = params.settle.min(params.hold);
    tokio::time::sleep(settle).await;
    let rss_after = ctx.probe.rss_kib();
    tokio::time::sleep(params.hold - settle).await;
    let held = (clock::now_ns() - held_from) as f64 / 1e9;
    let stopped = stop_all(&stop, &tracker).await;

    let f = &mut report.figures;
    f.push("connections", n as f64);
    f.push("connected", opened as f64);
    f.push("connect_time_s", open_seconds);
    f.push_some("connects_per_s", (open_seconds > 0.0).then(|| opened as f64 / open_seconds));
    let latency = fleet.connect_latency.summary();
    f.push("connect_p50_ms", latency.p50_ms);
    f.push("connect_p99_ms", latency.p99_ms);
    f.push("connect_max_ms", latency.max_ms);
    f.push_some("rss_before_kib", rss_before.map(|v| v as f64));
    f.push_some("rss_after_kib", rss_after.map(|v| v as f64));
    let per_conn = match (rss_before, rss_after) {
        (Some(b), Some(a)) if opened > 0 => Some((a as f64 - b as f64) / opened as f64),
        _ => None,
    };
    f.push_some("rss_per_connection_kib", per_conn);
    f.push_some("server_cpu_s_connecting", super::cpu_delta(cpu_before, cpu_open));
    f.push_some("server_sys_cpu_s_connecting", super::cpu_delta(sys_before, sys_open));
    f.push_some("client_cpu_s_connecting", super::cpu_delta(own_before, own_open));
    f.push("held_s", held);

    report.failures.0 = fleet.failures.counts();
    report.failures.push("not_attempted", (n as u64).saturating_sub(fleet.settled()));
    finish(&mut report, &fleet.failures, all_settled && stopped);
    Ok(report)
}
