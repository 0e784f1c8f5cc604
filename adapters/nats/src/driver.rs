//! The actor that owns a node's NATS client: it turns the handle's queued publishes and wanted
//! subjects into client calls, and runs one reader task per subscribed subject that feeds the
//! node's [`Inbound`].
//!
//! Ordering: before each batch of publishes the driver applies the subscription changes asked for
//! so far, so a subject subscribed before a publish is subscribed on the server before that
//! publish is (an initial heartbeat's answers find the node route live). Messages of one subject
//! keep their order: one reader per subject, one queue for publishes.
//!
//! Confirmation: after each pass of subscription changes the driver sends a round trip (a request
//! to a fresh inbox, which the server answers "no responders"); the server handles a connection's
//! commands in order, so the answer means every SUB before it is live, and the pass's generation
//! is settled (`Shared::confirmations`), releasing the joins waiting for it. A lost connection
//! settles everything asked for so far (see `Shared::disconnected`).

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_nats::connection::State;
use async_nats::{Client, Request, Subscriber};
use bytes::Bytes;
use futures_util::StreamExt;
use switchboard_adapter::cluster::{Inbound, PublishTimer};
use switchboard_adapter::{CONFIRMATION_LIMIT, Confirmations};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::health::{Counters, bump};

/// Publishes taken from the queue at once, between two checks for subscription changes.
const BATCH: usize = 64;

/// What the handle queues for the driver, in order.
pub(crate) enum Outbound {
    /// A cluster message for a subject.
    Publish {
        /// The rendered subject.
        subject: String,
        /// The encoded message.
        payload: Bytes,
        /// When it was queued, for the publish latency.
        queued: Instant,
    },
    /// Answered once everything queued before it (and every subscription change asked before
    /// it) was handed to the client.
    Marker(oneshot::Sender<()>),
    /// Hand over what is queued, unsubscribe, drain the connection, answer, and stop.
    Close(oneshot::Sender<()>),
}

/// The subjects the node wants, by reference count (a route may be subscribed by two adapters
/// for a moment when a namespace is created again), and the ones whose wanted-ness changed since
/// the driver last looked.
#[derive(Debug, Default)]
pub(crate) struct Wanted {
    refs: HashMap<String, usize>,
    dirty: HashSet<String>,
}

/// What the handle and the driver share (never the channels, so dropping the handle stops the driver).
#[derive(Debug, Default)]
pub(crate) struct Shared {
    pub(crate) counters: Arc<Counters>,
    wanted: Mutex<Wanted>,
    /// Bumped (under the lock) whenever a subject starts or stops being wanted.
    requested: AtomicU64,
    /// Which of those changes the server has confirmed (or given up on): what joins wait for.
    pub(crate) confirmations: Confirmations,
}

impl Shared {
    fn wanted(&self) -> MutexGuard<'_, Wanted> {
        self.wanted.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// One more reference to `subject`; whether it just became wanted (the driver must act), and
    /// the generation that covers its subscription.
    pub(crate) fn want(&self, subject: String) -> (bool, u64) {
        let mut wanted = self.wanted();
        match wanted.refs.entry(subject) {
            Entry::Occupied(mut e) => {
                *e.get_mut() += 1;
                (false, self.requested.load(Ordering::Acquire))
            }
            Entry::Vacant(e) => {
                let subject = e.key().clone();
                e.insert(1);
                wanted.dirty.insert(subject);
                (true, self.requested.fetch_add(1, Ordering::AcqRel) + 1)
            }
        }
    }

    /// The connection was lost: give up every subscription change asked for so far (nothing can
    /// be received until the client is back, and it then resubscribes before anything else).
    pub(crate) fn disconnected(&self) {
        let _wanted = self.wanted();
        self.confirmations.settle(self.requested.load(Ordering::Acquire));
    }

    /// One reference less to `subject`; `true` if it is no longer wanted.
    pub(crate) fn unwant(&self, subject: &str) -> bool {
        let mut wanted = self.wanted();
        let Some(n) = wanted.refs.get_mut(subject) else {
            tracing::debug!(subject, "NATS unsubscribe of a subject not subscribed; ignored");
            return false;
        };
        *n -= 1;
        if *n > 0 {
            return false;
        }
        wanted.refs.remove(subject);
        wanted.dirty.insert(subject.to_owned());
        self.requested.fetch_add(1, Ordering::Release);
        true
    }

