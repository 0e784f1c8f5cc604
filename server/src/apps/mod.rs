//! The applications the `switchboard` binary can run (`--app`), kept in the library so examples and
//! tests run exactly what users run.

pub mod bench;
pub mod demo;
pub mod echo;
