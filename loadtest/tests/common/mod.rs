//! What the loadtest's end-to-end tests share: where the binaries are.
#![allow(clippy::expect_used, dead_code)]

use std::path::{Path, PathBuf};

/// The load generator under test.
pub const LOADTEST: &str = env!("CARGO_BIN_EXE_switchboard-loadtest");

/// The `switchboard` binary, in the same directory as the loadtest binary.
pub fn server_binary() -> PathBuf {
    let dir = Path::new(LOADTEST).parent().expect("the loadtest binary has a parent directory");
    let bin = dir.join(format!("switchboard{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.is_file(),
        "server binary not found at {}: run cargo build -p switchboard (cargo test --workspace builds it)",
        bin.display()
    );
    bin
}
