//! Interest routing: the room routes a namespace's adapter subscribes follow its room index, so a
//! room emit reaches only the nodes with members; and a join reports, as a [`Confirmation`], when
//! the broker has confirmed the subscriptions it needed, so emits from other nodes reach the socket.

use std::sync::{Arc, PoisonError};

use dashmap::mapref::entry::Entry;

use super::adapter::ClusterAdapter;
use super::route::{Route, socket_node};
use crate::confirmation::Confirmation;
use crate::types::{LocalSocket, Room, SocketId};

impl ClusterAdapter {
    /// Registers a local socket, subscribing its own-id room if that needs one.
    pub(super) fn add_socket_here(&self, socket: Arc<dyn LocalSocket>) {
        let id = socket.id().clone();
        // Re-adding an id drops its old memberships: those rooms may have emptied.
        let before = self.index.rooms_of(&id);
        self.index.add(socket);
        for room in before.iter().skip(1) {
            self.sync_room(room);
        }
        self.sync_room(&id.room());
    }

    /// Unregisters a local socket, unsubscribing the rooms it leaves empty.
    pub(super) fn remove_socket_here(&self, id: &SocketId) {
        for room in self.index.remove(id) {
            self.sync_room(&room);
        }
        self.sync_room(&id.room());
    }

    /// Subscribes or unsubscribes a room's route to match the index: wanted while the room has
    /// local members (or is the own room of a local socket whose id does not name this node).
    /// Socket-id-shaped rooms are routed to their node, never subscribed.
    pub(super) fn sync_room(&self, room: &Room) {
        if socket_node(room.as_str()).is_some() {
            return;
        }
        // Decided under the entry's lock from the index's current state, so concurrent joins and
        // leaves of one room leave the subscription matching whichever ran last.
        match self.subscribed.entry(room.clone()) {
            Entry::Occupied(entry) => {
                if !self.index.has_room(room) {
                    self.node.transport.unsubscribe(&Route::Room(self.nsp.clone(), room.clone()));
                    entry.remove();
                }
            }
            Entry::Vacant(entry) => {
                if self.index.has_room(room) {
                    let confirmation =
                        self.node.transport.subscribe(&Route::Room(self.nsp.clone(), room.clone()));
                    if !confirmation.is_confirmed() {
                        let mut unconfirmed = self.unconfirmed.lock().unwrap_or_else(PoisonError::into_inner);
                        *unconfirmed = std::mem::take(&mut *unconfirmed).and(confirmation.clone());
                    }
                    entry.insert(confirmation);
                }
            }
        }
    }

    /// Joins locally (subscribing the rooms new here); resolves once every room's subscription is
    /// confirmed, including rooms another socket made this node subscribe a moment ago.
    pub(super) fn join_local(&self, id: &SocketId, rooms: &[Room]) -> Confirmation {
        for room in self.index.join(id, rooms) {
            self.sync_room(&room);
        }
        let mut confirmation = Confirmation::confirmed();
        for room in rooms {
            if let Some(pending) = self.subscribed.get(room).filter(|c| !c.is_confirmed()) {
                confirmation = confirmation.and(pending.clone());
            }
        }
        confirmation
    }

    pub(super) fn leave_local(&self, id: &SocketId, room: &Room) {
        if self.index.leave(id, room) {
            self.sync_room(room);
        }
    }

    /// What a server-side emit waits for: this namespace's room subscriptions not confirmed yet.
    pub(super) fn unconfirmed(&self) -> Confirmation {
        let mut unconfirmed = self.unconfirmed.lock().unwrap_or_else(PoisonError::into_inner);
        *unconfirmed = std::mem::take(&mut *unconfirmed).and(Confirmation::confirmed());
        unconfirmed.clone()
    }
}