    /// Takes the pending changes: each changed subject and whether it is wanted now, and the
    /// generation they bring the driver to.
    fn take_changes(&self) -> (Vec<(String, bool)>, u64) {
        let mut wanted = self.wanted();
        let dirty = std::mem::take(&mut wanted.dirty);
        let changes = dirty
            .into_iter()
            .map(|subject| {
                let want = wanted.refs.contains_key(&subject);
                (subject, want)
            })
            .collect();
        (changes, self.requested.load(Ordering::Acquire))
    }
}

/// The driver's inputs: wake-ups for subscription changes, the publish queue, and the client's
/// connected events.
pub(crate) struct Inputs {
    pub(crate) wake: mpsc::Receiver<()>,
    pub(crate) outbound: mpsc::Receiver<Outbound>,
    pub(crate) connected: mpsc::Receiver<()>,
}

/// A running reader: stop it by sending (or dropping) `stop`, then await `task`.
struct Reader {
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

/// See the module docs.
pub(crate) struct Driver {
    client: Client,
    inbound: Inbound,
    shared: Arc<Shared>,
    readers: HashMap<String, Reader>,
    /// The generation of subscription changes applied.
    applied: u64,
    flush_timeout: Duration,
    publish_timer: PublishTimer,
}

impl Driver {
    pub(crate) fn new(
        client: Client,
        inbound: Inbound,
        shared: Arc<Shared>,
        flush_timeout: Duration,
        publish_timer: PublishTimer,
    ) -> Self {
        Self { client, inbound, shared, readers: HashMap::new(), applied: 0, flush_timeout, publish_timer }
    }

    /// Runs until the handle is dropped or closed.
    pub(crate) async fn run(mut self, inputs: Inputs) {
        let Inputs { mut wake, mut outbound, mut connected } = inputs;
        let mut batch = Vec::with_capacity(BATCH);
        loop {
            // Unbiased: neither steady subscription churn nor a publish flood starves the other.
            tokio::select! {
                woke = wake.recv() => match woke {
                    Some(()) => self.reconcile().await,
                    None => break,
                },
                Some(()) = connected.recv() => self.announce().await,
                n = outbound.recv_many(&mut batch, BATCH) => {
                    if n == 0 {
                        break;
                    }
                    self.reconcile().await;
                    for item in batch.drain(..) {
                        if let Some(done) = self.handle(item).await {
                            self.close().await;
                            let _ = done.send(());
                            return;
                        }
                    }
                }
            }
        }
        // The handle is gone without closing: hand over what it queued (its goodbye messages),
        // then let the connection go.
        outbound.close();
        while let Some(item) = outbound.recv().await {
            if let Some(done) = self.handle(item).await {
                let _ = done.send(());
            }
        }
        self.close().await;
    }

