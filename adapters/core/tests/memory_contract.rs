//! The adapter contract run against the in-memory adapter (one node), one test per case, plus
//! checks that the suite catches adapters that break it.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::Arc;
use std::time::Duration;

use switchboard_adapter::{
    AckStream, Adapter, AdapterError, BoxFuture, BroadcastOptions, BroadcastPacket, MemoryAdapter, Room,
    RoomIndex, SocketInfo,
};
use switchboard_protocol::socketio::Value;
use switchboard_testkit::contract::{self, Cluster, cases};
use switchboard_testkit::contract_tests;

/// One in-memory adapter; after each case, nothing of it is left.
async fn memory() -> Cluster {
    let adapter: Arc<dyn Adapter> = Arc::new(MemoryAdapter::new());
    Cluster::new(vec![adapter.clone()]).with_check(move || {
        let adapter = adapter.clone();
        Box::pin(async move { assert_empty(&*adapter) })
    })
}

fn assert_empty(adapter: &dyn Adapter) {
    let local = adapter.local();
    assert!(local.is_empty(), "the cases must remove their sockets");
    assert!(local.rooms().is_empty(), "the cases must leave no room behind");
}

contract_tests!(memory_contract, memory);
contract_tests!(memory_contract_multi_thread, memory, multi_thread);

#[tokio::test]
async fn run_all_on_one_adapter_leaves_it_empty() {
    let cluster = memory().await;
    contract::run_all(&cluster).await;
    contract::run_all(&cluster).await;
    assert_empty(&*cluster.nodes[0]);
}

#[tokio::test]
async fn memory_server_count_is_exactly_one() {
    assert_eq!(MemoryAdapter::new().server_count().await, Ok(1));
}

// ---------------------------------------------------------------------------------------------
// The suite has teeth: a memory adapter with one deliberate bug must fail the matching case.

#[derive(Clone, Copy)]
enum Bug {
    IgnoreExcept,
    DeliverTwice,
    DropVolatileFlag,
    AckExpectedOffByOne,
    FetchWithoutRooms,
    DisconnectEveryone,
}

struct Broken {
    inner: MemoryAdapter,
    bug: Bug,
}

impl Broken {
    fn cluster(bug: Bug) -> Cluster {
        Cluster::new(vec![Arc::new(Broken { inner: MemoryAdapter::new(), bug })])
            .with_timeout(Duration::from_millis(400))
    }
}

impl Adapter for Broken {
    fn local(&self) -> &RoomIndex {
        self.inner.local()
    }

    fn broadcast(
        &self,
        packet: BroadcastPacket,
        mut opts: BroadcastOptions,
    ) -> BoxFuture<'_, Result<usize, AdapterError>> {
        match self.bug {
            Bug::IgnoreExcept => opts.except.clear(),
            Bug::DropVolatileFlag => opts.flags.volatile = false,
            Bug::DeliverTwice => {
                return Box::pin(async move {
                    self.inner.broadcast(packet.clone(), opts.clone()).await?;
                    self.inner.broadcast(packet, opts).await
                });
            }
            _ => {}
        }
        self.inner.broadcast(packet, opts)
    }

    fn broadcast_with_ack(
        &self,
        packet: BroadcastPacket,
        ack_id: u64,
        opts: BroadcastOptions,
        timeout: Duration,
    ) -> BoxFuture<'_, Result<AckStream, AdapterError>> {
        let bug = self.bug;
        let fut = self.inner.broadcast_with_ack(packet, ack_id, opts, timeout);
        Box::pin(async move {
            let mut stream = fut.await?;
            if let Bug::AckExpectedOffByOne = bug {
                stream.expected += 1;
            }
            Ok(stream)
        })
    }

    fn fetch_sockets(&self, opts: BroadcastOptions) -> BoxFuture<'_, Result<Vec<SocketInfo>, AdapterError>> {
        if let Bug::FetchWithoutRooms = self.bug {
            let infos = self.local().select(&opts).iter().map(|s| s.info()).collect();
            return Box::pin(std::future::ready(Ok(infos)));
        }
        self.inner.fetch_sockets(opts)
    }

    fn add_sockets(
        &self,
        opts: BroadcastOptions,
        rooms: Vec<Room>,
    ) -> BoxFuture<'_, Result<(), AdapterError>> {
        self.inner.add_sockets(opts, rooms)
    }

    fn del_sockets(
        &self,
        opts: BroadcastOptions,
        rooms: Vec<Room>,
    ) -> BoxFuture<'_, Result<(), AdapterError>> {
        self.inner.del_sockets(opts, rooms)
    }

    fn disconnect_sockets(
        &self,
        mut opts: BroadcastOptions,
        close: bool,
    ) -> BoxFuture<'_, Result<(), AdapterError>> {
        if let Bug::DisconnectEveryone = self.bug {
            opts = BroadcastOptions::default();
        }
        self.inner.disconnect_sockets(opts, close)
    }

    fn server_side_emit(
        &self,
        event: String,
        args: Vec<Value>,
        timeout: Option<Duration>,
    ) -> BoxFuture<'_, Result<Vec<Vec<Value>>, AdapterError>> {
        self.inner.server_side_emit(event, args, timeout)
    }

    fn server_count(&self) -> BoxFuture<'_, Result<usize, AdapterError>> {
        self.inner.server_count()
    }
}

#[tokio::test]
#[should_panic(expected = "broadcast to all except a room")]
async fn suite_catches_ignored_except() {
    cases::broadcast_except(&Broken::cluster(Bug::IgnoreExcept)).await;
}

#[tokio::test]
#[should_panic(expected = "got the packet 2 time(s)")]
async fn suite_catches_double_delivery() {
    cases::broadcast_room(&Broken::cluster(Bug::DeliverTwice)).await;
}

#[tokio::test]
#[should_panic(expected = "volatile flag not passed")]
async fn suite_catches_dropped_volatile_flag() {
    cases::volatile_flag(&Broken::cluster(Bug::DropVolatileFlag)).await;
}

#[tokio::test]
#[should_panic(expected = "expected answers")]
async fn suite_catches_wrong_ack_count() {
    cases::broadcast_with_ack(&Broken::cluster(Bug::AckExpectedOffByOne)).await;
}

#[tokio::test]
#[should_panic(expected = "fetch_sockets: rooms of")]
async fn suite_catches_fetch_without_rooms() {
    cases::fetch_sockets(&Broken::cluster(Bug::FetchWithoutRooms)).await;
}

#[tokio::test]
#[should_panic(expected = "calls on")]
async fn suite_catches_disconnecting_everyone() {
    cases::disconnect_sockets(&Broken::cluster(Bug::DisconnectEveryone)).await;
}
