//! The connect webhook: before a client joins a namespace that has a `connect-url`, the node
//! POSTs its handshake (namespace, socket id, query, `auth`, the allow-listed headers, address,
//! and what its JWT granted, if any) to the backend, which answers allow (user id, data, rooms,
//! room and publish patterns) or deny (a message and data for the client's `connect_error`). A failed call denies
//! too. What an allow grants goes on to the namespace's connection (`connect.rs`).

use std::collections::BTreeMap;

use bytes::Bytes;
use serde::Deserialize;

use super::auth::{Identity, MAX_CLAIM_ENTRIES};
use super::config::ConnectConfig;
use super::webhook::{Route, WebhookError, Webhooks};
use crate::socketio::{ConnectError, Handshake, SocketId};

/// What a deny without a message says.
const DEFAULT_DENIAL: &str = "connection refused";

/// Why the connect webhook refused a client; the message is its `connect_error`'s.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum AdmissionError {
    /// The backend answered `{"allow": false}`.
    #[error("{message}")]
    Denied {
        /// `err.message` on the client.
        message: String,
        /// `err.data` on the client (the backend's `data`, as it wrote it).
        data: Option<serde_json::Value>,
    },
    /// The call failed: the backend is down, slow, or answered something unusable.
    #[error("the connect webhook failed: {0}")]
    Backend(WebhookError),
}

impl AdmissionError {
    /// The `reason` of `switchboard_gateway_auth_failures_total`.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Denied { .. } => "denied",
            Self::Backend(_) => "backend",
        }
    }

    /// The client's `connect_error`: the backend's message and data, or the failure with its
    /// code (`err.data.code`, one of the event webhooks' codes).
    pub fn to_connect_error(&self) -> ConnectError {
        match self {
            Self::Denied { message, data: Some(data) } => {
                ConnectError::new(message.clone()).with_data(data.clone())
            }
            Self::Denied { message, data: None } => ConnectError::new(message.clone()),
            Self::Backend(e) => {
                ConnectError::new(self.to_string()).with_data(serde_json::json!({"code": e.code()}))
            }
        }
    }
}

/// The backend's answer as it may write it.
#[derive(Debug, Deserialize)]
struct Answer {
    allow: bool,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    data: Option<serde_json::Value>,
    #[serde(default)]
    rooms: Vec<String>,
    #[serde(default)]
    room_patterns: Vec<String>,
    #[serde(default)]
    publish_patterns: Vec<String>,
}

/// Asks the backend about connects; one per node, its calls bounded by `[gateway.connect]`.
#[derive(Debug)]
pub struct ConnectWebhook {
    webhooks: Webhooks,
    headers: Vec<http::HeaderName>,
}

impl ConnectWebhook {
    /// A caller bounded by `config` (its own pool and concurrency, apart from the event webhooks',
    /// so a flood of events cannot keep clients from connecting).
    pub fn new(config: &ConnectConfig, webhooks: Webhooks) -> Self {
        Self { webhooks, headers: config.headers.clone() }
    }

    /// Asks `route` whether `handshake` may join its namespace as `socket`; `granted` is what its
    /// JWT granted (the default without one), and what the answer grants is added to it.
    pub async fn admit(
        &self,
        route: &Route,
        namespace: &str,
        socket: &SocketId,
        handshake: &Handshake,
        granted: Identity,
    ) -> Result<Identity, AdmissionError> {
        let body = self.request_body(namespace, socket, handshake, &granted);
        let answer = self.webhooks.call(route, body).await.map_err(AdmissionError::Backend)?;
        let answer: Answer = answer
            .and_then(|json| serde_json::from_value(json).ok())
            .ok_or(AdmissionError::Backend(WebhookError::BadAnswer))?;
        grant(answer, granted)
    }

