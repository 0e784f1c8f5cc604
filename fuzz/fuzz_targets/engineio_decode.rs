//! Fuzz target `engineio_decode`: see [`switchboard_fuzz::engineio::decode`].

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| switchboard_fuzz::engineio::decode(data));
