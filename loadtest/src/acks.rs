//! Requests waiting for their ack: ids are issued in order, answers are matched to them, and a request
//! unanswered after the timeout counts as a timeout exactly once, whether its ack comes late or never.

use std::collections::VecDeque;

/// One request waiting for its ack.
#[derive(Debug, Clone, Copy)]
struct Waiting {
    id: u64,
    /// When it was due to be sent (the schedule's time): latency counts from here.
    due: u64,
    /// When it was actually queued.
    sent: u64,
    measured: bool,
}

/// What an incoming ack meant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckOutcome {
    /// Answered in time: nanoseconds from the due time and from the actual send.
    Answered {
        /// From the scheduled send time (includes any delay in sending).
        latency: u64,
        /// From the actual send.
        round_trip: u64,
        /// Whether the request was in the measured window.
        measured: bool,
    },
    /// Answered after the timeout: a timeout, not a latency sample.
    Late {
        /// Whether the request was in the measured window.
        measured: bool,
    },
    /// No request with that id is waiting (already timed out, or never sent).
    Unknown,
}

/// The requests of one connection that wait for an ack.
#[derive(Debug, Default)]
pub struct AckTracker {
    waiting: VecDeque<Waiting>,
    next_id: u64,
}

impl AckTracker {
    /// Registers a request due at `due` and queued at `sent`; returns its ack id.
    pub fn issue(&mut self, due: u64, sent: u64, measured: bool) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        self.waiting.push_back(Waiting { id, due, sent, measured });
        id
    }

    /// Matches an ack received at `now`; acks normally come in order, so the search stops at the front.
    pub fn ack(&mut self, id: u64, now: u64, timeout: u64) -> AckOutcome {
        let Some(index) = self.waiting.iter().position(|w| w.id == id) else {
            return AckOutcome::Unknown;
        };
        let Some(w) = self.waiting.remove(index) else {
            return AckOutcome::Unknown;
        };
        if now.saturating_sub(w.due) > timeout {
            return AckOutcome::Late { measured: w.measured };
        }
        AckOutcome::Answered {
            latency: now.saturating_sub(w.due),
            round_trip: now.saturating_sub(w.sent),
            measured: w.measured,
        }
    }

    /// Drops the requests whose timeout has passed at `now`; returns how many were measured.
    pub fn expire(&mut self, now: u64, timeout: u64) -> u64 {
        let mut measured = 0;
        while let Some(w) = self.waiting.front().copied() {
            if now.saturating_sub(w.due) <= timeout {
                break;
            }
            self.waiting.pop_front();
            measured += u64::from(w.measured);
        }
        measured
    }

    /// When the oldest waiting request times out.
    pub fn next_deadline(&self, timeout: u64) -> Option<u64> {
        self.waiting.front().map(|w| w.due.saturating_add(timeout).saturating_add(1))
    }

    /// Number of requests waiting.
    pub fn waiting(&self) -> usize {
        self.waiting.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_counts_from_the_due_time_not_the_send() {
        let mut acks = AckTracker::default();
        // Due at 100, but the sender was late and queued it at 130; answered at 150.
        let id = acks.issue(100, 130, true);
        assert_eq!(
            acks.ack(id, 150, 1_000),
            AckOutcome::Answered { latency: 50, round_trip: 20, measured: true }
        );
        assert_eq!(acks.ack(id, 160, 1_000), AckOutcome::Unknown);
        assert_eq!(acks.waiting(), 0);
    }

    #[test]
    fn out_of_order_acks_match_their_request() {
        let mut acks = AckTracker::default();
        let a = acks.issue(0, 0, false);
        let b = acks.issue(10, 10, true);
        assert_eq!(acks.ack(b, 15, 100), AckOutcome::Answered { latency: 5, round_trip: 5, measured: true });
        assert_eq!(
            acks.ack(a, 20, 100),
            AckOutcome::Answered { latency: 20, round_trip: 20, measured: false }
        );
    }

    #[test]
    fn a_timeout_counts_once_whether_the_ack_is_late_or_missing() {
        let mut acks = AckTracker::default();
        let late = acks.issue(0, 0, true);
        let _lost = acks.issue(10, 10, true);
        let _warmup = acks.issue(20, 20, false);
        assert_eq!(acks.next_deadline(100), Some(101));
        // The late ack arrives before expiry ran: a timeout, not a 150 ns sample.
        assert_eq!(acks.ack(late, 150, 100), AckOutcome::Late { measured: true });
        assert_eq!(acks.expire(115, 100), 1);
        assert_eq!(acks.expire(200, 100), 0, "the warm-up request expires unmeasured");
        assert_eq!(acks.waiting(), 0);
        assert_eq!(acks.next_deadline(100), None);
    }
}
