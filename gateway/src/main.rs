//! The `gateway` binary: configuration, logging, signals; everything else is in the library.

use clap::Parser;
use gateway::{Config, ENV_PREFIX};
use switchboard_server_kit::{CommonArgs, ShutdownSignal, config, init_tracing, shutdown};

/// Switchboard's gateway: authenticates clients and routes the public gRPC API.
#[derive(Parser)]
#[command(version)]
struct Cli {
    #[command(flatten)]
    common: CommonArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let config: Config = config::load(
        &Config::default(),
        cli.common.config.as_deref(),
        ENV_PREFIX,
        &cli.common.overrides(),
    )?;
    init_tracing(&config.log);
    let listeners = gateway::Listeners::bind(&config).await?;
    gateway::serve(
        config,
        listeners,
        ShutdownSignal::from_future(shutdown::signal()),
    )
    .await
}
