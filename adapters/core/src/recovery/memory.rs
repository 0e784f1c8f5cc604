//! The one-node [`SessionStore`]: disconnected sessions and the packet log in this process's
//! memory, each bounded by [`RecoveryLimits`] and dropping its oldest first. A node that restarts
//! starts a log with a new epoch, so its clients' offsets are refused, not misread.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use switchboard_protocol::socketio;
use tokio::time::Instant;

use super::offset::{self, Offset};
use super::{Prefetched, RecoveryLimits, SavedSession, SessionStore, SessionStoreFactory, selects};
use crate::adapter::BoxFuture;
use crate::error::{RestoreError, SaveError};
use crate::types::{BroadcastOptions, BroadcastPacket, Room};

/// A logged packet and whom it was for.
struct Entry {
    seq: u64,
    at: Instant,
    rooms: Vec<Room>,
    except: Vec<Room>,
    packet: socketio::Encoded,
    /// The packet's bytes, text and attachments.
    bytes: usize,
}

struct Log {
    entries: VecDeque<Entry>,
    bytes: usize,
    /// The sequence number the next packet gets; the first is 1, so 0 means "before any".
    next_seq: u64,
}

impl Log {
    /// The oldest sequence number still held (`next_seq` when none is).
    fn first_seq(&self) -> u64 {
        self.entries.front().map_or(self.next_seq, |e| e.seq)
    }

    /// Drops the oldest packets past the count and byte bounds, and those older than the window.
    fn trim(&mut self, limits: &RecoveryLimits, now: Instant) {
        while let Some(front) = self.entries.front() {
            let over = self.entries.len() > limits.max_log_packets || self.bytes > limits.max_log_bytes;
            let expired = front.at + limits.max_disconnection_duration < now;
            if !over && !expired {
                break;
            }
            self.bytes -= front.bytes;
            self.entries.pop_front();
        }
    }
}

/// A session kept, with when it was saved and the number that tells it from a later session
/// saved under the same pid.
struct Kept {
    session: SavedSession,
    at: Instant,
    size: usize,
    generation: u64,
}

#[derive(Default)]
struct Sessions {
    by_pid: HashMap<String, Kept>,
    /// Pids in the order they were saved, oldest first; entries of sessions since taken or
    /// replaced are skipped (their generation no longer matches) and compacted away.
    order: VecDeque<(String, u64)>,
    bytes: usize,
    generation: u64,
}

impl Sessions {
    fn remove(&mut self, pid: &str) -> Option<Kept> {
        let kept = self.by_pid.remove(pid)?;
        self.bytes -= kept.size;
        Some(kept)
    }

    /// Drops sessions past the window, then the oldest while past the count or byte bound.
    fn trim(&mut self, limits: &RecoveryLimits, now: Instant) {
        while let Some((pid, generation)) = self.order.front() {
            let live = self.by_pid.get(pid).filter(|k| k.generation == *generation);
            let drop = match live {
                None => true,
                Some(kept) => {
                    kept.at + limits.max_disconnection_duration < now
                        || self.by_pid.len() > limits.max_sessions
                        || self.bytes > limits.max_session_bytes
                }
            };
            if !drop {
                break;
            }
            if let Some((pid, generation)) = self.order.pop_front() {
                if self.by_pid.get(&pid).is_some_and(|k| k.generation == generation) {
                    self.remove(&pid);
                }
            }
        }
        // Restored sessions leave their place in `order` behind: keep it within twice the live.
        if self.order.len() > 2 * self.by_pid.len() + 64 {
            let by_pid = &self.by_pid;
            self.order.retain(|(pid, g)| by_pid.get(pid).is_some_and(|k| k.generation == *g));
        }
    }
}

/// See the module docs.
pub struct MemorySessionStore {
    limits: RecoveryLimits,
    epoch: u64,
    log: Mutex<Log>,
    sessions: Mutex<Sessions>,
}

