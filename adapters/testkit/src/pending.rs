//! [`PendingRequests`]: cluster requests left waiting, for fault tests that break the broker
//! under requests in flight.

use std::sync::Arc;
use std::time::Duration;

use switchboard_adapter::{Adapter, AdapterError, BroadcastOptions, SocketInfo};
use switchboard_protocol::socketio::Value;
use tokio::task::JoinHandle;

/// A fetchSockets and a serverSideEmit (5 s timeout) started in the background on one adapter.
#[derive(Debug)]
pub struct PendingRequests {
    fetch: JoinHandle<Result<Vec<SocketInfo>, AdapterError>>,
    emit: JoinHandle<Result<Vec<Vec<Value>>, AdapterError>>,
}

impl PendingRequests {
    /// Starts both requests on `adapter`.
    pub fn start(adapter: Arc<dyn Adapter>) -> Self {
        let fetch = tokio::spawn({
            let adapter = adapter.clone();
            async move { adapter.fetch_sockets(BroadcastOptions::default()).await }
        });
        let emit = tokio::spawn(async move {
            adapter.server_side_emit("x".into(), vec![], Some(Duration::from_secs(5))).await
        });
        Self { fetch, emit }
    }

    /// Waits for both and asserts each failed with `BrokerUnavailable`.
    pub async fn assert_broker_unavailable(self) {
        let fetched = self.fetch.await.unwrap_or_else(|e| panic!("fetchSockets task: {e}"));
        assert!(matches!(fetched, Err(AdapterError::BrokerUnavailable(_))), "{fetched:?}");
        let emitted = self.emit.await.unwrap_or_else(|e| panic!("serverSideEmit task: {e}"));
        assert!(matches!(emitted, Err(AdapterError::BrokerUnavailable(_))), "{emitted:?}");
    }
}
