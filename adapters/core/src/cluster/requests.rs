//! Scatter-gather requests: fetchSockets, serverSideEmit with answers, and the client counts and
//! acks of a broadcast with acks.
//!
//! A request waits for exactly the peers that were live when it was sent. It finishes when each of
//! them answered or left membership ([`Requests::peer_left`]: nobody waits for a dead node), or at
//! its deadline — whichever comes first, so it always ends within its timeout. The map is bounded
//! ([`RequestError::Full`] when at capacity, before anything is sent) and every entry is removed
//! when its [`Ticket`] is dropped (answered, timed out or cancelled), or for ack broadcasts, which
//! outlive the call, when all acks arrived or at the deadline ([`Requests::expire`]): no entry
//! outlives its deadline, unlike the pending-request leak in Node's adapter. When the broker
//! connection is lost, [`Requests::fail_all`] ends every request at once ([`Gathered::lost`]):
//! its message may have been dropped, and answers cannot arrive.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use switchboard_protocol::socketio::Value;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::NodeId;
use crate::error::RequestError;
use crate::types::{AckResponse, SocketInfo};

/// One peer's answer to a request.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// How many of its sockets a broadcast with acks reached.
    ClientCount(u64),
    /// Its sockets selected by a fetchSockets.
    Sockets(Vec<SocketInfo>),
    /// Its server-side handler's answer.
    Emit(Vec<Value>),
}

/// What a request got by the time it finished.
#[derive(Debug, Default, PartialEq)]
pub struct Gathered {
    /// The answers, in arrival order.
    pub replies: Vec<(NodeId, Reply)>,
    /// Peers that left membership before answering (not waited for).
    pub left: Vec<NodeId>,
    /// Peers still silent at the deadline (or when the broker was lost); 0 when the request completed.
    pub missing: usize,
    /// The broker connection was lost while waiting ([`Requests::fail_all`]): the missing answers
    /// will not come.
    pub lost: bool,
}

/// What a ticket hears about its request.
enum Event {
    /// A peer answered.
    Reply(NodeId, Reply),
    /// A peer left membership without answering.
    Left(NodeId),
    /// The broker connection was lost.
    Lost,
}

struct Pending {
    waiting: HashSet<NodeId>,
    events: mpsc::UnboundedSender<Event>,
    deadline: Instant,
    acks: Option<Acks>,
}

/// Forwarding state of a broadcast with acks.
struct Acks {
    sink: mpsc::UnboundedSender<AckResponse>,
    /// Acks announced by client counts so far.
    announced: u64,
    /// Peers that announced some, with how many of their acks are still to come: only those are
    /// taken (a node outside membership that got the broadcast anyway is not counted, so its acks
    /// must not fill the stream, and a peer cannot send more acks than it announced).
    counted: HashMap<NodeId, u64>,
    /// Acks forwarded so far.
    forwarded: u64,
    /// The caller has its stream and no longer holds the ticket.
    lingering: bool,
}

impl Pending {
    /// An ack entry is done once every count came in and as many acks were forwarded.
    fn acks_done(&self) -> bool {
        self.acks
            .as_ref()
            .is_some_and(|a| a.lingering && self.waiting.is_empty() && a.forwarded >= a.announced)
    }
}

/// See the module docs. One per namespace adapter; ids are unique within it.
#[derive(Debug)]
pub struct Requests {
    pending: Mutex<HashMap<u64, Pending>>,
    next_id: AtomicU64,
    capacity: usize,
}

impl std::fmt::Debug for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pending").field("waiting", &self.waiting).field("deadline", &self.deadline).finish()
    }
}

impl Requests {
    /// An empty map holding at most `capacity` requests.
    pub fn new(capacity: usize) -> Self {
        Self { pending: Mutex::new(HashMap::new()), next_id: AtomicU64::new(1), capacity }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<u64, Pending>> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers a request to `peers` ending at `deadline`; send it with the ticket's id, then wait.
    pub fn open(&self, peers: Vec<NodeId>, deadline: Instant) -> Result<Ticket<'_>, RequestError> {
        self.insert(peers, deadline, None)
    }

