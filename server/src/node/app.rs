//! What a node serves: a Socket.IO application (handlers installed on the server the node builds,
//! with its cluster adapter) or a plain Engine.IO handler, plus the page answered at `/`.

use std::sync::Arc;

use crate::engine::EngineHandler;
use crate::socketio::SocketIo;

/// Installs an application's handlers on the node's Socket.IO server.
pub type Install = Box<dyn FnOnce(&SocketIo) + Send>;

/// An application a node runs (the binary's `--app`); see `crate::apps` for the shipped ones.
pub struct App {
    pub(crate) name: &'static str,
    pub(crate) page: &'static str,
    pub(crate) layer: Layer,
}

/// Which layer an application plugs into.
pub(crate) enum Layer {
    SocketIo(Install),
    /// No Socket.IO, so no rooms to share: the node connects to no broker.
    Engine(Arc<dyn EngineHandler>),
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App").field("name", &self.name).finish_non_exhaustive()
    }
}

impl App {
    /// A Socket.IO application named `name` (for logs), answering `page` (HTML) at `GET /`.
    pub fn socketio(
        name: &'static str,
        page: &'static str,
        install: impl FnOnce(&SocketIo) + Send + 'static,
    ) -> Self {
        Self { name, page, layer: Layer::SocketIo(Box::new(install)) }
    }

    /// A plain Engine.IO application: every session's messages go to `handler`.
    pub fn engine(name: &'static str, page: &'static str, handler: Arc<dyn EngineHandler>) -> Self {
        Self { name, page, layer: Layer::Engine(handler) }
    }

    /// The name in logs.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Whether the application has rooms to share with other nodes (a plain Engine.IO app has none).
    pub fn uses_cluster(&self) -> bool {
        matches!(self.layer, Layer::SocketIo(_))
    }
}