    /// After a (re)connection: once the client reports it (its connected event comes just before
    /// its state changes), tell the node, which announces itself so peers that expired during
    /// the outage count it again at once. The client has re-sent our subscriptions by then, ahead
    /// of anything we publish next.
    async fn announce(&mut self) {
        let deadline = tokio::time::Instant::now() + self.flush_timeout;
        while self.client.connection_state() != State::Connected {
            if tokio::time::Instant::now() >= deadline {
                // Lost again: the next connected event announces.
                return;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        self.inbound.connected();
    }

    /// Handles one queued item; `Some` for a close request (answered by the caller once closed).
    async fn handle(&mut self, item: Outbound) -> Option<oneshot::Sender<()>> {
        match item {
            Outbound::Publish { subject, payload, queued } => {
                let counters = &self.shared.counters;
                counters.queued.fetch_sub(1, Ordering::Relaxed);
                counters.queued_bytes.fetch_sub(payload.len() as u64, Ordering::Relaxed);
                if self.client.connection_state() != State::Connected {
                    // Queued just before the connection went: drop it rather than fill the
                    // client's channel with stale messages while it reconnects.
                    bump(&counters.dropped_disconnected);
                    return None;
                }
                match self.client.publish(subject, payload).await {
                    Ok(()) => self.publish_timer.observe(queued.elapsed()),
                    Err(error) => {
                        bump(&counters.publish_errors);
                        if let Some(suppressed) = counters.drop_log.allow() {
                            tracing::warn!(%error, suppressed, "NATS client refused a cluster message; dropped");
                        }
                    }
                }
                None
            }
            Outbound::Marker(done) => {
                let _ = done.send(());
                None
            }
            Outbound::Close(done) => Some(done),
        }
    }

    /// Applies the subscription changes asked for since the last call, in one pass.
    async fn reconcile(&mut self) {
        if self.shared.requested.load(Ordering::Acquire) == self.applied {
            return;
        }
        let (changes, generation) = self.shared.take_changes();
        let mut stopping = Vec::new();
        for (subject, want) in changes {
            if want && !self.readers.contains_key(&subject) {
                self.start_reader(subject).await;
            } else if !want && let Some(reader) = self.readers.remove(&subject) {
                let _ = reader.stop.send(());
                stopping.push(reader.task);
            }
        }
        // Each reader sends its unsubscribe before ending: once awaited, a later flush covers it.
        for task in stopping {
            let _ = task.await;
        }
        self.applied = generation;
        self.shared.counters.subscriptions.store(self.readers.len() as u64, Ordering::Relaxed);
        self.confirm(generation);
    }

    /// Settles `generation` once the server has answered a round trip sent after its SUBs (from
    /// a task: publishes go on meanwhile). Any outcome settles it: an answer (live), or a failure
    /// or timeout (lost connection: given up).
    fn confirm(&self, generation: u64) {
        if self.client.connection_state() != State::Connected {
            self.shared.confirmations.settle(generation);
            return;
        }
        let client = self.client.clone();
        let shared = self.shared.clone();
        tokio::spawn(async move {
            let request = Request::new().timeout(Some(CONFIRMATION_LIMIT));
            if let Err(e) = client.send_request(client.new_inbox(), request).await
                && e.kind() != async_nats::RequestErrorKind::NoResponders
            {
                tracing::debug!(error = %e, "NATS subscription round trip failed; not waiting for it");
            }
            shared.confirmations.settle(generation);
        });
    }

    async fn start_reader(&mut self, subject: String) {
        match self.client.subscribe(subject.clone()).await {
            Ok(subscriber) => {
                let (stop, stopped) = oneshot::channel();
                let task = tokio::spawn(read(subscriber, self.inbound.clone(), stopped));
                self.readers.insert(subject, Reader { stop, task });
            }
            // Only when the client itself is gone (closed): nothing more can be received anyway.
            Err(error) => tracing::warn!(%error, subject, "NATS subscribe failed"),
        }
    }

    /// Stops every reader (each unsubscribes), then drains the connection: the server gets what
    /// is buffered and the connection closes. Bounded by the flush timeout when NATS is gone.
    async fn close(&mut self) {
        let tasks: Vec<JoinHandle<()>> = self
            .readers
            .drain()
            .map(|(_, r)| {
                let _ = r.stop.send(());
                r.task
            })
            .collect();
        self.shared.counters.subscriptions.store(0, Ordering::Relaxed);
        if self.client.connection_state() != State::Connected {
            for task in tasks {
                task.abort();
            }
            return;
        }
        let wait = async {
            for task in tasks {
                let _ = task.await;
            }
            let _ = self.client.flush().await;
            let _ = self.client.drain().await;
        };
        if tokio::time::timeout(self.flush_timeout, wait).await.is_err() {
            tracing::warn!("NATS did not take the last cluster messages in time; closing anyway");
        }
    }
}

/// Feeds one subject's messages to the inbound until stopped (then unsubscribes) or until the
/// client closes.
async fn read(mut subscriber: Subscriber, inbound: Inbound, mut stop: oneshot::Receiver<()>) {
    loop {
        tokio::select! {
            biased;
            _ = &mut stop => break,
            message = subscriber.next() => match message {
                Some(message) => inbound.receive(message.payload),
                None => return,
            },
        }
    }
    if let Err(error) = subscriber.unsubscribe().await {
        tracing::debug!(%error, "NATS unsubscribe not sent (client closed)");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wanted_subjects_are_reference_counted_and_changes_coalesce() {
        let shared = Shared::default();
        assert_eq!(shared.want("a".into()), (true, 1));
        assert_eq!(shared.want("a".into()), (false, 1), "a second reference changes nothing");
        assert!(!shared.unwant("a"));
        assert!(shared.unwant("a"), "the last reference goes");
        assert!(!shared.unwant("a"), "an extra unsubscribe is ignored");
        assert_eq!(shared.want("b".into()), (true, 3));
        let (mut changes, generation) = shared.take_changes();
        changes.sort();
        assert_eq!(changes, [("a".to_owned(), false), ("b".to_owned(), true)]);
        assert_eq!(generation, 3);
        assert!(shared.take_changes().0.is_empty());
    }
}
