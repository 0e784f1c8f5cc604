//! Which build this is: the crate's version and the commit it was built from (recorded by
//! `build.rs`), so logs, `--version` and `switchboard_build_info` tell a rollout's pods apart.

/// The crate version (`Cargo.toml`).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The commit built: a 12-digit abbreviated hash, `SWITCHBOARD_COMMIT` as given at build time, or
/// `unknown` when neither git nor the variable was there.
pub const COMMIT: &str = env!("SWITCHBOARD_COMMIT");

/// `<version> (<commit>)`, as `--version` prints it.
pub const LONG: &str = concat!(env!("CARGO_PKG_VERSION"), " (", env!("SWITCHBOARD_COMMIT"), ")");
