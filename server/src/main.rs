//! The `switchboard` binary: parses the command line (or `SWITCHBOARD_*` env, or the `--config`
//! file beneath both) into a node's options and the application to run, and runs the node.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{CommandFactory as _, FromArgMatches as _, Parser};
use switchboard::apps;
use switchboard::apps::gateway::GatewayOptions;
use switchboard::gateway::GatewayConfig;
use switchboard::node::config_file::{self, ConfigFile};
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
    /// The gateway for any backend: JWT auth, event webhooks, the HTTP API (`[gateway]` of
    /// `--config`).
    Gateway,
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
    /// TOML file of settings (keys are the long flag names); flags and variables override it.
    #[arg(long, env = "SWITCHBOARD_CONFIG")]
    config: Option<PathBuf>,
    #[command(flatten)]
    log: LogOptions,
    #[command(flatten)]
    node: NodeOptions,
    #[command(flatten)]
    gateway: GatewayOptions,
}

/// The sections of the config file that applications read.
const SECTIONS: [&str; 1] = ["gateway"];

/// The command line over the config file's values, if `--config` (or its variable) names one.
fn parse() -> anyhow::Result<(Cli, Option<ConfigFile>)> {
    let located = ConfigFile::locate(std::env::args_os(), std::env::var_os(config_file::ENV));
    let file = located.map(|path| ConfigFile::load(&path)).transpose()?;
    let command = match &file {
        Some(file) => file.apply(Cli::command(), &SECTIONS)?,
        None => Cli::command(),
    };
    let cli = Cli::from_arg_matches(&command.get_matches()).unwrap_or_else(|e| e.exit());
    Ok((cli, file))
}

/// The gateway's section, checked; refused when the app that reads it does not run (it would be
/// ignored silently), and required when it does.
fn gateway_config(app: AppName, file: Option<&ConfigFile>) -> anyhow::Result<Option<GatewayConfig>> {
    let config = match file {
        Some(file) => GatewayConfig::from_toml(file.path(), file.text())?,
        None => None,
    };
    match (app, config) {
        (AppName::Gateway, None) => {
            anyhow::bail!("--app gateway needs --config with a [gateway] section (docs/gateway.md)")
        }
        (AppName::Gateway, config) => Ok(config),
        (_, Some(_)) => anyhow::bail!("the config file's [gateway] section is read only by --app gateway"),
        (_, None) => Ok(None),
    }
}

fn main() -> anyhow::Result<()> {
    let (mut cli, file) = parse()?;
    let gateway = gateway_config(cli.app, file.as_ref())?;
    if cli.gateway.api_port.is_some() && cli.app != AppName::Gateway {
        anyhow::bail!("--api-port is the gateway's API: it needs --app gateway");
    }
    cli.log.init(cli.node.resolve_node_id())?;
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = cli.workers {
        runtime.worker_threads(n.get());
    }
    let runtime = runtime.enable_all().build().context("cannot start the tokio runtime")?;
    runtime.block_on(async move {
        let app: App = match (cli.app, gateway) {
            (AppName::Demo, _) => apps::demo::app(),
            (AppName::Bench, _) => apps::bench::app(),
            (AppName::EngineEcho, _) => apps::echo::app(),
            (AppName::Gateway, Some(config)) => {
                apps::gateway::app(config, &cli.node.host, cli.gateway.api_port).await?
            }
            (AppName::Gateway, None) => anyhow::bail!("--app gateway needs a [gateway] section"),
        };
        Ok(node::run(cli.node, app).await?)
    })
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    use super::Cli;

    #[test]
    fn docs_configuration_lists_every_flag_of_the_binary() {
        let docs = include_str!("../../docs/configuration.md");
        for arg in Cli::command().get_arguments() {
            let (Some(long), Some(env)) = (arg.get_long(), arg.get_env()) else { continue };
            let row = format!("| `--{long}` | `{}` |", env.to_string_lossy());
            assert!(docs.contains(&row), "docs/configuration.md lacks the row {row}");
        }
    }
}
