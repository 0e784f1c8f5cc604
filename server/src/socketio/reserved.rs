//! The event names Socket.IO reserves for its own use: clients may not send them (a parse error)
//! and servers may not emit them. The one place that knows the list.

/// Reserved by socket.io: its connection lifecycle and the event emitter's own events.
const RESERVED: [&str; 6] =
    ["connect", "connect_error", "disconnect", "disconnecting", "newListener", "removeListener"];

/// An emit or a client's event used a reserved name; nothing was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is a reserved event name")]
pub struct ReservedEventName(pub &'static str);

/// `Err` when `event` is reserved.
pub fn check_event_name(event: &str) -> Result<(), ReservedEventName> {
    match RESERVED.iter().find(|name| **name == event) {
        Some(name) => Err(ReservedEventName(name)),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_reserved_names_are_refused() {
        assert_eq!(check_event_name("connect"), Err(ReservedEventName("connect")));
        assert_eq!(
            check_event_name("removeListener").map_err(|e| e.to_string()),
            Err("\"removeListener\" is a reserved event name".to_owned())
        );
        assert_eq!(check_event_name("message"), Ok(()));
        assert_eq!(check_event_name("Connect"), Ok(()));
    }
}
