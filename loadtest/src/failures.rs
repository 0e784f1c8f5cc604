//! Failure counters shared by every connection task; every kind is reported as a number, never dropped.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Mutex, PoisonError};

use crate::ConnError;

/// How connections failed, while opening and once open.
#[derive(Debug, Default)]
pub struct Failures {
    /// TCP connect refused.
    pub refused: AtomicU64,
    /// The whole handshake (TCP + upgrade + Engine.IO + Socket.IO CONNECT) took longer than allowed.
    pub connect_timed_out: AtomicU64,
    /// Any other failure before the connection was open (upgrade refused, closed, CONNECT_ERROR, …).
    pub connect_failed: AtomicU64,
    /// Open connections the server closed (or reset) before the scenario ended.
    pub closed: AtomicU64,
    /// Packets or frames this client could not take from the server.
    pub protocol_errors: AtomicU64,
    /// Long-polling requests answered with an HTTP status other than 200.
    pub http_errors: AtomicU64,
    /// Long-polling requests left unanswered past pingInterval + pingTimeout.
    pub stalls: AtomicU64,
    first: Mutex<Option<String>>,
}

impl Failures {
    /// Counts a failure to open a connection.
    pub fn opening(&self, e: &ConnError) {
        let counter = match e {
            ConnError::Refused => &self.refused,
            ConnError::TimedOut => &self.connect_timed_out,
            _ => &self.connect_failed,
        };
        counter.fetch_add(1, Relaxed);
        self.note(e);
    }

    /// Counts the failure of an open connection.
    pub fn running(&self, e: &ConnError) {
        let counter = match e {
            ConnError::Protocol(_) => &self.protocol_errors,
            ConnError::Http { .. } => &self.http_errors,
            ConnError::Stalled(_) => &self.stalls,
            _ => &self.closed,
        };
        counter.fetch_add(1, Relaxed);
        self.note(e);
    }

    /// Failures before the connection was open.
    pub fn opening_total(&self) -> u64 {
        self.refused.load(Relaxed) + self.connect_timed_out.load(Relaxed) + self.connect_failed.load(Relaxed)
    }

    /// The counters by name, in report order.
    pub fn counts(&self) -> Vec<(&'static str, u64)> {
        vec![
            ("refused", self.refused.load(Relaxed)),
            ("connect_timed_out", self.connect_timed_out.load(Relaxed)),
            ("connect_failed", self.connect_failed.load(Relaxed)),
            ("closed", self.closed.load(Relaxed)),
            ("protocol_errors", self.protocol_errors.load(Relaxed)),
            ("http_errors", self.http_errors.load(Relaxed)),
            ("stalls", self.stalls.load(Relaxed)),
        ]
    }

    /// The first error seen, as text, to tell what the counters mean.
    pub fn first_error(&self) -> Option<String> {
        self.first.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    fn note(&self, e: &ConnError) {
        let mut first = self.first.lock().unwrap_or_else(PoisonError::into_inner);
        if first.is_none() {
            *first = Some(e.to_string());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_by_phase() {
        let f = Failures::default();
        f.opening(&ConnError::Refused);
        f.opening(&ConnError::TimedOut);
        f.opening(&ConnError::Rejected("no".into()));
        f.running(&ConnError::Closed);
        f.running(&ConnError::Protocol("x".into()));
        f.running(&ConnError::Http { status: 400, body: "{}".into() });
        f.running(&ConnError::Stalled("GET"));
        assert_eq!(f.opening_total(), 3);
        assert_eq!(
            f.counts(),
            vec![
                ("refused", 1),
                ("connect_timed_out", 1),
                ("connect_failed", 1),
                ("closed", 1),
                ("protocol_errors", 1),
                ("http_errors", 1),
                ("stalls", 1)
            ]
        );
        assert_eq!(f.first_error().as_deref(), Some("connection refused"));
    }
}
