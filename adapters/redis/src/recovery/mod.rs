//! Connection state recovery over Redis: a [`SessionStore`] whose packet log is a Redis Stream
//! shared by every node, and whose sessions are Redis keys, so that any node restores a client
//! whose node died.
//!
//! # How order holds across nodes
//!
//! The stream is the transport of logged packets: a node that emits a logged packet only XADDs it
//! (`append` returns `None`), and every node, the emitting one included, delivers the packets it
//! reads from the stream (XREAD, `reader.rs`) in stream order, each under its namespace's order
//! lock together with recording it in the node's [`Mirror`]. So every client receives logged
//! packets in stream order, its offset (the entry id) says exactly what it saw, and a restore on
//! any node replays what that node delivered after the offset (the mirror, completed by a batched
//! XRANGE when the node started later), then the reader delivers the rest live: an unbroken
//! sequence, no duplicates. Packets that are not logged (volatile, with an ack) still go through
//! the cluster adapter's pub/sub.
//!
//! # Keys (one namespace, `{prefix}` = `--cluster-prefix`)
//!
//! - `{prefix}#{nsp}#epoch`: the log's epoch, drawn by the first node (`SET NX`). A broker that
//!   lost its data gets a new one, so no old offset is read as a position in the new log.
//! - `{prefix}#{nsp}#log#{epoch}`: the stream, `XADD MAXLEN ~ max_log_packets`.
//! - `{prefix}#{nsp}#session#{pid}`: a session (JSON, `session.rs`), `PX` =
//!   `max_disconnection_duration`: saved when its socket joins or leaves rooms or sets data, kept
//!   alive by its node while connected, saved again on disconnect, taken with `GETDEL`.
//!
//! Offsets are `<epoch>-<stream id>` (`offset.rs`); a restore from an offset whose entry left the
//! stream, of another epoch, or not yet delivered within a second is refused whole.

mod entry;
mod offset;
mod reader;
mod session;
#[cfg(test)]
mod tests;
mod writer;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::time::Duration;

use redis::aio::ConnectionManager;
use switchboard_adapter::BoxFuture;
use switchboard_adapter::recovery::{
    LogSink, Mirror, Prefetched, RecoveryLimits, SavedSession, SessionStore, SessionStoreFactory,
};
use switchboard_adapter::{BroadcastOptions, BroadcastPacket, RestoreError, SaveError};
use switchboard_protocol::socketio;
use tokio::sync::{OnceCell, mpsc, oneshot, watch};

use writer::Write;

/// How long a restore waits for this node to deliver the client's offset (another node may have
/// delivered it a moment earlier).
const CATCH_UP: Duration = Duration::from_secs(1);
/// Longest an emit waits for this node to deliver what it appended (a reader that lost its
/// connection, a log reset): it then returns, the packet still logged.
const DELIVERY: Duration = Duration::from_secs(5);
/// Entries per XRANGE of a restore, and per XREAD of the reader.
const BATCH: usize = 256;
/// Writes (logged packets, session saves) queued for Redis; past it, a write fails.
const QUEUE: usize = 16_384;
/// Longest session value read back; a longer one is not ours and is deleted unread.
const MAX_SESSION_BYTES: usize = 4 << 20;

/// Takes a session (GETDEL) unless it is longer than ARGV[1], which is deleted unread.
const TAKE: &str = "if redis.call('STRLEN', KEYS[1]) > tonumber(ARGV[1]) then \
    redis.call('DEL', KEYS[1]) return false end return redis.call('GETDEL', KEYS[1])";

/// Makes a [`RedisSessionStore`] per namespace, on one Redis instance.
#[derive(Clone)]
pub struct RedisSessionStoreFactory {
    /// The instance a namespace's keys (`{prefix}#{nsp}#`) live on.
    pick: Arc<dyn Fn(&str) -> redis::Client + Send + Sync>,
    prefix: String,
    /// The stores made, for [`SessionStoreFactory::flush`].
    made: Arc<Mutex<Vec<Weak<RedisSessionStore>>>>,
}