    /// `{namespace, socket, user, rooms, query, auth, headers, address}` (docs/gateway.md).
    fn request_body(
        &self,
        namespace: &str,
        socket: &SocketId,
        handshake: &Handshake,
        granted: &Identity,
    ) -> Bytes {
        let headers: BTreeMap<&str, String> = self
            .headers
            .iter()
            .filter_map(|name| {
                let value = handshake.header(name.as_str())?;
                Some((name.as_str(), String::from_utf8_lossy(value).into_owned()))
            })
            .collect();
        let url = handshake.url();
        let query: BTreeMap<String, String> =
            form_urlencoded::parse(url.split_once('?').map(|(_, q)| q).unwrap_or_default().as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect();
        let body = serde_json::json!({
            "namespace": namespace,
            "socket": socket.as_str(),
            "user": granted.user,
            "rooms": granted.rooms,
            "query": query,
            "auth": handshake.auth,
            "headers": headers,
            "address": handshake.address().ip().to_string(),
        });
        Bytes::from(body.to_string())
    }
}

/// `granted` plus what an allowing `answer` adds; a deny as the client will see it.
fn grant(answer: Answer, mut granted: Identity) -> Result<Identity, AdmissionError> {
    if !answer.allow {
        let message = answer.message.unwrap_or_else(|| DEFAULT_DENIAL.to_owned());
        return Err(AdmissionError::Denied { message, data: answer.data });
    }
    let data = match answer.data {
        None | Some(serde_json::Value::Null) => serde_json::Map::new(),
        Some(serde_json::Value::Object(data)) => data,
        Some(_) => return Err(AdmissionError::Backend(WebhookError::BadAnswer)),
    };
    if [answer.rooms.len(), answer.room_patterns.len(), answer.publish_patterns.len()]
        .iter()
        .any(|n| *n > MAX_CLAIM_ENTRIES)
    {
        return Err(AdmissionError::Backend(WebhookError::BadAnswer));
    }
    if answer.user.is_some() {
        granted.user = answer.user;
    }
    granted.rooms.extend(answer.rooms);
    granted.room_patterns.extend(answer.room_patterns);
    granted.publish_patterns.extend(answer.publish_patterns);
    granted.data = data;
    Ok(granted)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(json: serde_json::Value) -> Answer {
        match serde_json::from_value(json) {
            Ok(answer) => answer,
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn an_allow_adds_to_what_the_token_granted() {
        let token = Identity { user: Some("alice".into()), rooms: vec!["a".into()], ..Identity::default() };
        let allowed = grant(
            answer(
                serde_json::json!({"allow": true, "data": {"plan": "pro"}, "rooms": ["b"], "room_patterns": ["c:*"]}),
            ),
            token,
        );
        let expected = Identity {
            user: Some("alice".into()),
            rooms: vec!["a".into(), "b".into()],
            room_patterns: vec!["c:*".into()],
            data: serde_json::json!({"plan": "pro"}).as_object().cloned().unwrap_or_default(),
            ..Identity::default()
        };
        assert_eq!(allowed, Ok(expected));
        let renamed = grant(answer(serde_json::json!({"allow": true, "user": "bob"})), Identity::default());
        assert_eq!(renamed.map(|i| i.user), Ok(Some("bob".into())));
    }

    #[test]
    fn a_deny_carries_the_message_and_data_and_a_bad_allow_is_a_backend_error() {
        let denied = grant(
            answer(serde_json::json!({"allow": false, "message": "banned", "data": {"until": 5}})),
            Identity::default(),
        );
        assert_eq!(
            denied,
            Err(AdmissionError::Denied {
                message: "banned".into(),
                data: Some(serde_json::json!({"until": 5}))
            })
        );
        let bare = grant(answer(serde_json::json!({"allow": false})), Identity::default());
        assert_eq!(bare.map_err(|e| e.to_string()), Err(DEFAULT_DENIAL.to_owned()));
        let bad = grant(answer(serde_json::json!({"allow": true, "data": [1]})), Identity::default());
        assert_eq!(bad, Err(AdmissionError::Backend(WebhookError::BadAnswer)));
    }
}
