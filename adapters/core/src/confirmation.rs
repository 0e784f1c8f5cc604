//! When a join is visible to the whole cluster: a [`Confirmation`] resolves once the broker has
//! confirmed the room subscriptions the join needed, so the server can hold back whatever would let
//! a client (or a peer) act on the join before other nodes' emits to the room can reach the socket.
//!
//! A transport keeps one [`Confirmations`] per broker connection: each subscription change gets a
//! generation number, and the connection task settles generations in order as the broker confirms
//! them (or gives them up when the connection is lost: nothing waits on a dead broker).

use std::time::Duration;

use tokio::sync::watch;

/// The longest [`Confirmation::wait`] waits: a broker that neither confirms nor fails (stalled)
/// must not hold a socket's packets, or a request, for longer than this.
pub const CONFIRMATION_LIMIT: Duration = Duration::from_secs(2);

/// Resolves once the room subscriptions a join needed are live on the broker (or the broker
/// failed, or [`CONFIRMATION_LIMIT`] passed). Cheap to clone: every socket joining a room whose
/// subscription is still pending waits for the same confirmation.
#[derive(Clone, Default)]
pub struct Confirmation {
    /// The unsettled generations; empty once confirmed (allocates only while something is pending).
    pending: Vec<Pending>,
}

#[derive(Clone)]
struct Pending {
    settled: watch::Receiver<u64>,
    generation: u64,
}

impl Pending {
    /// Settled, or the transport is gone (nothing more will be confirmed, nor received).
    fn is_settled(&self) -> bool {
        *self.settled.borrow() >= self.generation || self.settled.has_changed().is_err()
    }
}

impl std::fmt::Debug for Confirmation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Confirmation").field("confirmed", &self.is_confirmed()).finish()
    }
}

impl Confirmation {
    /// Nothing to wait for (the in-memory adapter, rooms already subscribed, a broker that is down).
    pub fn confirmed() -> Self {
        Self::default()
    }

    /// Whether it has resolved (no waiting needed).
    pub fn is_confirmed(&self) -> bool {
        self.pending.iter().all(Pending::is_settled)
    }

    /// Resolves when both have (a join of several rooms); what is already settled is dropped.
    pub fn and(mut self, other: Confirmation) -> Self {
        self.pending.extend(other.pending);
        self.pending.retain(|p| !p.is_settled());
        self
    }

    /// Waits until confirmed, at most [`CONFIRMATION_LIMIT`]; `false` if the limit passed first.
    pub async fn wait(self) -> bool {
        if self.is_confirmed() {
            return true;
        }
        let all = async {
            for mut p in self.pending {
                let generation = p.generation;
                // An error means the transport is gone: nothing left to wait for.
                let _ = p.settled.wait_for(|g| *g >= generation).await;
            }
        };
        tokio::time::timeout(CONFIRMATION_LIMIT, all).await.is_ok()
    }
}

/// A transport's record of which subscription changes its broker has settled (confirmed, or given
/// up on when the connection was lost), by generation: the connection task settles them in order,
/// [`confirmation`](Self::confirmation) hands out what to wait for.
#[derive(Debug)]
pub struct Confirmations {
    settled: watch::Sender<u64>,
}

impl Default for Confirmations {
    fn default() -> Self {
        Self::new()
    }
}

impl Confirmations {
    /// Nothing settled yet (generation 0: no change asked for).
    pub fn new() -> Self {
        Self { settled: watch::Sender::new(0) }
    }

    /// What resolves once generation `generation` is settled.
    pub fn confirmation(&self, generation: u64) -> Confirmation {
        let p = Pending { settled: self.settled.subscribe(), generation };
        match p.is_settled() {
            true => Confirmation::confirmed(),
            false => Confirmation { pending: vec![p] },
        }
    }

    /// Every change up to `generation` is settled; earlier or equal generations change nothing.
    pub fn settle(&self, generation: u64) {
        self.settled.send_if_modified(|g| {
            let newer = generation > *g;
            if newer {
                *g = generation;
            }
            newer
        });
    }

    /// The highest settled generation.
    pub fn settled(&self) -> u64 {
        *self.settled.borrow()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn resolves_once_its_generation_is_settled() {
        let c = Confirmations::new();
        assert!(c.confirmation(0).is_confirmed());
        let two = c.confirmation(2);
        let three = c.confirmation(3);
        assert!(!two.is_confirmed());
        c.settle(2);
        assert!(two.is_confirmed() && !three.is_confirmed());
        c.settle(1);
        assert_eq!(c.settled(), 2, "settling is monotonic");
        let both = two.clone().and(three.clone());
        let waiter = tokio::spawn(both.wait());
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        c.settle(5);
        assert!(waiter.await.unwrap_or(false));
        assert!(c.confirmation(4).is_confirmed());
    }

    #[tokio::test]
    async fn a_dropped_transport_releases_its_waiters() {
        let c = Confirmations::new();
        let pending = c.confirmation(1);
        drop(c);
        assert!(pending.is_confirmed());
        assert!(pending.wait().await);
    }

    #[tokio::test(start_paused = true)]
    async fn waits_at_most_the_limit() {
        let c = Confirmations::new();
        let started = tokio::time::Instant::now();
        assert!(!c.confirmation(1).wait().await);
        assert_eq!(started.elapsed(), CONFIRMATION_LIMIT);
    }
}
