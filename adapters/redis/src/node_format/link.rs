//! The Node format's Redis connections: one subscriber and one publisher
//! [`ConnectionManager`](redis::aio::ConnectionManager) on a single Redis, as a Node server holds
//! its `subClient` and `pubClient`. Both reconnect by themselves (the redis crate's manager), and
//! the subscriber re-issues every SUBSCRIBE and PSUBSCRIBE after a reconnect, so this file holds
//! no reconnect loop of its own.
//!
//! Publishing never waits: messages go into a bounded queue drained by one task that pipelines
//! them (order kept per channel); a full queue drops and counts. Received messages are handed,
//! with their channel (and pattern), to the [`Dispatch`] on the connection's read path.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{AsyncConnectionConfig, ErrorKind, PushInfo, PushKind, RedisResult, Value};
use tokio::sync::{mpsc, oneshot};

use crate::driver::refusal;
use crate::instance::crossed_power_of_two;

/// Messages one pipeline carries at most.
const PUBLISH_BATCH: usize = 256;

/// How often an idle link checks that Redis answers.
const HEALTH_PERIOD: Duration = Duration::from_secs(1);

/// Where received messages go (the factory's namespace registry).
pub(crate) trait Dispatch: Send + Sync + 'static {
    /// A message on `channel`, received through the pattern subscription `pattern` if any.
    fn message(&self, pattern: Option<&[u8]>, channel: &[u8], payload: Bytes);
}

/// Counters of the link, monotonic.
#[derive(Debug, Default)]
pub(crate) struct LinkCounters {
    pub(crate) published: AtomicU64,
    pub(crate) dropped: AtomicU64,
    pub(crate) received: AtomicU64,
}

/// The two connections and the publish queue; see the module docs.
pub(crate) struct Link {
    /// Subscription changes, applied in order by one task (the subscriber connection's owner).
    subscriptions: mpsc::UnboundedSender<Change>,
    publisher: ConnectionManager,
    queue: mpsc::Sender<(String, Bytes)>,
    connected: Arc<AtomicBool>,
    pub(crate) counters: Arc<LinkCounters>,
}

impl Link {
    /// Starts both connections and their tasks; received messages go to `dispatch` while it
    /// lives. One connection attempt is made first: a refusal of this node's credentials or
    /// certificates is returned (retrying would not help); an unreachable Redis is not an error:
    /// the link starts disconnected and connects in the background.
    pub(crate) async fn open(
        client: redis::Client,
        dispatch: Weak<dyn Dispatch>,
        queue: usize,
        response_timeout: Duration,
    ) -> redis::RedisResult<Self> {
        let counters = Arc::new(LinkCounters::default());
        let connected = Arc::new(AtomicBool::new(false));
        let received = counters.clone();
        let on_push = move |info: PushInfo| -> Result<(), std::convert::Infallible> {
            let Some(dispatch) = dispatch.upgrade() else { return Ok(()) };
            let mut data = info.data.into_iter();
            let (pattern, channel, payload) = match info.kind {
                PushKind::Message => (None, data.next(), data.next()),
                PushKind::PMessage => (data.next(), data.next(), data.next()),
                _ => return Ok(()),
            };
            let (Some(Value::BulkString(channel)), Some(Value::BulkString(payload))) = (channel, payload)
            else {
                return Ok(());
            };
            let pattern = match pattern {
                Some(Value::BulkString(p)) => Some(p),
                _ => None,
            };
            received.received.fetch_add(1, Ordering::Relaxed);
            dispatch.message(pattern.as_deref(), &channel, Bytes::from(payload));
            Ok(())
        };
        let base = || {
            ConnectionManagerConfig::new()
                .set_response_timeout(Some(response_timeout))
                .set_connection_timeout(Some(response_timeout))
                .set_max_delay(Duration::from_secs(1))
        };
        let first = async {
            let config = AsyncConnectionConfig::new()
                .set_connection_timeout(Some(response_timeout))
                .set_response_timeout(Some(response_timeout));
            let mut conn = client.get_multiplexed_async_connection_with_config(&config).await?;
            redis::cmd("PING").query_async::<()>(&mut conn).await
        };
        match first.await {
            Ok(()) => connected.store(true, Ordering::Release),
            Err(e) if refusal(&e).is_some() => return Err(e),
            Err(e) => {
                tracing::warn!(error = %e, "redis (node format) unreachable at start-up: serving local clients, connecting in the background")
            }
        }
        let subscriber = ConnectionManager::new_lazy_with_config(
            client.clone(),
            base().set_push_sender(on_push).set_automatic_resubscription(),
        )?;
        let publisher = ConnectionManager::new_lazy_with_config(client, base())?;
        let (queue, rx) = mpsc::channel(queue);
        tokio::spawn(publish_loop(publisher.clone(), rx, counters.clone(), connected.clone()));
        let (subscriptions, changes) = mpsc::unbounded_channel();
        tokio::spawn(apply_changes(subscriber, changes));
        Ok(Self { subscriptions, publisher, queue, connected, counters })
    }

    /// Queues `payload` for `channel`; `false` (counted) when the queue is full or closed.
    pub(crate) fn publish(&self, channel: String, payload: Vec<u8>) -> bool {
        match self.queue.try_send((channel, Bytes::from(payload))) {
            Ok(()) => true,
            Err(_) => {
                let dropped = self.counters.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                if crossed_power_of_two(dropped, 1) {
                    tracing::warn!(
                        dropped,
                        "redis (node format): publish queue full or closed; message dropped"
                    );
                }
                false
            }
        }
    }