impl std::fmt::Debug for MemorySessionStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemorySessionStore")
            .field("limits", &self.limits)
            .field("epoch", &self.epoch)
            .finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl MemorySessionStore {
    /// An empty store with a new epoch.
    pub fn new(limits: RecoveryLimits) -> Self {
        Self {
            limits,
            epoch: offset::new_epoch(),
            log: Mutex::new(Log { entries: VecDeque::new(), bytes: 0, next_seq: 1 }),
            sessions: Mutex::new(Sessions::default()),
        }
    }

    /// Packets and bytes the log holds now.
    pub fn log_size(&self) -> (usize, usize) {
        let log = lock(&self.log);
        (log.entries.len(), log.bytes)
    }

    /// Disconnected sessions held now (expired ones not yet dropped included).
    pub fn session_count(&self) -> usize {
        lock(&self.sessions).by_pid.len()
    }

    fn own(&self, offset: Option<&str>) -> Result<Offset, RestoreError> {
        offset.and_then(Offset::parse).filter(|o| o.epoch == self.epoch).ok_or(RestoreError::UnknownOffset)
    }
}

impl SessionStore for MemorySessionStore {
    fn append(
        &self,
        opts: &BroadcastOptions,
        encode: &mut dyn FnMut(&str) -> socketio::Encoded,
    ) -> Option<socketio::Encoded> {
        let now = Instant::now();
        let mut log = lock(&self.log);
        let seq = log.next_seq;
        log.next_seq += 1;
        let packet = encode(&Offset { epoch: self.epoch, seq }.to_string());
        let bytes = packet.text.len() + packet.attachments.iter().map(Bytes::len).sum::<usize>();
        log.bytes += bytes;
        log.entries.push_back(Entry {
            seq,
            at: now,
            rooms: opts.rooms.clone(),
            except: opts.except.clone(),
            packet: packet.clone(),
            bytes,
        });
        log.trim(&self.limits, now);
        Some(packet)
    }

    fn head(&self) -> String {
        let seq = lock(&self.log).next_seq - 1;
        Offset { epoch: self.epoch, seq }.to_string()
    }

    fn save(&self, session: SavedSession) -> BoxFuture<'_, Result<(), SaveError>> {
        let now = Instant::now();
        let size = session.size();
        let mut sessions = lock(&self.sessions);
        sessions.remove(&session.pid);
        sessions.generation += 1;
        let generation = sessions.generation;
        sessions.order.push_back((session.pid.clone(), generation));
        sessions.bytes += size;
        sessions.by_pid.insert(session.pid.clone(), Kept { session, at: now, size, generation });
        sessions.trim(&self.limits, now);
        Box::pin(std::future::ready(Ok(())))
    }

    fn take(&self, pid: &str) -> BoxFuture<'_, Result<SavedSession, RestoreError>> {
        let now = Instant::now();
        let result = match lock(&self.sessions).remove(pid) {
            None => Err(RestoreError::UnknownSession),
            Some(kept) if kept.at + self.limits.max_disconnection_duration < now => {
                Err(RestoreError::Expired)
            }
            Some(kept) => Ok(kept.session),
        };
        Box::pin(std::future::ready(result))
    }

    fn missed(
        &self,
        session: &SavedSession,
        offset: Option<&str>,
        _prefetched: &Prefetched,
        max_bytes: usize,
    ) -> Result<Vec<BroadcastPacket>, RestoreError> {
        let from = match offset {
            Some(offset) => self.own(Some(offset))?,
            None if session.delivered_logged => self.own(Some(&session.since))?,
            None => self.own(Some(&session.left_at))?,
        };
        let mut log = lock(&self.log);
        log.trim(&self.limits, Instant::now());
        if from.seq >= log.next_seq {
            // Past anything logged: not an offset this log gave out.
            return Err(RestoreError::UnknownOffset);
        }
        if from.seq + 1 < log.first_seq() {
            return Err(RestoreError::LogTrimmed);
        }
        let mut bytes = 0;
        let mut missed = Vec::new();
        for entry in log.entries.iter().filter(|e| e.seq > from.seq) {
            if selects(&entry.rooms, &entry.except, &session.rooms) {
                bytes += entry.bytes;
                if bytes > max_bytes {
                    return Err(RestoreError::TooLarge { max: max_bytes });
                }
                missed.push(BroadcastPacket::new(entry.packet.clone()));
            }
        }
        Ok(missed)
    }
}

