//! The reference server of the official engine.io-protocol test suite: Engine.IO at `/engine.io/`
//! on 127.0.0.1:3000 (`PORT` overrides), pingInterval 300, pingTimeout 200, echoing every message.
//!
//! Run: `cargo run --release -p switchboard --example engine_echo`

use std::sync::Arc;
use std::time::Duration;

use switchboard::apps::echo::Echo;
use switchboard::{Engine, EngineConfig, Server};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::from_default_env()).init();
    let port: u16 = std::env::var("PORT").ok().and_then(|p| p.parse().ok()).unwrap_or(3000);
    let config = EngineConfig::default()
        .with_path("/engine.io/")
        .with_ping_interval(Duration::from_millis(300))
        .with_ping_timeout(Duration::from_millis(200))
        .with_max_http_buffer_size(1_000_000);
    let engine = Engine::new(config, Arc::new(Echo));
    let listener = switchboard::http::bind("127.0.0.1", port).await?;
    println!("engine_echo listening on http://127.0.0.1:{port}/engine.io/");
    let shutdown = switchboard::node::signal::on_signal();
    Server::new(engine).serve(listener, shutdown).await?;
    Ok(())
}
