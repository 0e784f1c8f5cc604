//! A log shared by the nodes of a cluster (a Redis Stream), seen from one node: how the store
//! hands the packets it reads to the server ([`LogSink`]), and the node's memory of what it
//! delivered ([`Mirror`]), which answers restores without a broker read.
//!
//! Why the shared log is the transport of logged packets: a client's offset is the last packet it
//! saw, and a restore replays what follows it in the log. That is right only if every client
//! received the logged packets in log order. Over pub/sub, a node delivers its own broadcasts at
//! once and others' when they arrive, so two nodes emitting together can deliver in two orders,
//! and a client restored elsewhere would get a duplicate or miss one. So every node, the emitting
//! one included, delivers logged packets as it reads them from the log, in log order: the order
//! every client sees is the log's.
//!
//! A node's delivered packets go into its [`Mirror`] under the same lock as the delivery, so a
//! restore taken under that lock replays exactly what this node delivered after the offset and
//! the reader delivers the rest live.

use std::collections::VecDeque;

use super::{RecoveryLimits, selects};
use crate::error::RestoreError;
use crate::types::{BroadcastOptions, BroadcastPacket, Room};

/// Where a shared-log store delivers what it reads; the server's namespace implements it.
pub trait LogSink: Send + Sync + 'static {
    /// Delivers `packet` (its offset already in it) to this node's sockets that `opts` selects,
    /// and calls `commit` (which records it in the store's [`Mirror`]) before anything else is
    /// delivered or restored: both under the namespace's order lock.
    fn deliver(&self, opts: &BroadcastOptions, packet: &BroadcastPacket, commit: &mut dyn FnMut());

    /// After each batch read: how long the newest entry took from its append to its delivery
    /// here (the broker's clock against this node's), and the packets this node's copy of the log
    /// holds; for metrics.
    fn observe(&self, lag: std::time::Duration, log_packets: usize) {
        let _ = (lag, log_packets);
    }
}

/// One logged packet, with its position in the shared log (a stream id as one number).
#[derive(Debug, Clone)]
pub struct LogEntry {
    /// Its place in the log: larger is later.
    pub position: u128,
    /// The rooms it was sent to (all sockets when empty).
    pub rooms: Vec<Room>,
    /// The rooms it excepted.
    pub except: Vec<Room>,
    /// The packet as delivered, offset included.
    pub packet: BroadcastPacket,
    /// Its text and attachments, in bytes.
    pub bytes: usize,
}

/// What a restore read from the broker before taking the order lock: every entry after `from`
/// up to `through`, in order, filtered for the session's rooms.
#[derive(Debug, Clone, Default)]
pub struct Prefetched {
    /// Where the read began (exclusive): the client's position.
    pub from: u128,
    /// Up to where the read is complete (inclusive).
    pub through: u128,
    /// The entries for the session, in log order.
    pub entries: Vec<LogEntry>,
}

/// What this node delivered from the shared log since it began reading it (at `start`), bounded
/// by [`RecoveryLimits`] (oldest dropped first).
#[derive(Debug)]
pub struct Mirror {
    limits: RecoveryLimits,
    /// Everything after this position that this node delivered is held, unless dropped since.
    complete_after: u128,
    head: u128,
    entries: VecDeque<LogEntry>,
    bytes: usize,
}

impl Mirror {
    /// A mirror of a log read from after `start` (the log's end when the node began reading).
    pub fn new(limits: RecoveryLimits, start: u128) -> Self {
        Self { limits, complete_after: start, head: start, entries: VecDeque::new(), bytes: 0 }
    }

    /// The position of the last entry delivered (or where reading began).
    pub fn head(&self) -> u128 {
        self.head
    }

    /// Positions after this one are all held: a restore from an older one needs a broker read.
    pub fn complete_after(&self) -> u128 {
        self.complete_after
    }

    /// Packets and bytes held.
    pub fn size(&self) -> (usize, usize) {
        (self.entries.len(), self.bytes)
    }