impl std::fmt::Debug for RedisSessionStoreFactory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisSessionStoreFactory").field("prefix", &self.prefix).finish_non_exhaustive()
    }
}

impl RedisSessionStoreFactory {
    /// Stores on the Redis `client` connects to, under keys starting with `prefix`
    /// (`--cluster-prefix`). Every node of a cluster must use the same instance.
    pub fn new(client: redis::Client, prefix: &str) -> Self {
        Self::with_picker(prefix, move |_| client.clone())
    }

    /// Stores spread over instances: `pick` names the one a namespace's key prefix lives on
    /// (the same on every node). See `RedisTransport::session_stores`.
    pub fn with_picker(prefix: &str, pick: impl Fn(&str) -> redis::Client + Send + Sync + 'static) -> Self {
        Self { pick: Arc::new(pick), prefix: prefix.to_owned(), made: Arc::default() }
    }
}

impl SessionStoreFactory for RedisSessionStoreFactory {
    fn create(&self, nsp: &str, limits: &RecoveryLimits) -> Arc<dyn SessionStore> {
        let keys = format!("{}#{nsp}#", self.prefix);
        let store = Arc::new(RedisSessionStore::new((self.pick)(&keys), &keys, *limits));
        let mut made = lock(&self.made);
        made.retain(|s| s.strong_count() > 0);
        made.push(Arc::downgrade(&store));
        store
    }

    fn flush(&self) -> BoxFuture<'_, ()> {
        let stores: Vec<Arc<RedisSessionStore>> = lock(&self.made).iter().filter_map(Weak::upgrade).collect();
        Box::pin(async move {
            for store in &stores {
                store.flush().await;
            }
        })
    }
}

/// See the module docs.
pub struct RedisSessionStore {
    shared: Arc<Shared>,
    writes: mpsc::Sender<Write>,
}

/// What the store, its reader and its writer share.
pub(crate) struct Shared {
    pub(crate) client: redis::Client,
    /// `{prefix}#{nsp}#`.
    pub(crate) keys: String,
    pub(crate) limits: RecoveryLimits,
    /// This store among the cluster's (random): packets emitted `local` are delivered by it alone.
    pub(crate) origin: u64,
    /// The log's epoch, 0 until read.
    pub(crate) epoch: AtomicU64,
    pub(crate) mirror: Mutex<Mirror>,
    /// The mirror's head, for restores waiting for this node to catch up.
    pub(crate) head: watch::Sender<u128>,
    /// Logged packets queued for the writer so far.
    pub(crate) queued: AtomicU64,
    /// How many of them the writer handled (written or failed), and the newest entry it
    /// appended: what an emit waits for before it waits for this node's reader.
    pub(crate) appended: watch::Sender<(u64, u128)>,
    pub(crate) connection: OnceCell<ConnectionManager>,
    /// Sessions of this node's connected sockets (pid → JSON), their expiry extended before they expire.
    pub(crate) live: Mutex<HashMap<String, Vec<u8>>>,
    pub(crate) sink: OnceLock<Weak<dyn LogSink>>,
    /// Whether the reader reads (it started, or came back after a lost connection).
    pub(crate) reading: watch::Sender<bool>,
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    pub(crate) fn epoch_key(&self) -> String {
        format!("{}epoch", self.keys)
    }

    pub(crate) fn log_key(&self, epoch: u64) -> String {
        format!("{}log#{epoch:x}", self.keys)
    }

    pub(crate) fn session_key(&self, pid: &str) -> String {
        format!("{}session#{pid}", self.keys)
    }

    pub(crate) async fn connection(&self) -> Result<ConnectionManager, redis::RedisError> {
        self.connection.get_or_try_init(|| ConnectionManager::new(self.client.clone())).await.cloned()
    }

