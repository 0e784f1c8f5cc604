//! The driver: one task per Redis instance, owning its two connections.
//!
//! - The **subscriber** connection (RESP3) carries SUBSCRIBE/UNSUBSCRIBE, pipelined in batches so
//!   each is acknowledged in order; messages arrive as push frames and are handed to the
//!   [`Inbound`] right on the connection's read task, without another hop.
//! - The **publisher** connection carries PUBLISH, one pipeline in flight at a time: messages that
//!   queue meanwhile go out together in the next one, so a burst costs few round trips and keeps
//!   each channel's order.
//! - The instance counts as connected (publishes accepted, `is_connected`) once both connections
//!   are up and every wanted channel is subscribed again: a request sent earlier could miss its
//!   answers.
//! - Each acknowledged SUBSCRIBE batch settles the generation of subscription changes it completes
//!   (`Instance::confirmations`), which releases the joins waiting for it; going down settles
//!   everything asked for so far (nothing waits on a dead instance).
//! - Either connection failing (closed, reset, a timeout, a failed ping) ends the session: the
//!   instance is marked down (publishes fail at once), queued messages are dropped and counted, the
//!   node is told ([`Inbound::disconnected`]: its pending requests fail at once), and the driver
//!   reconnects (at once, then with backoff). A new session subscribes every channel
//!   wanted at that moment, then calls [`Inbound::connected`] so the node announces itself and
//!   membership is restored within a round trip.
//!
//! The driver stops when every handle is gone (the publish queue closes), after writing what was
//! already queued if the instance is up.

use std::collections::{HashSet, VecDeque};
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, ErrorKind, PushInfo, PushKind, RedisError, RedisResult, Value};
use switchboard_adapter::cluster::Inbound;
use tokio::sync::{Notify, mpsc};
use tokio::time::{Instant, MissedTickBehavior};

use crate::config::RedisConfig;
use crate::instance::{Instance, Outgoing, add, crossed_power_of_two};

type Pending = Pin<Box<dyn Future<Output = RedisResult<()>> + Send>>;

/// A session that lasted less than this counts as a failed attempt (backoff), not a lost connection
/// retried at once: a server that accepts and drops connections must not be hammered.
const STABLE: Duration = Duration::from_secs(1);

/// The task owning one instance's connections; see the module docs.
pub(crate) struct Driver {
    pub(crate) instance: Arc<Instance>,
    pub(crate) client: redis::Client,
    pub(crate) config: RedisConfig,
    pub(crate) inbound: Inbound,
    pub(crate) queue: mpsc::Receiver<Outgoing>,
}

/// Both connections of one session, and the signal either sends when it dies.
struct Session {
    subscriber: MultiplexedConnection,
    publisher: MultiplexedConnection,
    lost: Arc<Notify>,
}

/// Why a session ended.
enum End {
    /// Every handle is gone: stop.
    Closed,
    /// The connection failed: reconnect.
    Lost(String),
}

#[derive(Clone, Copy)]
enum Op {
    Subscribe,
    Unsubscribe,
}

impl Driver {
    pub(crate) async fn run(mut self) {
        let address = self.instance.address.clone();
        let mut failures: u32 = 0;
        let mut ever_up = false;
        loop {
            match self.connect().await {
                Ok(session) => {
                    if ever_up {
                        add(&self.instance.counters.reconnects, 1);
                    }
                    if ever_up {
                        tracing::warn!(address = &*address, "redis instance reconnected; resubscribing");
                    } else {
                        tracing::info!(address = &*address, "redis instance connected");
                    }
                    ever_up = true;
                    failures = 0;
                    let started = Instant::now();
                    let end = self.serve(session).await;
                    self.set_down();
                    let reason = match end {
                        End::Closed => return,
                        End::Lost(reason) => reason,
                    };
                    // After the down flag: a request opened from now on is refused instead.
                    self.inbound.disconnected();
                    tracing::warn!(address = &*address, reason, "redis instance lost; reconnecting");
                    self.record_error(&reason);
                    if started.elapsed() < STABLE {
                        failures = 1;
                    }
                }
                Err(e) => {
                    failures = failures.saturating_add(1);
                    let n = add(&self.instance.counters.connect_failures, 1);
                    let loud = failures == 1 || crossed_power_of_two(n, 1);
                    let refusal = refusal(&e);
                    match refusal {
                        Some(why) => {
                            if loud {
                                tracing::error!(address = &*address, error = %e, failures,
                                    "redis refused this node ({why}): check the URL's user and password, the ACL, and the TLS CA");
                            }
                            self.record_error(&format!("{why}: {e}"));
                        }
                        None => {
                            if loud {
                                tracing::warn!(address = &*address, error = %e, failures, "redis connection attempt failed");
                            }
                            self.record_error(&e.to_string());
                        }
                    }
                    let refused = refusal.is_some();
                    self.instance.link.send_modify(|l| {
                        l.failed_attempts += 1;
                        l.refused = refused;
                    });
                }
            }
            if self.queue.is_closed() && self.queue.is_empty() {
                return;
            }
            let delay = match failures {
                0 => Duration::ZERO,
                n => self.config.backoff(n, jitter()),
            };
            if !self.wait(delay).await {
                return;
            }
        }
    }

