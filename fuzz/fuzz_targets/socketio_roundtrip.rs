//! Fuzz target `socketio_roundtrip`: see [`switchboard_fuzz::socketio::roundtrip`].

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| switchboard_fuzz::socketio::roundtrip(data));
