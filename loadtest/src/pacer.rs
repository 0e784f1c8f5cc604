//! A precise timer for the open model. tokio's timer wheel has 1 ms ticks and fires up to a tick late,
//! which would add about 1 ms to every latency measured from the schedule; here one thread sleeps until
//! the earliest deadline on the kernel's high-resolution timer and wakes the task that waits for it.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Condvar, Mutex, MutexGuard, OnceLock, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use crate::clock;

/// A task waiting for a deadline.
struct Entry {
    at: u64,
    seq: u64,
    waker: Waker,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}

impl Eq for Entry {}

impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Entry {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

#[derive(Default)]
struct Waiting {
    heap: BinaryHeap<Reverse<Entry>>,
    seq: u64,
}

struct Pacer {
    waiting: Mutex<Waiting>,
    changed: Condvar,
}

impl Pacer {
    fn get() -> &'static Pacer {
        static PACER: OnceLock<&'static Pacer> = OnceLock::new();
        PACER.get_or_init(|| {
            let pacer: &'static Pacer =
                Box::leak(Box::new(Pacer { waiting: Mutex::default(), changed: Condvar::new() }));
            // If the thread cannot start, sleeps still complete: they are polled again by other wake-ups
            // and, at worst, the driver's stop. Starting it never fails in practice.
            let _ = std::thread::Builder::new().name("pacer".into()).spawn(move || pacer.run());
            pacer
        })
    }

    fn lock(&self) -> MutexGuard<'_, Waiting> {
        self.waiting.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn register(&self, at: u64, waker: Waker) {
        let mut waiting = self.lock();
        let seq = waiting.seq;
        waiting.seq += 1;
        let earliest = waiting.heap.peek().is_none_or(|Reverse(top)| at < top.at);
        waiting.heap.push(Reverse(Entry { at, seq, waker }));
        drop(waiting);
        if earliest {
            self.changed.notify_one();
        }
    }

    fn run(&self) {
        let mut due = Vec::new();
        let mut waiting = self.lock();
        loop {
            let now = clock::now_ns();
            while waiting.heap.peek().is_some_and(|Reverse(top)| top.at <= now) {
                if let Some(Reverse(entry)) = waiting.heap.pop() {
                    due.push(entry.waker);
                }
            }
            if !due.is_empty() {
                drop(waiting);
                due.drain(..).for_each(Waker::wake);
                waiting = self.lock();
                continue;
            }
            waiting = match waiting.heap.peek() {
                Some(Reverse(top)) => {
                    let wait = Duration::from_nanos(top.at - now);
                    self.changed.wait_timeout(waiting, wait).unwrap_or_else(PoisonError::into_inner).0
                }
                None => self.changed.wait(waiting).unwrap_or_else(PoisonError::into_inner),
            };
        }
    }
}

/// A resettable sleep until a [`clock`] reading, woken by the pacer thread.
#[derive(Debug)]
pub struct Sleep {
    at: u64,
    registered: Option<u64>,
}

impl Sleep {
    /// A sleep until `at`.
    pub fn new(at: u64) -> Self {
        Self { at, registered: None }
    }

    /// Moves the deadline (an earlier registration may still wake the task once: harmless).
    pub fn reset(&mut self, at: u64) {
        self.at = at;
    }

    /// The deadline.
    pub fn deadline(&self) -> u64 {
        self.at
    }
}

impl Future for Sleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if clock::now_ns() >= self.at {
            return Poll::Ready(());
        }
        if self.registered != Some(self.at) {
            Pacer::get().register(self.at, cx.waker().clone());
            self.registered = Some(self.at);
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn wakes_close_to_the_deadline() {
        let mut worst = 0;
        for _ in 0..20 {
            let at = clock::now_ns() + 2_000_000;
            Sleep::new(at).await;
            worst = worst.max(clock::now_ns() - at);
        }
        // tokio's own timer would be up to a millisecond late; allow for a loaded test machine.
        assert!(worst < 20_000_000, "woke {worst} ns late");
    }

    #[tokio::test]
    async fn an_earlier_reset_is_honoured() {
        let start = clock::now_ns();
        let mut sleep = Sleep::new(start + 10_000_000_000);
        let poll_once = std::future::poll_fn(|cx| {
            let _ = Pin::new(&mut sleep).poll(cx);
            Poll::Ready(())
        });
        poll_once.await;
        sleep.reset(start + 1_000_000);
        sleep.await;
        assert!(clock::now_ns() - start < 5_000_000_000);
    }
}
