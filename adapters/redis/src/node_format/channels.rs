//! The channel names of `@socket.io/redis-adapter` 8 (classic) for one namespace: what a Node
//! server subscribes and publishes, so a Switchboard node in this format is one of them.

/// The channels of one namespace under key `key` (Node's `key` option, `socket.io` by default).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Channels {
    /// `{key}#{nsp}#`: broadcasts to the whole namespace, and the prefix of room channels.
    pub broadcast: String,
    /// `{key}#{nsp}#*` with the glob characters of key and namespace escaped (Node does not
    /// escape them, and filters with a literal prefix check; so does this node).
    pub pattern: String,
    /// `{key}-request#{nsp}#`: requests; its subscriber count is the server count.
    pub request: String,
    /// `{key}-response#{nsp}#`: answers (Node's default).
    pub response: String,
    /// `{key}-response#{nsp}#{uid}#`: answers addressed to this adapter only
    /// (`publishOnSpecificResponseChannel`).
    pub own_response: String,
}

impl Channels {
    /// The names for namespace `nsp` and the adapter `uid`.
    pub fn new(key: &str, nsp: &str, uid: &str) -> Self {
        let broadcast = format!("{key}#{nsp}#");
        let pattern = prefix_pattern(&broadcast);
        Self {
            broadcast,
            pattern,
            request: format!("{key}-request#{nsp}#"),
            response: format!("{key}-response#{nsp}#"),
            own_response: format!("{key}-response#{nsp}#{uid}#"),
        }
    }

    /// Where a broadcast to `rooms` goes: the room's channel for exactly one room, else the
    /// namespace's (as Node publishes).
    pub fn for_rooms<R: std::borrow::Borrow<str>>(&self, rooms: &[R]) -> String {
        match rooms {
            [room] => format!("{}{}#", self.broadcast, room.borrow()),
            _ => self.broadcast.clone(),
        }
    }

    /// The room a received broadcast's channel names (`""` for the namespace channel); `None`
    /// when the channel is not this namespace's (a glob match of another one).
    pub fn room_of<'c>(&self, channel: &'c [u8]) -> Option<&'c [u8]> {
        let rest = channel.strip_prefix(self.broadcast.as_bytes())?;
        match rest {
            [] => Some(rest),
            [room @ .., b'#'] => Some(room),
            _ => None,
        }
    }
}

/// The PSUBSCRIBE pattern of every channel that starts with `prefix`: its glob characters
/// escaped, then `*`.
pub fn prefix_pattern(prefix: &str) -> String {
    let mut pattern = String::with_capacity(prefix.len() + 2);
    for c in prefix.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('*');
    pattern
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_nodes() {
        let c = Channels::new("socket.io", "/", "abc");
        assert_eq!(c.broadcast, "socket.io#/#");
        assert_eq!(c.pattern, "socket.io#/#*");
        assert_eq!(c.request, "socket.io-request#/#");
        assert_eq!(c.response, "socket.io-response#/#");
        assert_eq!(c.own_response, "socket.io-response#/#abc#");
        assert_eq!(c.for_rooms(&["room1"]), "socket.io#/#room1#");
        assert_eq!(c.for_rooms(&["a", "b"]), "socket.io#/#");
        assert_eq!(c.for_rooms::<&str>(&[]), "socket.io#/#");
        assert_eq!(c.room_of(b"socket.io#/#room1#"), Some(&b"room1"[..]));
        assert_eq!(c.room_of(b"socket.io#/#"), Some(&b""[..]));
        assert_eq!(c.room_of(b"socket.io#/admin#"), None);
        assert_eq!(Channels::new("k", "/a*[b]", "u").pattern, "k#/a\\*\\[b\\]#*");
    }
}
