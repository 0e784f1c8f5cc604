//! What happens to a client of a gateway namespace: its token is checked, then the connect
//! webhook asked (`connect_webhook.rs`), before it joins (a refusal is its `connect_error`); then
//! it joins the rooms its grant lists, its `join`, `leave` and `publish` go to `rooms.rs`, it is
//! disconnected when its token expires unless it sends a fresh one (`refresh`), and its routed
//! events and lifecycle notices go to its webhook queue (`webhook.rs`, `lifecycle.rs`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::task::AbortHandle;

use super::auth::{Identity, Verifier};
use super::config::{AuthMode, GatewayConfig, LifecycleEvent};
use super::connect_webhook::ConnectWebhook;
use super::lifecycle::{Lifecycle, notify};
use super::metrics::GatewayMetrics;
use super::rooms::{ClientRooms, JOIN_EVENT, LEAVE_EVENT, PUBLISH_EVENT, Subscribe, ok, refusal};
use super::webhook::{Job, Route, SocketQueue, Webhooks};
use crate::socketio::{ConnectError, Event, SocketIo, SocketRef, Value};

/// `refresh(token, ack)`: a fresh token for the same user, so the socket outlives the first one.
pub const REFRESH_EVENT: &str = "refresh";
/// The client events the gateway answers itself: no route may take them.
pub const CLIENT_EVENTS: [&str; 4] = [JOIN_EVENT, LEAVE_EVENT, PUBLISH_EVENT, REFRESH_EVENT];
/// The key of `socket.data` the middleware leaves the identity under for the connection handler,
/// which removes it.
const PENDING: &str = "gateway.identity";

/// One namespace's routes.
#[derive(Debug, Default)]
struct Routes {
    by_event: HashMap<String, Arc<Route>>,
    any: Option<Arc<Route>>,
}

impl Routes {
    fn is_empty(&self) -> bool {
        self.by_event.is_empty() && self.any.is_none()
    }
}

/// Installs every configured namespace on `io`: authentication, rooms, routes.
pub fn install(
    io: &SocketIo,
    config: &GatewayConfig,
    webhooks: Arc<Webhooks>,
    admission: Option<Arc<ConnectWebhook>>,
    metrics: &GatewayMetrics,
) {
    let verifier = config.jwt.clone().map(Verifier::new);
    if let Some(verifier) = &verifier {
        verifier.start();
    }
    if !config.namespaces.iter().any(|n| n.name == "/") {
        // The main namespace always exists: without this, anyone could join it unchecked.
        io.main_namespace().use_middleware(|_| async { Err(ConnectError::new("Invalid namespace")) });
    }
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
        let jwt = verifier.clone().filter(|_| namespace.auth == AuthMode::Jwt);
        let hook = match (&namespace.connect_url, &admission) {
            (Some(url), Some(admission)) => Some((
                admission.clone(),
                Arc::new(Route { url: url.clone(), label: format!("{} connect", namespace.name) }),
            )),
            _ => None,
        };
        if jwt.is_some() || hook.is_some() {
            let failures = metrics.auth_failures.clone();
            let name = namespace.name.clone();
            nsp.use_middleware(move |socket: SocketRef| {
                let (jwt, hook, failures, name) = (jwt.clone(), hook.clone(), failures.clone(), name.clone());
                async move {
                    let mut identity = Identity::default();
                    if let Some(verifier) = jwt {
                        identity = verifier.authenticate_fresh(socket.handshake()).await.map_err(|e| {
                            failures.with_label_values(&[e.reason()]).inc();
                            ConnectError::new(e.to_string())
                                .with_data(serde_json::json!({"code": e.reason()}))
                        })?;
                    }
                    if let Some((admission, route)) = hook {
                        identity = admission
                            .admit(&route, &name, socket.id(), socket.handshake(), identity)
                            .await
                            .map_err(|e| {
                                failures.with_label_values(&[e.reason()]).inc();
                                e.to_connect_error()
                            })?;
                    }
                    socket
                        .set_data(&serde_json::json!({ PENDING: identity }))
                        .map_err(|_| ConnectError::new("internal error"))?;
                    Ok(())
                }
            });
        }
        let setup = Arc::new(Setup {
            routes,
            lifecycle: namespace.lifecycle.as_ref().map(|config| Lifecycle::new(&namespace.name, config)),
            subscribe: namespace.subscribe_url.as_ref().map(|url| {
                Arc::new(Route { url: url.clone(), label: format!("{} subscribe", namespace.name) })
            }),
            webhooks: webhooks.clone(),
            max_pending: config.webhook.max_pending_per_socket,
            verifier: verifier.clone().filter(|_| namespace.auth == AuthMode::Jwt),
            leeway: config.jwt.as_ref().map(|j| j.leeway).unwrap_or_default(),
        });
        nsp.on_connection(move |socket: SocketRef| {
            connected(&socket, &setup);
            async {}
        });
    }
}

/// What a namespace does with each of its sockets.
struct Setup {
    routes: Routes,
    lifecycle: Option<Lifecycle>,
    subscribe: Option<Arc<Route>>,
    webhooks: Arc<Webhooks>,
    /// `webhook.max-pending-per-socket`: also the most publishes a socket may have in flight.
    max_pending: usize,
    /// Set for `auth = "jwt"` namespaces: `refresh` checks tokens with it.
    verifier: Option<Verifier>,
    leeway: Duration,
}