    /// Records an entry just delivered; drops the oldest past the bounds.
    pub fn push(&mut self, entry: LogEntry) {
        self.head = entry.position;
        self.bytes += entry.bytes;
        self.entries.push_back(entry);
        while self.entries.len() > self.limits.max_log_packets || self.bytes > self.limits.max_log_bytes {
            let Some(front) = self.entries.pop_front() else { break };
            self.bytes -= front.bytes;
            self.complete_after = front.position;
        }
    }

    /// Forgets everything and starts again after `start`: the log was reset (a new epoch) or
    /// this node may have missed entries (it could not read for a while and the log was trimmed).
    pub fn restart(&mut self, start: u128) {
        self.entries.clear();
        self.bytes = 0;
        self.complete_after = start;
        self.head = start;
    }

    /// The packets for `rooms` after `from` up to the head: from `prefetched` for the part this
    /// mirror no longer (or never) held, then from the mirror. All or an error.
    pub fn missed(
        &self,
        from: u128,
        rooms: &[Room],
        prefetched: &Prefetched,
        max_bytes: usize,
    ) -> Result<Vec<BroadcastPacket>, RestoreError> {
        if from > self.head {
            // Not delivered here yet (prefetch waits for it), or not a position of this log.
            return Err(RestoreError::UnknownOffset);
        }
        let mut bytes = 0;
        let mut missed = Vec::new();
        let mut take = |entry: &LogEntry| {
            if selects(&entry.rooms, &entry.except, rooms) {
                bytes += entry.bytes;
                if bytes > max_bytes {
                    return Err(RestoreError::TooLarge { max: max_bytes });
                }
                missed.push(entry.packet.clone());
            }
            Ok(())
        };
        if from < self.complete_after {
            if prefetched.from != from || prefetched.through < self.complete_after {
                return Err(RestoreError::LogTrimmed);
            }
            for entry in prefetched.entries.iter().filter(|e| e.position <= self.complete_after) {
                take(entry)?;
            }
        }
        let after = from.max(self.complete_after);
        for entry in self.entries.iter().filter(|e| e.position > after) {
            take(entry)?;
        }
        Ok(missed)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use switchboard_protocol::socketio::{Value, encode_event};

    use super::*;

    fn entry(position: u128, room: &str) -> LogEntry {
        let packet = encode_event("/", "n", &[Value::from(position as u64)], None);
        LogEntry {
            position,
            rooms: vec![Room::from(room)],
            except: Vec::new(),
            bytes: packet.text.len(),
            packet: BroadcastPacket::new(packet),
        }
    }

    fn numbers(packets: &[BroadcastPacket]) -> Vec<String> {
        packets.iter().map(|p| String::from_utf8_lossy(&p.packet().text).into_owned()).collect()
    }

    #[test]
    fn a_restore_replays_the_prefetched_part_then_the_mirror_and_never_guesses() {
        let limits = RecoveryLimits { max_log_packets: 2, ..RecoveryLimits::default() };
        let mut mirror = Mirror::new(limits, 10);
        for p in [11, 12, 13] {
            mirror.push(entry(p, "a"));
        }
        // 11 was dropped: from 10 the mirror alone cannot answer.
        assert_eq!(mirror.complete_after(), 11);
        let rooms = [Room::from("a")];
        assert_eq!(
            mirror.missed(10, &rooms, &Prefetched::default(), usize::MAX).err(),
            Some(RestoreError::LogTrimmed)
        );
        let prefetched = Prefetched { from: 10, through: 11, entries: vec![entry(11, "a")] };
        let missed = mirror.missed(10, &rooms, &prefetched, usize::MAX).expect("complete");
        assert_eq!(numbers(&missed), [r#"2["n",11]"#, r#"2["n",12]"#, r#"2["n",13]"#]);
        assert_eq!(mirror.missed(12, &rooms, &Prefetched::default(), usize::MAX).map(|m| m.len()), Ok(1));
        assert_eq!(
            mirror.missed(14, &rooms, &Prefetched::default(), usize::MAX).err(),
            Some(RestoreError::UnknownOffset)
        );
        assert_eq!(
            mirror.missed(11, &[Room::from("b")], &Prefetched::default(), usize::MAX).map(|m| m.len()),
            Ok(0)
        );
    }
}