    async fn connect(&self) -> RedisResult<Session> {
        let lost = Arc::new(Notify::new());
        let base = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.config.connect_timeout))
            .set_response_timeout(Some(self.config.response_timeout));
        let on_push = receiver(self.inbound.clone(), self.instance.clone(), lost.clone());
        let subscriber = self
            .client
            .get_multiplexed_async_connection_with_config(&base.clone().set_push_sender(on_push))
            .await?;
        let signal = lost.clone();
        let on_push = move |info: PushInfo| -> Result<(), Infallible> {
            if info.kind == PushKind::Disconnection {
                signal.notify_one();
            }
            Ok(())
        };
        let publisher =
            self.client.get_multiplexed_async_connection_with_config(&base.set_push_sender(on_push)).await?;
        Ok(Session { subscriber, publisher, lost })
    }

    /// Runs one session until it fails or every handle is gone.
    async fn serve(&mut self, session: Session) -> End {
        let Session { subscriber, publisher, lost } = session;
        let mut active: HashSet<String> = HashSet::new();
        let mut outbox: VecDeque<(Op, String)> = VecDeque::new();
        // A new connection has no subscription: ask for everything wanted now.
        let mut target = {
            let mut subs = self.instance.subs();
            subs.dirty.clear();
            for channel in subs.wanted.keys() {
                active.insert(channel.clone());
                outbox.push_back((Op::Subscribe, channel.clone()));
            }
            subs.generation
        };
        // A subscription pipeline (or ping) in flight, and the generation it completes, if any.
        let mut subscribing: Option<(Pending, Option<u64>)> = None;
        let mut publishing: Option<(Pending, u64)> = None;
        // When each message of the pipeline in flight was queued (if a publish timer listens).
        let mut stamps: Vec<Instant> = Vec::new();
        let period = self.config.ping_interval;
        let mut ping = tokio::time::interval_at(Instant::now() + period, period);
        ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut announced = false;
        loop {
            if subscribing.is_none() {
                if outbox.is_empty() {
                    target = self.take_changes(&mut active, &mut outbox);
                }
                if outbox.is_empty() {
                    self.synced(target, &mut announced);
                } else {
                    let batch = self.subscribe_batch(&subscriber, &mut outbox);
                    subscribing = Some((batch, outbox.is_empty().then_some(target)));
                }
            }
            tokio::select! {
                () = lost.notified() => return End::Lost("connection closed".to_owned()),
                message = self.queue.recv(), if publishing.is_none() => match message {
                    None => return End::Closed,
                    Some(first) => publishing = Some(self.publish_batch(&publisher, first, &mut stamps)),
                },
                (result, n) = pending(&mut publishing) => {
                    publishing = None;
                    if let Err(reason) = self.published(n, result, &mut stamps) {
                        return End::Lost(reason);
                    }
                }
                (result, completes) = pending(&mut subscribing) => {
                    subscribing = None;
                    if let Err(e) = result {
                        if is_fatal(&e) {
                            return End::Lost(format!("subscriber: {e}"));
                        }
                        let n = add(&self.instance.counters.subscribe_errors, 1);
                        tracing::error!(address = &*self.instance.address, error = %e, count = n,
                            "redis refused a subscription change; messages on those channels may be missed");
                    }
                    // Settled now, not when the outbox next runs dry: steady churn must not
                    // keep earlier joins waiting.
                    if let Some(generation) = completes {
                        self.synced(generation, &mut announced);
                    }
                }
                () = self.instance.wake.notified(), if subscribing.is_none() => {}
                _ = ping.tick(), if subscribing.is_none() => {
                    let mut conn = subscriber.clone();
                    let ping: Pending = Box::pin(async move {
                        redis::cmd("PING").query_async::<Value>(&mut conn).await.map(drop)
                    });
                    subscribing = Some((ping, None));
                }
            }
        }
    }

    /// Every subscription change up to `generation` is acknowledged on this connection: release
    /// the joins waiting for it, and after a (re)connection open the instance for publishing and
    /// announce the node (its peers' answers come back on channels now live).
    fn synced(&self, generation: u64, announced: &mut bool) {
        self.instance.link.send_if_modified(|l| {
            let changed = l.synced != Some(generation);
            l.synced = Some(generation);
            changed
        });
        self.instance.confirmations.settle(generation);
        if !*announced {
            *announced = true;
            self.set_up();
            self.inbound.connected();
        }
    }

    /// Moves the wanted-set changes made since the last look into `outbox` as commands (a channel
    /// added and removed meanwhile costs nothing); returns the generation they bring us to.
    fn take_changes(&self, active: &mut HashSet<String>, outbox: &mut VecDeque<(Op, String)>) -> u64 {
        let mut subs = self.instance.subs();
        let subs = &mut *subs;
        for channel in subs.dirty.drain() {
            match (subs.wanted.contains_key(&channel), active.contains(&channel)) {
                (true, false) => {
                    active.insert(channel.clone());
                    outbox.push_back((Op::Subscribe, channel));
                }
                (false, true) => {
                    active.remove(&channel);
                    outbox.push_back((Op::Unsubscribe, channel));
                }
                _ => {}
            }
        }
        subs.generation
    }

    /// One pipeline of single-channel SUBSCRIBE/UNSUBSCRIBE commands (one channel per command, so
    /// each has exactly one reply and the redis crate matches replies to commands).
    fn subscribe_batch(&self, conn: &MultiplexedConnection, outbox: &mut VecDeque<(Op, String)>) -> Pending {
        let mut pipe = redis::pipe();
        let n = outbox.len().min(self.config.subscribe_batch);
        for (op, channel) in outbox.drain(..n) {
            let name = match op {
                Op::Subscribe => "SUBSCRIBE",
                Op::Unsubscribe => "UNSUBSCRIBE",
            };
            pipe.cmd(name).arg(channel).ignore();
        }
        let mut conn = conn.clone();
        Box::pin(async move { pipe.exec_async(&mut conn).await })
    }

    /// One pipeline of PUBLISH commands: `first` and whatever else is queued, up to the batch size.
    /// `stamps` gets each message's queueing time when a publish timer listens.
    fn publish_batch(
        &mut self,
        conn: &MultiplexedConnection,
        first: Outgoing,
        stamps: &mut Vec<Instant>,
    ) -> (Pending, u64) {
        let mut pipe = redis::pipe();
        let mut n: u64 = 0;
        let mut next = Some(first);
        let timed = self.config.publish_timer.is_enabled();
        while let Some(Outgoing { channel, payload, queued }) = next {
            pipe.cmd("PUBLISH").arg(channel).arg(payload.as_ref()).ignore();
            if timed {
                stamps.push(queued);
            }
            n += 1;
            next = match n < self.config.publish_batch as u64 {
                true => self.queue.try_recv().ok(),
                false => None,
            };
        }
        let mut conn = conn.clone();
        (Box::pin(async move { pipe.exec_async(&mut conn).await }), n)
    }

    /// Accounts for a finished publish pipeline of `n` messages (timing each from `stamps`, which
    /// it empties); `Err` if the connection is lost.
    fn published(&self, n: u64, result: RedisResult<()>, stamps: &mut Vec<Instant>) -> Result<(), String> {
        let counters = &self.instance.counters;
        let outcome = match result {
            Ok(()) => {
                add(&counters.published, n);
                let now = Instant::now();
                for queued in stamps.drain(..) {
                    self.config.publish_timer.observe(now.saturating_duration_since(queued));
                }
                Ok(())
            }
            Err(e) => {
                stamps.clear();
                let failed = add(&counters.failed, n);
                if crossed_power_of_two(failed, n) {
                    tracing::warn!(address = &*self.instance.address, error = %e, failed,
                        "redis publish pipeline failed; its messages are dropped");
                }
                if is_fatal(&e) { Err(format!("publisher: {e}")) } else { Ok(()) }
            }
        };
        self.instance.link.send_modify(|l| l.handled += n);
        outcome
    }

    fn set_up(&self) {
        self.instance.connected.store(true, Ordering::Release);
        self.instance.link.send_modify(|l| {
            l.connected = true;
            l.failed_attempts = 0;
        });
    }

    /// Marks the instance down, gives up the subscription changes not acknowledged (their joins
    /// stop waiting), and drops what is queued (counted as dropped while disconnected).
    fn set_down(&mut self) {
        self.instance.connected.store(false, Ordering::Release);
        // Read after the flag is cleared: a change recorded later sees the flag and waits for nothing.
        let generation = self.instance.subs().generation;
        self.instance.confirmations.settle(generation);
        self.instance.link.send_modify(|l| {
            l.connected = false;
            l.synced = None;
        });
        while let Ok(message) = self.queue.try_recv() {
            self.drop_queued(message);
        }
    }

    fn drop_queued(&self, message: Outgoing) {
        drop(message);
        add(&self.instance.counters.dropped_disconnected, 1);
        self.instance.link.send_modify(|l| l.handled += 1);
    }

    fn record_error(&self, reason: &str) {
        let reason: Arc<str> = reason.into();
        self.instance.link.send_modify(|l| l.last_error = Some(reason));
    }

    /// Sleeps `delay` while dropping what reaches the queue (publishes that raced the down flag);
    /// `false` when every handle is gone.
    async fn wait(&mut self, delay: Duration) -> bool {
        let sleep = tokio::time::sleep(delay);
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                () = &mut sleep => return true,
                message = self.queue.recv() => match message {
                    Some(message) => self.drop_queued(message),
                    None => return false,
                },
            }
        }
    }
}