/// What a socket's token grants now (a refresh replaces it), and the timer that ends the socket
/// when it expires.
struct Grant {
    identity: Arc<Mutex<Identity>>,
    expiry: Mutex<Option<AbortHandle>>,
    leeway: Duration,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Grant {
    /// (Re)starts the timer that disconnects `socket` when the token expires (plus the leeway).
    fn arm(&self, socket: &SocketRef) {
        let remaining = lock(&self.identity).remaining();
        let timer = remaining.map(|remaining| {
            let weak = Arc::downgrade(socket);
            let after = remaining + self.leeway;
            tokio::spawn(async move {
                tokio::time::sleep(after).await;
                if let Some(socket) = weak.upgrade() {
                    tracing::debug!(socket = %socket.id(), "gateway: token expired, disconnecting");
                    socket.disconnect(false);
                }
            })
            .abort_handle()
        });
        if let Some(old) = std::mem::replace(&mut *lock(&self.expiry), timer) {
            old.abort();
        }
    }

    fn disarm(&self) {
        if let Some(timer) = lock(&self.expiry).take() {
            timer.abort();
        }
    }
}

/// Sets a connected socket up; synchronous, so its handlers exist before its first event runs.
fn connected(socket: &SocketRef, setup: &Setup) {
    let data: serde_json::Value = socket.data().unwrap_or_default();
    let identity: Identity =
        data.get(PENDING).and_then(|i| serde_json::from_value(i.clone()).ok()).unwrap_or_default();
    let mut shown = identity.data.clone();
    shown.insert("user".to_owned(), serde_json::json!(identity.user));
    if let Err(e) = socket.set_data(&shown) {
        tracing::warn!(socket = %socket.id(), error = %e, "gateway: socket data not set");
    }
    if !identity.rooms.is_empty() {
        if let Err(e) = socket.try_join(identity.rooms.iter().map(String::as_str)) {
            tracing::debug!(socket = %socket.id(), error = %e, "gateway: the token's rooms were not joined");
        }
    }
    let grant = Arc::new(Grant {
        identity: Arc::new(Mutex::new(identity)),
        expiry: Mutex::new(None),
        leeway: setup.leeway,
    });
    grant.arm(socket);
    let queue = (setup.lifecycle.is_some() || setup.subscribe.is_some() || !setup.routes.is_empty())
        .then(|| SocketQueue::start(setup.webhooks.clone(), socket));
    let notifier = match (&setup.lifecycle, &queue) {
        (Some(lifecycle), Some(queue)) => Some(lifecycle.notifier(queue.clone())),
        _ => None,
    };
    notify(notifier.as_ref(), socket, LifecycleEvent::Connect, &[]);
    let disarm = grant.clone();
    let gone = notifier.clone();
    socket.on_disconnect(move |socket, reason| {
        disarm.disarm();
        notify(gone.as_ref(), &socket, LifecycleEvent::Disconnect, &[Value::from(reason.as_str())]);
    });
    let subscribe = match (&setup.subscribe, &queue) {
        (Some(route), Some(queue)) => Some(Subscribe { route: route.clone(), queue: queue.clone() }),
        _ => None,
    };
    let publishing = Arc::new(Semaphore::new(setup.max_pending));
    Arc::new(ClientRooms { identity: grant.identity.clone(), subscribe, notifier, publishing })
        .install(socket);
    if let Some(verifier) = setup.verifier.clone() {
        socket.on(REFRESH_EVENT, move |socket: SocketRef, mut event: Event| {
            let (grant, verifier) = (grant.clone(), verifier.clone());
            async move {
                let answer = refresh(&socket, &grant, &verifier, &event).await;
                event.ack(vec![answer]);
            }
        });
    }
    let Some(queue) = queue else { return };
    let routes = &setup.routes;
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
            if CLIENT_EVENTS.contains(&event) || named.iter().any(|n| n == event) {
                return;
            }
            queue.push(Job { route: any.clone(), event: event.to_owned(), args: args.to_vec(), ack: None });
        });
    }
}

/// `refresh(token)`: a valid token for the same user replaces the socket's grant (patterns,
/// expiry) and joins its rooms; a refused one changes nothing.
async fn refresh(socket: &SocketRef, grant: &Grant, verifier: &Verifier, event: &Event) -> Value {
    let Some(token) = event.args.first().and_then(Value::as_str) else {
        return refusal("bad_request", "refresh takes a token");
    };
    let fresh = match verifier.verify_fresh(token).await {
        Ok(fresh) => fresh,
        Err(e) => return refusal(e.reason(), &e.to_string()),
    };
    if fresh.user != lock(&grant.identity).user {
        return refusal("forbidden", "the token is for another user: connect again with it");
    }
    if let Err(e) = socket.try_join(fresh.rooms.iter().map(String::as_str)) {
        return refusal("bad_request", &e.to_string());
    }
    *lock(&grant.identity) = fresh;
    grant.arm(socket);
    ok()
}
