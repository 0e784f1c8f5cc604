//! Fuzz target `cluster_decode`: see [`switchboard_fuzz::cluster::decode`].

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| switchboard_fuzz::cluster::decode(data));
