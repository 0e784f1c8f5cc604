//! Opening many connections: at most `in_flight` handshakes at once and, if asked, at most `rate` new
//! ones per second; each connection that opens runs the scenario's task in its own tokio task.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::driver::Connection;
use crate::failures::Failures;
use crate::latency::Recorder;
use crate::progress::Progress;
use crate::target::Target;
use crate::{SetupError, clock};

/// How to open the connections.
#[derive(Debug, Clone, serde::Serialize)]
pub struct OpenPlan {
    /// How many.
    pub connections: usize,
    /// Handshakes in progress at most.
    pub in_flight: usize,
    /// New connections per second at most (`None`: as fast as `in_flight` allows).
    pub rate: Option<f64>,
    /// Time one handshake may take.
    #[serde(serialize_with = "seconds")]
    pub timeout: Duration,
    /// Time all of them may take; connections not attempted by then are reported.
    #[serde(serialize_with = "seconds")]
    pub limit: Duration,
}

/// Serializes a duration as seconds.
pub fn seconds<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

/// Counters of a set of connections, shared with their tasks.
#[derive(Debug)]
pub struct Fleet {
    /// How connections failed.
    pub failures: Failures,
    /// Time from starting a connection to its CONNECT answer.
    pub connect_latency: Recorder,
    opened: AtomicU64,
    settled: AtomicU64,
    first_attempt_ns: AtomicU64,
    last_settled_ns: AtomicU64,
}

impl Fleet {
    /// Empty counters; `shards` sizes the latency recorder.
    pub fn new(shards: usize) -> Result<Arc<Self>, SetupError> {
        Ok(Arc::new(Self {
            failures: Failures::default(),
            connect_latency: Recorder::new(shards)?,
            opened: AtomicU64::new(0),
            settled: AtomicU64::new(0),
            first_attempt_ns: AtomicU64::new(u64::MAX),
            last_settled_ns: AtomicU64::new(0),
        }))
    }

    /// Connections that opened.
    pub fn opened(&self) -> u64 {
        self.opened.load(Relaxed)
    }

    /// Connections whose attempt ended, opened or failed.
    pub fn settled(&self) -> u64 {
        self.settled.load(Relaxed)
    }

    /// Seconds from the first attempt to the last attempt's end.
    pub fn open_seconds(&self) -> f64 {
        let (first, last) = (self.first_attempt_ns.load(Relaxed), self.last_settled_ns.load(Relaxed));
        if first == u64::MAX || last < first { 0.0 } else { (last - first) as f64 / 1e9 }
    }

    /// Waits until `n` attempts have ended or `limit` passed (false then).
    pub async fn wait_settled(&self, n: u64, limit: Duration, progress: &Progress) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let settled = self.settled();
            progress.set(settled);
            if settled >= n {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Opens connections per `plan`, calling `run(rank, conn)` in a task for each one that opens; `rank`
    /// numbers the opened ones from 0. Returns at once; the tasks are tracked by `tracker`.
    pub fn launch<C, F, Fut>(
        self: &Arc<Self>,
        target: &Arc<Target>,
        plan: &OpenPlan,
        tracker: &TaskTracker,
        stop: &CancellationToken,
        run: F,
    ) where
        C: Connection,
        F: Fn(u64, C) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let (fleet, target, plan, tasks, stop) =
            (self.clone(), target.clone(), plan.clone(), tracker.clone(), stop.clone());
        let run = Arc::new(run);
        tracker.spawn(async move {
            let permits = Arc::new(Semaphore::new(plan.in_flight.max(1)));
            let start = clock::now_ns();
            fleet.first_attempt_ns.store(start, Relaxed);
            for i in 0..plan.connections {
                if let Some(rate) = plan.rate.filter(|r| *r > 0.0) {
                    let at = clock::instant(start + (i as f64 * 1e9 / rate) as u64);
                    tokio::select! {
                        () = tokio::time::sleep_until(at) => {}
                        () = stop.cancelled() => return,
                    }
                }
                let permit = tokio::select! {
                    permit = permits.clone().acquire_owned() => permit,
                    () = stop.cancelled() => return,
                };
                let Ok(permit) = permit else { return };
                let (fleet, target, run, timeout) =
                    (fleet.clone(), target.clone(), run.clone(), plan.timeout);
                tasks.spawn(async move {
                    let started = clock::now_ns();
                    let result = C::open(&target, timeout).await;
                    drop(permit);
                    let now = clock::now_ns();
                    match result {
                        Ok(conn) => {
                            let rank = fleet.opened.fetch_add(1, Relaxed);
                            fleet.connect_latency.record(rank as usize, now - started);
                            fleet.settle(now);
                            run(rank, conn).await;
                        }
                        Err(e) => {
                            fleet.failures.opening(&e);
                            fleet.settle(now);
                        }
                    }
                });
            }
        });
    }

    fn settle(&self, now: u64) {
        self.last_settled_ns.fetch_max(now, Relaxed);
        self.settled.fetch_add(1, Relaxed);
    }
}