    /// Same for a broadcast with acks: acks for this id are forwarded to `sink` until every
    /// announced ack arrived or the deadline, even after the ticket is [lingering](Ticket::linger).
    pub fn open_with_acks(
        &self,
        peers: Vec<NodeId>,
        deadline: Instant,
        sink: mpsc::UnboundedSender<AckResponse>,
    ) -> Result<Ticket<'_>, RequestError> {
        let acks = Acks { sink, announced: 0, counted: HashMap::new(), forwarded: 0, lingering: false };
        self.insert(peers, deadline, Some(acks))
    }

    fn insert(
        &self,
        peers: Vec<NodeId>,
        deadline: Instant,
        acks: Option<Acks>,
    ) -> Result<Ticket<'_>, RequestError> {
        let (tx, rx) = mpsc::unbounded_channel();
        let waiting: HashSet<NodeId> = peers.into_iter().collect();
        let expected = waiting.len();
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut pending = self.lock();
        if pending.len() >= self.capacity {
            return Err(RequestError::Full { capacity: self.capacity });
        }
        pending.insert(id, Pending { waiting, events: tx, deadline, acks });
        drop(pending);
        Ok(Ticket { requests: self, id, expected, deadline, events: rx, lingering: false })
    }

    /// A peer's answer; ignored (returns false) unless the request waits for that peer.
    pub fn reply(&self, id: u64, from: &NodeId, reply: Reply) -> bool {
        let mut pending = self.lock();
        let Some(entry) = pending.get_mut(&id) else { return false };
        if !entry.waiting.remove(from.as_str()) {
            return false;
        }
        if let (Reply::ClientCount(n), Some(acks)) = (&reply, entry.acks.as_mut()) {
            acks.announced = acks.announced.saturating_add(*n);
            if *n > 0 {
                acks.counted.insert(from.clone(), *n);
            }
        }
        // The receiver is gone only if the ticket was dropped, which removes the entry: ignore.
        let _ = entry.events.send(Event::Reply(from.clone(), reply));
        if entry.acks_done() {
            pending.remove(&id);
        }
        true
    }

    /// A socket's answer to a broadcast with acks, relayed by `from`; forwarded to the caller's
    /// stream if `from` announced acks (its count arrives first: both travel on one route, in
    /// order) and has not sent as many as it announced yet.
    pub fn ack(&self, id: u64, from: &NodeId, response: AckResponse) -> bool {
        let mut pending = self.lock();
        let Some(entry) = pending.get_mut(&id) else { return false };
        let Some(acks) = entry.acks.as_mut() else { return false };
        match acks.counted.get_mut(from.as_str()) {
            Some(left) if *left > 0 => *left -= 1,
            _ => return false,
        }
        acks.forwarded += 1;
        let closed = acks.sink.send(response).is_err();
        if closed || entry.acks_done() {
            pending.remove(&id);
        }
        !closed
    }

    /// A peer left membership: no request waits for it any longer.
    pub fn peer_left(&self, node: &NodeId) {
        let mut pending = self.lock();
        let mut done = Vec::new();
        for (id, entry) in pending.iter_mut() {
            if entry.waiting.remove(node.as_str()) {
                let _ = entry.events.send(Event::Left(node.clone()));
                if entry.acks_done() {
                    done.push(*id);
                }
            }
        }
        for id in done {
            pending.remove(&id);
        }
    }

    /// The broker connection was lost: every request ends now ([`Gathered::lost`]) and is removed,
    /// ack broadcasts included (their streams end once the local sockets have answered, since no
    /// remote ack can arrive); returns how many.
    pub fn fail_all(&self) -> usize {
        let mut pending = self.lock();
        for entry in pending.values() {
            let _ = entry.events.send(Event::Lost);
        }
        let n = pending.len();
        pending.clear();
        n
    }

    /// Removes every request past its deadline at `now` (ack broadcasts, and tickets whose owner
    /// stalled); returns how many.
    pub fn expire(&self, now: Instant) -> usize {
        let mut pending = self.lock();
        let before = pending.len();
        pending.retain(|_, entry| entry.deadline > now);
        before - pending.len()
    }

    /// Removes request `id` (a lingering ack broadcast at its deadline); returns whether it was pending.
    pub fn cancel(&self, id: u64) -> bool {
        self.lock().remove(&id).is_some()
    }

    /// Requests in flight.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no request is in flight.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A request in flight; dropping it removes the request (unless it [lingers](Ticket::linger)).
#[derive(Debug)]
pub struct Ticket<'a> {
    requests: &'a Requests,
    id: u64,
    expected: usize,
    deadline: Instant,
    events: mpsc::UnboundedReceiver<Event>,
    lingering: bool,
}

