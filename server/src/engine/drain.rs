//! Draining a node before it exits: new handshakes are refused, and the open sessions are closed
//! in small batches spread over a window, in random order, so their clients reconnect to other
//! nodes gradually instead of all at once (a reconnect storm on the rest of the cluster).

use std::time::Duration;

use rand::seq::SliceRandom as _;
use tokio::time::Instant;

use super::{CloseReason, Engine};

/// Time between two batches: fine enough that a window of a few seconds has dozens of batches.
const TICK: Duration = Duration::from_millis(50);

impl Engine {
    /// Refuses new handshakes, then closes every session ("server shutting down") spread evenly
    /// over `window`, in random order; resolves when the last batch is closed. A window of zero
    /// closes everything at once. Polling sessions get their queued packets before the close
    /// packet, since the listener still answers their next GET.
    pub async fn drain(&self, window: Duration) {
        self.refuse_handshakes();
        let mut sessions = self.sessions();
        sessions.shuffle(&mut rand::rng());
        let total = sessions.len();
        let ticks = (window.as_millis() / TICK.as_millis()).max(1) as usize;
        tracing::info!(sessions = total, window_ms = window.as_millis() as u64, "draining");
        let started = Instant::now();
        let mut closed = 0;
        for tick in 1..=ticks {
            // Sessions due by this tick: the first batch goes at once, the last one tick before
            // the end of the window.
            let due = total * tick / ticks;
            for session in &sessions[closed..due] {
                session.close_with(CloseReason::ServerShuttingDown, true);
            }
            closed = due;
            // Nobody left to spread (a node without clients): waiting out the window would only
            // delay the exit (a rollout, a scale-in).
            if closed == total {
                break;
            }
            if tick < ticks {
                tokio::time::sleep_until(started + TICK * tick as u32).await;
            }
        }
        tracing::info!(sessions = total, elapsed_ms = started.elapsed().as_millis() as u64, "drained");
    }
}