    /// The log's epoch as Redis has it, drawn now if it has none.
    pub(crate) async fn fetch_epoch<C: redis::aio::ConnectionLike + Send>(
        &self,
        conn: &mut C,
    ) -> Result<u64, redis::RedisError> {
        let drawn = format!("{:x}", rand::random::<u64>() | 1);
        let got: Option<String> = redis::cmd("EVAL")
            .arg("redis.call('SET', KEYS[1], ARGV[1], 'NX') return redis.call('GET', KEYS[1])")
            .arg(1)
            .arg(self.epoch_key())
            .arg(drawn)
            .query_async(conn)
            .await?;
        let epoch = got
            .filter(|e| e.len() <= 16)
            .and_then(|e| u64::from_str_radix(&e, 16).ok())
            .ok_or_else(|| redis::RedisError::from((redis::ErrorKind::Parse, "not an epoch")))?;
        self.epoch.store(epoch, Ordering::Release);
        Ok(epoch)
    }
}

impl RedisSessionStore {
    fn new(client: redis::Client, keys: &str, limits: RecoveryLimits) -> Self {
        let (writes, queue) = mpsc::channel(QUEUE);
        let shared = Arc::new(Shared {
            client,
            keys: keys.to_owned(),
            limits,
            origin: rand::random(),
            epoch: AtomicU64::new(0),
            mirror: Mutex::new(Mirror::new(limits, 0)),
            head: watch::channel(0).0,
            queued: AtomicU64::new(0),
            appended: watch::channel((0, 0)).0,
            connection: OnceCell::new(),
            live: Mutex::new(HashMap::new()),
            sink: OnceLock::new(),
            reading: watch::channel(false).0,
        });
        tokio::spawn(writer::run(Arc::downgrade(&shared), queue));
        tokio::spawn(writer::keep_alive(Arc::downgrade(&shared)));
        Self { shared, writes }
    }

    /// Resolves once the reader reads the log: packets logged from then on reach this node.
    pub async fn reading(&self) {
        let _ = self.shared.reading.subscribe().wait_for(|r| *r).await;
    }

    /// Packets and bytes this node's mirror of the log holds.
    pub fn mirror_size(&self) -> (usize, usize) {
        lock(&self.shared.mirror).size()
    }