impl Ticket<'_> {
    /// The request id to put in the message.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Waits until every expected peer answered or left, the deadline, or the broker is lost.
    pub async fn gather(&mut self) -> Gathered {
        let mut out = Gathered::default();
        let mut accounted = 0;
        while accounted < self.expected {
            match tokio::time::timeout_at(self.deadline, self.events.recv()).await {
                Ok(Some(Event::Reply(from, reply))) => out.replies.push((from, reply)),
                Ok(Some(Event::Left(from))) => out.left.push(from),
                Ok(Some(Event::Lost)) => {
                    out.lost = true;
                    break;
                }
                // The entry was expired from under us, or the deadline passed.
                Ok(None) | Err(_) => break,
            }
            accounted += 1;
        }
        out.missing = self.expected - accounted;
        out
    }

    /// Keeps forwarding acks after the ticket is gone, until all announced acks arrived or the
    /// deadline; returns whether the request is still pending (then the caller removes it at the
    /// deadline with [`Requests::cancel`], or [`Requests::expire`] does).
    pub fn linger(mut self) -> bool {
        self.lingering = true;
        let mut pending = self.requests.lock();
        let Some(entry) = pending.get_mut(&self.id) else { return false };
        match entry.acks.as_mut() {
            Some(acks) => acks.lingering = true,
            None => {
                pending.remove(&self.id);
                return false;
            }
        }
        if entry.acks_done() {
            pending.remove(&self.id);
            return false;
        }
        true
    }
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        if !self.lingering {
            self.requests.lock().remove(&self.id);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::time::Duration;

    use super::*;

    fn peers(names: &[&str]) -> Vec<NodeId> {
        names.iter().map(|&n| n.into()).collect()
    }

    fn soon() -> Instant {
        Instant::now() + Duration::from_secs(5)
    }

    #[tokio::test]
    async fn completes_when_every_peer_answered() {
        let r = Requests::new(8);
        let mut t = r.open(peers(&["a", "b"]), soon()).unwrap();
        assert!(r.reply(t.id(), &"a".into(), Reply::Emit(vec![Value::from(1)])));
        assert!(!r.reply(t.id(), &"a".into(), Reply::Emit(vec![])), "a second answer is ignored");
        assert!(!r.reply(t.id(), &"z".into(), Reply::Emit(vec![])), "a peer not asked is ignored");
        assert!(r.reply(t.id(), &"b".into(), Reply::Emit(vec![])));
        let got = t.gather().await;
        assert_eq!(got.replies.len(), 2);
        assert_eq!(got.missing, 0);
        drop(t);
        assert!(r.is_empty(), "the ticket removes its entry");
    }

    #[tokio::test]
    async fn a_peer_leaving_is_not_waited_for() {
        let r = Requests::new(8);
        let mut t = r.open(peers(&["a", "b"]), soon()).unwrap();
        r.reply(t.id(), &"a".into(), Reply::Sockets(vec![]));
        r.peer_left(&"b".into());
        let started = std::time::Instant::now();
        let got = t.gather().await;
        assert!(started.elapsed() < Duration::from_secs(1));
        assert_eq!(got.left, peers(&["b"]));
        assert_eq!(got.missing, 0);
        assert!(!r.reply(t.id(), &"b".into(), Reply::Sockets(vec![])), "too late");
    }

    #[tokio::test(start_paused = true)]
    async fn ends_at_its_deadline_and_reports_the_missing() {
        let r = Requests::new(8);
        let deadline = Instant::now() + Duration::from_millis(300);
        let mut t = r.open(peers(&["a", "b", "c"]), deadline).unwrap();
        r.reply(t.id(), &"a".into(), Reply::Emit(vec![]));
        let got = t.gather().await;
        assert_eq!(Instant::now(), deadline);
        assert_eq!((got.replies.len(), got.missing), (1, 2));
        drop(t);
        assert!(r.is_empty());
    }

    #[tokio::test]
    async fn a_lingering_request_with_nothing_to_wait_for_is_removed_at_once() {
        let r = Requests::new(8);
        let (tx, _rx) = mpsc::unbounded_channel();
        let mut t = r.open_with_acks(peers(&["a"]), soon(), tx).unwrap();
        r.reply(t.id(), &"a".into(), Reply::ClientCount(0));
        t.gather().await;
        assert!(!t.linger());
        assert!(r.is_empty());
        let t = r.open(peers(&["a"]), soon()).unwrap();
        let id = t.id();
        assert!(!t.linger(), "a plain request does not linger");
        assert!(!r.cancel(id));
    }

    #[tokio::test]
    async fn a_lost_broker_ends_every_request_at_once() {
        let r = Requests::new(8);
        let mut t = r.open(peers(&["a", "b"]), soon()).unwrap();
        let (tx, mut acks) = mpsc::unbounded_channel();
        let lingering = r.open_with_acks(peers(&["a"]), soon(), tx).unwrap();
        let ack_id = lingering.id();
        r.reply(ack_id, &"a".into(), Reply::ClientCount(3));
        assert!(lingering.linger());
        r.reply(t.id(), &"a".into(), Reply::Emit(vec![]));
        assert_eq!(r.fail_all(), 2);
        let started = std::time::Instant::now();
        let got = t.gather().await;
        assert!(started.elapsed() < Duration::from_secs(1));
        assert!(got.lost);
        assert_eq!((got.replies.len(), got.missing), (1, 1));
        assert!(r.is_empty());
        assert!(!r.reply(t.id(), &"b".into(), Reply::Emit(vec![])), "too late");
        assert!(!r.ack(ack_id, &"a".into(), AckResponse { socket: "s".into(), args: vec![] }));
        assert!(acks.recv().await.is_none(), "the ack stream ends: no remote ack can come");
    }

    #[tokio::test]
    async fn no_peers_completes_at_once() {
        let r = Requests::new(8);
        let mut t = r.open(vec![], soon()).unwrap();
        assert_eq!(t.gather().await, Gathered::default());
    }

    #[test]
    fn capacity_is_enforced_and_freed() {
        let r = Requests::new(2);
        let a = r.open(peers(&["x"]), soon()).unwrap();
        let b = r.open(peers(&["x"]), soon()).unwrap();
        assert_eq!(r.open(peers(&["x"]), soon()).unwrap_err(), RequestError::Full { capacity: 2 });
        drop(a);
        let c = r.open(peers(&["x"]), soon()).unwrap();
        assert_ne!(b.id(), c.id());
        drop((b, c));
        assert!(r.is_empty());
    }

    #[test]
    fn expire_removes_entries_past_their_deadline() {
        let r = Requests::new(8);
        let now = Instant::now();
        let (tx, _rx) = mpsc::unbounded_channel();
        assert!(r.open_with_acks(peers(&["a"]), now + Duration::from_millis(10), tx).unwrap().linger());
        let _live = r.open(peers(&["a"]), now + Duration::from_secs(60)).unwrap();
        assert_eq!(r.len(), 2);
        assert_eq!(r.expire(now), 0);
        assert_eq!(r.expire(now + Duration::from_millis(10)), 1);
        assert_eq!(r.len(), 1);
    }

    #[tokio::test]
    async fn acks_are_forwarded_until_all_announced_arrived() {
        let r = Requests::new(8);
        let (tx, mut rx) = mpsc::unbounded_channel();
        let mut t = r.open_with_acks(peers(&["a", "b"]), soon(), tx).unwrap();
        let id = t.id();
        let ack = |s: &str| AckResponse { socket: s.into(), args: vec![] };
        let (a, b) = (NodeId::from("a"), NodeId::from("b"));
        assert!(!r.ack(id, &a, ack("early")), "an ack before its node's count is not taken");
        r.reply(id, &a, Reply::ClientCount(2));
        assert!(r.ack(id, &a, ack("a1")));
        assert!(!r.ack(id, &"z".into(), ack("z1")), "a node that announced nothing");
        r.reply(id, &b, Reply::ClientCount(1));
        let got = t.gather().await;
        let counts: u64 =
            got.replies.iter().map(|(_, r)| if let Reply::ClientCount(n) = r { *n } else { 0 }).sum();
        assert_eq!(counts, 3);
        assert!(t.linger(), "acks still expected");
        assert_eq!(r.len(), 1);
        assert!(r.ack(id, &a, ack("a2")));
        assert!(r.ack(id, &b, ack("b1")));
        assert!(r.is_empty(), "all announced acks arrived");
        assert!(!r.ack(id, &a, ack("late")));
        let mut got = Vec::new();
        while let Ok(a) = rx.try_recv() {
            got.push(a.socket.to_string());
        }
        assert_eq!(got, ["a1", "a2", "b1"]);
    }

    #[tokio::test]
    async fn a_peer_cannot_send_more_acks_than_it_announced() {
        let r = Requests::new(8);
        let (tx, mut rx) = mpsc::unbounded_channel();
        let t = r.open_with_acks(peers(&["a", "b"]), soon(), tx).unwrap();
        let id = t.id();
        let ack = |s: &str| AckResponse { socket: s.into(), args: vec![] };
        let a = NodeId::from("a");
        r.reply(id, &a, Reply::ClientCount(1));
        assert!(r.ack(id, &a, ack("a1")));
        assert!(!r.ack(id, &a, ack("a2")), "a announced one");
        assert_eq!(rx.try_recv().unwrap().socket.as_str(), "a1");
        assert!(rx.try_recv().is_err());
        drop(t);
    }

    #[test]
    fn a_dropped_ack_stream_removes_the_entry() {
        let r = Requests::new(8);
        let (tx, rx) = mpsc::unbounded_channel();
        let t = r.open_with_acks(peers(&["a"]), soon(), tx).unwrap();
        let id = t.id();
        r.reply(id, &"a".into(), Reply::ClientCount(5));
        assert!(t.linger());
        drop(rx);
        assert!(!r.ack(id, &"a".into(), AckResponse { socket: "s".into(), args: vec![] }));
        assert!(r.is_empty());
    }
}
