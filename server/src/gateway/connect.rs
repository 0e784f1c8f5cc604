//! What happens to a client of a gateway namespace: its token is checked before it joins (a
//! refusal is its `connect_error`), then it joins the rooms its token lists, may `join` and
//! `leave` rooms its token's patterns allow, is disconnected when its token expires, and its
//! routed events go to its webhook queue (`webhook.rs`).

use std::collections::HashMap;
use std::sync::Arc;

use super::auth::{Identity, Verifier};
use super::config::{AuthMode, GatewayConfig};
use super::json;
use super::metrics::GatewayMetrics;
use super::webhook::{Job, Route, SocketQueue, Webhooks};
use crate::socketio::{ConnectError, Event, SocketIo, SocketRef, Value};

/// The client events the gateway answers itself.
pub const JOIN_EVENT: &str = "join";
/// See [`JOIN_EVENT`].
pub const LEAVE_EVENT: &str = "leave";
/// The key of `socket.data` the middleware leaves the identity under for the connection handler,
/// which removes it.
const PENDING: &str = "gateway.identity";

/// One namespace's routes.
#[derive(Debug, Default)]
struct Routes {
    by_event: HashMap<String, Arc<Route>>,
    any: Option<Arc<Route>>,
}

/// Installs every configured namespace on `io`: authentication, rooms, routes.
pub fn install(io: &SocketIo, config: &GatewayConfig, webhooks: Arc<Webhooks>, metrics: &GatewayMetrics) {
    let verifier = config.jwt.clone().map(Verifier::new);
    for namespace in &config.namespaces {
        let mut routes = Routes::default();
        for route in config.routes.iter().filter(|r| r.namespace == namespace.name) {
            let target = Arc::new(Route {
                url: route.url.clone(),
                label: format!("{} {}", route.namespace, route.event),
            });
            match route.event.as_str() {
                "*" => routes.any = Some(target),
                event => {
                    routes.by_event.insert(event.to_owned(), target);
                }
            }
        }
        let nsp = io.of(&namespace.name);
        if let (AuthMode::Jwt, Some(verifier)) = (namespace.auth, verifier.clone()) {
            let failures = metrics.auth_failures.clone();
            nsp.use_middleware(move |socket: SocketRef| {
                let result = verifier.authenticate(socket.handshake());
                let failures = failures.clone();
                async move {
                    let identity = result.map_err(|e| {
                        failures.with_label_values(&[e.reason()]).inc();
                        ConnectError::new(e.to_string()).with_data(serde_json::json!({"code": e.reason()}))
                    })?;
                    socket
                        .set_data(&serde_json::json!({ PENDING: identity }))
                        .map_err(|_| ConnectError::new("internal error"))?;
                    Ok(())
                }
            });
        }
        let routes = Arc::new(routes);
        let webhooks = webhooks.clone();
        let leeway = config.jwt.as_ref().map(|j| j.leeway).unwrap_or_default();
        nsp.on_connection(move |socket: SocketRef| {
            connected(&socket, &routes, &webhooks, leeway);
            async {}
        });
    }
}

/// Sets a connected socket up; synchronous, so its handlers exist before its first event runs.
fn connected(socket: &SocketRef, routes: &Routes, webhooks: &Arc<Webhooks>, leeway: std::time::Duration) {
    let data: serde_json::Value = socket.data().unwrap_or_default();
    let identity: Identity =
        data.get(PENDING).and_then(|i| serde_json::from_value(i.clone()).ok()).unwrap_or_default();
    if let Err(e) = socket.set_data(&serde_json::json!({ "user": identity.user })) {
        tracing::warn!(socket = %socket.id(), error = %e, "gateway: socket data not set");
    }
    if !identity.rooms.is_empty() {
        if let Err(e) = socket.try_join(identity.rooms.iter().map(String::as_str)) {
            tracing::debug!(socket = %socket.id(), error = %e, "gateway: the token's rooms were not joined");
        }
    }
    if let Some(remaining) = identity.remaining() {
        expire_after(socket, remaining + leeway);
    }
    let identity = Arc::new(identity);
    let may = identity.clone();
    socket.on(JOIN_EVENT, move |socket: SocketRef, mut event: Event| {
        let answer = join(&socket, &may, &event);
        event.ack(vec![answer]);
        async {}
    });
    socket.on(LEAVE_EVENT, |socket: SocketRef, mut event: Event| {
        let answer = match event.args.first().and_then(Value::as_str) {
            Some(room) if room != socket.id().as_str() => {
                socket.leave(room);
                ok()
            }
            _ => refusal("bad_request", "leave takes a room name"),
        };
        event.ack(vec![answer]);
        async {}
    });
    if routes.by_event.is_empty() && routes.any.is_none() {
        return;
    }
    let queue = SocketQueue::start(webhooks.clone(), socket);
    for (name, route) in &routes.by_event {
        let queue = queue.clone();
        let route = route.clone();
        socket.on(name.as_str(), move |_socket: SocketRef, mut event: Event| {
            let args = std::mem::take(&mut event.args);
            queue.push(Job { route: route.clone(), event: event.name, args, ack: event.ack.take() });
            async {}
        });
    }
    if let Some(any) = routes.any.clone() {
        // An event without a handler of its own has no ack to answer (see docs/gateway.md).
        let named: Vec<String> = routes.by_event.keys().cloned().collect();
        socket.on_any(move |_socket, event, args| {
            if event == JOIN_EVENT || event == LEAVE_EVENT || named.iter().any(|n| n == event) {
                return;
            }
            queue.push(Job { route: any.clone(), event: event.to_owned(), args: args.to_vec(), ack: None });
        });
    }
}

/// `join(room)`: allowed when a pattern of the token matches the room.
fn join(socket: &SocketRef, identity: &Identity, event: &Event) -> Value {
    let Some(room) = event.args.first().and_then(Value::as_str) else {
        return refusal("bad_request", "join takes a room name");
    };
    if !identity.may_join(room) {
        return refusal("forbidden", "the token does not allow this room");
    }
    match socket.try_join([room]) {
        Ok(_) => ok(),
        Err(e) => refusal("bad_request", &e.to_string()),
    }
}

fn ok() -> Value {
    json::from_json(serde_json::json!({"ok": true}))
}

fn refusal(code: &str, message: &str) -> Value {
    json::from_json(serde_json::json!({"error": {"code": code, "message": message}}))
}

/// Disconnects `socket` when its token expires (`after` from now), unless it left before.
fn expire_after(socket: &SocketRef, after: std::time::Duration) {
    let weak = Arc::downgrade(socket);
    let timer = tokio::spawn(async move {
        tokio::time::sleep(after).await;
        if let Some(socket) = weak.upgrade() {
            tracing::debug!(socket = %socket.id(), "gateway: token expired, disconnecting");
            socket.disconnect(false);
        }
    });
    let abort = timer.abort_handle();
    socket.on_disconnect(move |_, _| abort.abort());
}
