//! The adapter contract: cases any [`Adapter`] must pass, run as one test per case per adapter.
//!
//! A [`Cluster`] is one adapter per node, all for the same namespace (one node for the in-memory
//! adapter, several joined through a broker for the cluster adapter). Each case in [`cases`] places
//! recording [`TestSocket`]s on the nodes under fresh ids and rooms, drives the adapters and
//! asserts by panicking; its sockets are removed when it ends, even when it fails.
//!
//! Assertions wait for what they expect (polling up to [`Cluster::timeout`]) instead of sleeping.
//! To check that nothing *else* arrived, a case waits [`Cluster::quiet`], then broadcasts a marker
//! from the emitting node to every socket and waits for it everywhere before counting.
//!
//! [`contract_tests!`](crate::contract_tests) expands to one `#[tokio::test]` per case, each on a
//! fresh cluster from the given setup function, so the first failure does not hide the others:
//!
//! ```no_run
//! use std::sync::Arc;
//! use std::time::Duration;
//!
//! use switchboard_adapter::MemoryAdapter;
//! use switchboard_testkit::contract::Cluster;
//!
//! async fn memory() -> Cluster {
//!     Cluster::new(vec![Arc::new(MemoryAdapter::new())])
//! }
//!
//! // `memory::broadcast_all`, `memory::broadcast_room`, … one test per case.
//! switchboard_testkit::contract_tests!(memory, memory);
//! // The same on a two-worker runtime.
//! switchboard_testkit::contract_tests!(memory_multi_thread, memory, multi_thread);
//! # fn main() {}
//! ```

pub mod cases;
mod fixture;
mod socket;

use std::any::Any;
use std::sync::Arc;
use std::time::Duration;

use switchboard_adapter::cluster::ClusterAdapter;
use switchboard_adapter::{Adapter, BoxFuture};

use crate::wait::eventually;

pub use socket::{Delivery, TestSocket};

/// An async hook of a [`Cluster`]: awaited after membership changes ([`Cluster::with_settle`]) or
/// after each case ([`Cluster::with_check`]).
pub type Hook = Arc<dyn Fn() -> BoxFuture<'static, ()> + Send + Sync>;

/// The adapters under test: one per node, all for the same namespace and broker.
#[derive(Clone)]
pub struct Cluster {
    /// One adapter per node (at least one).
    pub nodes: Vec<Arc<dyn Adapter>>,
    /// The namespace the adapters serve (default `/`).
    pub nsp: String,
    /// How long to wait for an expected effect before failing (default 2 s).
    pub timeout: Duration,
    /// How long to keep watching for unexpected effects once the expected ones showed (default 0).
    pub quiet: Duration,
    /// Awaited after every membership change (joins, leaves, removals); none by default.
    pub settle: Option<Hook>,
    /// Awaited after each case of [`contract_tests!`](crate::contract_tests); none by default.
    pub check: Option<Hook>,
    /// What the nodes need to keep running (a broker process, the node factories).
    resources: Vec<Arc<dyn Any + Send + Sync>>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("nodes", &self.nodes.len())
            .field("nsp", &self.nsp)
            .field("timeout", &self.timeout)
            .field("quiet", &self.quiet)
            .field("settle", &self.settle.is_some())
            .field("check", &self.check.is_some())
            .field("resources", &self.resources.len())
            .finish()
    }
}

impl Cluster {
    /// A cluster of these nodes with the defaults; panics on an empty list.
    pub fn new(nodes: Vec<Arc<dyn Adapter>>) -> Self {
        assert!(!nodes.is_empty(), "a cluster needs at least one node");
        Self {
            nodes,
            nsp: "/".to_owned(),
            timeout: Duration::from_secs(2),
            quiet: Duration::ZERO,
            settle: None,
            check: None,
            resources: Vec::new(),
        }
    }

    /// Sets the namespace the adapters serve.
    pub fn with_nsp(mut self, nsp: impl Into<String>) -> Self {
        self.nsp = nsp.into();
        self
    }

    /// Sets how long to wait for an expected effect.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets how long to watch for unexpected effects (remote adapters: a few tens of ms).
    pub fn with_quiet(mut self, quiet: Duration) -> Self {
        self.quiet = quiet;
        self
    }

