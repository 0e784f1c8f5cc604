//! Client-side rooms: `join(room)`, `leave(room)` and `publish(room, event, ...args)` from the
//! client. A join or publish the patterns of its grant (token, connect webhook) allow is done at
//! once, a publish reaching the room's members on every node without a backend round trip;
//! otherwise the namespace's subscribe webhook, if any, is asked, in the socket's webhook queue
//! (`webhook.rs`), so in order with its events. Joins and leaves go on to the lifecycle webhook
//! (`lifecycle.rs`).

use std::sync::{Arc, Mutex, Weak};

use bytes::Bytes;
use tokio::sync::Semaphore;

use super::auth::Identity;
use super::config::LifecycleEvent;
use super::json;
use super::lifecycle::{Notifier, notify};
use super::webhook::{Question, Route, SocketQueue, WebhookError, request_body};
use crate::socketio::{AckResponder, Event, Socket, SocketRef, Value, check_event_name};

/// `join(room, ack)`: joins a room the grant's patterns (or the subscribe webhook) allow.
pub const JOIN_EVENT: &str = "join";
/// `leave(room, ack)`: leaves a room.
pub const LEAVE_EVENT: &str = "leave";
/// `publish(room, event, ...args, ack)`: emits `event` to a room's other members.
pub const PUBLISH_EVENT: &str = "publish";

/// The subscribe webhook of one socket: where to ask, and the queue its questions wait in.
#[derive(Debug, Clone)]
pub struct Subscribe {
    /// The namespace's `subscribe-url`.
    pub route: Arc<Route>,
    /// The socket's webhook queue.
    pub queue: SocketQueue,
}

/// One socket's client-side rooms; see the module docs.
#[derive(Debug)]
pub struct ClientRooms {
    /// What the socket's grant allows now (a refresh replaces it).
    pub identity: Arc<Mutex<Identity>>,
    /// The subscribe webhook, if the namespace has one.
    pub subscribe: Option<Subscribe>,
    /// The lifecycle webhook, if the namespace has one.
    pub notifier: Option<Notifier>,
    /// Publishes of this socket still being handed to the broker: at most
    /// `webhook.max-pending-per-socket`, so a flood of them cannot pile up tasks and payloads.
    pub publishing: Arc<Semaphore>,
}

/// What is asked of the subscribe webhook.
#[derive(Debug, Clone, Copy)]
enum Ask {
    Join,
    Publish,
}

impl ClientRooms {
    /// Handles `socket`'s `join`, `leave` and `publish`.
    pub fn install(self: Arc<Self>, socket: &SocketRef) {
        let rooms = self.clone();
        socket.on(JOIN_EVENT, move |socket: SocketRef, event: Event| {
            rooms.join(&socket, event);
            async {}
        });
        let rooms = self.clone();
        socket.on(LEAVE_EVENT, move |socket: SocketRef, mut event: Event| {
            let answer = match event.args.first().and_then(Value::as_str) {
                Some(room) if room != socket.id().as_str() => {
                    socket.leave(room);
                    notify(rooms.notifier.as_ref(), &socket, LifecycleEvent::Leave, &[Value::from(room)]);
                    ok()
                }
                _ => refusal("bad_request", "leave takes a room name"),
            };
            event.ack(vec![answer]);
            async {}
        });
        socket.on(PUBLISH_EVENT, move |socket: SocketRef, event: Event| {
            let rooms = self.clone();
            async move { rooms.publish(&socket, event).await }
        });
    }

    fn may(&self, ask: Ask, room: &str) -> bool {
        let identity = lock(&self.identity);
        match ask {
            Ask::Join => identity.may_join(room),
            Ask::Publish => identity.may_publish(room),
        }
    }

    fn join(self: &Arc<Self>, socket: &SocketRef, mut event: Event) {
        let Some(room) = event.args.first().and_then(Value::as_str).map(str::to_owned) else {
            return event.ack(vec![refusal("bad_request", "join takes a room name")]);
        };
        if self.may(Ask::Join, &room) {
            return event.ack(vec![self.joined(socket, &room)]);
        }
        let (rooms, target) = (self.clone(), room.clone());
        self.ask(socket, Ask::Join, &room, &[], event.ack.take(), move |socket| {
            Box::pin(async move { rooms.joined(&socket, &target) })
        });
    }

    /// Joins `room` (the ack comes once the broker confirmed it: see `Socket::try_join`).
    fn joined(&self, socket: &SocketRef, room: &str) -> Value {
        match socket.try_join([room]) {
            Ok(_) => {
                notify(self.notifier.as_ref(), socket, LifecycleEvent::Join, &[Value::from(room)]);
                ok()
            }
            Err(e) => refusal("bad_request", &e.to_string()),
        }
    }

