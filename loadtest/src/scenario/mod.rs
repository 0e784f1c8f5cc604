//! The scenarios (`connect`, `echo`, `fanout`, `polling`, and `soak`'s load) and what they share: the target, the server probe, and
//! the end of a run (stop every connection, wait for the tasks within a limit).

pub mod connect;
pub mod echo;
pub mod fanout;
pub mod polling;
pub mod soak;

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::procfs::{self, Probe};
use crate::report::Report;
use crate::target::Target;
use crate::{SetupError, clock};

/// What every scenario runs against.
#[derive(Debug, Clone)]
pub struct Context {
    /// The server's address.
    pub target: Arc<Target>,
    /// The server process, for CPU and memory.
    pub probe: Probe,
    /// Latency histogram shards (about the number of worker threads).
    pub shards: usize,
}

/// How long the connection tasks get to end after a stop.
const STOP_LIMIT: Duration = Duration::from_secs(10);

/// Stops every connection and waits for the tasks; false if some were still running at the limit.
async fn stop_all(stop: &CancellationToken, tracker: &TaskTracker) -> bool {
    stop.cancel();
    tracker.close();
    tokio::time::timeout(STOP_LIMIT, tracker.wait()).await.is_ok()
}

/// Refuses runs that would need more file descriptors than this process may open.
fn check_open_files(connections: usize) -> Result<(), SetupError> {
    if let Some(limit) = procfs::open_files_limit()
        && connections as u64 + 64 > limit
    {
        return Err(SetupError::Param(format!(
            "{connections} connections need more file descriptors than the limit of {limit} (ulimit -n)"
        )));
    }
    Ok(())
}

/// Sleeps until a clock reading.
async fn sleep_until_ns(at: u64) {
    tokio::time::sleep_until(clock::instant(at)).await;
}

/// Server CPU seconds between two readings, when both exist.
fn cpu_delta(before: Option<f64>, after: Option<f64>) -> Option<f64> {
    Some(after? - before?)
}

/// Per million events, when there were any.
fn per_million(total: Option<f64>, events: u64) -> Option<f64> {
    (events > 0).then(|| total.map(|t| t / events as f64 * 1e6)).flatten()
}

/// Adds the shared end-of-run fields to a report.
fn finish(report: &mut Report, failures: &crate::failures::Failures, complete: bool) {
    report.first_error = failures.first_error();
    report.complete &= complete;
}
