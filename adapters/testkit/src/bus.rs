//! An in-process broker: several cluster nodes in one process, connected the way Redis pub/sub
//! connects them, so the cluster adapter and the contract suite run without a broker. It is an
//! ordinary [`Transport`], built on the adapter crate's public API only.
//!
//! Like a broker it matches each publish against subscriptions at publish time, keeps the order of
//! one publisher's messages to each subscriber, echoes messages to their sender when it is
//! subscribed, and delivers asynchronously: each node has a bounded queue drained by its own task
//! (a full queue drops the message for that node, as a broker drops a slow consumer's).
//! Faults are switches: [`Bus::set_down`] (every publish fails and every transport reports itself
//! disconnected: the broker is gone; bringing it back is a reconnect, announced to each node
//! through [`Inbound::connected`], and going down is announced through [`Inbound::disconnected`]),
//! [`Bus::hold_subscriptions`] (new subscriptions are neither live nor confirmed until released:
//! a broker slow to confirm), [`Bus::set_refusing`] (every publish fails with a full queue
//! while the transports still report connected: a broker too slow to keep up) and
//! [`Bus::isolate`] (a node is cut off both ways without knowing: a crash as seen by the others).
//! [`Bus::record`] keeps a copy of every message published, as a broker's `MONITOR` would: the
//! real frames a fuzz test mutates and replays.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;

use switchboard_adapter::cluster::{
    ClusterAdapterFactory, ClusterConfig, ClusterError, Inbound, PublishError, Route, Transport,
};
use switchboard_adapter::{Confirmation, Confirmations};

use crate::wait::eventually;

/// Messages a node's queue holds before the bus drops more for it.
const QUEUE: usize = 4096;

struct Member {
    subscriptions: HashSet<Route>,
    /// Subscribed while [held](Bus::hold_subscriptions): not live yet.
    held: HashSet<Route>,
    queue: mpsc::Sender<Bytes>,
    inbound: Inbound,
    isolated: bool,
}

#[derive(Default)]
struct Shared {
    members: Mutex<Vec<Member>>,
    in_flight: AtomicUsize,
    down: AtomicBool,
    refusing: AtomicBool,
    holding: AtomicBool,
    /// Subscriptions made while holding, numbered; settled on release.
    held_generation: AtomicU64,
    confirmations: Confirmations,
    delivered: AtomicU64,
    dropped: AtomicU64,
    /// Every publish since [`Bus::record`], when recording.
    recorded: Mutex<Option<Vec<(Route, Bytes)>>>,
}

impl Shared {
    fn members(&self) -> MutexGuard<'_, Vec<Member>> {
        self.members.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// See the module docs. Cheap to clone; every clone is the same bus.
#[derive(Clone, Default)]
pub struct Bus {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Bus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bus").field("nodes", &self.shared.members().len()).finish_non_exhaustive()
    }
}

impl Bus {
    /// A bus with no node.
    pub fn new() -> Self {
        Self::default()
    }

    /// A new connection: its transport and the inbound handle its delivery task feeds. Must be
    /// called inside a tokio runtime (the task is spawned).
    pub fn connect(&self) -> (Arc<BusTransport>, Inbound) {
        let (tx, mut rx) = mpsc::channel::<Bytes>(QUEUE);
        let inbound = Inbound::new();
        let index = {
            let mut members = self.shared.members();
            let member = Member {
                subscriptions: HashSet::new(),
                held: HashSet::new(),
                queue: tx,
                inbound: inbound.clone(),
                isolated: false,
            };
            members.push(member);
            members.len() - 1
        };
        let feed = inbound.clone();
        let shared = self.shared.clone();
        tokio::spawn(async move {
            while let Some(bytes) = rx.recv().await {
                feed.receive(bytes);
                shared.in_flight.fetch_sub(1, Ordering::AcqRel);
            }
        });
        (Arc::new(BusTransport { shared: self.shared.clone(), index }), inbound)
    }

    /// A cluster node on this bus: connects and creates its adapter factory.
    pub fn node(
        &self,
        config: ClusterConfig,
    ) -> Result<(ClusterAdapterFactory, Arc<BusTransport>), ClusterError> {
        let (transport, inbound) = self.connect();
        let factory = ClusterAdapterFactory::new(config, transport.clone(), &inbound)?;
        Ok((factory, transport))
    }

    /// Takes the whole broker down (`true`): every publish fails with `Disconnected` and every
    /// transport reports itself disconnected ([`Transport::is_connected`]), as with a dead Redis.
    /// Subscriptions survive for when it comes back (`false`); coming back is a reconnect: each
    /// connection, its subscriptions in place, calls [`Inbound::connected`] (as a broker transport
    /// does once it has resubscribed). Setting the current state again does nothing.
    pub fn set_down(&self, down: bool) {
        let was_down = self.shared.down.swap(down, Ordering::AcqRel);
        if was_down != down {
            let inbounds: Vec<Inbound> = self.shared.members().iter().map(|m| m.inbound.clone()).collect();
            for inbound in inbounds {
                match down {
                    true => inbound.disconnected(),
                    false => inbound.connected(),
                }
            }
        }
    }

