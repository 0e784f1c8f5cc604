//! Sockets and times in the shapes `@socket.io/admin-ui` reads: a socket as its
//! `SerializedSocket` (id, client id, transport, namespace, data, handshake, rooms), a time as
//! JavaScript's `Date` serializes (ISO 8601, UTC, milliseconds).

use serde_json::{Value, json};
use sha1::{Digest, Sha1};

use crate::socketio::{Handshake, Socket};

/// A socket as the UI shows it. Its handshake leaves out `auth` (the admin UI's own password
/// travels there) and, unless the node ships them to fetchSockets, the credential headers.
pub(crate) fn socket(socket: &Socket) -> Value {
    let data = socket.data::<Value>().filter(|d| !d.is_null()).unwrap_or_else(|| json!({}));
    json!({
        "id": socket.id().as_str(),
        "clientId": client_id(socket.session().sid().as_str()),
        "transport": socket.session().transport_name(),
        "nsp": socket.namespace().name(),
        "data": data,
        "handshake": handshake(socket.handshake()),
        "rooms": socket.rooms().iter().map(|r| r.as_str()).collect::<Vec<_>>(),
    })
}

/// The UI groups a connection's sockets by this. Not the session id itself: whoever holds that can
/// take the session over, and the UI shows it to every operator (the admin-ui cuts it to 12
/// characters; ours start with the node id, so a digest is what keeps them apart).
fn client_id(sid: &str) -> String {
    Sha1::digest(sid.as_bytes()).iter().take(6).map(|b| format!("{b:02x}")).collect()
}

fn handshake(handshake: &Handshake) -> Value {
    let mut json = handshake.to_json();
    if let Some(object) = json.as_object_mut() {
        object.remove("auth");
        let forwarded = ["cf-connecting-ip", "x-forwarded-for"]
            .iter()
            .find_map(|name| handshake.header(name))
            .map(|value| String::from_utf8_lossy(value).into_owned());
        if let Some(address) = forwarded {
            object.insert("address".into(), address.into());
        }
        object.insert("time".into(), date(handshake.issued));
        object.insert(
            "secure".into(),
            handshake.header("x-forwarded-proto").is_some_and(|p| p == b"https").into(),
        );
        object.insert("xdomain".into(), handshake.header("origin").is_some().into());
    }
    json
}

/// Now, as a JavaScript `Date` serializes.
pub(crate) fn now() -> Value {
    date(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64),
    )
}

/// `ms` since the Unix epoch, as a JavaScript `Date` serializes (`2026-12-07T07:15:00.000Z`).
pub(crate) fn date(ms: u64) -> Value {
    let nanos = i128::from(ms) * 1_000_000;
    let Ok(t) = time::OffsetDateTime::from_unix_timestamp_nanos(nanos) else {
        return Value::Null;
    };
    let text = format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    );
    Value::String(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_read_as_javascript_writes_them() {
        assert_eq!(date(0), json!("1970-01-01T00:00:00.000Z"));
        assert_eq!(date(1_796_627_700_123), json!("2026-12-07T07:15:00.123Z"));
    }

    #[test]
    fn client_ids_hide_the_session_id() {
        let id = client_id("node1.AAAAAAAAAAAAAAAAAAAAAA");
        assert_eq!(id.len(), 12);
        assert_ne!(id, client_id("node1.AAAAAAAAAAAAAAAAAAAAAB"));
        assert!(!id.contains("node1"));
    }
}
