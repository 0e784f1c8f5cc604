//! A [`SavedSession`] as the Redis store keeps it under its key: JSON, read back within a bound.

use serde::{Deserialize, Serialize};
use switchboard_adapter::recovery::SavedSession;
use switchboard_adapter::{Room, SocketId};

/// Most rooms a session read back from Redis may have; more is not one this store wrote.
const MAX_ROOMS: usize = 100_000;

#[derive(Serialize, Deserialize)]
struct Stored {
    pid: String,
    sid: String,
    rooms: Vec<String>,
    data: serde_json::Value,
    since: String,
    left_at: String,
    delivered_logged: bool,
}

/// The session as JSON.
pub(crate) fn encode(session: &SavedSession) -> Vec<u8> {
    let stored = Stored {
        pid: session.pid.clone(),
        sid: session.sid.as_str().to_owned(),
        rooms: session.rooms.iter().map(|r| r.as_str().to_owned()).collect(),
        data: session.data.clone(),
        since: session.since.clone(),
        left_at: session.left_at.clone(),
        delivered_logged: session.delivered_logged,
    };
    serde_json::to_vec(&stored).unwrap_or_default()
}

/// The session read back; `None` if it is not one this store wrote.
pub(crate) fn decode(bytes: &[u8]) -> Option<SavedSession> {
    let stored: Stored = serde_json::from_slice(bytes).ok()?;
    if stored.rooms.len() > MAX_ROOMS {
        return None;
    }
    Some(SavedSession {
        pid: stored.pid,
        sid: SocketId::from(stored.sid),
        rooms: stored.rooms.into_iter().map(Room::from).collect(),
        data: stored.data,
        since: stored.since,
        left_at: stored.left_at,
        delivered_logged: stored.delivered_logged,
    })
}
