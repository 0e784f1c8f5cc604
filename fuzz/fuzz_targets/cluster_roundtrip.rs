//! Fuzz target `cluster_roundtrip`: see [`switchboard_fuzz::cluster::roundtrip`].

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| switchboard_fuzz::cluster::roundtrip(data));
