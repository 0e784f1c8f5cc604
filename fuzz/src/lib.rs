//! The bodies of the fuzz targets, one function per target, so `cargo fuzz` (the thin files in
//! `fuzz_targets/`) and the stable seed replay (`tests/seeds.rs`) run exactly the same checks.
//!
//! Every function takes the raw input libFuzzer made and panics only on a real finding: a panic
//! inside a codec, or a round trip that does not give back what went in. Inputs go to the codecs
//! of `switchboard-protocol` (Engine.IO, Socket.IO) and `switchboard-adapter` (cluster frames);
//! nothing is kept between calls.

pub mod arb;
pub mod cluster;
pub mod engineio;
pub mod socketio;

/// One target's body: takes libFuzzer's input, panics on a finding.
pub type Target = fn(&[u8]);

/// Every target by name (the name of its `[[bin]]` and of its seed folder), for the replay test.
pub const TARGETS: &[(&str, Target)] = &[
    ("engineio_decode", engineio::decode),
    ("socketio_decode", socketio::decode),
    ("socketio_roundtrip", socketio::roundtrip),
    ("cluster_decode", cluster::decode),
    ("cluster_roundtrip", cluster::roundtrip),
];
