//! Heartbeats for every session on a few timer wheels instead of a task and a timer per session.
//!
//! Each wheel is one task owning a `DelayQueue` (a hashed timing wheel). A session is on exactly
//! one wheel: at `pingInterval` it gets a ping and its deadline becomes `pingTimeout` later; a pong
//! puts it back to `pingInterval`; reaching the deadline with no pong closes it ("ping timeout").

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::time::{DelayQueue, delay_queue};

use super::{CloseReason, Session};

enum Command {
    Watch(Arc<Session>),
    Pong(u64),
    Forget(u64),
}

/// Handles to the wheels; commands are routed by session id.
pub(crate) struct Heartbeat {
    wheels: Vec<mpsc::UnboundedSender<Command>>,
}

struct Entry {
    key: delay_queue::Key,
    /// When the current timer fires; the pong deadline is computed from it, not from when the
    /// wheel got around to it, so timers never drift later.
    due: Instant,
    awaiting_pong: bool,
}

impl Heartbeat {
    /// One wheel per core: heartbeats spread over the runtime's workers.
    pub(crate) fn start(ping_interval: Duration, ping_timeout: Duration) -> Self {
        let n = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        let wheels = (0..n)
            .map(|_| {
                let (tx, rx) = mpsc::unbounded_channel();
                tokio::spawn(run_wheel(rx, ping_interval, ping_timeout));
                tx
            })
            .collect();
        Self { wheels }
    }

    fn wheel(&self, id: u64) -> &mpsc::UnboundedSender<Command> {
        &self.wheels[(id % self.wheels.len() as u64) as usize]
    }

    /// Starts the heartbeat of a new session: the first ping goes out after `pingInterval`.
    pub(crate) fn watch(&self, session: Arc<Session>) {
        let _ = self.wheel(session.id()).send(Command::Watch(session));
    }

    /// The awaited pong of session `id` arrived. Sent only for a pong a ping asked for (see
    /// `Session::on_packet`), so the unbounded channels hold a few commands per session at most,
    /// whatever a client sends.
    pub(crate) fn pong(&self, id: u64) {
        let _ = self.wheel(id).send(Command::Pong(id));
    }

    pub(crate) fn forget(&self, id: u64) {
        let _ = self.wheel(id).send(Command::Forget(id));
    }
}

async fn run_wheel(
    mut commands: mpsc::UnboundedReceiver<Command>,
    ping_interval: Duration,
    ping_timeout: Duration,
) {
    let mut queue: DelayQueue<Arc<Session>> = DelayQueue::new();
    let mut entries: HashMap<u64, Entry> = HashMap::new();
    loop {
        tokio::select! {
            command = commands.recv() => match command {
                None => return,
                Some(Command::Watch(session)) => {
                    let id = session.id();
                    if session.is_closed() {
                        continue;
                    }
                    let due = session.opened_at() + ping_interval;
                    let key = queue.insert_at(session, due);
                    entries.insert(id, Entry { key, due, awaiting_pong: false });
                }
                Some(Command::Pong(id)) => {
                    if let Some(entry) = entries.get_mut(&id) {
                        if entry.awaiting_pong {
                            entry.awaiting_pong = false;
                            entry.due = Instant::now() + ping_interval;
                            queue.reset_at(&entry.key, entry.due);
                        }
                    }
                }
                Some(Command::Forget(id)) => {
                    if let Some(entry) = entries.remove(&id) {
                        queue.try_remove(&entry.key);
                    }
                }
            },
            Some(expired) = std::future::poll_fn(|cx| queue.poll_expired(cx)), if !queue.is_empty() => {
                let session = expired.into_inner();
                let id = session.id();
                let Some(entry) = entries.get_mut(&id) else { continue };
                if entry.awaiting_pong {
                    entries.remove(&id);
                    session.close(CloseReason::PingTimeout);
                } else {
                    entry.due += ping_timeout;
                    entry.awaiting_pong = true;
                    session.send_ping(entry.due);
                    entry.key = queue.insert_at(session, entry.due);
                }
            }
        }
    }
}
