//! `polling`: the `echo` open model (acked echo at a fixed total rate, latency from the scheduled send
//! time) on long-polling clients ([`PollingConn`]), where every round trip costs the server a POST and
//! part of a GET answer.

use super::Context;
use super::echo::{self, EchoParams};
use crate::SetupError;
use crate::polling::PollingConn;
use crate::report::Report;

/// Requests per second by default: lower than `echo`'s 5,000, since each costs two HTTP exchanges.
pub const DEFAULT_RATE: f64 = 2_000.0;

/// `echo`'s parameters (50 connections, 10 s after a 2 s warm-up, 64 B) at polling's default rate.
pub fn default_params() -> EchoParams {
    EchoParams { rate: DEFAULT_RATE, ..EchoParams::default() }
}

/// Runs `polling`.
pub async fn run(ctx: &Context, params: &EchoParams) -> Result<Report, SetupError> {
    echo::run_over::<PollingConn>(ctx, params, "polling").await
}