    /// Whether Redis answered the last publish pipeline or health ping (the connections
    /// reconnect on their own).
    pub(crate) fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Acquire)
    }

    /// `PUBSUB NUMSUB channel`: how many connections subscribe to it (Node's server count).
    pub(crate) async fn numsub(&self, channel: &str) -> redis::RedisResult<usize> {
        let mut conn = self.publisher.clone();
        let (_, count): (String, usize) = redis::cmd("PUBSUB")
            .arg("NUMSUB")
            .arg(channel)
            .query_async::<Vec<(String, usize)>>(&mut conn)
            .await?
            .into_iter()
            .next()
            .unwrap_or_default();
        Ok(count)
    }

    /// SUBSCRIBEs `channels` and PSUBSCRIBEs `pattern` (kept across reconnects); resolves once
    /// Redis confirmed them. Subscription changes run in the order they are asked for, so a
    /// namespace removed right after it was made ends unsubscribed.
    pub(crate) fn subscribe(
        &self,
        channels: Vec<String>,
        pattern: String,
    ) -> impl std::future::Future<Output = redis::RedisResult<()>> + Send + 'static {
        let (done, confirmed) = oneshot::channel();
        let sent = self.subscriptions.send(Change { subscribe: true, channels, pattern, done: Some(done) });
        async move {
            match (sent, confirmed.await) {
                (Ok(()), Ok(result)) => result,
                _ => Err(redis::RedisError::from((redis::ErrorKind::Client, "redis link closed"))),
            }
        }
    }

    /// Undoes [`subscribe`](Self::subscribe), after every change asked for before.
    pub(crate) fn unsubscribe(&self, channels: Vec<String>, pattern: String) {
        let _ = self.subscriptions.send(Change { subscribe: false, channels, pattern, done: None });
    }
}

/// One subscription change, applied in order by [`apply_changes`].
struct Change {
    subscribe: bool,
    channels: Vec<String>,
    pattern: String,
    done: Option<oneshot::Sender<redis::RedisResult<()>>>,
}

/// Applies subscription changes one after the other until the link is gone; a change Redis could
/// not take (it is away) is retried each [`HEALTH_PERIOD`] before the next one, so the wanted
/// subscriptions are in place once it is back (and the manager then keeps them across reconnects).
async fn apply_changes(mut conn: ConnectionManager, mut changes: mpsc::UnboundedReceiver<Change>) {
    while let Some(Change { subscribe, channels, pattern, done }) = changes.recv().await {
        let result = loop {
            let result = change(&mut conn, subscribe, &channels, &pattern).await;
            match &result {
                // Redis away (not a refusal, not an error reply): again once it may be back,
                // unless the link is gone.
                Err(e)
                    if !changes.is_closed()
                        && refusal(e).is_none()
                        && !matches!(e.kind(), ErrorKind::Server(_)) =>
                {
                    tokio::time::sleep(HEALTH_PERIOD).await;
                }
                _ => break result,
            }
        };
        match done {
            Some(done) => {
                let _ = done.send(result);
            }
            None => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "redis (node format): unsubscribe failed");
                }
            }
        }
    }
}

/// One (un)subscription: the exact channels, then the pattern.
async fn change(
    conn: &mut ConnectionManager,
    subscribe: bool,
    channels: &[String],
    pattern: &str,
) -> RedisResult<()> {
    for channel in channels {
        match subscribe {
            true => conn.subscribe(channel).await?,
            false => conn.unsubscribe(channel).await?,
        }
    }
    match subscribe {
        true => conn.psubscribe(pattern).await,
        false => conn.punsubscribe(pattern).await,
    }
}

/// Drains the queue in pipelines of up to [`PUBLISH_BATCH`] until every sender is gone; while
/// idle, pings Redis each [`HEALTH_PERIOD`] so [`Link::is_connected`] tells a lost Redis even when
/// nothing is published.
async fn publish_loop(
    mut conn: ConnectionManager,
    mut rx: mpsc::Receiver<(String, Bytes)>,
    counters: Arc<LinkCounters>,
    connected: Arc<AtomicBool>,
) {
    let mut batch = Vec::with_capacity(PUBLISH_BATCH);
    let mut health = tokio::time::interval(HEALTH_PERIOD);
    health.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            n = rx.recv_many(&mut batch, PUBLISH_BATCH) => {
                if n == 0 {
                    return;
                }
            }
            _ = health.tick() => {
                // Bounded: while Redis is away the manager's reconnect attempts hold the command.
                let ping = redis::cmd("PING");
                let up = matches!(tokio::time::timeout(HEALTH_PERIOD, ping.query_async::<()>(&mut conn)).await, Ok(Ok(())));
                if connected.swap(up, Ordering::AcqRel) != up {
                    match up {
                        true => tracing::info!("redis (node format): reachable again"),
                        false => tracing::warn!("redis (node format): unreachable; reconnecting"),
                    }
                }
                continue;
            }
        }
        let mut pipe = redis::pipe();
        for (channel, payload) in &batch {
            pipe.cmd("PUBLISH").arg(channel).arg(payload.as_ref()).ignore();
        }
        let n = batch.len() as u64;
        batch.clear();
        match pipe.exec_async(&mut conn).await {
            Ok(()) => {
                connected.store(true, Ordering::Release);
                counters.published.fetch_add(n, Ordering::Relaxed);
            }
            Err(e) => {
                connected.store(false, Ordering::Release);
                let dropped = counters.dropped.fetch_add(n, Ordering::Relaxed) + n;
                if crossed_power_of_two(dropped, n) {
                    tracing::warn!(error = %e, dropped, "redis (node format): publish pipeline failed; messages dropped");
                }
            }
        }
    }
}