    /// While `true`, new subscriptions are neither live nor confirmed (a broker slow to confirm
    /// SUBSCRIBE); `false` makes every held one live, then confirms them all.
    pub fn hold_subscriptions(&self, hold: bool) {
        // Under the members lock, which `subscribe` holds while it reads the switch.
        let mut members = self.shared.members();
        self.shared.holding.store(hold, Ordering::Release);
        if !hold {
            for m in members.iter_mut() {
                let held = std::mem::take(&mut m.held);
                m.subscriptions.extend(held);
            }
            let generation = self.shared.held_generation.load(Ordering::Acquire);
            drop(members);
            self.shared.confirmations.settle(generation);
        }
    }

    /// Makes every publish fail with `QueueFull` (`true`) while the transports still report
    /// connected: a broker that cannot keep up, or one lost between a request's connection check
    /// and its publish.
    pub fn set_refusing(&self, refusing: bool) {
        self.shared.refusing.store(refusing, Ordering::Release);
    }

    /// Cuts connection `index` off (`true`): what it publishes goes nowhere and nothing reaches it,
    /// though its publishes succeed — a crashed node, as the others see it.
    pub fn isolate(&self, index: usize, isolated: bool) {
        if let Some(m) = self.shared.members().get_mut(index) {
            m.isolated = isolated;
        }
    }

    /// Starts keeping a copy of every message published from now on (route and bytes, in order),
    /// delivered or not; [`Bus::recorded`] returns them.
    pub fn record(&self) {
        *self.shared.recorded.lock().unwrap_or_else(PoisonError::into_inner) = Some(Vec::new());
    }

    /// The messages published since [`Bus::record`] (empty if not recording).
    pub fn recorded(&self) -> Vec<(Route, Bytes)> {
        self.shared.recorded.lock().unwrap_or_else(PoisonError::into_inner).clone().unwrap_or_default()
    }

    /// How many connections subscribe to `route`.
    pub fn subscribers(&self, route: &Route) -> usize {
        self.shared.members().iter().filter(|m| m.subscriptions.contains(route)).count()
    }

    /// Messages delivered to node queues, and dropped because a queue was full.
    pub fn counts(&self) -> (u64, u64) {
        (self.shared.delivered.load(Ordering::Relaxed), self.shared.dropped.load(Ordering::Relaxed))
    }

    /// Waits until every queued message was handled (including the answers they caused), at most 5 s.
    pub async fn settle(&self) {
        let idle = || std::future::ready(self.shared.in_flight.load(Ordering::Acquire) == 0);
        eventually(Duration::from_secs(5), idle).await;
    }
}

/// One node's connection to a [`Bus`].
pub struct BusTransport {
    shared: Arc<Shared>,
    index: usize,
}

impl std::fmt::Debug for BusTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BusTransport").field("index", &self.index).finish_non_exhaustive()
    }
}

impl BusTransport {
    /// This connection's index on the bus (for [`Bus::isolate`]).
    pub fn index(&self) -> usize {
        self.index
    }
}

impl Transport for BusTransport {
    fn publish(&self, route: &Route, payload: Bytes) -> Result<(), PublishError> {
        if self.shared.down.load(Ordering::Acquire) {
            return Err(PublishError::Disconnected("bus down".to_owned()));
        }
        if self.shared.refusing.load(Ordering::Acquire) {
            return Err(PublishError::QueueFull);
        }
        if let Some(recorded) = self.shared.recorded.lock().unwrap_or_else(PoisonError::into_inner).as_mut() {
            recorded.push((route.clone(), payload.clone()));
        }
        let members = self.shared.members();
        if members.get(self.index).is_some_and(|m| m.isolated) {
            return Ok(());
        }
        for m in members.iter().filter(|m| !m.isolated && m.subscriptions.contains(route)) {
            self.shared.in_flight.fetch_add(1, Ordering::AcqRel);
            match m.queue.try_send(payload.clone()) {
                Ok(()) => {
                    self.shared.delivered.fetch_add(1, Ordering::Relaxed);
                }
                Err(_) => {
                    self.shared.in_flight.fetch_sub(1, Ordering::AcqRel);
                    self.shared.dropped.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        Ok(())
    }

    fn subscribe(&self, route: &Route) -> Confirmation {
        let mut members = self.shared.members();
        let Some(m) = members.get_mut(self.index) else { return Confirmation::confirmed() };
        if !self.shared.holding.load(Ordering::Acquire) || m.subscriptions.contains(route) {
            m.subscriptions.insert(route.clone());
            return Confirmation::confirmed();
        }
        m.held.insert(route.clone());
        // Numbered under the members lock, which the release takes too: never settled early.
        let generation = self.shared.held_generation.fetch_add(1, Ordering::AcqRel) + 1;
        self.shared.confirmations.confirmation(generation)
    }

    fn unsubscribe(&self, route: &Route) {
        if let Some(m) = self.shared.members().get_mut(self.index) {
            m.subscriptions.remove(route);
            m.held.remove(route);
        }
    }

    fn is_connected(&self) -> bool {
        !self.shared.down.load(Ordering::Acquire)
    }
}
