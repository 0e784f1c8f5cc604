//! The local room index: which of this node's sockets are in which rooms.
//!
//! Two sharded maps (socket → its rooms, room → its members) so a broadcast to a room only
//! read-locks that room's shard, never a global lock. A socket's own room (its id) is not stored:
//! a room name that is a socket id resolves to that socket, which saves a map per socket.
//! Lock order is always sockets, then rooms.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use dashmap::DashMap;

use crate::types::{BroadcastOptions, LocalSocket, Room, SocketId, SocketInfo};

struct Member {
    handle: Arc<dyn LocalSocket>,
    rooms: Vec<Room>,
}

/// See the module docs.
#[derive(Default)]
pub struct RoomIndex {
    sockets: DashMap<SocketId, Member>,
    rooms: DashMap<Room, HashMap<SocketId, Arc<dyn LocalSocket>>>,
}

impl std::fmt::Debug for RoomIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RoomIndex")
            .field("sockets", &self.sockets.len())
            .field("rooms", &self.rooms.len())
            .finish()
    }
}

impl RoomIndex {
    /// An empty index.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a socket (it is then in its own id room).
    pub fn add(&self, socket: Arc<dyn LocalSocket>) {
        self.sockets.insert(socket.id().clone(), Member { handle: socket, rooms: Vec::new() });
    }

    /// Unregisters a socket and removes it from every room; returns the rooms that became empty.
    pub fn remove(&self, id: &SocketId) -> Vec<Room> {
        let Some((_, member)) = self.sockets.remove(id) else { return Vec::new() };
        member.rooms.into_iter().filter(|room| self.remove_member(room, id)).collect()
    }

    /// Adds a socket to rooms; returns the rooms that did not exist on this node before.
    pub fn join(&self, id: &SocketId, rooms: &[Room]) -> Vec<Room> {
        let Some(mut member) = self.sockets.get_mut(id) else { return Vec::new() };
        let mut created = Vec::new();
        for room in rooms {
            if room.as_str() == id.as_str() || member.rooms.contains(room) {
                continue;
            }
            member.rooms.push(room.clone());
            let mut entry = self.rooms.entry(room.clone()).or_default();
            if entry.is_empty() {
                created.push(room.clone());
            }
            entry.insert(id.clone(), member.handle.clone());
        }
        created
    }

    /// Removes a socket from a room; returns whether the room is now empty on this node.
    pub fn leave(&self, id: &SocketId, room: &Room) -> bool {
        let Some(mut member) = self.sockets.get_mut(id) else { return false };
        let Some(pos) = member.rooms.iter().position(|r| r == room) else { return false };
        member.rooms.swap_remove(pos);
        drop(member);
        self.remove_member(room, id)
    }

    fn remove_member(&self, room: &Room, id: &SocketId) -> bool {
        let emptied = match self.rooms.get_mut(room) {
            Some(mut members) => {
                members.remove(id);
                members.is_empty()
            }
            None => false,
        };
        if emptied {
            // Re-check under the entry lock: a join may have refilled it meanwhile.
            return self.rooms.remove_if(room, |_, members| members.is_empty()).is_some();
        }
        false
    }

    /// The rooms a socket is in, its own id room first.
    pub fn rooms_of(&self, id: &SocketId) -> Vec<Room> {
        match self.sockets.get(id) {
            Some(member) => std::iter::once(id.room()).chain(member.rooms.iter().cloned()).collect(),
            None => Vec::new(),
        }
    }

    /// Every room with members on this node (own id rooms excluded).
    pub fn rooms(&self) -> Vec<Room> {
        self.rooms.iter().map(|e| e.key().clone()).collect()
    }

    /// Whether `room` has members on this node.
    pub fn has_room(&self, room: &Room) -> bool {
        self.rooms.contains_key(room) || self.sockets.contains_key(room.as_str())
    }

    /// Number of sockets on this node.
    pub fn len(&self) -> usize {
        self.sockets.len()
    }

    /// Whether no socket is registered.
    pub fn is_empty(&self) -> bool {
        self.sockets.is_empty()
    }

    /// Calls `f` for every local socket the options select, each once; returns how many.
    ///
    /// `f` runs under a shard read lock: it must not call back into this index (use
    /// [`RoomIndex::select`] for that). Queueing a packet is fine.
    pub fn for_each(&self, opts: &BroadcastOptions, mut f: impl FnMut(&Arc<dyn LocalSocket>)) -> usize {
        let except = self.except_set(opts);
        let excluded = |id: &SocketId| except.as_ref().is_some_and(|e| e.contains(id));
        let mut count = 0;
        match opts.rooms.as_slice() {
            [] => {
                for member in self.sockets.iter() {
                    if !excluded(member.key()) {
                        f(&member.handle);
                        count += 1;
                    }
                }
            }
            [room] => {
                self.for_room(room, |id, handle| {
                    if !excluded(id) {
                        f(handle);
                        count += 1;
                    }
                });
            }
            rooms => {
                let mut seen: HashSet<SocketId> = HashSet::new();
                for room in rooms {
                    self.for_room(room, |id, handle| {
                        if !excluded(id) && seen.insert(id.clone()) {
                            f(handle);
                            count += 1;
                        }
                    });
                }
            }
        }
        count
    }

    /// The selected sockets, collected so the caller may act on them without holding index locks.
    pub fn select(&self, opts: &BroadcastOptions) -> Vec<Arc<dyn LocalSocket>> {
        let mut out = Vec::new();
        self.for_each(opts, |s| out.push(s.clone()));
        out
    }

    /// fetchSockets for this node.
    pub fn fetch(&self, opts: &BroadcastOptions) -> Vec<SocketInfo> {
        self.select(opts)
            .into_iter()
            .map(|s| {
                let mut info = s.info();
                info.rooms = self.rooms_of(s.id());
                info
            })
            .collect()
    }

    fn for_room(&self, room: &Room, mut f: impl FnMut(&SocketId, &Arc<dyn LocalSocket>)) {
        if let Some(members) = self.rooms.get(room) {
            for (id, handle) in members.iter() {
                f(id, handle);
            }
        }
        if let Some(member) = self.sockets.get(room.as_str()) {
            let in_room_too = self.rooms.get(room).is_some_and(|m| m.contains_key(member.key()));
            if !in_room_too {
                f(member.key(), &member.handle);
            }
        }
    }

    fn except_set(&self, opts: &BroadcastOptions) -> Option<HashSet<SocketId>> {
        if opts.except.is_empty() {
            return None;
        }
        let mut set = HashSet::new();
        for room in &opts.except {
            self.for_room(room, |id, _| {
                set.insert(id.clone());
            });
        }
        Some(set)
    }
}