    fn queue(&self, write: Write) -> bool {
        match self.writes.try_send(write) {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(keys = self.shared.keys, error = %e, "recovery write dropped: queue full or closed");
                false
            }
        }
    }

    /// The position a restore starts after, in this log's terms.
    fn from(&self, session: &SavedSession, offset: Option<&str>) -> Result<u128, RestoreError> {
        let offset = match offset {
            Some(offset) => offset,
            None if session.delivered_logged => &session.since,
            None => &session.left_at,
        };
        let epoch = self.shared.epoch.load(Ordering::Acquire);
        match offset::parse(offset) {
            Some((e, position)) if e == epoch && epoch != 0 => Ok(position),
            _ => Err(RestoreError::UnknownOffset),
        }
    }

    /// Whether no entry was ever removed from the stream (`max-deleted-entry-id` is `0-0`).
    async fn never_trimmed(
        &self,
        conn: &mut ConnectionManager,
        key: &str,
    ) -> Result<bool, redis::RedisError> {
        let info: redis::Value = match redis::cmd("XINFO").arg("STREAM").arg(key).query_async(conn).await {
            Ok(info) => info,
            // No stream yet: nothing was logged, nothing removed.
            Err(e) if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::ResponseError) => {
                return Ok(true);
            }
            Err(e) => return Err(e),
        };
        let pairs: Vec<(redis::Value, redis::Value)> = match info {
            redis::Value::Map(map) => map,
            redis::Value::Array(items) => {
                let mut items = items.into_iter();
                std::iter::from_fn(|| Some((items.next()?, items.next()?))).collect()
            }
            _ => Vec::new(),
        };
        let deleted = pairs.into_iter().find_map(|(k, v)| match (k, v) {
            (redis::Value::BulkString(k), redis::Value::BulkString(v)) if k == b"max-deleted-entry-id" => {
                Some(v)
            }
            (redis::Value::SimpleString(k), redis::Value::BulkString(v)) if k == "max-deleted-entry-id" => {
                Some(v)
            }
            _ => None,
        });
        Ok(deleted.as_deref() == Some(b"0-0"))
    }

    async fn read_range(
        &self,
        from: u128,
        until: u128,
        session: &SavedSession,
        max_bytes: usize,
    ) -> Result<Prefetched, RestoreError> {
        let unavailable = |e: redis::RedisError| RestoreError::Unavailable(e.to_string());
        let epoch = self.shared.epoch.load(Ordering::Acquire);
        let key = self.shared.log_key(epoch);
        let mut conn = self.shared.connection().await.map_err(unavailable)?;
        let mut prefetched = Prefetched { from, through: from, entries: Vec::new() };
        // The client's own entry must still be there: then nothing after it was trimmed.
        let mut start = offset::stream_id(from);
        // From the log's very beginning (a client that saw nothing, with a session that began on
        // an empty log): complete only if Redis never removed an entry from it.
        let mut first = from != 0 || !self.never_trimmed(&mut conn, &key).await.map_err(unavailable)?;
        if !first {
            start = "-".to_owned();
        }
        if from == 0 && first {
            return Err(RestoreError::LogTrimmed);
        }
        let (mut bytes, mut read) = (0usize, 0usize);
        loop {
            let answer: redis::Value = redis::cmd("XRANGE")
                .arg(&key)
                .arg(&start)
                .arg("+")
                .arg("COUNT")
                .arg(BATCH)
                .query_async(&mut conn)
                .await
                .map_err(unavailable)?;
            let batch = entry::entries(answer);
            let full = batch.len() == BATCH;
            for (id, fields) in batch {
                let Some(position) = offset::parse_stream_id(&id) else { continue };
                if first {
                    first = false;
                    if position != from {
                        return Err(RestoreError::LogTrimmed);
                    }
                    continue;
                }
                if position <= prefetched.through {
                    continue;
                }
                read += 1;
                if read > self.shared.limits.max_log_packets {
                    return Err(RestoreError::LogTrimmed);
                }
                prefetched.through = position;
                let Some((entry, _)) = entry::decode(epoch, &id, fields, self.shared.limits.max_log_bytes)
                else {
                    continue;
                };
                if switchboard_adapter::recovery::selects(&entry.rooms, &entry.except, &session.rooms) {
                    bytes += entry.bytes;
                    if bytes > max_bytes {
                        return Err(RestoreError::TooLarge { max: max_bytes });
                    }
                    prefetched.entries.push(entry);
                }
                if position >= until {
                    return Ok(prefetched);
                }
            }
            if first {
                return Err(RestoreError::LogTrimmed);
            }
            if !full {
                return Ok(prefetched);
            }
            start = format!("({}", offset::stream_id(prefetched.through));
        }
    }
}

impl SessionStore for RedisSessionStore {
    fn append(
        &self,
        opts: &BroadcastOptions,
        encode: &mut dyn FnMut(&str) -> socketio::Encoded,
    ) -> Option<socketio::Encoded> {
        let packet = encode("");
        match entry::fields(opts, &packet, self.shared.origin) {
            Some(fields) => {
                if self.queue(Write::Append(fields)) {
                    self.shared.queued.fetch_add(1, Ordering::AcqRel);
                }
            }
            None => tracing::error!(
                keys = self.shared.keys,
                "a logged packet without its offset argument: not logged"
            ),
        }
        None
    }

    fn is_shared(&self) -> bool {
        true
    }

    fn attach(&self, sink: Weak<dyn LogSink>) {
        if self.shared.sink.set(sink).is_ok() {
            tokio::spawn(reader::run(Arc::downgrade(&self.shared)));
        }
    }

    fn head(&self) -> String {
        let head = lock(&self.shared.mirror).head();
        offset::format(self.shared.epoch.load(Ordering::Acquire), head)
    }