    async fn publish(self: &Arc<Self>, socket: &SocketRef, mut event: Event) {
        let mut args = std::mem::take(&mut event.args).into_iter();
        let (Some(Value::String(room)), Some(Value::String(name))) = (args.next(), args.next()) else {
            return event.ack(vec![refusal(
                "bad_request",
                "publish takes a room, an event name, then its arguments",
            )]);
        };
        if let Err(e) = check_event_name(&name) {
            return event.ack(vec![refusal("bad_request", &e.to_string())]);
        }
        let payload: Vec<Value> = args.collect();
        if self.may(Ask::Publish, &room) {
            let Ok(_turn) = self.publishing.clone().try_acquire_owned() else {
                return event.ack(vec![WebhookError::Busy.to_ack()]);
            };
            return event.ack(vec![published(socket, &room, &name, payload).await]);
        }
        let shown = [Value::from(name.as_str())];
        let target = room.clone();
        self.ask(socket, Ask::Publish, &room, &shown, event.ack.take(), move |socket| {
            Box::pin(async move { published(&socket, &target, &name, payload).await })
        });
    }

    /// Asks the subscribe webhook whether the socket may `ask` about `room` (`extra`: what else it
    /// is shown); on allow, `then` acts and its value is the ack, else the refusal is.
    fn ask<F>(
        &self,
        socket: &SocketRef,
        ask: Ask,
        room: &str,
        extra: &[Value],
        ack: Option<AckResponder>,
        then: F,
    ) where
        F: FnOnce(SocketRef) -> crate::socketio::BoxFuture<Value> + Send + 'static,
    {
        let answer = |value: Value| {
            if let Some(ack) = ack {
                ack.send(vec![value]);
            }
        };
        let Some(subscribe) = &self.subscribe else {
            let what = match ask {
                Ask::Join => "the token does not allow this room",
                Ask::Publish => "the token does not allow publishing to this room",
            };
            return answer(refusal("forbidden", what));
        };
        let mut args = vec![Value::from(room)];
        args.extend_from_slice(extra);
        let event = match ask {
            Ask::Join => JOIN_EVENT,
            Ask::Publish => PUBLISH_EVENT,
        };
        let body: Bytes = request_body(socket, event, &args);
        let weak: Weak<Socket> = Arc::downgrade(socket);
        subscribe.queue.ask(Question {
            route: subscribe.route.clone(),
            body,
            then: Box::new(move |reply| {
                Box::pin(async move {
                    let value = match verdict(reply) {
                        Ok(()) => match weak.upgrade() {
                            Some(socket) => then(socket).await,
                            None => return,
                        },
                        Err(refused) => refused,
                    };
                    answer(value);
                })
            }),
        });
    }
}

/// Emits `name(payload)` to `room`'s members on every node, the publisher left out.
async fn published(socket: &SocketRef, room: &str, name: &str, payload: Vec<Value>) -> Value {
    match socket.to(room).emit(name, payload).await {
        Ok(_) => ok(),
        Err(e) => refusal("unavailable", &e.to_string()),
    }
}

/// The subscribe webhook's answer: `{"allow": true}`, or the refusal to ack with.
fn verdict(reply: Result<Option<serde_json::Value>, WebhookError>) -> Result<(), Value> {
    let answer = match reply {
        Ok(Some(answer)) => answer,
        Ok(None) => return Err(WebhookError::BadAnswer.to_ack()),
        Err(e) => return Err(e.to_ack()),
    };
    match answer.get("allow").and_then(serde_json::Value::as_bool) {
        Some(true) => Ok(()),
        Some(false) => {
            let message = answer.get("message").and_then(serde_json::Value::as_str);
            Err(refusal("forbidden", message.unwrap_or("the backend does not allow it")))
        }
        None => Err(WebhookError::BadAnswer.to_ack()),
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The ack of a request done.
pub fn ok() -> Value {
    json::from_json(serde_json::json!({"ok": true}))
}

/// The ack of a request refused: `{"error": {"code", "message"}}`.
pub fn refusal(code: &str, message: &str) -> Value {
    json::from_json(serde_json::json!({"error": {"code": code, "message": message}}))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(result: Result<(), Value>) -> Option<String> {
        let refused = result.err()?;
        json::to_json(&refused).pointer("/error/code").and_then(|c| c.as_str()).map(str::to_owned)
    }

    #[test]
    fn the_subscribe_webhook_allows_only_with_a_boolean_allow() {
        assert_eq!(verdict(Ok(Some(serde_json::json!({"allow": true})))), Ok(()));
        let denied = verdict(Ok(Some(serde_json::json!({"allow": false, "message": "members only"}))));
        assert_eq!(denied, Err(refusal("forbidden", "members only")));
        for answer in
            [Ok(None), Ok(Some(serde_json::json!({"allow": "yes"}))), Ok(Some(serde_json::json!([true])))]
        {
            assert_eq!(code(verdict(answer)).as_deref(), Some("backend_bad_answer"));
        }
        assert_eq!(code(verdict(Err(WebhookError::Timeout))).as_deref(), Some("backend_timeout"));
    }
}
