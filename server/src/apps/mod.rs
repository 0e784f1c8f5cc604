//! The applications the `switchboard` binary can run (`--app`), each an [`App`](crate::node::App)
//! for a node, kept in the library so examples and tests run exactly what users run.

pub mod bench;
pub mod demo;
pub mod echo;
pub mod gateway;
