//! What one client may make a node hold through Socket.IO: how long its room and namespace
//! names are, how many rooms a socket joins, how many namespaces a client connects to, and how
//! long an emptied child namespace stays. Checked before anything reaches the adapter: a name
//! that passes may become a broker subject or channel (`switchboard-nats`, `switchboard-redis`).

use std::time::Duration;

use switchboard_adapter::Room;

/// Default of [`SocketIoConfig::with_max_name_bytes`](super::SocketIoConfig::with_max_name_bytes).
pub const DEFAULT_MAX_NAME_BYTES: usize = 256;

/// Default of [`SocketIoConfig::with_max_rooms_per_socket`](super::SocketIoConfig::with_max_rooms_per_socket).
pub const DEFAULT_MAX_ROOMS_PER_SOCKET: usize = 1_000;

/// Default of [`SocketIoConfig::with_max_namespaces_per_client`](super::SocketIoConfig::with_max_namespaces_per_client).
pub const DEFAULT_MAX_NAMESPACES_PER_CLIENT: usize = 100;

/// Default of [`SocketIoConfig::with_child_namespace_cleanup`](super::SocketIoConfig::with_child_namespace_cleanup).
pub const DEFAULT_CHILD_NAMESPACE_CLEANUP: Duration = Duration::from_secs(5);

/// The limits every namespace applies (copied into each, so no lookup on the hot path).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limits {
    pub(crate) max_name_bytes: usize,
    pub(crate) max_rooms_per_socket: usize,
    pub(crate) max_namespaces_per_client: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_name_bytes: DEFAULT_MAX_NAME_BYTES,
            max_rooms_per_socket: DEFAULT_MAX_ROOMS_PER_SOCKET,
            max_namespaces_per_client: DEFAULT_MAX_NAMESPACES_PER_CLIENT,
        }
    }
}

/// A room name longer than the limit; the operation that named it did nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("room name of {len} bytes is longer than the limit of {max}")]
pub struct RoomNameTooLong {
    /// The name's length in bytes.
    pub len: usize,
    /// The limit ([`SocketIoConfig::with_max_name_bytes`](super::SocketIoConfig::with_max_name_bytes)).
    pub max: usize,
}

impl Limits {
    /// `Err` for the first of `rooms` longer than the name limit.
    pub(crate) fn check_rooms<'a>(
        &self,
        rooms: impl IntoIterator<Item = &'a Room>,
    ) -> Result<(), RoomNameTooLong> {
        let max = self.max_name_bytes;
        match rooms.into_iter().find(|room| room.as_str().len() > max) {
            Some(room) => Err(RoomNameTooLong { len: room.as_str().len(), max }),
            None => Ok(()),
        }
    }

    /// Whether a namespace name is within the name limit.
    pub(crate) fn namespace_fits(&self, nsp: &str) -> bool {
        nsp.len() <= self.max_name_bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_measured_in_bytes_up_to_the_limit_inclusive() {
        let limits = Limits { max_name_bytes: 4, ..Limits::default() };
        let rooms = |names: &[&str]| names.iter().map(|&n| Room::from(n)).collect::<Vec<_>>();
        assert_eq!(limits.check_rooms(&rooms(&["abcd", ""])), Ok(()));
        assert_eq!(limits.check_rooms(&rooms(&["ok", "abcde"])), Err(RoomNameTooLong { len: 5, max: 4 }));
        // "éé" is 4 bytes, "ééé" 6: UTF-8 bytes, as a broker counts them.
        assert_eq!(limits.check_rooms(&rooms(&["éé"])), Ok(()));
        assert_eq!(limits.check_rooms(&rooms(&["ééé"])), Err(RoomNameTooLong { len: 6, max: 4 }));
        assert!(limits.namespace_fits("/abc") && !limits.namespace_fits("/abcd"));
        assert_eq!(
            RoomNameTooLong { len: 5000, max: 256 }.to_string(),
            "room name of 5000 bytes is longer than the limit of 256"
        );
    }
}