    /// Sets the hook awaited after membership changes (e.g. until broker subscriptions are live).
    pub fn with_settle(
        mut self,
        settle: impl Fn() -> BoxFuture<'static, ()> + Send + Sync + 'static,
    ) -> Self {
        self.settle = Some(Arc::new(settle));
        self
    }

    /// Sets what must hold once a case has ended, asserted by panicking (e.g. no socket, room
    /// subscription or pending request left behind, no message dropped).
    pub fn with_check(mut self, check: impl Fn() -> BoxFuture<'static, ()> + Send + Sync + 'static) -> Self {
        self.check = Some(Arc::new(check));
        self
    }

    /// Keeps `resource` alive as long as the cluster: what the adapters need but do not own (a
    /// broker process, the factories).
    pub fn with_resource(mut self, resource: impl Any + Send + Sync) -> Self {
        self.resources.push(Arc::new(resource));
        self
    }

    /// Runs `case` on this cluster, then its [`check`](Self::with_check).
    pub async fn run(&self, case: impl AsyncFnOnce(&Self)) {
        case(self).await;
        if let Some(check) = &self.check {
            check().await;
        }
    }

    pub(crate) fn last(&self) -> usize {
        self.nodes.len() - 1
    }
}

/// Asserts that these cluster adapters keep nothing: no socket, no room subscription, no pending
/// request.
pub fn assert_empty(adapters: &[Arc<ClusterAdapter>]) {
    for (i, a) in adapters.iter().enumerate() {
        assert!(a.local().is_empty(), "node {i} kept sockets");
        assert!(
            a.subscribed_rooms().is_empty(),
            "node {i} kept room subscriptions: {:?}",
            a.subscribed_rooms()
        );
        assert_eq!(a.pending_requests(), 0, "node {i} kept pending requests");
    }
}

/// [`assert_empty`] once the cases' requests have ended: an ack broadcast's request lingers until
/// its deadline, a moment after its stream ended (2 s at most).
pub async fn assert_left_nothing(adapters: &[Arc<ClusterAdapter>]) {
    let pending = || adapters.iter().map(|a| a.pending_requests()).sum::<usize>();
    eventually(Duration::from_secs(2), || std::future::ready(pending() == 0)).await;
    assert_empty(adapters);
}

/// Runs every case in sequence on one cluster, each with fresh socket ids and rooms, then the
/// cluster's check; for tests that the cases leave an adapter as they found it.
pub async fn run_all(cluster: &Cluster) {
    crate::__with_contract_cases!(__contract_run_all!(cluster));
    if let Some(check) = &cluster.check {
        check().await;
    }
}

/// One `#[tokio::test]` per contract case, in a module `$name`, each on a fresh [`Cluster`] from
/// `$setup` (the name of an `async fn() -> Cluster` in the calling module) and followed by its
/// [check](Cluster::with_check). Add `multi_thread` to run them on a two-worker runtime.
#[macro_export]
macro_rules! contract_tests {
    ($name:ident, $setup:ident) => {
        $crate::__with_contract_cases!(__contract_module!($name, $setup, [tokio::test]));
    };
    ($name:ident, $setup:ident, multi_thread) => {
        $crate::__with_contract_cases!(__contract_module!(
            $name,
            $setup,
            [tokio::test(flavor = "multi_thread", worker_threads = 2)]
        ));
    };
}

/// Calls `$then!` with the list of cases: the one place that lists them, read by
/// [`contract_tests!`](crate::contract_tests) and [`run_all`].
#[doc(hidden)]
#[macro_export]
macro_rules! __with_contract_cases {
    ($then:ident ! ($($args:tt)*)) => {
        $crate::$then! {
            ($($args)*)
            broadcast_all
            broadcast_room
            broadcast_rooms_dedup
            broadcast_except
            socket_id_room
            local_flag
            volatile_flag
            broadcast_with_ack
            fetch_sockets
            add_del_sockets
            disconnect_sockets
            leave_and_remove
            server_count
            server_side_emit
            join_confirmed
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __contract_module {
    (($name:ident, $setup:ident, [$attr:meta]) $($case:ident)*) => {
        mod $name {
            $(
                #[$attr]
                async fn $case() {
                    super::$setup().await.run($crate::contract::cases::$case).await;
                }
            )*
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __contract_run_all {
    (($cluster:ident) $($case:ident)*) => {
        $( $crate::contract::cases::$case($cluster).await; )*
    };
}
