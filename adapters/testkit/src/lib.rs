//! Test support for Switchboard's adapters (`publish = false`): what the adapter crates' and the
//! server's tests share, so each thing is written once.
//!
//! - [`contract`]: the cases every [`Adapter`](switchboard_adapter::Adapter) must pass, and
//!   [`contract_tests!`], which runs them as one test per case per adapter.
//! - [`Bus`]: an in-process broker joining several cluster nodes in one process, with fault
//!   switches.
//! - [`RedisServer`], [`NatsServer`]: real brokers on free ports, ready on `PING`/`PONG`, killed
//!   on drop, their log printed when a test fails; `kill`, `restart` (same port), `pause` and
//!   `resume` drive fault tests. A missing binary panics with the `apt-get` line: never a skip.
//!   [`Redis`] and [`Nats`] options start them with passwords, ACL users, tokens, nkeys, TLS.
//! - [`TestCa`]: a throwaway CA with server and client certificates, as PEM files.
//! - [`with_free_port`], [`closed_port`]: ports for servers under test, without the
//!   bind-release-reuse race going unhandled.
//! - [`eventually`]: wait for an effect, never for a timer.
//! - [`odd_routes`]: awkward names for the tests of a transport's route naming.
//! - [`PendingRequests`]: requests left in flight while a fault test breaks the broker.
//! - [`mutate`]: broker fuzzing, cluster frames mutated and forged from a seeded generator.

// Test support: a broken expectation must fail the calling test loudly, so the kit panics (assert!,
// expect) by design.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod broker;
pub mod bus;
pub mod contract;
pub mod mutate;
mod names;
mod nats_server;
mod pending;
mod port;
mod redis_server;
mod tls;
mod wait;

pub use broker::{Broker, BrokerServer};
pub use bus::{Bus, BusTransport};
pub use names::{ODD_NAMES, odd_routes};
pub use nats_server::{Nats, NatsServer, NkeyUser};
pub use pending::PendingRequests;
pub use port::{closed_port, with_free_port};
pub use redis_server::{Redis, RedisServer, Subscription};
pub use tls::TestCa;
pub use wait::eventually;