/// The subscriber's push handler: messages go to the adapter, a disconnection ends the session.
fn receiver(
    inbound: Inbound,
    instance: Arc<Instance>,
    lost: Arc<Notify>,
) -> impl Fn(PushInfo) -> Result<(), Infallible> + Send + Sync + 'static {
    move |info: PushInfo| {
        match info.kind {
            PushKind::Message => {
                // [channel, payload]
                if let Some(Value::BulkString(payload)) = info.data.into_iter().nth(1) {
                    add(&instance.counters.received, 1);
                    inbound.receive(Bytes::from(payload));
                }
            }
            PushKind::Disconnection => lost.notify_one(),
            _ => {}
        }
        Ok(())
    }
}

/// Why a failed connection attempt was refused for this node's configuration, which retrying
/// cannot fix, if it was: authentication (wrong user or password: `WRONGPASS`, `NOAUTH`), an ACL
/// forbidding the handshake (`NOPERM`), or TLS (a certificate not trusted either way, TLS to a
/// plain port). The redis crate hands TLS failures over as I/O errors that keep only rustls'
/// message, so those are told apart by it.
pub(crate) fn refusal(e: &RedisError) -> Option<&'static str> {
    if e.kind() == ErrorKind::AuthenticationFailed || matches!(e.code(), Some("WRONGPASS" | "NOAUTH")) {
        return Some("authentication failed");
    }
    if e.code() == Some("NOPERM") {
        return Some("not permitted by the ACL");
    }
    let text = e.to_string();
    let tls = [
        "invalid peer certificate",
        "received fatal alert",
        "received corrupt message",
        "peer is incompatible",
    ];
    tls.iter().any(|rustls| text.contains(rustls)).then_some("TLS handshake failed")
}

/// Whether an error means the connection is unusable (anything but an error reply from Redis).
fn is_fatal(e: &RedisError) -> bool {
    !matches!(e.kind(), ErrorKind::Server(_) | ErrorKind::Extension)
}

/// Awaits the pending future, with what it carries (the generation a subscription batch
/// completes, the size of a publish batch), or never if there is none (a disabled `select!` branch).
async fn pending<T: Copy>(slot: &mut Option<(Pending, T)>) -> (RedisResult<()>, T) {
    match slot {
        Some((f, carried)) => (f.await, *carried),
        None => std::future::pending().await,
    }
}

/// A few pseudo-random bits for backoff jitter (no need for a real generator).
fn jitter() -> u32 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.subsec_nanos() >> 10)
}
