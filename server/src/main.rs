//! The `switchboard` binary: parses the command line (or `SWITCHBOARD_*` env) into a node's
//! options and the application to run, and runs the node.

use anyhow::Context as _;
use clap::Parser;
use switchboard::apps;
use switchboard::node::log::LogOptions;
use switchboard::node::{self, App, NodeOptions};

/// What the node runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum AppName {
    /// The demo page on `/`: `hello` every second, logs the page's `hey`.
    Demo,
    /// The load-test contract: echo, join, leave, broadcast.
    Bench,
    /// Plain Engine.IO echo (no Socket.IO), as the engine.io-protocol suite expects.
    EngineEcho,
}

/// A horizontally scalable Socket.IO server node.
#[derive(Debug, Parser)]
#[command(version = switchboard::version::LONG, about)]
struct Cli {
    /// Application to run.
    #[arg(long, env = "SWITCHBOARD_APP", value_enum, default_value_t = AppName::Demo)]
    app: AppName,
    /// Runtime worker threads (default: one per CPU). One worker avoids cross-thread wake-ups,
    /// which is cheaper per message when a node has a single core to itself.
    #[arg(long, env = "SWITCHBOARD_WORKERS")]
    workers: Option<std::num::NonZeroUsize>,
    #[command(flatten)]
    log: LogOptions,
    #[command(flatten)]
    node: NodeOptions,
}

fn main() -> anyhow::Result<()> {
    let mut cli = Cli::parse();
    cli.log.init(cli.node.resolve_node_id())?;
    let app: App = match cli.app {
        AppName::Demo => apps::demo::app(),
        AppName::Bench => apps::bench::app(),
        AppName::EngineEcho => apps::echo::app(),
    };
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = cli.workers {
        runtime.worker_threads(n.get());
    }
    let runtime = runtime.enable_all().build().context("cannot start the tokio runtime")?;
    Ok(runtime.block_on(node::run(cli.node, app))?)
}
