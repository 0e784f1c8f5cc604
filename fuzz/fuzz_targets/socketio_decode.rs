//! Fuzz target `socketio_decode`: see [`switchboard_fuzz::socketio::decode`].

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| switchboard_fuzz::socketio::decode(data));
