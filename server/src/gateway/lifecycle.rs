//! Lifecycle notices: a namespace's `lifecycle-url` told when each of its sockets connects,
//! disconnects (with the reason), joins or leaves a room itself. The notices go through the
//! socket's webhook queue (`webhook.rs`), so they reach the backend in order with its events.

use std::collections::HashMap;
use std::sync::Arc;

use super::config::{LifecycleConfig, LifecycleEvent};
use super::webhook::{Notice, Route, SocketQueue, request_body};
use crate::socketio::{Socket, Value};

/// A namespace's lifecycle webhook: a route (and metric label) per event it is told.
#[derive(Debug, Clone)]
pub struct Lifecycle {
    routes: Arc<HashMap<LifecycleEvent, Arc<Route>>>,
}

impl Lifecycle {
    /// The webhook of `config` for namespace `namespace`.
    pub fn new(namespace: &str, config: &LifecycleConfig) -> Self {
        let routes = config
            .events
            .iter()
            .map(|event| {
                let label = format!("{namespace} {}", event.as_str());
                (*event, Arc::new(Route { url: config.url.clone(), label }))
            })
            .collect();
        Self { routes: Arc::new(routes) }
    }

    /// The notifier of one socket, whose notices wait in `queue`.
    pub fn notifier(&self, queue: SocketQueue) -> Notifier {
        Notifier { queue, routes: self.routes.clone() }
    }
}

/// Tells a socket's lifecycle webhook what happened to it, in order with its events.
#[derive(Debug, Clone)]
pub struct Notifier {
    queue: SocketQueue,
    routes: Arc<HashMap<LifecycleEvent, Arc<Route>>>,
}

impl Notifier {
    /// Queues `event` (with `args`: the room, or the disconnect reason) if the webhook wants it.
    pub fn notify(&self, socket: &Socket, event: LifecycleEvent, args: &[Value]) {
        if let Some(route) = self.routes.get(&event) {
            let body = request_body(socket, event.as_str(), args);
            self.queue.notify(Notice { route: route.clone(), body });
        }
    }
}

/// Queues `event` on `notifier`, if the socket has one.
pub fn notify(notifier: Option<&Notifier>, socket: &Socket, event: LifecycleEvent, args: &[Value]) {
    if let Some(notifier) = notifier {
        notifier.notify(socket, event, args);
    }
}