    fn save(&self, session: SavedSession) -> BoxFuture<'_, Result<(), SaveError>> {
        lock(&self.shared.live).remove(&session.pid);
        let (done, written) = oneshot::channel();
        let queued = self.queue(Write::Save {
            key: self.shared.session_key(&session.pid),
            value: session::encode(&session),
            done: Some(done),
        });
        Box::pin(async move {
            if !queued {
                return Err(SaveError::Unavailable("the write queue is full".into()));
            }
            written.await.unwrap_or_else(|_| Err("the store closed".into())).map_err(SaveError::Unavailable)
        })
    }

    fn save_live(&self, session: &SavedSession) {
        let value = session::encode(session);
        {
            let mut live = lock(&self.shared.live);
            // Nothing changed (a leave of a room it is not in, the same data again): no write, so
            // a client repeating such events cannot fill the queue the log's appends share.
            if live.get(&session.pid) == Some(&value) {
                return;
            }
            live.insert(session.pid.clone(), value.clone());
        }
        self.queue(Write::Save { key: self.shared.session_key(&session.pid), value, done: None });
    }

    fn forget(&self, pid: &str) {
        lock(&self.shared.live).remove(pid);
        self.queue(Write::Forget { key: self.shared.session_key(pid) });
    }

    fn delivered(&self) -> BoxFuture<'_, ()> {
        let target = self.shared.queued.load(Ordering::Acquire);
        Box::pin(async move {
            let mut appended = self.shared.appended.subscribe();
            let mut head = self.shared.head.subscribe();
            let caught_up = async {
                let Ok(written) = appended.wait_for(|(n, _)| *n >= target).await.map(|w| w.1) else {
                    return false;
                };
                head.wait_for(|h| *h >= written).await.is_ok()
            };
            if !tokio::time::timeout(DELIVERY, caught_up).await.unwrap_or(false) {
                tracing::debug!(keys = self.shared.keys, "an emit not delivered here within {DELIVERY:?}");
            }
        })
    }

    fn flush(&self) -> BoxFuture<'_, ()> {
        let (done, flushed) = oneshot::channel();
        let queued = self.queue(Write::Flush(done));
        Box::pin(async move {
            if queued {
                let _ = flushed.await;
            }
        })
    }

    fn take(&self, pid: &str) -> BoxFuture<'_, Result<SavedSession, RestoreError>> {
        let key = self.shared.session_key(pid);
        Box::pin(async move {
            let unavailable = |e: redis::RedisError| RestoreError::Unavailable(e.to_string());
            let mut conn = self.shared.connection().await.map_err(unavailable)?;
            // Checked in Redis: a value past the bound is never sent here.
            let value: Option<Vec<u8>> = redis::cmd("EVAL")
                .arg(TAKE)
                .arg(1)
                .arg(key)
                .arg(MAX_SESSION_BYTES)
                .query_async(&mut conn)
                .await
                .map_err(unavailable)?;
            value.as_deref().and_then(session::decode).ok_or(RestoreError::UnknownSession)
        })
    }

    fn prefetch<'a>(
        &'a self,
        session: &'a SavedSession,
        offset: Option<&'a str>,
        max_bytes: usize,
    ) -> BoxFuture<'a, Result<Prefetched, RestoreError>> {
        Box::pin(async move {
            let from = self.from(session, offset)?;
            // Another node may have delivered the client's last packet a moment before this one.
            let mut head = self.shared.head.subscribe();
            let caught_up = async { head.wait_for(|h| *h >= from).await.is_ok() };
            if !tokio::time::timeout(CATCH_UP, caught_up).await.unwrap_or(false) {
                return Err(RestoreError::UnknownOffset);
            }
            let complete_after = lock(&self.shared.mirror).complete_after();
            if from >= complete_after {
                return Ok(Prefetched::default());
            }
            self.read_range(from, complete_after, session, max_bytes).await
        })
    }

    fn missed(
        &self,
        session: &SavedSession,
        offset: Option<&str>,
        prefetched: &Prefetched,
        max_bytes: usize,
    ) -> Result<Vec<BroadcastPacket>, RestoreError> {
        let from = self.from(session, offset)?;
        lock(&self.shared.mirror).missed(from, &session.rooms, prefetched, max_bytes)
    }
}
