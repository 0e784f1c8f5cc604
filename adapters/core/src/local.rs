//! The local half of every adapter operation: what it does to this node's own sockets. The
//! in-memory adapter is only this; the cluster adapter does the same for its own sockets when
//! called, and for the requests of other nodes when they arrive, besides talking to the broker.
//!
//! Joins and leaves go through [`Adapter::join`] and [`Adapter::leave`], so an adapter that keeps
//! something in step with its rooms (the cluster adapter's room subscriptions) sees every change.

use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::adapter::Adapter;
use crate::confirmation::Confirmation;
use crate::rooms::RoomIndex;
use crate::types::{AckStream, BroadcastOptions, BroadcastPacket, Room};

/// [`RoomIndex::deliver_with_ack`] when only local sockets answer: their stream, ending at `timeout`.
pub(crate) fn ack_stream(
    index: &RoomIndex,
    packet: &BroadcastPacket,
    ack_id: u64,
    opts: &BroadcastOptions,
    timeout: Duration,
) -> AckStream {
    let (sink, responses) = mpsc::unbounded_channel();
    let expected = index.deliver_with_ack(packet, ack_id, opts, &sink);
    AckStream { expected, local: expected, deadline: Instant::now() + timeout, responses }
}

/// socketsJoin: the selected local sockets join `rooms`; resolves once every join is confirmed.
pub(crate) fn add_sockets<A: Adapter + ?Sized>(
    adapter: &A,
    opts: &BroadcastOptions,
    rooms: &[Room],
) -> Confirmation {
    let mut confirmation = Confirmation::confirmed();
    for s in adapter.local().select(opts) {
        confirmation = confirmation.and(adapter.join(s.id(), rooms));
    }
    confirmation
}

/// socketsLeave: the selected local sockets leave `rooms`.
pub(crate) fn del_sockets<A: Adapter + ?Sized>(adapter: &A, opts: &BroadcastOptions, rooms: &[Room]) {
    for s in adapter.local().select(opts) {
        for room in rooms {
            adapter.leave(s.id(), room);
        }
    }
}

/// disconnectSockets: disconnects the selected local sockets (`close` also closes their connection).
pub(crate) fn disconnect_sockets(index: &RoomIndex, opts: &BroadcastOptions, close: bool) {
    for s in index.select(opts) {
        s.disconnect(close);
    }
}