/// Makes a [`MemorySessionStore`] per namespace (the default store).
#[derive(Debug, Default, Clone, Copy)]
pub struct MemorySessionStoreFactory;

impl SessionStoreFactory for MemorySessionStoreFactory {
    fn create(&self, _nsp: &str, limits: &RecoveryLimits) -> Arc<dyn SessionStore> {
        Arc::new(MemorySessionStore::new(*limits))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::time::Duration;

    use switchboard_protocol::socketio::{Value, encode_event};

    use super::*;
    use crate::types::SocketId;

    fn to(rooms: &[&str]) -> BroadcastOptions {
        BroadcastOptions { rooms: rooms.iter().map(|r| Room::from(*r)).collect(), ..Default::default() }
    }

    /// Logs `n` under `opts`; returns the offset it was given.
    fn log(store: &MemorySessionStore, opts: &BroadcastOptions, n: u64) -> String {
        let mut given = String::new();
        store.append(opts, &mut |offset| {
            given = offset.to_owned();
            encode_event("/", "n", &[Value::from(n), Value::from(offset)], None)
        });
        given
    }

    fn session(store: &MemorySessionStore, rooms: &[&str]) -> SavedSession {
        let head = store.head();
        SavedSession {
            pid: "pid".into(),
            sid: SocketId::from("sid"),
            rooms: std::iter::once("sid").chain(rooms.iter().copied()).map(Room::from).collect(),
            data: serde_json::json!({"name": "a"}),
            since: head.clone(),
            left_at: head,
            delivered_logged: false,
        }
    }

    fn texts(packets: &[BroadcastPacket]) -> Vec<String> {
        packets.iter().map(|p| String::from_utf8_lossy(&p.packet().text).into_owned()).collect()
    }

    fn limits() -> RecoveryLimits {
        RecoveryLimits::default()
    }

    #[test]
    fn the_packets_after_the_offset_for_the_sessions_rooms_come_back_in_order() {
        let store = MemorySessionStore::new(limits());
        let saved = session(&store, &["a"]);
        let first = log(&store, &to(&["a"]), 1);
        log(&store, &to(&["b"]), 2);
        let third = log(&store, &to(&["a", "b"]), 3);
        log(&store, &BroadcastOptions { except: vec![Room::from("a")], ..Default::default() }, 4);
        log(&store, &to(&["sid"]), 5);
        log(&store, &to(&[]), 6);
        let missed =
            store.missed(&saved, Some(&first), &Prefetched::default(), usize::MAX).expect("restorable");
        assert_eq!(
            texts(&missed),
            [
                format!(r#"2["n",3,"{third}"]"#),
                format!(r#"2["n",5,"{}"]"#, bump(&third, 2)),
                format!(r#"2["n",6,"{}"]"#, bump(&third, 3))
            ]
        );
        // Without an offset and without any logged packet delivered: from where it left.
        assert_eq!(store.missed(&saved, None, &Prefetched::default(), usize::MAX).map(|m| m.len()), Ok(4));
    }

    fn bump(offset: &str, by: u64) -> String {
        let o = Offset::parse(offset).expect("offset");
        Offset { epoch: o.epoch, seq: o.seq + by }.to_string()
    }

    #[test]
    fn a_trimmed_log_fails_the_whole_restore() {
        let store = MemorySessionStore::new(RecoveryLimits { max_log_packets: 3, ..limits() });
        let saved = session(&store, &["a"]);
        let first = log(&store, &to(&["a"]), 1);
        for n in 2..=4 {
            log(&store, &to(&["a"]), n);
        }
        // 2, 3 and 4 are kept, 1 is gone: from offset 1 nothing is lost, from before it 1 is.
        assert_eq!(
            store.missed(&saved, Some(&first), &Prefetched::default(), usize::MAX).map(|m| m.len()),
            Ok(3)
        );
        assert_eq!(
            store.missed(&saved, None, &Prefetched::default(), usize::MAX).err(),
            Some(RestoreError::LogTrimmed)
        );
    }

    #[test]
    fn a_log_over_its_bytes_drops_its_oldest() {
        let store = MemorySessionStore::new(RecoveryLimits { max_log_bytes: 100, ..limits() });
        for n in 0..50 {
            log(&store, &to(&["a"]), n);
        }
        let (packets, bytes) = store.log_size();
        assert!(bytes <= 100 && packets < 50, "{packets} packets, {bytes} bytes");
    }

    #[test]
    fn offsets_of_another_log_or_past_the_head_are_refused() {
        let store = MemorySessionStore::new(limits());
        let other = MemorySessionStore::new(limits());
        let saved = session(&store, &["a"]);
        let foreign = log(&other, &to(&["a"]), 1);
        log(&store, &to(&["a"]), 1);
        assert_eq!(
            store.missed(&saved, Some(&foreign), &Prefetched::default(), usize::MAX).err(),
            Some(RestoreError::UnknownOffset)
        );
        assert_eq!(
            store.missed(&saved, Some(&bump(&store.head(), 1)), &Prefetched::default(), usize::MAX).err(),
            Some(RestoreError::UnknownOffset)
        );
        assert_eq!(
            store.missed(&saved, Some("garbage"), &Prefetched::default(), usize::MAX).err(),
            Some(RestoreError::UnknownOffset)
        );
    }

    #[test]
    fn a_replay_larger_than_allowed_is_refused_whole() {
        let store = MemorySessionStore::new(limits());
        let saved = session(&store, &["a"]);
        for n in 0..10 {
            log(&store, &to(&["a"]), n);
        }
        assert_eq!(
            store.missed(&saved, None, &Prefetched::default(), 50).err(),
            Some(RestoreError::TooLarge { max: 50 })
        );
    }

    #[test]
    fn without_an_offset_a_socket_that_got_logged_packets_replays_from_its_start() {
        let store = MemorySessionStore::new(limits());
        let mut saved = session(&store, &["a"]);
        log(&store, &to(&["a"]), 1);
        saved.left_at = store.head();
        saved.delivered_logged = true;
        log(&store, &to(&["a"]), 2);
        assert_eq!(store.missed(&saved, None, &Prefetched::default(), usize::MAX).map(|m| m.len()), Ok(2));
    }

    #[tokio::test(start_paused = true)]
    async fn a_session_is_taken_once_and_expires_after_the_window() {
        let store = MemorySessionStore::new(RecoveryLimits {
            max_disconnection_duration: Duration::from_secs(2),
            ..limits()
        });
        let saved = session(&store, &[]);
        store.save(saved.clone()).await.expect("saved");
        assert_eq!(store.take("pid").await, Ok(saved.clone()));
        assert_eq!(store.take("pid").await, Err(RestoreError::UnknownSession));
        store.save(saved).await.expect("saved");
        tokio::time::advance(Duration::from_millis(2_001)).await;
        assert_eq!(store.take("pid").await, Err(RestoreError::Expired));
    }

    #[tokio::test(start_paused = true)]
    async fn sessions_past_a_bound_drop_the_oldest() {
        let store = MemorySessionStore::new(RecoveryLimits { max_sessions: 3, ..limits() });
        for i in 0..5 {
            let mut saved = session(&store, &[]);
            saved.pid = format!("pid-{i}");
            store.save(saved).await.expect("saved");
        }
        assert_eq!(store.session_count(), 3);
        assert_eq!(store.take("pid-1").await.map(|s| s.pid), Err(RestoreError::UnknownSession));
        assert_eq!(store.take("pid-4").await.map(|s| s.pid), Ok("pid-4".to_owned()));
        let store = MemorySessionStore::new(RecoveryLimits { max_session_bytes: 1_000, ..limits() });
        for i in 0..100 {
            let mut saved = session(&store, &[]);
            saved.pid = format!("pid-{i}");
            store.save(saved).await.expect("saved");
        }
        assert!(store.session_count() < 100 && store.session_count() > 1, "{}", store.session_count());
    }
}
