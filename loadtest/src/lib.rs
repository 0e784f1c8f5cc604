//! Switchboard's load generator: Socket.IO v5 clients that speak Engine.IO v4 over WebSocket themselves
//! (fastwebsockets for the frames, `switchboard-protocol` for the packets), one task per connection, so a
//! single core can hold tens of thousands of them; [`polling`] is the same client over HTTP long-polling.
//!
//! A run opens connections ([`fleet`]), drives each with a small state machine ([`driver::Behaviour`]) for
//! one scenario ([`scenario`]), reads the server's CPU and memory from `/proc` ([`procfs`]) and ends in a
//! [`report::Report`]: one JSON line on stdout and a table on stderr. [`compare`] starts Switchboard and
//! the Node reference itself and runs the scenarios against both; [`cluster`] starts a broker and several
//! nodes and compares a fan-out over them with the same fan-out on one node. [`soak`] starts a node and runs
//! an hour of churn and fan-out, checking that its memory and open files stay flat after a warm-up.

pub mod acks;
pub mod chart;
pub mod clock;
pub mod cluster;
pub mod compare;
pub mod conn;
pub mod drift;
pub mod driver;
mod error;
pub mod failures;
pub mod fleet;
pub mod latency;
pub mod outbox;
pub mod pacer;
pub mod polling;
pub mod procfs;
pub mod progress;
pub mod report;
pub mod scenario;
pub mod schedule;
pub mod scrape;
pub mod server_process;
pub mod soak;
pub mod target;
pub mod timeline;
pub mod wire;

pub use error::{ConnError, ServerError, SetupError};
